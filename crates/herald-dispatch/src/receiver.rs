//! A connected receiver's record (info, statistics, metric handles) and how one call of it is made:
//! muting, timing, panic capture, the slow warning.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::FutureExt;

use crate::error::{Cause, Result, panic_message};
use crate::info::{Condition, ReceiverInfo};
use crate::mute;
use crate::observe;
use crate::stats::{Stats, StatsSnapshot};

/// Whether receivers are timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Timing {
    /// Every call is timed and recorded: two `Instant::now()` reads, the histogram (which also
    /// counts calls), the slow check, and the `metrics` counter and histogram. The default: its cost
    /// is stated in BENCHMARKS.md and is small next to any write.
    #[default]
    On,
    /// No per-call recording at all: no clock reads, no call count, no slow warning, no `metrics`
    /// recording. Failures are still counted and reported.
    Off,
}

/// The default slow threshold: a receiver that blocks a save for 10 ms blocks it for about a
/// thousand times what the write itself costs on SQLite.
pub const DEFAULT_SLOW_THRESHOLD: Duration = Duration::from_millis(10);

/// How an async send runs a synchronous receiver declared
/// [`blocking`](crate::ReceiverBuilder::blocking): it must call the closure it is given exactly
/// once, on the current thread, and return when it has. The store sets one that uses
/// `tokio::task::block_in_place` on a multi-threaded runtime.
pub type BlockingRunner = fn(&mut dyn FnMut());

/// Settings read on every call; atomics, so they can change while the program runs.
#[derive(Debug)]
pub(crate) struct Config {
    timing: AtomicBool,
    slow_ns: AtomicU64,
    blocking: OnceLock<BlockingRunner>,
}

impl Config {
    pub(crate) fn new(timing: Timing, slow: Duration) -> Self {
        let config = Self {
            timing: AtomicBool::new(true),
            slow_ns: AtomicU64::new(0),
            blocking: OnceLock::new(),
        };
        config.set_timing(timing);
        config.set_slow_threshold(slow);
        config
    }

    pub(crate) fn set_timing(&self, timing: Timing) {
        self.timing.store(timing == Timing::On, Relaxed);
    }

    pub(crate) fn timing(&self) -> Timing {
        if self.timing.load(Relaxed) {
            Timing::On
        } else {
            Timing::Off
        }
    }

    pub(crate) fn set_slow_threshold(&self, slow: Duration) {
        self.slow_ns
            .store(slow.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }

    pub(crate) fn slow_threshold(&self) -> Duration {
        Duration::from_nanos(self.slow_ns.load(Relaxed))
    }

    /// Set the blocking runner, once; false if one was already set.
    pub(crate) fn set_blocking_runner(&self, runner: BlockingRunner) -> bool {
        self.blocking.set(runner).is_ok()
    }

    /// Run `f` (a receiver declared blocking) through the blocking runner, or directly when none
    /// is set.
    pub(crate) fn run_blocking<R>(&self, f: impl FnOnce() -> R) -> R {
        let Some(runner) = self.blocking.get() else {
            return f();
        };
        let mut f = Some(f);
        let mut out = None;
        runner(&mut || {
            if let Some(f) = f.take() {
                out = Some(f());
            }
        });
        match out {
            Some(out) => out,
            // A runner that did not call the closure broke its contract; run it here instead.
            None => (f.take().expect("not taken: the runner did not call it"))(),
        }
    }
}

/// `metrics` handles, resolved once at registration against the recorder installed then.
#[derive(Debug)]
struct Handles {
    calls: metrics::Counter,
    errors: metrics::Counter,
    seconds: metrics::Histogram,
}

impl Handles {
    fn new(info: &ReceiverInfo) -> Self {
        let labels = [
            ("receiver", info.name().to_owned()),
            ("signal", info.signal().to_owned()),
            ("sender", info.sender().to_owned()),
            ("phase", info.phase().as_str().to_owned()),
        ];
        Self {
            calls: metrics::counter!("herald_receiver_calls_total", &labels),
            errors: metrics::counter!("herald_receiver_errors_total", &labels),
            seconds: metrics::histogram!("herald_receiver_duration_seconds", &labels),
        }
    }
}

/// One connected receiver, shared by its slot entry, the registry's list and its guard.
#[derive(Debug)]
pub(crate) struct ReceiverCore {
    pub(crate) info: Arc<ReceiverInfo>,
    /// The info's condition, one load from the walk (only `post_save` walks read it).
    pub(crate) condition: Option<Box<Condition>>,
    stats: Stats,
    handles: Handles,
}

impl ReceiverCore {
    pub(crate) fn new(info: ReceiverInfo) -> Self {
        let handles = Handles::new(&info);
        Self {
            condition: info.condition.clone().map(Box::new),
            info: Arc::new(info),
            stats: Stats::new(),
            handles,
        }
    }

    /// Run one synchronous call. `None` means it succeeded or was muted.
    #[inline]
    pub(crate) fn call(
        &self,
        config: &Config,
        sender: &'static str,
        f: impl FnOnce() -> Result,
    ) -> Option<Cause> {
        if mute::is_muted(&self.info, sender) {
            return None;
        }
        let started = config.timing.load(Relaxed).then(Instant::now);
        let outcome = catch_unwind(AssertUnwindSafe(f));
        self.finish(config, sender, started, outcome)
    }

    /// Run one asynchronous call (or a synchronous one from an async send).
    pub(crate) async fn call_async(
        &self,
        config: &Config,
        sender: &'static str,
        fut: impl Future<Output = Result>,
    ) -> Option<Cause> {
        if mute::is_muted(&self.info, sender) {
            return None;
        }
        let started = config.timing.load(Relaxed).then(Instant::now);
        let outcome = AssertUnwindSafe(fut).catch_unwind().await;
        self.finish(config, sender, started, outcome)
    }

    #[inline(always)]
    fn finish(
        &self,
        config: &Config,
        sender: &'static str,
        started: Option<Instant>,
        outcome: std::thread::Result<Result>,
    ) -> Option<Cause> {
        if let Some(started) = started {
            let elapsed = started.elapsed();
            let ns = elapsed.as_nanos().min(u64::MAX as u128) as u64;
            self.stats.record_time(ns);
            self.handles.calls.increment(1);
            self.handles.seconds.record(elapsed.as_secs_f64());
            let slow = ns >= config.slow_ns.load(Relaxed);
            if slow {
                self.warn_slow(config, sender, elapsed);
            }
            let failed = !matches!(outcome, Ok(Ok(())));
            observe::with_current(|o| o.receiver(&self.info, sender, elapsed, failed, slow));
        }
        match outcome {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(self.failed(Cause::Failed(error))),
            Err(payload) => Some(self.failed(Cause::Panicked(panic_message(&*payload)))),
        }
    }

    #[cold]
    #[inline(never)]
    fn failed(&self, cause: Cause) -> Cause {
        self.stats.count_error(matches!(cause, Cause::Panicked(_)));
        self.handles.errors.increment(1);
        cause
    }

    #[cold]
    #[inline(never)]
    fn warn_slow(&self, config: &Config, sender: &'static str, elapsed: Duration) {
        let info = &self.info;
        tracing::warn!(
            target: "herald::slow",
            receiver = %info.name(),
            signal = info.signal(),
            sender,
            phase = info.phase().as_str(),
            elapsed_ms = elapsed.as_secs_f64() * 1e3,
            threshold_ms = config.slow_threshold().as_secs_f64() * 1e3,
            location = %info.location(),
            "slow receiver: {} took {:.3} ms on {} for {}",
            info.name(),
            elapsed.as_secs_f64() * 1e3,
            info.signal(),
            sender,
        );
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }
}

/// A connected receiver as the registry lists it: what it is and how it has done.
#[derive(Clone, Debug)]
pub struct Receiver {
    pub(crate) core: Arc<ReceiverCore>,
}

impl Receiver {
    /// What it is.
    pub fn info(&self) -> &ReceiverInfo {
        &self.core.info
    }

    /// Its statistics now.
    pub fn stats(&self) -> StatsSnapshot {
        self.core.snapshot()
    }
}
