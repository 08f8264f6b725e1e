//! Sending a model signal: finding the receivers of a (signal, phase, sender) in the registry and
//! walking them in dispatch order, synchronously or awaited. The walk is written once, in
//! [`walks!`], and expanded for both.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use super::{AsyncReceiver, ModelEntry, ModelKind, ModelSignal, SyncReceiver};
use super::{
    OnPostDelete, OnPostSave, OnPreDelete, OnPreSave, PostDelete, PostSave, PreDelete, PreSave,
};
use crate::cow::Reading;
use crate::error::{Cause, DispatchError, Result, log_robust};
use crate::info::Phase;
use crate::receiver::{Config, ReceiverCore};
use crate::registry::SenderSlots;
use crate::sender::{AnyModel, Sender};
use crate::slot::{Callable, Entry, Step, Walk};
use crate::walk::{Started, WalkMode, call_async};

/// The walk, written once and expanded twice: synchronous (each receiver called, an async one
/// driven to its end here) and awaited (async receivers awaited; `blocking` ones offloaded when
/// the mode says so). Only the step that calls one receiver differs; the order, the failures and
/// where the walk stops are this one text. (A single async walk, polled synchronously for `send`,
/// cost a one-receiver send three times as much: 35 against 11–15 ns.)
macro_rules! walks {
    (here $(#[$doc:meta])* fn $name:ident($kind:ident)) => {
        walks!(@walk here [] [$(#[$doc])*] $name $kind [entry event config mode]);
    };
    (awaited $(#[$doc:meta])* fn $name:ident($kind:ident)) => {
        walks!(@walk awaited [async] [$(#[$doc])*] $name $kind [entry event config mode]);
    };
    (@walk $how:ident [$($async:tt)*] [$($doc:tt)*] $name:ident $kind:ident
        [$entry:ident $event:ident $config:ident $mode:ident]) => {
        $($doc)*
        ///
        /// `CHECK`: whether receivers' conditions are checked (some receiver of the registry has
        /// one, and the signal is `post_save`); without, the walk has no check at all.
        #[inline]
        $($async)* fn $name<const CHECK: bool>(
            &self,
            own: &[Arc<ModelEntry<$kind, M>>],
            every: &[Arc<AnyEntry<$kind>>],
            $event: &mut <$kind as ModelKind>::Event<'_, M>,
            $mode: WalkMode,
            errors: &mut Vec<DispatchError>,
        ) {
            let $config = &self.inner.config;
            for step in Walk::new(own, every) {
                let (core, failed) = match step {
                    Step::Own($entry) => {
                        if CHECK && skipped::<$kind, M>(&$entry.core, $event) {
                            continue;
                        }
                        (&$entry.core, walks!(@step $how own $kind [$entry $event $config $mode]))
                    }
                    Step::Every($entry) => {
                        if CHECK && skipped::<$kind, M>(&$entry.core, $event) {
                            continue;
                        }
                        (&$entry.core, walks!(@step $how every $kind [$entry $event $config $mode]))
                    }
                };
                if let Some(cause) = failed {
                    errors.push(failure::<$kind, M>(core, $event, cause));
                    if !$mode.robust {
                        return;
                    }
                }
            }
        }
    };
    // One receiver, called here. (The every-sender event is made inside the call, after the
    // mute check: LLVM keeps the loop tighter so.)
    (@step here own $kind:ident [$entry:ident $event:ident $config:ident $mode:ident]) => {
        $entry.core.call($config, M::NAME, || run_here::<$kind, M>(&$entry.call, $event))
    };
    (@step here every $kind:ident [$entry:ident $event:ident $config:ident $mode:ident]) => {
        $entry.core.call($config, M::NAME, || {
            run_here::<$kind, dyn AnyModel>(&$entry.call, &mut $kind::erase($event))
        })
    };
    // One receiver, awaited: started synchronously, so that no receiver type is held across the
    // `.await` (which would defeat the compiler's proof that the walk's future is `Send`).
    (@step awaited own $kind:ident [$entry:ident $event:ident $config:ident $mode:ident]) => {{
        let started = start::<$kind, M>(&$entry.core, &$entry.call, $config, M::NAME, $mode, $event);
        call_async(&$entry.core, $config, M::NAME, started).await
    }};
    (@step awaited every $kind:ident [$entry:ident $event:ident $config:ident $mode:ident]) => {{
        let mut erased = $kind::erase($event);
        let started = start::<$kind, dyn AnyModel>(
            &$entry.core, &$entry.call, $config, M::NAME, $mode, &mut erased,
        );
        call_async(&$entry.core, $config, M::NAME, started).await
    }};
}

type AnyEntry<K> = Entry<SyncReceiver<K, dyn AnyModel>, AsyncReceiver<K, dyn AnyModel>>;
/// A sender's own receivers and the every-sender receivers of one signal and phase.
type Lists<'r, K, M> = (&'r [Arc<ModelEntry<K, M>>], &'r [Arc<AnyEntry<K>>]);
/// The same lists, held after the `Reading` they were loaded under (by an async send).
type SharedLists<K, M> = (Shared<ModelEntry<K, M>>, Shared<AnyEntry<K>>);
type Shared<T> = Option<Arc<Vec<Arc<T>>>>;

/// A shared list as a slice (`None`: no receivers).
fn listed<T>(list: &Shared<T>) -> &[Arc<T>] {
    list.as_deref().map_or(&[], |l| l.as_slice())
}

impl<'s, K: ModelKind, M: Sender> ModelSignal<'s, K, M> {
    /// Whether any receiver (for `M` or for every sender) would run for this signal and phase.
    #[inline]
    pub fn has_receivers(&self) -> bool {
        self.inner.live.load(Relaxed) != 0 && self.lists(&Reading::begin()).is_some()
    }

    /// Whether any receiver that would run for this signal and phase is async (a store enters the
    /// caller's async runtime on its connection only for those).
    pub fn has_async_receivers(&self) -> bool {
        self.inner.live.load(Relaxed) != 0
            && self.lists(&Reading::begin()).is_some_and(|(own, every)| {
                own.iter().any(|e| e.core.info.is_async)
                    || every.iter().any(|e| e.core.info.is_async)
            })
    }

    /// Whether any receiver that would run for this signal and phase is not a background
    /// receiver. A background receiver only writes its task row in the write's transaction: a
    /// store runs a write whose connection-side receivers are all background ones wherever it
    /// would run a write with none.
    pub fn has_receivers_besides_background(&self) -> bool {
        self.inner.live.load(Relaxed) != 0
            && self.lists(&Reading::begin()).is_some_and(|(own, every)| {
                own.iter().any(|e| e.core.info.phase != Phase::Background)
                    || every.iter().any(|e| e.core.info.phase != Phase::Background)
            })
    }

    /// Whether a walk of this signal checks receivers' conditions: `post_save` only, and only
    /// while some receiver of the registry has a condition.
    #[inline(always)]
    fn checks_conditions(&self) -> bool {
        K::CONDITIONAL && self.inner.conditional.load(Relaxed) != 0
    }

    /// The receivers to run: this sender's and every sender's, or `None` when both are empty.
    /// A few loads, no hashing: senders are indexed.
    #[inline]
    fn lists<'r>(&self, reading: &'r Reading) -> Option<Lists<'r, K, M>>
    where
        's: 'r,
    {
        let own = self.entries(reading);
        let every = self.every().entries(reading);
        (!own.is_empty() || !every.is_empty()).then_some((own, every))
    }

    /// [`lists`](Self::lists) as shared handles, for a walk that outlives `reading`.
    fn shared_lists(&self, reading: &Reading) -> Option<SharedLists<K, M>> {
        let own = self.slot().map(|s| s.shared(reading));
        let every = self.every().slot().map(|s| s.shared(reading));
        (!listed(&own).is_empty() || !listed(&every).is_empty()).then_some((own, every))
    }

    /// The handle of the every-sender receivers of this signal and phase.
    fn every(&self) -> ModelSignal<'s, K, dyn AnyModel> {
        ModelSignal {
            inner: self.inner,
            phase: self.phase,
            _kind: PhantomData,
        }
    }

    /// Run the receivers in order, on this thread; stop at the first failure and return it. With no
    /// receivers connected anywhere this is one relaxed atomic load; with receivers for other
    /// senders or other signals only, a few more loads (the interest bits), no hashing. An async
    /// receiver is driven to completion here by a minimal executor (the store enters the caller's
    /// async runtime first); a receiver declared `blocking` is called directly.
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
        if self.checks_conditions() {
            return self.send_live::<true>(own, every, event);
        }
        self.send_live::<false>(own, every, event)
    }

    /// The walk of a send that has receivers, with or without the conditions' check (`CHECK`),
    /// each its own out-of-line function, so that the common one is as tight as with no
    /// conditions at all.
    #[inline(never)]
    fn send_live<const CHECK: bool>(
        &self,
        own: Option<&SenderSlots>,
        every: bool,
        event: &mut K::Event<'_, M>,
    ) -> std::result::Result<(), DispatchError> {
        let at = self.at();
        let reading = Reading::begin();
        let own = own
            .and_then(|slots| slots.slot::<SyncReceiver<K, M>, AsyncReceiver<K, M>>(at.slot))
            .map_or(&[][..], |s| s.entries(&reading));
        let every = if every {
            self.inner
                .every
                .slot::<SyncReceiver<K, dyn AnyModel>, AsyncReceiver<K, dyn AnyModel>>(at.slot)
                .map_or(&[][..], |s| s.entries(&reading))
        } else {
            &[]
        };
        let mut errors = Vec::new();
        self.walk_here::<CHECK>(own, every, event, WalkMode::HERE, &mut errors);
        errors.pop().map_or(Ok(()), Err)
    }

    /// Run every receiver in order, whatever fails; return every failure, in order. Each
    /// failure is also logged at ERROR on `herald::dispatch`, naming the receiver, signal,
    /// sender and key.
    pub fn send_robust(&self, event: &mut K::Event<'_, M>) -> Vec<DispatchError> {
        let mut errors = Vec::new();
        if self.inner.live.load(Relaxed) != 0
            && let Some((own, every)) = self.lists(&Reading::begin())
        {
            let mode = WalkMode::HERE.robust();
            if self.checks_conditions() {
                self.walk_here::<true>(own, every, event, mode, &mut errors);
            } else {
                self.walk_here::<false>(own, every, event, mode, &mut errors);
            }
        }
        if !errors.is_empty() {
            log_robust(&errors);
        }
        errors
    }

    walks! {
        here
        /// The walk of a synchronous send: each receiver in dispatch order, on this thread (an
        /// async one driven to completion here); stops at the first failure unless `mode` is
        /// robust.
        fn walk_here(K)
    }
}

impl<M: Sender> ModelSignal<'_, OnPostSave, M> {
    /// Whether a connected `post_save` receiver that would run for `M` (its own or every
    /// sender's, in any phase) asked for what an update changed
    /// ([`changes`](crate::ReceiverBuilder::changes), or a `when_changed` condition). The store
    /// reads the previous row only then. With no receiver anywhere, one relaxed load.
    pub fn wants_changes(&self) -> bool {
        if self.inner.live.load(Relaxed) == 0 {
            return false;
        }
        let reading = Reading::begin();
        [Phase::Caller, Phase::InTransaction, Phase::OnCommit]
            .into_iter()
            .any(|phase| {
                let handle = ModelSignal::<OnPostSave, M> {
                    inner: self.inner,
                    phase,
                    _kind: PhantomData,
                };
                handle.lists(&reading).is_some_and(|(own, every)| {
                    own.iter().any(|e| e.core.info.changes)
                        || every.iter().any(|e| e.core.info.changes)
                })
            })
    }
}

/// The sends, over the walk above, written once and instantiated for each signal: the compiler
/// proves an async walk's future `Send` only for a concrete event type (not for the generic
/// `K::Event<'_, M>`).
macro_rules! sends {
    ($($kind:ident, $event:ident);*) => {$(
        impl<M: Sender> ModelSignal<'_, $kind, M> {
    /// [`send`](Self::send) from async code: async receivers are awaited (in the caller's async
    /// context), and a synchronous receiver declared `blocking` runs through the registry's
    /// blocking runner. The future is `Send` when the event is.
    pub async fn send_async(
        &self,
        event: &mut $event<'_, M>,
    ) -> std::result::Result<(), DispatchError> {
        let mut errors = Vec::new();
        // Loaded in a statement of its own: the `Reading` ends with it, before any `.await`.
        let lists = if self.inner.live.load(Relaxed) != 0 {
            self.shared_lists(&Reading::begin())
        } else {
            None
        };
        if let Some((own, every)) = lists {
            let (own, every) = (listed(&own), listed(&every));
            if self.checks_conditions() {
                self.walk::<true>(own, every, event, WalkMode::AWAITED, &mut errors).await;
            } else {
                self.walk::<false>(own, every, event, WalkMode::AWAITED, &mut errors).await;
            }
        }
        errors.pop().map_or(Ok(()), Err)
    }

    /// [`send_robust`](Self::send_robust) from async code, as [`send_async`](Self::send_async).
    pub async fn send_async_robust(&self, event: &mut $event<'_, M>) -> Vec<DispatchError> {
        let mut errors = Vec::new();
        // Loaded in a statement of its own: the `Reading` ends with it, before any `.await`.
        let lists = if self.inner.live.load(Relaxed) != 0 {
            self.shared_lists(&Reading::begin())
        } else {
            None
        };
        if let Some((own, every)) = lists {
            let (own, every, mode) = (listed(&own), listed(&every), WalkMode::AWAITED.robust());
            if self.checks_conditions() {
                self.walk::<true>(own, every, event, mode, &mut errors).await;
            } else {
                self.walk::<false>(own, every, event, mode, &mut errors).await;
            }
        }
        errors
    }

    walks! {
        awaited
        /// The walk of an async send: the same, async receivers awaited.
        fn walk($kind)
    }
        }
    )*};
}
sends!(OnPreSave, PreSave; OnPostSave, PostSave; OnPreDelete, PreDelete; OnPostDelete, PostDelete);

/// Whether a receiver's condition (`post_save` only) rules this event out: it is then not called,
/// not timed and not counted. Compiled out of the other signals' walks.
#[inline(always)]
fn skipped<K: ModelKind, M: ?Sized>(core: &ReceiverCore, event: &K::Event<'_, M>) -> bool {
    K::CONDITIONAL
        && core
            .condition
            .as_ref()
            .is_some_and(|c| !K::admits(c, event))
}

/// Call one receiver on this thread: an async one is driven to completion here by a minimal
/// executor (the store enters the caller's async runtime first); a blocking one is called
/// directly (a synchronous send runs on a connection thread, not on an async runtime's worker).
#[inline(always)]
fn run_here<K: ModelKind, N: ?Sized + 'static>(
    call: &Callable<SyncReceiver<K, N>, AsyncReceiver<K, N>>,
    event: &mut K::Event<'_, N>,
) -> Result {
    match call {
        Callable::Sync(f) => f(event),
        Callable::Async(f) => futures::executor::block_on(f(event)),
    }
}

/// Start one receiver from an async send: a synchronous one runs here (a blocking one through the
/// blocking runner), an async one is returned to be awaited. Kept synchronous so that the awaiting
/// walk holds no receiver type across an `.await` (which would defeat the compiler's proof that
/// the walk's future is `Send`).
#[inline(always)]
fn start<'a, K: ModelKind, N: ?Sized + 'static>(
    core: &ReceiverCore,
    call: &Callable<SyncReceiver<K, N>, AsyncReceiver<K, N>>,
    config: &Config,
    sender: &'static str,
    mode: WalkMode,
    event: &'a mut K::Event<'_, N>,
) -> Started<'a> {
    Started::Done(match call {
        Callable::Sync(f) if mode.offload && core.info.blocking => {
            core.call(config, sender, || config.run_blocking(|| f(event)))
        }
        Callable::Sync(f) => core.call(config, sender, || f(event)),
        Callable::Async(f) => return Started::Pending(f(event)),
    })
}

#[cold]
fn failure<K: ModelKind, M: Sender>(
    core: &ReceiverCore,
    event: &K::Event<'_, M>,
    cause: Cause,
) -> DispatchError {
    let key = K::instance(event).pk_string();
    DispatchError::new(core.info.clone(), M::NAME, key, cause)
}
