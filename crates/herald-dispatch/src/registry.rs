//! The registry's internals: per sender, its slots (one receiver list per signal and phase) and
//! the bitmask of the slots that have receivers; senders indexed by a dense key in a fixed
//! two-level table, so a send finds its receivers with a few loads and no hashing. Connecting and
//! disconnecting, serialised by one lock. `signals.rs` is the public face over it.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};

use crate::connect::Connection;
use crate::receiver::{Config, ReceiverCore};
use crate::sender::MAX_SENDERS;
use crate::slot::{Entry, Refused, Slot};
use crate::tagged::Tagged;

/// Slots per sender: four model signals, each with its caller-side, in-transaction (with
/// background) and on-commit phases.
pub(crate) const SLOTS: usize = 12;
const CHUNK: usize = 64;
pub(crate) const CHUNKS: usize = MAX_SENDERS / CHUNK;

/// Where a receiver lives: which sender's table (`None`: every sender) and which slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotAt {
    pub(crate) sender: Option<usize>,
    pub(crate) slot: usize,
}

/// One sender's slots and the bitmask of the ones that have receivers.
pub(crate) struct SenderSlots {
    pub(crate) interest: AtomicU32,
    slots: [OnceLock<Tagged>; SLOTS],
}

impl SenderSlots {
    pub(crate) fn new() -> Self {
        Self {
            interest: AtomicU32::new(0),
            slots: Default::default(),
        }
    }

    /// The slot at `index`, whose receiver types are `S`/`A`, if it was ever made.
    #[inline]
    pub(crate) fn slot<S, A>(&self, index: usize) -> Option<&Slot<S, A>>
    where
        S: ?Sized + Send + Sync + 'static,
        A: ?Sized + Send + Sync + 'static,
    {
        let slot = self.slots[index].get()?.downcast::<Slot<S, A>>();
        Some(slot.expect("a slot's receiver types are fixed by its (signal, sender, phase)"))
    }

    fn slot_or_init<S, A>(&self, index: usize) -> &Slot<S, A>
    where
        S: ?Sized + Send + Sync + 'static,
        A: ?Sized + Send + Sync + 'static,
    {
        self.slots[index]
            .get_or_init(|| Tagged::new(Slot::<S, A>::new()))
            .downcast::<Slot<S, A>>()
            .expect("a slot's receiver types are fixed by its (signal, sender, phase)")
    }
}

pub(crate) struct Inner {
    /// How many receivers are connected, anywhere: the whole cost of a send when it is zero.
    pub(crate) live: AtomicUsize,
    /// How many connected receivers have a condition: while none has, the `post_save` walks do
    /// not check conditions at all (one relaxed load a send instead of a check a receiver).
    pub(crate) conditional: AtomicUsize,
    pub(crate) config: Config,
    pub(crate) senders: [OnceLock<Box<[SenderSlots]>>; CHUNKS],
    pub(crate) every: SenderSlots,
    /// Every connected receiver in registration order, with where it lives. Also the writers' lock.
    pub(crate) all: Mutex<Vec<(Arc<ReceiverCore>, SlotAt)>>,
}

impl Inner {
    #[inline]
    pub(crate) fn sender_slots(&self, at: Option<usize>) -> Option<&SenderSlots> {
        match at {
            None => Some(&self.every),
            Some(index) => self.senders[index / CHUNK].get().map(|c| &c[index % CHUNK]),
        }
    }

    fn sender_slots_or_init(&self, at: Option<usize>) -> &SenderSlots {
        match at {
            None => &self.every,
            Some(index) => {
                let chunk = self.senders[index / CHUNK]
                    .get_or_init(|| (0..CHUNK).map(|_| SenderSlots::new()).collect());
                &chunk[index % CHUNK]
            }
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Vec<(Arc<ReceiverCore>, SlotAt)>> {
        self.all.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connect `entry` at `at`.
    pub(crate) fn attach<S, A>(self: &Arc<Self>, at: SlotAt, entry: Entry<S, A>) -> Connection
    where
        S: ?Sized + Send + Sync + 'static,
        A: ?Sized + Send + Sync + 'static,
    {
        let mut all = self.lock();
        let slots = self.sender_slots_or_init(at.sender);
        let core = entry.core.clone();
        match slots.slot_or_init::<S, A>(at.slot).insert(entry) {
            Err(Refused::Duplicate(existing)) => Connection::duplicate(existing),
            Ok(()) => {
                slots.interest.fetch_or(1 << at.slot, Relaxed);
                self.live.fetch_add(1, Relaxed);
                if core.condition.is_some() {
                    self.conditional.fetch_add(1, Relaxed);
                }
                let id = core.info.id();
                all.push((core, at));
                let registry = Arc::downgrade(self);
                Connection::connected(
                    id,
                    Box::new(move || detach(&registry, at, &|c| c.info.id() == id)),
                )
            }
        }
    }

    /// Remove the receivers at `at` that `which` selects; returns how many.
    pub(crate) fn remove(&self, at: SlotAt, which: &dyn Fn(&ReceiverCore) -> bool) -> usize {
        let mut all = self.lock();
        let Some(slots) = self.sender_slots(at.sender) else {
            return 0;
        };
        let Some(slot) = slots.slots[at.slot].get().map(Tagged::erased) else {
            return 0;
        };
        let removed = slot.remove_where(which);
        if slot.len() == 0 {
            slots.interest.fetch_and(!(1 << at.slot), Relaxed);
        }
        self.live.fetch_sub(removed.len(), Relaxed);
        let conditional = removed.iter().filter(|r| r.condition.is_some()).count();
        self.conditional.fetch_sub(conditional, Relaxed);
        all.retain(|(core, _)| !removed.iter().any(|r| Arc::ptr_eq(r, core)));
        removed.len()
    }
}

fn detach(registry: &Weak<Inner>, at: SlotAt, which: &dyn Fn(&ReceiverCore) -> bool) -> bool {
    registry
        .upgrade()
        .is_some_and(|inner| inner.remove(at, which) > 0)
}
