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
use crate::error::{Cause, DispatchError, Result, log_robust};
use crate::receiver::{Config, ReceiverCore};
use crate::registry::SenderSlots;
use crate::sender::{AnyModel, Sender};
use crate::slot::{Callable, Entry, Step, Walk};
use crate::walk::{Started, WalkMode, call_async};

/// The walk, written once and expanded twice: a synchronous one (`finish_here`) and an async one
/// (`call_async(..).await`). (One walk polled synchronously, as an async fn, costs three times the
/// synchronous one: 35 against 11–15 ns for one receiver; see BENCHMARKS.md.)
macro_rules! walks {
    (here $(#[$doc:meta])* fn $name:ident($kind:ident)) => {
        walks!(@body [$(#[$doc])*] [] $name $kind |core, call, event, _mode, config| {
            core.call(config, M::NAME, || run_here::<$kind, _>(call, event))
        });
    };
    (awaited $(#[$doc:meta])* fn $name:ident($kind:ident)) => {
        walks!(@body [$(#[$doc])*] [async] $name $kind |core, call, event, mode, config| {
            let started = start::<$kind, _>(core, call, config, M::NAME, mode, event);
            call_async(core, config, M::NAME, started).await
        });
    };
    (@body [$($doc:tt)*] [$($async:tt)*] $name:ident $kind:ident
        |$core:ident, $call:ident, $event:ident, $mode:ident, $config:ident| $step:block) => {
        $($doc)*
        #[inline]
        $($async)* fn $name(
            &self,
            own: &[Arc<ModelEntry<$kind, M>>],
            every: &[Arc<AnyEntry<$kind>>],
            event: &mut <$kind as ModelKind>::Event<'_, M>,
            mode: WalkMode,
            errors: &mut Vec<DispatchError>,
        ) {
            let $config = &self.inner.config;
            for step in Walk::new(own, every) {
                let (core, failed) = match step {
                    Step::Own(entry) => {
                        let ($core, $call, $event, $mode) = (&entry.core, &entry.call, &mut *event, mode);
                        (&entry.core, $step)
                    }
                    Step::Every(entry) => {
                        let mut erased = $kind::erase(event);
                        let ($core, $call, $event, $mode) = (&entry.core, &entry.call, &mut erased, mode);
                        (&entry.core, $step)
                    }
                };
                if let Some(cause) = failed {
                    errors.push(failure::<$kind, M>(core, event, cause));
                    if !mode.robust {
                        return;
                    }
                }
            }
        }
    };
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

    /// Whether any receiver that would run for this signal and phase is async (a store enters the
    /// caller's async runtime on its connection only for those).
    pub fn has_async_receivers(&self) -> bool {
        self.inner.live.load(Relaxed) != 0
            && self.lists().is_some_and(|(own, every)| {
                own.iter().any(|e| e.core.info.is_async)
                    || every.iter().any(|e| e.core.info.is_async)
            })
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
        self.send_live(own, every, event)
    }

    #[inline(never)]
    fn send_live(
        &self,
        own: Option<&SenderSlots>,
        every: bool,
        event: &mut K::Event<'_, M>,
    ) -> std::result::Result<(), DispatchError> {
        let at = self.at();
        let own = own
            .and_then(|slots| slots.slot::<SyncReceiver<K, M>, AsyncReceiver<K, M>>(at.slot))
            .map_or(&[][..], |s| s.entries());
        let every = if every {
            self.inner
                .every
                .slot::<SyncReceiver<K, dyn AnyModel>, AsyncReceiver<K, dyn AnyModel>>(at.slot)
                .map_or(&[][..], |s| s.entries())
        } else {
            &[]
        };
        let mut errors = Vec::new();
        self.walk_here(own, every, event, WalkMode::HERE, &mut errors);
        errors.pop().map_or(Ok(()), Err)
    }

    /// Run every receiver in order, whatever fails; return every failure, in order. Each
    /// failure is also logged at ERROR on `herald::dispatch`, naming the receiver, signal,
    /// sender and key.
    pub fn send_robust(&self, event: &mut K::Event<'_, M>) -> Vec<DispatchError> {
        let mut errors = Vec::new();
        if self.inner.live.load(Relaxed) != 0
            && let Some((own, every)) = self.lists()
        {
            self.walk_here(own, every, event, WalkMode::HERE.robust(), &mut errors);
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
        if self.inner.live.load(Relaxed) != 0
            && let Some((own, every)) = self.lists()
        {
            self.walk(own, every, event, WalkMode::AWAITED, &mut errors).await;
        }
        errors.pop().map_or(Ok(()), Err)
    }

    /// [`send_robust`](Self::send_robust) from async code, as [`send_async`](Self::send_async).
    pub async fn send_async_robust(&self, event: &mut $event<'_, M>) -> Vec<DispatchError> {
        let mut errors = Vec::new();
        if self.inner.live.load(Relaxed) != 0
            && let Some((own, every)) = self.lists()
        {
            self.walk(own, every, event, WalkMode::AWAITED.robust(), &mut errors).await;
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
