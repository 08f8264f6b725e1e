//! The registry's public face: [`Signals`], its builder, and the receivers `#[receiver]` declares.
//! Its internals (slots, interest bits, connecting) are in `registry.rs`.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::connect::{ConnectError, Connection, Options};
use crate::info::{Phase, ReceiverId, ReceiverInfo};
use crate::model::{ModelSignal, OnPostDelete, OnPostSave, OnPreDelete, OnPreSave};
use crate::receiver::{Config, DEFAULT_SLOW_THRESHOLD, Receiver, ReceiverCore, Timing};
use crate::registry::{Inner, SenderSlots};
use crate::sender::{AnyModel, Sender};
use crate::slot::{Entry, identity_of};

/// Builds [`Signals`]. Every option documents its default.
#[must_use = "a builder does nothing until `.build()`"]
#[derive(Debug, Default)]
pub struct SignalsBuilder {
    autodiscover: bool,
    timing: Timing,
    slow_threshold: Option<Duration>,
}

impl SignalsBuilder {
    /// Also connect every receiver declared with `#[receiver]` in the program (collected at link
    /// time). Default: off, so a test that builds its own registry gets only what it connects.
    pub fn autodiscover(mut self) -> Self {
        self.autodiscover = true;
        self
    }

    /// Whether receivers are timed. Default: [`Timing::On`].
    pub fn timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// A receiver call that takes at least this long is reported with a `tracing` warning (target
    /// `herald::slow`) naming the receiver, signal, sender and time. Default:
    /// [`DEFAULT_SLOW_THRESHOLD`] (10 ms). Only timed calls are checked.
    pub fn slow_threshold(mut self, threshold: Duration) -> Self {
        self.slow_threshold = Some(threshold);
        self
    }

    /// Build the registry, connecting the discovered receivers if asked to.
    pub fn build(self) -> Signals {
        let signals = Signals {
            inner: Arc::new(Inner {
                live: AtomicUsize::new(0),
                conditional: AtomicUsize::new(0),
                config: Config::new(
                    self.timing,
                    self.slow_threshold.unwrap_or(DEFAULT_SLOW_THRESHOLD),
                ),
                senders: std::array::from_fn(|_| OnceLock::new()),
                every: SenderSlots::new(),
                all: Mutex::new(Vec::new()),
            }),
        };
        if self.autodiscover {
            for declared in inventory::iter::<StaticReceiver> {
                (declared.connect)(&signals).keep();
            }
            log_counts(&signals);
        }
        signals
    }
}

fn log_counts(signals: &Signals) {
    let mut counts: Vec<(&'static str, Phase, usize)> = Vec::new();
    for receiver in signals.receivers() {
        let info = receiver.info();
        match counts
            .iter_mut()
            .find(|(s, p, _)| *s == info.signal() && *p == info.phase())
        {
            Some((_, _, n)) => *n += 1,
            None => counts.push((info.signal(), info.phase(), 1)),
        }
    }
    // `inventory` cannot see receivers of a crate the program never names (`use that_crate as _;`
    // fixes it): these counts are how a missing one shows.
    for (signal, phase, count) in counts {
        tracing::info!(target: "herald::registry", signal, phase = phase.as_str(), count, "receivers discovered");
    }
}

/// A receiver declared with `#[receiver]`, collected at link time by `inventory` and connected by
/// [`SignalsBuilder::autodiscover`]. Written by the macro; not meant to be written by hand.
#[derive(Debug)]
pub struct StaticReceiver {
    connect: fn(&Signals) -> Connection,
}

impl StaticReceiver {
    /// A declared receiver that `connect` connects to a registry.
    pub const fn new(connect: fn(&Signals) -> Connection) -> Self {
        Self { connect }
    }
}

inventory::collect!(StaticReceiver);

/// The registry of model-signal receivers. Cheap to clone (a shared handle).
///
/// # Ordering
/// Receivers of one signal run in priority order (higher first), then registration order. A
/// sender's own receivers and the every-sender receivers form one order.
///
/// # What a send does with failures
/// `send` stops at the first receiver that fails and returns its error; `send_robust` runs every
/// receiver and returns every error. A receiver that panics is caught at the receiver and reported
/// as an error naming it; the panic never unwinds through the dispatcher.
///
/// # Phases: where a receiver runs
/// Every receiver is connected in a [`Phase`]: on the caller's task (the default), in the write's
/// transaction (`.in_transaction()`), after the commit (`.on_commit()`) or as a durable background
/// task. The store decides when each phase is sent; see [`Phase`] for the contract of each.
///
/// # Threads
/// Receivers run on the thread (or task) that sends. An async receiver reached by a synchronous
/// `send` is driven to completion there by a minimal executor; `send_async` awaits it instead, and
/// runs a synchronous receiver declared `blocking` through the blocking runner. Either way,
/// receivers run one at a time, in order, never concurrently with each other.
///
/// # Changing receivers during a send
/// A send walks the list as it was when the send began: a receiver that connects or disconnects
/// (itself or another) while running does not change the send under way; the next send sees it.
#[derive(Clone)]
pub struct Signals {
    pub(crate) inner: Arc<Inner>,
}

impl Signals {
    /// A builder; see [`SignalsBuilder`] for the options and their defaults.
    pub fn builder() -> SignalsBuilder {
        SignalsBuilder::default()
    }

    /// An empty registry with the default settings and no discovered receivers.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// `pre_save` for `M`: runs before the write (on the caller's task, or `.in_transaction()`),
    /// may change the instance; an error vetoes the write.
    pub fn pre_save<M: Sender>(&self) -> ModelSignal<'_, OnPreSave, M> {
        ModelSignal::new(&self.inner)
    }

    /// `post_save` for `M`: runs after the write, on the caller's task once the write's answer is
    /// back; `.in_transaction()` for receivers that must be atomic with the write (an error rolls it
    /// back), `.on_commit()` for the ones that run after the commit.
    pub fn post_save<M: Sender>(&self) -> ModelSignal<'_, OnPostSave, M> {
        ModelSignal::new(&self.inner)
    }

    /// `pre_delete` for `M`.
    pub fn pre_delete<M: Sender>(&self) -> ModelSignal<'_, OnPreDelete, M> {
        ModelSignal::new(&self.inner)
    }

    /// `post_delete` for `M`.
    pub fn post_delete<M: Sender>(&self) -> ModelSignal<'_, OnPostDelete, M> {
        ModelSignal::new(&self.inner)
    }

    /// `pre_save` for every sender (Django's `sender=None`): receivers get `&mut dyn AnyModel`.
    pub fn pre_save_any(&self) -> ModelSignal<'_, OnPreSave, dyn AnyModel> {
        ModelSignal::new(&self.inner)
    }

    /// `post_save` for every sender.
    pub fn post_save_any(&self) -> ModelSignal<'_, OnPostSave, dyn AnyModel> {
        ModelSignal::new(&self.inner)
    }

    /// `pre_delete` for every sender.
    pub fn pre_delete_any(&self) -> ModelSignal<'_, OnPreDelete, dyn AnyModel> {
        ModelSignal::new(&self.inner)
    }

    /// `post_delete` for every sender.
    pub fn post_delete_any(&self) -> ModelSignal<'_, OnPostDelete, dyn AnyModel> {
        ModelSignal::new(&self.inner)
    }

    /// Every connected receiver, in registration order.
    pub fn receivers(&self) -> Vec<Receiver> {
        self.inner
            .lock()
            .iter()
            .map(|(core, _)| Receiver { core: core.clone() })
            .collect()
    }

    /// The connected receiver with this id.
    pub fn receiver(&self, id: ReceiverId) -> Option<Receiver> {
        self.inner
            .lock()
            .iter()
            .find(|(core, _)| core.info.id() == id)
            .map(|(core, _)| Receiver { core: core.clone() })
    }

    /// Disconnect the receiver with this id; true if it was connected.
    pub fn disconnect(&self, id: ReceiverId) -> bool {
        let at = self
            .inner
            .lock()
            .iter()
            .find(|(core, _)| core.info.id() == id)
            .map(|(_, at)| *at);
        at.is_some_and(|at| self.inner.remove(at, &|c| c.info.id() == id) > 0)
    }

    /// Turn timing on or off while the program runs.
    pub fn set_timing(&self, timing: Timing) {
        self.inner.config.set_timing(timing);
    }

    /// Whether receivers are timed now.
    pub fn timing(&self) -> Timing {
        self.inner.config.timing()
    }

    /// Change the slow threshold while the program runs.
    pub fn set_slow_threshold(&self, threshold: Duration) {
        self.inner.config.set_slow_threshold(threshold);
    }

    /// The slow threshold now.
    pub fn slow_threshold(&self) -> Duration {
        self.inner.config.slow_threshold()
    }

    /// Set how async sends run synchronous receivers declared
    /// [`blocking`](crate::ReceiverBuilder::blocking), once for the registry's life (a store does
    /// it when it opens); false if a runner was already set. Without one they are called directly.
    pub fn set_blocking_runner(&self, runner: crate::BlockingRunner) -> bool {
        self.inner.config.set_blocking_runner(runner)
    }
}

impl Default for Signals {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signals")
            .field("receivers", &self.inner.live.load(Relaxed))
            .field("timing", &self.timing())
            .field("slow_threshold", &self.slow_threshold())
            .finish()
    }
}

/// Make the record of a receiver about to be connected.
pub(crate) fn new_entry<S: ?Sized, A: ?Sized, F: 'static>(
    options: Options,
    signal: &'static str,
    sender: &'static str,
    fields: Option<&'static [&'static str]>,
    phase: Phase,
    call: crate::slot::Callable<S, A>,
) -> std::result::Result<Entry<S, A>, ConnectError> {
    let is_async = matches!(call, crate::slot::Callable::Async(_));
    let condition = options
        .condition(signal, sender, fields)
        .map_err(|reason| ConnectError::new(&options.name, signal, sender, reason))?;
    let changes = options.wants_changes();
    let info = ReceiverInfo {
        id: ReceiverId::fresh(),
        name: options.name,
        location: options.location,
        signal,
        sender,
        priority: options.priority,
        phase,
        dispatch_uid: options.dispatch_uid,
        is_async,
        blocking: options.blocking,
        condition,
        changes,
    };
    Ok(Entry {
        core: Arc::new(ReceiverCore::new(info)),
        call,
        identity: identity_of::<F>(),
    })
}

/// The name a receiver gets when none is given.
pub(crate) fn default_name<F>() -> &'static str {
    std::any::type_name::<F>()
}
