//! Slots: the ordered receiver list of one (signal, sender, phase), and the walk that merges a
//! sender's list with the every-sender list in one order.

use std::any::{Any, TypeId};
use std::cmp::Reverse;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::cow::{CowList, Reading};
use crate::error::Result;
use crate::info::ReceiverId;
use crate::receiver::ReceiverCore;

/// How a receiver is called.
pub(crate) enum Callable<S: ?Sized, A: ?Sized> {
    Sync(Box<S>),
    Async(Box<A>),
}

/// One receiver in one slot.
pub(crate) struct Entry<S: ?Sized, A: ?Sized> {
    pub(crate) core: Arc<ReceiverCore>,
    pub(crate) call: Callable<S, A>,
    /// `Some` for zero-sized callables (fn items, closures capturing nothing): connecting one twice
    /// keeps the first, since the two would behave identically.
    pub(crate) identity: Option<TypeId>,
}

impl<S: ?Sized, A: ?Sized> Entry<S, A> {
    /// Dispatch order: higher priority first, then registration order (ids increase).
    fn order(&self) -> (Reverse<i32>, ReceiverId) {
        (Reverse(self.core.info.priority), self.core.info.id)
    }
}

/// The identity used to drop duplicate connections of a callable of type `F`.
pub(crate) fn identity_of<F: 'static>() -> Option<TypeId> {
    (std::mem::size_of::<F>() == 0).then(TypeId::of::<F>)
}

/// Why a connect added nothing.
pub(crate) enum Refused {
    /// The same zero-sized receiver, or one with the same `dispatch_uid`, is already connected.
    Duplicate(ReceiverId),
}

pub(crate) struct Slot<S: ?Sized, A: ?Sized> {
    list: CowList<Arc<Entry<S, A>>>,
}

impl<S: ?Sized + Send + Sync + 'static, A: ?Sized + Send + Sync + 'static> Slot<S, A> {
    pub(crate) fn new() -> Self {
        Self {
            list: CowList::new(),
        }
    }

    /// The receivers, in dispatch order, for as long as `reading` lasts.
    #[inline]
    pub(crate) fn entries<'a>(&'a self, reading: &'a Reading) -> &'a [Arc<Entry<S, A>>] {
        self.list.load(reading)
    }

    /// The receivers as a shared handle that outlives `reading` (for an async send).
    #[inline]
    pub(crate) fn shared(&self, reading: &Reading) -> Arc<Vec<Arc<Entry<S, A>>>> {
        self.list.load_shared(reading)
    }

    /// Insert in dispatch order, unless a duplicate is there.
    pub(crate) fn insert(&self, entry: Entry<S, A>) -> std::result::Result<(), Refused> {
        let mut entry = Some(entry);
        let refused = self.list.update(|old| {
            let new = entry.as_ref().expect("taken once, below");
            let uid = new.core.info.dispatch_uid.as_deref();
            if let Some(dup) = old.iter().find(|e| {
                (new.identity.is_some() && e.identity == new.identity)
                    || (uid.is_some() && e.core.info.dispatch_uid.as_deref() == uid)
            }) {
                return (None, Some(dup.core.info.id));
            }
            let new = Arc::new(entry.take().expect("taken once, here"));
            let at = old.partition_point(|e| e.order() <= new.order());
            let mut list = Vec::with_capacity(old.len() + 1);
            list.extend_from_slice(&old[..at]);
            list.push(new);
            list.extend_from_slice(&old[at..]);
            (Some(list), None)
        });
        match refused {
            Some(existing) => Err(Refused::Duplicate(existing)),
            None => Ok(()),
        }
    }
}

/// What the registry needs of a slot without knowing its receiver types.
pub(crate) trait ErasedSlot: Any + Send + Sync {
    /// Remove the receivers `which` selects; returns the removed ones.
    fn remove_where(&self, which: &dyn Fn(&ReceiverCore) -> bool) -> Vec<Arc<ReceiverCore>>;
    fn len(&self) -> usize;
}

impl<S: ?Sized + Send + Sync + 'static, A: ?Sized + Send + Sync + 'static> ErasedSlot
    for Slot<S, A>
{
    fn remove_where(&self, which: &dyn Fn(&ReceiverCore) -> bool) -> Vec<Arc<ReceiverCore>> {
        self.list.update(|old| {
            let removed: Vec<_> = old
                .iter()
                .filter(|e| which(&e.core))
                .map(|e| e.core.clone())
                .collect();
            if removed.is_empty() {
                return (None, removed);
            }
            let kept = old.iter().filter(|e| !which(&e.core)).cloned().collect();
            (Some(kept), removed)
        })
    }

    fn len(&self) -> usize {
        self.entries(&Reading::begin()).len()
    }
}

/// One step of a walk: a receiver of the sender's own list, or of the every-sender list.
pub(crate) enum Step<'l, S1: ?Sized, A1: ?Sized, S2: ?Sized, A2: ?Sized> {
    Own(&'l Entry<S1, A1>),
    Every(&'l Entry<S2, A2>),
}

/// Walks two lists, each already in dispatch order, as one list in dispatch order.
pub(crate) struct Walk<'l, S1: ?Sized, A1: ?Sized, S2: ?Sized, A2: ?Sized> {
    own: &'l [Arc<Entry<S1, A1>>],
    every: &'l [Arc<Entry<S2, A2>>],
}

impl<'l, S1: ?Sized, A1: ?Sized, S2: ?Sized, A2: ?Sized> Walk<'l, S1, A1, S2, A2> {
    pub(crate) fn new(own: &'l [Arc<Entry<S1, A1>>], every: &'l [Arc<Entry<S2, A2>>]) -> Self {
        Self { own, every }
    }
}

impl<'l, S1: ?Sized, A1: ?Sized, S2: ?Sized, A2: ?Sized> Iterator for Walk<'l, S1, A1, S2, A2> {
    type Item = Step<'l, S1, A1, S2, A2>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let own_first = match (self.own.first(), self.every.first()) {
            (None, None) => return None,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(b)) => a.order() < b.order(),
        };
        if own_first {
            let (first, rest) = self.own.split_first()?;
            self.own = rest;
            Some(Step::Own(first))
        } else {
            let (first, rest) = self.every.split_first()?;
            self.every = rest;
            Some(Step::Every(first))
        }
    }
}

/// The future an async receiver returns, boxed. `Send`, so that a caller awaiting its receivers
/// (a write in an axum handler, in `tokio::spawn`) stays `Send`.
pub type ReceiverFuture<'a> = BoxFuture<'a, Result>;
