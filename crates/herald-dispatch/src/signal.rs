//! User-defined signals (Django's `Signal()`): any event type, no sender, the same receivers,
//! ordering, failure policy, muting and statistics as the model signals.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use crate::connect::{Connection, ReceiverBuilder};
use crate::cow::Reading;
use crate::error::Cause;
use crate::error::{DispatchError, Result};
use crate::handler::AsyncReceiverRef;
use crate::info::{Phase, SourceLocation};
use crate::receiver::{Config, DEFAULT_SLOW_THRESHOLD, Receiver, Timing};
use crate::signals::{default_name, new_entry};
use crate::slot::{Callable, Entry, ErasedSlot, ReceiverFuture, Refused, Slot};
use crate::walk::{Started, WalkMode, call_async, finish_here};

type SyncReceiver<E> = dyn Fn(&E) -> Result + Send + Sync;
type AsyncReceiver<E> = dyn for<'a> Fn(&'a E) -> ReceiverFuture<'a> + Send + Sync;
type SignalEntry<E> = Entry<SyncReceiver<E>, AsyncReceiver<E>>;

/// The sender name custom-signal receivers show.
const NO_SENDER: &str = "-";

struct Shared<E: ?Sized + 'static> {
    name: &'static str,
    config: Config,
    live: AtomicUsize,
    slot: Slot<SyncReceiver<E>, AsyncReceiver<E>>,
    writers: Mutex<()>,
}

/// A signal with any event type `E`, standalone like Django's `Signal()`; cheap to clone (a shared
/// handle). Receivers get `&E` and run in priority, then registration, order, on the sending thread
/// (or task, for `send_async`).
/// Put one in a `static` with `LazyLock` for a program-wide signal, or build one per test.
pub struct Signal<E: ?Sized + 'static> {
    shared: Arc<Shared<E>>,
}

impl<E: ?Sized + 'static> Clone for Signal<E> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<E: ?Sized + 'static> std::fmt::Debug for Signal<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signal")
            .field("name", &self.shared.name)
            .field("receivers", &self.shared.live.load(Relaxed))
            .finish()
    }
}

impl<E: ?Sized + 'static> Signal<E> {
    /// A signal named `name` (receivers, logs and metrics show it), timed, with the default slow
    /// threshold.
    pub fn new(name: &'static str) -> Self {
        Self::with_settings(name, Timing::On, DEFAULT_SLOW_THRESHOLD)
    }

    /// A signal with its timing and slow threshold chosen.
    pub fn with_settings(name: &'static str, timing: Timing, slow_threshold: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                name,
                config: Config::new(timing, slow_threshold),
                live: AtomicUsize::new(0),
                slot: Slot::new(),
                writers: Mutex::new(()),
            }),
        }
    }

    /// The signal's name.
    pub fn name(&self) -> &'static str {
        self.shared.name
    }

    /// Connect a receiver with the default options.
    #[track_caller]
    pub fn connect<F>(&self, receiver: F) -> Connection
    where
        F: Fn(&E) -> Result + Send + Sync + 'static,
    {
        self.receiver(receiver).connect()
    }

    /// A receiver to connect with options.
    #[track_caller]
    pub fn receiver<F>(&self, receiver: F) -> ReceiverBuilder<'_>
    where
        F: Fn(&E) -> Result + Send + Sync + 'static,
    {
        let call: Box<SyncReceiver<E>> = Box::new(receiver);
        self.builder::<F>(Callable::Sync(call), SourceLocation::caller())
    }

    /// Connect an async receiver (an `async fn`, or an async closure that captures nothing) with
    /// the default options.
    #[track_caller]
    pub fn connect_async<F>(&self, receiver: F) -> Connection
    where
        F: for<'a> AsyncReceiverRef<'a, E>,
    {
        self.receiver_async(receiver).connect()
    }

    /// An async receiver to connect with options; awaited in its turn, before the next receiver.
    /// Its future must be `Send`.
    #[track_caller]
    pub fn receiver_async<F>(&self, receiver: F) -> ReceiverBuilder<'_>
    where
        F: for<'a> AsyncReceiverRef<'a, E>,
    {
        let call: Box<AsyncReceiver<E>> = Box::new(move |e| receiver.call(e));
        self.builder::<F>(Callable::Async(call), SourceLocation::caller())
    }

    /// Connect an async receiver written as a closure returning a boxed future (the form for
    /// closures that capture state).
    #[track_caller]
    pub fn connect_boxed<F>(&self, receiver: F) -> Connection
    where
        F: for<'a> Fn(&'a E) -> ReceiverFuture<'a> + Send + Sync + 'static,
    {
        let call: Box<AsyncReceiver<E>> = Box::new(receiver);
        self.builder::<F>(Callable::Async(call), SourceLocation::caller())
            .connect()
    }

    fn builder<F: 'static>(
        &self,
        call: Callable<SyncReceiver<E>, AsyncReceiver<E>>,
        location: SourceLocation,
    ) -> ReceiverBuilder<'_> {
        ReceiverBuilder::new(
            default_name::<F>(),
            location,
            Box::new(move |options| {
                let entry: SignalEntry<E> = new_entry::<_, _, F>(
                    options,
                    self.shared.name,
                    NO_SENDER,
                    None,
                    Phase::Caller,
                    call,
                )?;
                Ok(self.attach(entry))
            }),
        )
    }

    fn attach(&self, entry: SignalEntry<E>) -> Connection {
        let _writer = self.lock();
        let id = entry.core.info.id();
        match self.shared.slot.insert(entry) {
            Err(Refused::Duplicate(existing)) => Connection::duplicate(existing),
            Ok(()) => {
                self.shared.live.fetch_add(1, Relaxed);
                let shared = Arc::downgrade(&self.shared);
                Connection::connected(
                    id,
                    Box::new(move || remove(&shared, &|c| c.info.id() == id) > 0),
                )
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.shared
            .writers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Disconnect the receiver with this `dispatch_uid`; true if there was one.
    pub fn disconnect_uid(&self, uid: &str) -> bool {
        remove(&Arc::downgrade(&self.shared), &|c| {
            c.info.dispatch_uid() == Some(uid)
        }) > 0
    }

    /// Whether any receiver is connected.
    pub fn has_receivers(&self) -> bool {
        self.shared.live.load(Relaxed) != 0
    }

    /// The connected receivers, in dispatch order.
    pub fn receivers(&self) -> Vec<Receiver> {
        self.shared
            .slot
            .entries(&Reading::begin())
            .iter()
            .map(|e| Receiver {
                core: e.core.clone(),
            })
            .collect()
    }

    /// Turn timing on or off.
    pub fn set_timing(&self, timing: Timing) {
        self.shared.config.set_timing(timing);
    }

    /// Change the slow threshold.
    pub fn set_slow_threshold(&self, threshold: Duration) {
        self.shared.config.set_slow_threshold(threshold);
    }

    /// Run the receivers in order; stop at the first failure and return it.
    #[inline]
    pub fn send(&self, event: &E) -> std::result::Result<(), DispatchError> {
        if self.shared.live.load(Relaxed) == 0 {
            return Ok(());
        }
        let mut errors = Vec::new();
        self.walk_here(event, WalkMode::HERE, &mut errors);
        errors.pop().map_or(Ok(()), Err)
    }

    /// Run every receiver; return every failure, in order, each also logged at ERROR on
    /// `herald::dispatch`.
    pub fn send_robust(&self, event: &E) -> Vec<DispatchError> {
        let mut errors = Vec::new();
        if self.shared.live.load(Relaxed) != 0 {
            self.walk_here(event, WalkMode::HERE.robust(), &mut errors);
        }
        if !errors.is_empty() {
            crate::error::log_robust(&errors);
        }
        errors
    }

    /// [`send`](Self::send), awaiting async receivers instead of blocking on them.
    pub async fn send_async(&self, event: &E) -> std::result::Result<(), DispatchError> {
        let mut errors = Vec::new();
        if self.shared.live.load(Relaxed) != 0 {
            self.walk(event, WalkMode::AWAITED, &mut errors).await;
        }
        errors.pop().map_or(Ok(()), Err)
    }

    /// [`send_robust`](Self::send_robust), awaiting async receivers.
    pub async fn send_async_robust(&self, event: &E) -> Vec<DispatchError> {
        let mut errors = Vec::new();
        if self.shared.live.load(Relaxed) != 0 {
            self.walk(event, WalkMode::AWAITED.robust(), &mut errors)
                .await;
        }
        if !errors.is_empty() {
            crate::error::log_robust(&errors);
        }
        errors
    }

    /// Start one receiver: a synchronous one runs (a blocking one through the blocking runner
    /// when `mode` offloads), an async one is returned to be finished.
    fn start<'a>(&self, entry: &'a SignalEntry<E>, event: &'a E, mode: WalkMode) -> Started<'a> {
        let (core, config) = (&entry.core, &self.shared.config);
        match &entry.call {
            Callable::Sync(f) if mode.offload && core.info.blocking => {
                Started::Done(core.call(config, NO_SENDER, || config.run_blocking(|| f(event))))
            }
            Callable::Sync(f) => Started::Done(core.call(config, NO_SENDER, || f(event))),
            Callable::Async(f) => Started::Pending(f(event)),
        }
    }

    /// Record a failure; true when the walk stops there.
    fn failed(
        entry: &SignalEntry<E>,
        cause: Cause,
        mode: WalkMode,
        errors: &mut Vec<DispatchError>,
    ) -> bool {
        errors.push(DispatchError::new(
            entry.core.info.clone(),
            NO_SENDER,
            None,
            cause,
        ));
        !mode.robust
    }

    /// The walk of a synchronous send (as the model signals': see `model.rs`): each receiver in
    /// order on this thread, stopping at the first failure unless `mode` is robust.
    fn walk_here(&self, event: &E, mode: WalkMode, errors: &mut Vec<DispatchError>) {
        let reading = Reading::begin();
        for entry in self.shared.slot.entries(&reading) {
            let started = self.start(entry, event, mode);
            if let Some(cause) = finish_here(&entry.core, &self.shared.config, NO_SENDER, started)
                && Self::failed(entry, cause, mode, errors)
            {
                return;
            }
        }
    }

    /// The walk of an async send: the same, async receivers awaited.
    async fn walk(&self, event: &E, mode: WalkMode, errors: &mut Vec<DispatchError>) {
        let entries = self.shared.slot.shared(&Reading::begin());
        for entry in entries.iter() {
            let started = self.start(entry, event, mode);
            if let Some(cause) =
                call_async(&entry.core, &self.shared.config, NO_SENDER, started).await
                && Self::failed(entry, cause, mode, errors)
            {
                return;
            }
        }
    }
}

fn remove<E: ?Sized + 'static>(
    shared: &Weak<Shared<E>>,
    which: &dyn Fn(&crate::receiver::ReceiverCore) -> bool,
) -> usize {
    let Some(shared) = shared.upgrade() else {
        return 0;
    };
    let _writer = shared
        .writers
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let removed = shared.slot.remove_where(which).len();
    shared.live.fetch_sub(removed, Relaxed);
    removed
}
