//! What this binary does with `tracing` events: warnings and errors go to stderr (above the progress
//! bar, when one is shown), except Herald's slow-receiver warnings (target `herald::slow`), which are
//! counted per receiver instead of printed: a blocking receiver under load is named thousands of
//! times, and the count is what the report shows.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{IsTerminal as _, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::Context;
use indicatif::ProgressBar;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// The target of Herald's slow-receiver warnings (`herald-dispatch`'s `receiver.rs`).
const SLOW_TARGET: &str = "herald::slow";

/// The installed subscriber's state: the slow-receiver counts and the progress bar that printed
/// lines must not tear. Cheap to clone.
#[derive(Clone, Default, Debug)]
pub(crate) struct Logging {
    slow: Arc<Mutex<BTreeMap<String, u64>>>,
    bar: Arc<Mutex<Option<ProgressBar>>>,
}

impl Logging {
    /// Install the process's subscriber. Fails if one is installed already.
    pub(crate) fn install() -> anyhow::Result<Self> {
        let logging = Self::default();
        let counter = SlowCounter {
            counts: logging.slow.clone(),
        }
        .with_filter(filter_fn(|meta| meta.target() == SLOW_TARGET));
        // Colour only on a terminal: a log written to a file or a pipe stays plain text.
        let stderr = tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(BarWriter {
                bar: logging.bar.clone(),
            })
            .with_filter(filter_fn(|meta| {
                meta.target() != SLOW_TARGET && *meta.level() <= Level::WARN
            }));
        tracing_subscriber::registry()
            .with(counter)
            .with(stderr)
            .try_init()
            .context("installing the tracing subscriber")?;
        Ok(logging)
    }

    /// The slow-receiver warnings counted since the last call, by receiver name; the counts start
    /// again from zero.
    pub(crate) fn take_slow(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *lock(&self.slow))
    }

    /// Print log lines around `bar` (suspending it) until [`Self::clear_bar`].
    pub(crate) fn set_bar(&self, bar: &ProgressBar) {
        *lock(&self.bar) = Some(bar.clone());
    }

    /// Print log lines straight to stderr again.
    pub(crate) fn clear_bar(&self) {
        *lock(&self.bar) = None;
    }
}

/// `name (count), name (count)`, or `none`.
pub(crate) fn format_counts(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "none".to_owned();
    }
    counts
        .iter()
        .map(|(name, n)| format!("{name} ({n})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A lock that a panic elsewhere does not make unusable: the data are counters and an `Option`,
/// valid after any interrupted update.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts `herald::slow` events by their `receiver` field.
struct SlowCounter {
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl<S: Subscriber> Layer<S> for SlowCounter {
    fn on_event(&self, event: &Event<'_>, _ctx: LayerContext<'_, S>) {
        let mut receiver = ReceiverField(None);
        event.record(&mut receiver);
        let name = receiver.0.unwrap_or_else(|| "(unnamed)".to_owned());
        *lock(&self.counts).entry(name).or_default() += 1;
    }
}

/// The `receiver` field of an event, however it was recorded (`%name` is a `Debug` record of a
/// `Display` wrapper).
struct ReceiverField(Option<String>);

impl Visit for ReceiverField {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "receiver" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "receiver" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

/// Stderr, one whole event at a time, with the progress bar (if any) suspended while it is written.
struct BarWriter {
    bar: Arc<Mutex<Option<ProgressBar>>>,
}

impl<'a> MakeWriter<'a> for BarWriter {
    type Writer = EventWriter;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter {
            line: Vec::new(),
            bar: lock(&self.bar).clone(),
        }
    }
}

/// Collects one formatted event; writes it when dropped.
struct EventWriter {
    line: Vec<u8>,
    bar: Option<ProgressBar>,
}

impl Write for EventWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        let write = || {
            // Nowhere to report a failed write to stderr.
            let _ = std::io::stderr().lock().write_all(&self.line);
        };
        match &self.bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}
