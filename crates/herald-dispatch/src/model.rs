//! The model signals: their events, their kinds, and the typed handle that connects and sends them.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use crate::connect::{Connection, ReceiverBuilder};
use crate::error::{DispatchError, Result};
use crate::info::{Phase, SourceLocation};
use crate::receiver::Receiver;
use crate::sender::{AnyModel, Sender};
use crate::signals::{Inner, SLOTS, SenderSlots, SlotAt, default_name, new_entry};
use crate::slot::{Callable, Entry, ReceiverFuture, Step, Walk};

/// Sent before an instance is written. Receivers may change `instance`: what they leave is what is
/// written.
#[non_exhaustive]
#[derive(Debug)]
pub struct PreSave<'e, M: ?Sized> {
    /// The instance about to be written.
    pub instance: &'e mut M,
    /// True for saves from fixture loading (Django's `raw`): receivers should not touch other rows.
    pub raw: bool,
    /// The database alias the write goes to.
    pub using: &'e str,
    /// Django's `update_fields`: the fields being written, or `None` for all of them.
    pub update_fields: Option<&'e [&'e str]>,
    store: Option<&'e dyn Any>,
}

/// Sent after an instance is written, inside the write's transaction (or after the commit, for
/// `on_commit` receivers).
#[non_exhaustive]
#[derive(Debug)]
pub struct PostSave<'e, M: ?Sized> {
    /// The instance as written (with its primary key).
    pub instance: &'e M,
    /// True when the write inserted a row (the UPDATE matched nothing), false when it updated one.
    pub created: bool,
    /// True for saves from fixture loading.
    pub raw: bool,
    /// The database alias the write went to.
    pub using: &'e str,
    /// The fields written, or `None` for all of them.
    pub update_fields: Option<&'e [&'e str]>,
    store: Option<&'e dyn Any>,
}

/// Sent before an instance is deleted; its primary key is still set.
#[non_exhaustive]
#[derive(Debug)]
pub struct PreDelete<'e, M: ?Sized> {
    /// The instance about to be deleted.
    pub instance: &'e M,
    /// The database alias.
    pub using: &'e str,
    store: Option<&'e dyn Any>,
}

/// Sent after an instance is deleted; its primary key is still set on the instance.
#[non_exhaustive]
#[derive(Debug)]
pub struct PostDelete<'e, M: ?Sized> {
    /// The instance that was deleted.
    pub instance: &'e M,
    /// The database alias.
    pub using: &'e str,
    store: Option<&'e dyn Any>,
}

/// The alias `using` defaults to.
pub const DEFAULT_ALIAS: &str = "default";

macro_rules! event_common {
    ($event:ident) => {
        impl<'e, M: ?Sized> $event<'e, M> {
            /// Set the database alias.
            pub fn using(mut self, using: &'e str) -> Self {
                self.using = using;
                self
            }

            /// Lend receivers a handle of the store's (the transaction they run in); receivers get
            /// it back with [`store`](Self::store).
            pub fn with_store(mut self, store: &'e dyn Any) -> Self {
                self.store = Some(store);
                self
            }

            /// The handle the store lent, if it is a `T`.
            pub fn store<T: Any>(&self) -> Option<&'e T> {
                self.store.and_then(|s| s.downcast_ref::<T>())
            }
        }
    };
}
event_common!(PreSave);
event_common!(PostSave);
event_common!(PreDelete);
event_common!(PostDelete);

impl<'e, M: ?Sized> PreSave<'e, M> {
    /// An event for a save of `instance` with every field, not raw, on the default alias.
    pub fn new(instance: &'e mut M) -> Self {
        Self {
            instance,
            raw: false,
            using: DEFAULT_ALIAS,
            update_fields: None,
            store: None,
        }
    }

    /// Mark the save as raw (fixture loading).
    pub fn raw(mut self, raw: bool) -> Self {
        self.raw = raw;
        self
    }

    /// Set `update_fields`.
    pub fn update_fields(mut self, fields: Option<&'e [&'e str]>) -> Self {
        self.update_fields = fields;
        self
    }
}

impl<'e, M: ?Sized> PostSave<'e, M> {
    /// An event for a write of `instance`: `created` true when it inserted a row.
    pub fn new(instance: &'e M, created: bool) -> Self {
        Self {
            instance,
            created,
            raw: false,
            using: DEFAULT_ALIAS,
            update_fields: None,
            store: None,
        }
    }

    /// Mark the save as raw (fixture loading).
    pub fn raw(mut self, raw: bool) -> Self {
        self.raw = raw;
        self
    }

    /// Set `update_fields`.
    pub fn update_fields(mut self, fields: Option<&'e [&'e str]>) -> Self {
        self.update_fields = fields;
        self
    }
}

impl<'e, M: ?Sized> PreDelete<'e, M> {
    /// An event for a delete of `instance`.
    pub fn new(instance: &'e M) -> Self {
        Self {
            instance,
            using: DEFAULT_ALIAS,
            store: None,
        }
    }
}

impl<'e, M: ?Sized> PostDelete<'e, M> {
    /// An event for a delete of `instance`.
    pub fn new(instance: &'e M) -> Self {
        Self {
            instance,
            using: DEFAULT_ALIAS,
            store: None,
        }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// One of the four model signals, as a type: it names the event the signal carries.
pub trait ModelKind: sealed::Sealed + Send + Sync + 'static {
    /// The signal's name (`"pre_save"`, ...).
    const NAME: &'static str;
    #[doc(hidden)]
    const INDEX: usize;
    #[doc(hidden)]
    const DEFAULT_PHASE: Phase;
    /// The event receivers get.
    type Event<'e, M: ?Sized + 'e>;
    #[doc(hidden)]
    fn erase<'a, M: AnyModel>(event: &'a mut Self::Event<'_, M>) -> Self::Event<'a, dyn AnyModel>;
    #[doc(hidden)]
    fn instance<'a, M: ?Sized>(event: &'a Self::Event<'_, M>) -> &'a M;
}

macro_rules! kind {
    ($(#[$doc:meta])* $kind:ident, $event:ident, $name:literal, $index:literal, $phase:expr, |$e:ident| $erase:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $kind;
        impl sealed::Sealed for $kind {}
        impl ModelKind for $kind {
            const NAME: &'static str = $name;
            const INDEX: usize = $index;
            const DEFAULT_PHASE: Phase = $phase;
            type Event<'e, M: ?Sized + 'e> = $event<'e, M>;
            fn erase<'a, M: AnyModel>($e: &'a mut $event<'_, M>) -> $event<'a, dyn AnyModel> {
                $erase
            }
            fn instance<'a, M: ?Sized>(event: &'a $event<'_, M>) -> &'a M {
                &*event.instance
            }
        }
    };
}

kind!(
    /// The `pre_save` signal.
    OnPreSave, PreSave, "pre_save", 0, Phase::Before,
    |e| PreSave { instance: &mut *e.instance, raw: e.raw, using: e.using, update_fields: e.update_fields, store: e.store }
);
kind!(
    /// The `post_save` signal.
    OnPostSave, PostSave, "post_save", 1, Phase::InTransaction,
    |e| PostSave { instance: e.instance, created: e.created, raw: e.raw, using: e.using, update_fields: e.update_fields, store: e.store }
);
kind!(
    /// The `pre_delete` signal.
    OnPreDelete, PreDelete, "pre_delete", 2, Phase::Before,
    |e| PreDelete { instance: e.instance, using: e.using, store: e.store }
);
kind!(
    /// The `post_delete` signal.
    OnPostDelete, PostDelete, "post_delete", 3, Phase::InTransaction,
    |e| PostDelete { instance: e.instance, using: e.using, store: e.store }
);

const _: () = assert!(4 * 2 == SLOTS);

/// What a model signal can be connected for: one model type (`M: Sender`), or every sender
/// (`dyn AnyModel`).
pub trait Listen: 'static {
    /// The sender name receivers show (`"Book"`, or `"*"` for every sender).
    const NAME: &'static str;
    #[doc(hidden)]
    fn index() -> Option<usize>;
}

impl<M: Sender> Listen for M {
    const NAME: &'static str = M::NAME;
    #[inline]
    fn index() -> Option<usize> {
        Some(M::sender_key().index())
    }
}

impl Listen for dyn AnyModel {
    const NAME: &'static str = "*";
    #[inline]
    fn index() -> Option<usize> {
        None
    }
}

/// How a synchronous receiver of signal `K` for `M` is stored.
pub type SyncReceiver<K, M> =
    dyn for<'a, 'e> Fn(&'a mut <K as ModelKind>::Event<'e, M>) -> Result + Send + Sync;
/// How an async receiver of signal `K` for `M` is stored.
pub type AsyncReceiver<K, M> =
    dyn for<'a, 'e> Fn(&'a mut <K as ModelKind>::Event<'e, M>) -> ReceiverFuture<'a> + Send + Sync;

type ModelEntry<K, M> = Entry<SyncReceiver<K, M>, AsyncReceiver<K, M>>;

/// One model signal for one sender (or for every sender), in one phase: connect receivers to it,
/// send it. Get one from [`Signals`](crate::Signals).
pub struct ModelSignal<'s, K: ModelKind, M: ?Sized + Listen> {
    inner: &'s Arc<Inner>,
    phase: Phase,
    _kind: PhantomData<fn() -> (K, *const M)>,
}

impl<K: ModelKind, M: ?Sized + Listen> std::fmt::Debug for ModelSignal<'_, K, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSignal")
            .field("signal", &K::NAME)
            .field("sender", &M::NAME)
            .field("phase", &self.phase)
            .finish()
    }
}

impl<'s, K: ModelKind, M: ?Sized + Listen> ModelSignal<'s, K, M> {
    pub(crate) fn new(inner: &'s Arc<Inner>) -> Self {
        Self {
            inner,
            phase: K::DEFAULT_PHASE,
            _kind: PhantomData,
        }
    }

    #[inline]
    fn at(&self) -> SlotAt {
        SlotAt {
            sender: M::index(),
            slot: K::INDEX * 2 + usize::from(self.phase == Phase::OnCommit),
        }
    }

    #[inline]
    fn entries(&self) -> &'s [Arc<ModelEntry<K, M>>] {
        let at = self.at();
        match self.inner.sender_slots(at.sender) {
            Some(slots) if slots.interest.load(Relaxed) & (1 << at.slot) != 0 => slots
                .slot::<SyncReceiver<K, M>, AsyncReceiver<K, M>>(at.slot)
                .map_or(&[], |s| s.entries()),
            _ => &[],
        }
    }

    fn builder<F: 'static>(
        &self,
        call: Callable<SyncReceiver<K, M>, AsyncReceiver<K, M>>,
        location: SourceLocation,
    ) -> ReceiverBuilder<'s> {
        let inner = self.inner;
        let (at, phase) = (self.at(), self.phase);
        ReceiverBuilder::new(
            default_name::<F>(),
            location,
            Box::new(move |options| {
                let entry = new_entry::<_, _, F>(options, K::NAME, M::NAME, phase, call);
                inner.attach(at, entry)
            }),
        )
    }

    /// The phase receivers connected through this handle run in.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The receivers connected here (this signal, sender and phase), in dispatch order.
    pub fn receivers(&self) -> Vec<Receiver> {
        self.entries()
            .iter()
            .map(|e| Receiver {
                core: e.core.clone(),
            })
            .collect()
    }

    /// Disconnect the receiver connected here with this `dispatch_uid`; true if there was one.
    pub fn disconnect_uid(&self, uid: &str) -> bool {
        self.inner
            .remove(self.at(), &|c| c.info.dispatch_uid() == Some(uid))
            > 0
    }
}

macro_rules! connect_api {
    ($kind:ident, $event:ident, $($mutability:tt)*) => {
        impl<'s, M: ?Sized + Listen> ModelSignal<'s, $kind, M> {
            /// Connect a receiver with the default options; see [`receiver`](Self::receiver).
            #[track_caller]
            pub fn connect<F>(&self, receiver: F) -> Connection
            where
                F: for<'a, 'e> Fn(&'a $($mutability)* $event<'e, M>) -> Result + Send + Sync + 'static,
            {
                self.receiver(receiver).connect()
            }

            /// A receiver to connect with options (name, priority, dispatch_uid).
            #[track_caller]
            pub fn receiver<F>(&self, receiver: F) -> ReceiverBuilder<'s>
            where
                F: for<'a, 'e> Fn(&'a $($mutability)* $event<'e, M>) -> Result + Send + Sync + 'static,
            {
                let call: Box<SyncReceiver<$kind, M>> = Box::new(move |e: &mut $event<'_, M>| receiver(e));
                self.builder::<F>(Callable::Sync(call), SourceLocation::caller())
            }

            /// Connect an async receiver with the default options; see [`receiver_async`](Self::receiver_async).
            #[track_caller]
            pub fn connect_async<F>(&self, receiver: F) -> Connection
            where
                F: for<'a, 'e> AsyncFn(&'a $($mutability)* $event<'e, M>) -> Result
                    + Clone + Send + Sync + 'static,
            {
                self.receiver_async(receiver).connect()
            }

            /// An async receiver (an `async fn` or async closure) to connect with options. It runs
            /// in the same order as the synchronous ones, awaited before the next receiver starts.
            #[track_caller]
            pub fn receiver_async<F>(&self, receiver: F) -> ReceiverBuilder<'s>
            where
                F: for<'a, 'e> AsyncFn(&'a $($mutability)* $event<'e, M>) -> Result
                    + Clone + Send + Sync + 'static,
            {
                let call: Box<AsyncReceiver<$kind, M>> = Box::new(move |e: &mut $event<'_, M>| {
                    let receiver = receiver.clone();
                    Box::pin(async move { receiver(e).await })
                });
                self.builder::<F>(Callable::Async(call), SourceLocation::caller())
            }
        }
    };
}

connect_api!(OnPreSave, PreSave, mut);
connect_api!(OnPostSave, PostSave,);
connect_api!(OnPreDelete, PreDelete,);
connect_api!(OnPostDelete, PostDelete,);

impl<M: ?Sized + Listen> ModelSignal<'_, OnPostSave, M> {
    /// The receivers that run after the outermost transaction commits instead of inside it.
    pub fn on_commit(mut self) -> Self {
        self.phase = Phase::OnCommit;
        self
    }
}

impl<M: ?Sized + Listen> ModelSignal<'_, OnPostDelete, M> {
    /// The receivers that run after the outermost transaction commits instead of inside it.
    pub fn on_commit(mut self) -> Self {
        self.phase = Phase::OnCommit;
        self
    }
}

impl<K: ModelKind, M: ?Sized + Listen> ModelSignal<'_, K, M> {
    /// The receivers that hand work to a durable background task: they run inside the transaction
    /// with the in-transaction receivers (so the task row commits or rolls back with the write), and
    /// are listed with [`Phase::Background`].
    pub fn background_phase(mut self) -> Self {
        self.phase = Phase::Background;
        self
    }
}

type AnyEntry<K> = Entry<SyncReceiver<K, dyn AnyModel>, AsyncReceiver<K, dyn AnyModel>>;
/// A sender's own receivers and the every-sender receivers of one signal and phase.
type Lists<'s, K, M> = (&'s [Arc<ModelEntry<K, M>>], &'s [Arc<AnyEntry<K>>]);

impl<'s, K: ModelKind, M: Sender> ModelSignal<'s, K, M> {
    /// Whether any receiver (for `M` or for every sender) would run for this signal and phase.
    #[inline]
    pub fn has_receivers(&self) -> bool {
        self.inner.live.load(Relaxed) != 0 && self.lists().is_some()
    }

    /// The receivers to run: this sender's and every sender's, or `None` when both are empty.
    /// A few loads, no hashing: senders are indexed.
    #[inline]
    fn lists(&self) -> Option<Lists<'s, K, M>> {
        let own = self.entries();
        let every = ModelSignal::<'s, K, dyn AnyModel> {
            inner: self.inner,
            phase: self.phase,
            _kind: PhantomData,
        }
        .entries();
        (!own.is_empty() || !every.is_empty()).then_some((own, every))
    }

    /// Run the receivers in order; stop at the first failure and return it. With no receivers
    /// connected anywhere this is one relaxed atomic load; with receivers for other senders or other
    /// signals only, a few more loads (the interest bits), no hashing.
    #[inline(always)]
    pub fn send(&self, event: &mut K::Event<'_, M>) -> std::result::Result<(), DispatchError> {
        if self.inner.live.load(Relaxed) == 0 {
            return Ok(());
        }
        let at = self.at();
        let bit = 1 << at.slot;
        let own = self
            .inner
            .sender_slots(at.sender)
            .filter(|slots| slots.interest.load(Relaxed) & bit != 0);
        let every = self.inner.every.interest.load(Relaxed) & bit != 0;
        if own.is_none() && !every {
            return Ok(());
        }
        self.send_live(own, every, event)
    }

    #[inline(never)]
    fn send_live(
        &self,
        own: Option<&SenderSlots>,
        every: bool,
        event: &mut K::Event<'_, M>,
    ) -> std::result::Result<(), DispatchError> {
        let slot = self.at().slot;
        let own = own
            .and_then(|slots| slots.slot::<SyncReceiver<K, M>, AsyncReceiver<K, M>>(slot))
            .map_or(&[][..], |s| s.entries());
        let every = if every {
            self.inner
                .every
                .slot::<SyncReceiver<K, dyn AnyModel>, AsyncReceiver<K, dyn AnyModel>>(slot)
                .map_or(&[][..], |s| s.entries())
        } else {
            &[]
        };
        let mut errors = Vec::new();
        self.walk(own, every, event, false, &mut errors);
        errors.pop().map_or(Ok(()), Err)
    }

    /// Run every receiver in order, whatever fails; return every failure, in order.
    pub fn send_robust(&self, event: &mut K::Event<'_, M>) -> Vec<DispatchError> {
        let mut errors = Vec::new();
        if self.inner.live.load(Relaxed) != 0
            && let Some((own, every)) = self.lists()
        {
            self.walk(own, every, event, true, &mut errors);
        }
        errors
    }

    /// [`send`](Self::send), awaiting async receivers instead of blocking on them.
    pub async fn send_async(
        &self,
        event: &mut K::Event<'_, M>,
    ) -> std::result::Result<(), DispatchError> {
        let mut errors = Vec::new();
        if self.inner.live.load(Relaxed) != 0 {
            self.dispatch_async(event, false, &mut errors).await;
        }
        errors.pop().map_or(Ok(()), Err)
    }

    /// [`send_robust`](Self::send_robust), awaiting async receivers.
    pub async fn send_async_robust(&self, event: &mut K::Event<'_, M>) -> Vec<DispatchError> {
        let mut errors = Vec::new();
        if self.inner.live.load(Relaxed) != 0 {
            self.dispatch_async(event, true, &mut errors).await;
        }
        errors
    }

    #[inline]
    fn walk(
        &self,
        own: &[Arc<ModelEntry<K, M>>],
        every: &[Arc<AnyEntry<K>>],
        event: &mut K::Event<'_, M>,
        robust: bool,
        errors: &mut Vec<DispatchError>,
    ) {
        let config = &self.inner.config;
        for step in Walk::new(own, every) {
            let (core, failed) = match step {
                Step::Own(entry) => (
                    &entry.core,
                    entry.core.call(config, M::NAME, || match &entry.call {
                        Callable::Sync(f) => f(event),
                        Callable::Async(f) => futures::executor::block_on(f(event)),
                    }),
                ),
                Step::Every(entry) => (
                    &entry.core,
                    entry.core.call(config, M::NAME, || {
                        let mut erased = K::erase(event);
                        match &entry.call {
                            Callable::Sync(f) => f(&mut erased),
                            Callable::Async(f) => futures::executor::block_on(f(&mut erased)),
                        }
                    }),
                ),
            };
            if let Some(cause) = failed {
                let key = K::instance(event).pk_string();
                errors.push(DispatchError::new(core.info.clone(), M::NAME, key, cause));
                if !robust {
                    return;
                }
            }
        }
    }

    async fn dispatch_async(
        &self,
        event: &mut K::Event<'_, M>,
        robust: bool,
        errors: &mut Vec<DispatchError>,
    ) {
        let Some((own, every)) = self.lists() else {
            return;
        };
        let config = &self.inner.config;
        for step in Walk::new(own, every) {
            let (core, failed) = match step {
                Step::Own(entry) => (
                    &entry.core,
                    entry
                        .core
                        .call_async(config, M::NAME, async {
                            match &entry.call {
                                Callable::Sync(f) => f(event),
                                Callable::Async(f) => f(event).await,
                            }
                        })
                        .await,
                ),
                Step::Every(entry) => (
                    &entry.core,
                    entry
                        .core
                        .call_async(config, M::NAME, async {
                            let mut erased = K::erase(event);
                            match &entry.call {
                                Callable::Sync(f) => f(&mut erased),
                                Callable::Async(f) => f(&mut erased).await,
                            }
                        })
                        .await,
                ),
            };
            if let Some(cause) = failed {
                let key = K::instance(event).pk_string();
                errors.push(DispatchError::new(core.info.clone(), M::NAME, key, cause));
                if !robust {
                    return;
                }
            }
        }
    }
}
