//! The model signals: their events, their kinds, and the typed handle that connects and sends them.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use crate::connect::{Connection, ReceiverBuilder};
use crate::cow::Reading;
use crate::error::Result;
use crate::handler::{AsyncReceiverMut, AsyncReceiverRef};
use crate::info::{Condition, Phase, SourceLocation};
use crate::receiver::Receiver;
use crate::registry::{Inner, SLOTS, SlotAt};
use crate::sender::{AnyModel, Sender};
use crate::signals::{default_name, new_entry};
use crate::slot::{Callable, Entry, ReceiverFuture, Slot};

mod send;

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
    store: Option<&'e Lent>,
}

/// Sent after an instance is written: on the caller's task once the write's answer came back (the
/// default), inside the write's transaction (`in_transaction` receivers), or after the outermost
/// commit (`on_commit` receivers).
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
    previous: Option<&'e M>,
    changed: Option<&'e [&'static str]>,
    store: Option<&'e Lent>,
}

/// Sent before an instance is deleted; its primary key is still set.
#[non_exhaustive]
#[derive(Debug)]
pub struct PreDelete<'e, M: ?Sized> {
    /// The instance about to be deleted.
    pub instance: &'e M,
    /// The database alias.
    pub using: &'e str,
    store: Option<&'e Lent>,
}

/// Sent after an instance is deleted; its primary key is still set on the instance.
#[non_exhaustive]
#[derive(Debug)]
pub struct PostDelete<'e, M: ?Sized> {
    /// The instance that was deleted.
    pub instance: &'e M,
    /// The database alias.
    pub using: &'e str,
    store: Option<&'e Lent>,
}

/// What a store lends receivers through an event (its connection, for `in_transaction`
/// receivers). `Send + Sync`, so that an event, and the future of a receiver borrowing it, is
/// `Send`.
pub type Lent = dyn Any + Send + Sync;

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
            pub fn with_store(mut self, store: &'e Lent) -> Self {
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
            previous: None,
            changed: None,
            store: None,
        }
    }

    /// Say what the update changed: the row as it was just before the write, and the fields whose
    /// values differ between it and the instance (among the fields written). A store does this
    /// when a receiver asked for [`changes`](crate::ReceiverBuilder::changes).
    pub fn with_previous(mut self, previous: &'e M, changed: &'e [&'static str]) -> Self {
        self.previous = Some(previous);
        self.changed = Some(changed);
        self
    }

    /// The row as it was just before this update, read inside the write's transaction; `None` for
    /// a create, and when no connected receiver asked for [`changes`](crate::ReceiverBuilder::changes)
    /// (`#[receiver(.., changes)]`, or a `when_changed` condition).
    pub fn previous(&self) -> Option<&'e M> {
        self.previous
    }

    /// The fields (column names) whose values this update changed, in declaration order; `None`
    /// when [`previous`](Self::previous) is. Only fields written count (`update_fields`).
    pub fn changed_fields(&self) -> Option<&'e [&'static str]> {
        self.changed
    }

    /// Whether this update changed `field` (false for a create, and when nothing was read).
    pub fn has_changed(&self, field: &str) -> bool {
        self.changed.is_some_and(|c| c.contains(&field))
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

impl<M: ?Sized + AnyModel> PostSave<'_, M> {
    /// What this update changed, as JSON: `{"price_cents": {"old": 900, "new": 1200}}`, one entry
    /// per changed field (for receivers of every sender, which have no typed instance; a typed
    /// receiver reads [`previous`](Self::previous) and `instance` instead). `None` when
    /// [`previous`](Self::previous) is.
    pub fn changes(&self) -> Option<serde_json::Value> {
        let (previous, changed) = (self.previous?, self.changed?);
        let (old, new) = (previous.to_json(), self.instance.to_json());
        let mut out = serde_json::Map::with_capacity(changed.len());
        for field in changed {
            let mut change = serde_json::Map::with_capacity(2);
            let value = |row: &serde_json::Value| row.get(field).cloned().unwrap_or_default();
            change.insert("old".to_owned(), value(&old));
            change.insert("new".to_owned(), value(&new));
            out.insert((*field).to_owned(), serde_json::Value::Object(change));
        }
        Some(serde_json::Value::Object(out))
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
    /// The event receivers get.
    type Event<'e, M: ?Sized + 'e>;
    #[doc(hidden)]
    fn erase<'a, M: AnyModel>(event: &'a mut Self::Event<'_, M>) -> Self::Event<'a, dyn AnyModel>;
    #[doc(hidden)]
    fn instance<'a, M: ?Sized>(event: &'a Self::Event<'_, M>) -> &'a M;
    /// Whether receivers of this signal may have a condition (`post_save` only): the walks of the
    /// other signals skip the check at compile time.
    #[doc(hidden)]
    const CONDITIONAL: bool = false;
    /// Whether `condition` holds for this event.
    #[doc(hidden)]
    fn admits<M: ?Sized>(condition: &Condition, event: &Self::Event<'_, M>) -> bool {
        let _ = (condition, event);
        true
    }
}

macro_rules! kind {
    ($(#[$doc:meta])* $kind:ident, $event:ident, $name:literal, $index:literal, |$e:ident| $erase:expr
        $(, admits |$c:ident, $ev:ident| $admits:expr)?) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $kind;
        impl sealed::Sealed for $kind {}
        impl ModelKind for $kind {
            const NAME: &'static str = $name;
            const INDEX: usize = $index;
            type Event<'e, M: ?Sized + 'e> = $event<'e, M>;
            fn erase<'a, M: AnyModel>($e: &'a mut $event<'_, M>) -> $event<'a, dyn AnyModel> {
                $erase
            }
            fn instance<'a, M: ?Sized>(event: &'a $event<'_, M>) -> &'a M {
                &*event.instance
            }
            $(
                const CONDITIONAL: bool = true;
                #[inline(always)]
                fn admits<M: ?Sized>($c: &Condition, $ev: &$event<'_, M>) -> bool {
                    $admits
                }
            )?
        }
    };
}

kind!(
    /// The `pre_save` signal.
    OnPreSave, PreSave, "pre_save", 0,
    |e| PreSave { instance: &mut *e.instance, raw: e.raw, using: e.using, update_fields: e.update_fields, store: e.store }
);
kind!(
    /// The `post_save` signal.
    OnPostSave, PostSave, "post_save", 1,
    |e| PostSave {
        instance: e.instance, created: e.created, raw: e.raw, using: e.using,
        update_fields: e.update_fields, previous: e.previous.map(|p| p as &dyn AnyModel),
        changed: e.changed, store: e.store,
    },
    admits |condition, e| condition.admits(e.created, e.changed)
);
kind!(
    /// The `pre_delete` signal.
    OnPreDelete, PreDelete, "pre_delete", 2,
    |e| PreDelete { instance: e.instance, using: e.using, store: e.store }
);
kind!(
    /// The `post_delete` signal.
    OnPostDelete, PostDelete, "post_delete", 3,
    |e| PostDelete { instance: e.instance, using: e.using, store: e.store }
);

/// Slots per signal: caller-side, in the transaction (with background), on commit.
const PHASE_SLOTS: usize = 3;
const _: () = assert!(4 * PHASE_SLOTS == SLOTS);

/// The slot a phase's receivers live in. Background receivers share the in-transaction slot: they
/// write their task rows inside the write's transaction.
const fn phase_slot(phase: Phase) -> usize {
    match phase {
        Phase::Caller => 0,
        Phase::InTransaction | Phase::Background => 1,
        Phase::OnCommit => 2,
    }
}

/// What a model signal can be connected for: one model type (`M: Sender`), or every sender
/// (`dyn AnyModel`).
pub trait Listen: Send + Sync + 'static {
    /// The sender name receivers show (`"Book"`, or `"*"` for every sender).
    const NAME: &'static str;
    #[doc(hidden)]
    fn index() -> Option<usize>;
    /// The fields a condition may name: the model's, or `None` for every sender.
    #[doc(hidden)]
    fn fields() -> Option<&'static [&'static str]>;
}

impl<M: Sender> Listen for M {
    const NAME: &'static str = M::NAME;
    #[inline]
    fn index() -> Option<usize> {
        Some(M::sender_key().index())
    }
    fn fields() -> Option<&'static [&'static str]> {
        Some(M::FIELD_NAMES)
    }
}

impl Listen for dyn AnyModel {
    const NAME: &'static str = "*";
    #[inline]
    fn index() -> Option<usize> {
        None
    }
    fn fields() -> Option<&'static [&'static str]> {
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
type ModelSlot<K, M> = Slot<SyncReceiver<K, M>, AsyncReceiver<K, M>>;

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
            phase: Phase::Caller,
            _kind: PhantomData,
        }
    }

    #[inline]
    fn at(&self) -> SlotAt {
        SlotAt {
            sender: M::index(),
            slot: K::INDEX * PHASE_SLOTS + phase_slot(self.phase),
        }
    }

    /// This signal's, sender's and phase's receiver list, if it has receivers.
    #[inline]
    fn slot(&self) -> Option<&'s ModelSlot<K, M>> {
        let at = self.at();
        match self.inner.sender_slots(at.sender) {
            Some(slots) if slots.interest.load(Relaxed) & (1 << at.slot) != 0 => {
                slots.slot::<SyncReceiver<K, M>, AsyncReceiver<K, M>>(at.slot)
            }
            _ => None,
        }
    }

    /// The receivers connected here, in dispatch order, while `reading` lasts.
    #[inline]
    fn entries<'r>(&self, reading: &'r Reading) -> &'r [Arc<ModelEntry<K, M>>]
    where
        's: 'r,
    {
        self.slot().map_or(&[], |s| s.entries(reading))
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
                let entry =
                    new_entry::<_, _, F>(options, K::NAME, M::NAME, M::fields(), phase, call)?;
                Ok(inner.attach(at, entry))
            }),
        )
    }

    /// The phase receivers connected through this handle run in.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The receivers connected here (this signal, sender and phase), in dispatch order.
    pub fn receivers(&self) -> Vec<Receiver> {
        self.entries(&Reading::begin())
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
    ($kind:ident, $event:ident, $async_fn:ident, $wrap:ident, $($mutability:tt)*) => {
        impl<'s, M: ?Sized + Listen> ModelSignal<'s, $kind, M> {
            /// Connect a receiver with the default options; see [`receiver`](Self::receiver).
            #[track_caller]
            pub fn connect<F>(&self, receiver: F) -> Connection
            where
                F: for<'a, 'e> Fn(&'a $($mutability)* $event<'e, M>) -> Result + Send + Sync + 'static,
            {
                self.receiver(receiver).connect()
            }

            /// A receiver to connect with options (name, priority, dispatch_uid, blocking).
            #[track_caller]
            pub fn receiver<F>(&self, receiver: F) -> ReceiverBuilder<'s>
            where
                F: for<'a, 'e> Fn(&'a $($mutability)* $event<'e, M>) -> Result + Send + Sync + 'static,
            {
                let call: Box<SyncReceiver<$kind, M>> = Box::new(move |e: &mut $event<'_, M>| receiver(e));
                self.builder::<F>(Callable::Sync(call), SourceLocation::caller())
            }

            /// Connect an async receiver (an `async fn`, or an async closure that captures
            /// nothing) with the default options; see [`receiver_async`](Self::receiver_async).
            #[track_caller]
            pub fn connect_async<F>(&self, receiver: F) -> Connection
            where
                F: for<'a> $async_fn<'a, $event<'a, M>>,
            {
                self.receiver_async(receiver).connect()
            }

            /// An async receiver (an `async fn`, or an async closure that captures nothing) to
            /// connect with options. It runs in the same order as the synchronous ones, awaited
            /// before the next receiver starts. Its future must be `Send` (a compile error says
            /// which value is not); a closure that captures state uses
            /// [`receiver_boxed`](Self::receiver_boxed).
            #[track_caller]
            pub fn receiver_async<F>(&self, receiver: F) -> ReceiverBuilder<'s>
            where
                F: for<'a> $async_fn<'a, $event<'a, M>>,
            {
                let call: Box<AsyncReceiver<$kind, M>> = $wrap!(receiver, |r, e| r.call(e));
                self.builder::<F>(Callable::Async(call), SourceLocation::caller())
            }

            /// Connect an async receiver written as a closure returning a boxed future
            /// (`move |e| Box::pin(async move { .. })`): the form for closures that capture state.
            #[track_caller]
            pub fn connect_boxed<F>(&self, receiver: F) -> Connection
            where
                F: for<'a> Fn(&'a $($mutability)* $event<'a, M>) -> ReceiverFuture<'a> + Send + Sync + 'static,
            {
                self.receiver_boxed(receiver).connect()
            }

            /// [`receiver_async`](Self::receiver_async) for a closure returning a boxed future.
            #[track_caller]
            pub fn receiver_boxed<F>(&self, receiver: F) -> ReceiverBuilder<'s>
            where
                F: for<'a> Fn(&'a $($mutability)* $event<'a, M>) -> ReceiverFuture<'a> + Send + Sync + 'static,
            {
                let call: Box<AsyncReceiver<$kind, M>> = $wrap!(receiver, |r, e| r(e));
                self.builder::<F>(Callable::Async(call), SourceLocation::caller())
            }
        }
    };
}

/// An async receiver taking `&'a Event<'a, M>`: the stored call lends it the event as it is (a
/// shared reference to a covariant event shortens to one lifetime).
macro_rules! wrap_ref {
    ($receiver:ident, |$r:ident, $e:ident| $call:expr) => {
        Box::new(move |$e: &mut _| {
            let $r = &$receiver;
            let $e = &*$e;
            $call
        })
    };
}

/// An async receiver taking `&'a mut PreSave<'a, M>`: `&mut` is invariant, so the stored call
/// moves a reborrow of the event into a future of its own and lends the receiver that, holding the
/// receiver by `Arc` for the future's life.
macro_rules! wrap_mut {
    ($receiver:ident, |$r:ident, $e:ident| $call:expr) => {{
        let $receiver = Arc::new($receiver);
        Box::new(move |event: &mut PreSave<'_, M>| {
            let $r = $receiver.clone();
            Box::pin(async move {
                let mut event = PreSave {
                    instance: &mut *event.instance,
                    raw: event.raw,
                    using: event.using,
                    update_fields: event.update_fields,
                    store: event.store,
                };
                let $e = &mut event;
                $call.await
            })
        })
    }};
}

connect_api!(OnPreSave, PreSave, AsyncReceiverMut, wrap_mut, mut);
connect_api!(OnPostSave, PostSave, AsyncReceiverRef, wrap_ref,);
connect_api!(OnPreDelete, PreDelete, AsyncReceiverRef, wrap_ref,);
connect_api!(OnPostDelete, PostDelete, AsyncReceiverRef, wrap_ref,);

impl<K: ModelKind, M: ?Sized + Listen> ModelSignal<'_, K, M> {
    /// The receivers that run on the write's connection, inside its transaction, instead of on the
    /// caller's task: what they write through `e.conn()` commits or rolls back with the write, and
    /// an error rolls the write back. They are the only receivers that hold a connection, so a slow
    /// one delays every write waiting for that connection (on SQLite, every write).
    pub fn in_transaction(mut self) -> Self {
        self.phase = Phase::InTransaction;
        self
    }
}

macro_rules! after_write_phases {
    ($($kind:ident),*) => {$(
        impl<M: ?Sized + Listen> ModelSignal<'_, $kind, M> {
            /// The receivers that run on the caller's task after the outermost transaction commits
            /// (never for a rollback), instead of right after the write.
            pub fn on_commit(mut self) -> Self {
                self.phase = Phase::OnCommit;
                self
            }

            /// The receivers that hand work to a durable background task: they run inside the
            /// write's transaction with the in-transaction receivers (so the task row commits or
            /// rolls back with the write), and are listed with [`Phase::Background`].
            pub fn background_phase(mut self) -> Self {
                self.phase = Phase::Background;
                self
            }
        }
    )*};
}
after_write_phases!(OnPostSave, OnPostDelete);
