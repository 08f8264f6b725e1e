//! A copy-on-write list read with one acquire load and no read-modify-write, whose replaced lists
//! are freed once no thread still reads them.
//!
//! # Why this module uses `unsafe`
//!
//! Dispatch must read a receiver list in a few nanoseconds (the budget in BENCHMARKS.md: a send to
//! one trivial receiver ≤ 10 ns). Every safe way to share a list that writers replace (`RwLock`,
//! `ArcSwap::load`, epochs) makes the reader write to shared memory (a lock count, a debt slot, a
//! pin) with a locked instruction, which costs more than the whole budget. Here a reader loads a
//! pointer, and marks that it is reading with a plain store to a counter of its own thread.
//!
//! # The rules
//!
//! - **Readers.** A thread reads lists only inside a [`Reading`]: `Reading::begin` adds one to its
//!   thread's counter (a plain store: no other thread writes it), then the thread loads list
//!   pointers; dropping the `Reading` takes the one back (a release store). A list borrowed from
//!   [`CowList::load`] cannot outlive the `Reading` it was loaded under, and a `Reading` is neither
//!   `Send` nor held across an `.await` in the dispatcher (its futures must be `Send`, which a
//!   `Reading` is not), so a task that moves between threads never leaves a counter raised. Async
//!   sends take their lists as shared `Arc`s ([`CowList::load_shared`]) instead.
//! - **Writers** (serialised by the list's mutex) publish a new list with a release store, keep
//!   the replaced one as retired, then try to free the retired lists: they issue a process-wide
//!   memory barrier (Linux `membarrier`, `MEMBARRIER_CMD_PRIVATE_EXPEDITED`) and read every
//!   thread's counter. If none is raised, no thread is between loading a list pointer and dropping
//!   its `Reading`, so no thread holds a retired list: they are dropped. Otherwise they stay until
//!   a later change tries again (or the list drops).
//! - **Why the barrier makes that true.** A reader's counter store and its later pointer load are
//!   ordered by a compiler fence only; the writer's barrier runs a full fence on every CPU that
//!   runs one of the process's threads. So either the reader raised its counter before the
//!   barrier (and the writer sees it), or it loads the pointer after the barrier (and sees the new
//!   list, since the writer stored it before the barrier). This is the asymmetric fence that
//!   user-space RCU uses.
//! - **Where there is no such barrier** (other systems, a kernel without `membarrier`, or a
//!   sandbox that refuses it), retired lists are kept until the list drops, as a list without
//!   reclamation would.
//! - **Threads** register their counter's address on their first `Reading`, and remove it when
//!   they exit (a thread-local destructor, which also clears the counter's "registered" mark). A
//!   `Reading` begun where the thread can no longer register (a send from another thread-local's
//!   destructor, after ours ran) turns freeing off for the rest of the process: writers cannot see
//!   that thread, so they keep every list from then on, as where there is no barrier.
//! - A list's `Drop` takes `&mut self`: no reader (who needs `&self`) can exist then.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering, compiler_fence};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub(crate) struct CowList<T> {
    /// The current list: the `Vec` inside `lists.current`.
    current: AtomicPtr<Vec<T>>,
    /// The current list and the retired ones not freed yet. Also the writers' lock.
    lists: Mutex<Lists<T>>,
}

struct Lists<T> {
    current: Arc<Vec<T>>,
    retired: Vec<Arc<Vec<T>>>,
}

impl<T> CowList<T> {
    pub(crate) fn new() -> Self {
        let first = Arc::new(Vec::new());
        Self {
            current: AtomicPtr::new(Arc::as_ptr(&first).cast_mut()),
            lists: Mutex::new(Lists {
                current: first,
                retired: Vec::new(),
            }),
        }
    }

    /// The current list, for as long as `reading` lasts.
    #[inline]
    pub(crate) fn load<'a>(&'a self, _reading: &'a Reading) -> &'a [T] {
        let ptr = self.current.load(Ordering::Acquire);
        // SAFETY: `ptr` is the `Vec` of an `Arc` that `lists` held when it was stored (`update`
        // stores it with `Release` after the list was complete; a list is never mutated). That
        // `Arc` is dropped only by a writer that found no raised counter after its barrier, and
        // this thread's counter is raised for as long as `reading` lives (see the module docs).
        unsafe { &*ptr }
    }

    /// The current list as a shared handle, which stays valid after `reading` ends (for an async
    /// send, which holds its lists across `.await`s).
    #[inline]
    pub(crate) fn load_shared(&self, _reading: &Reading) -> Arc<Vec<T>> {
        let ptr: *const Vec<T> = self.current.load(Ordering::Acquire);
        // SAFETY: as in `load`, `ptr` came from `Arc::as_ptr` of an `Arc` that is alive while
        // `reading` lives; taking a count of our own keeps it alive after.
        unsafe {
            Arc::increment_strong_count(ptr);
            Arc::from_raw(ptr)
        }
    }

    /// Let `change` look at the current list and, if it returns a new one, publish it. Writers are
    /// serialised; readers see either the old or the new list, whole. The replaced list is freed
    /// as soon as no thread can still be reading it (see the module docs).
    pub(crate) fn update<R>(&self, change: impl FnOnce(&[T]) -> (Option<Vec<T>>, R)) -> R {
        let mut lists = self.lock();
        let (new, result) = change(&lists.current);
        if let Some(new) = new {
            let new = Arc::new(new);
            self.current
                .store(Arc::as_ptr(&new).cast_mut(), Ordering::Release);
            let old = std::mem::replace(&mut lists.current, new);
            lists.retired.push(old);
        }
        if !lists.retired.is_empty() && readers::none_reading() {
            lists.retired.clear();
        }
        result
    }

    /// How many replaced lists are kept because a thread may still be reading them.
    #[cfg(test)]
    pub(crate) fn retired(&self) -> usize {
        self.lock().retired.len()
    }

    fn lock(&self) -> MutexGuard<'_, Lists<T>> {
        // A panic inside `change` happens before anything is published: the data is still whole.
        self.lists.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for CowList<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.lock().current.iter()).finish()
    }
}

/// This thread is reading lists: no list it loads while this lives is freed. Neither `Send` nor
/// `Sync`: it raises this thread's counter, and must be dropped on this thread.
pub(crate) struct Reading {
    _this_thread: PhantomData<*const ()>,
}

impl Reading {
    #[inline]
    pub(crate) fn begin() -> Reading {
        readers::COUNTER.with(readers::raise);
        // Orders the counter's store before every list load that follows (on this thread); the
        // writer's barrier does the rest (see the module docs).
        compiler_fence(Ordering::SeqCst);
        Reading {
            _this_thread: PhantomData,
        }
    }
}

impl Drop for Reading {
    #[inline]
    fn drop(&mut self) {
        readers::COUNTER.with(readers::lower);
    }
}

impl std::fmt::Debug for Reading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reading")
    }
}

/// Every thread's counter of the `Reading`s it holds, and the writers' check of them.
mod readers {
    use super::*;

    /// Bit 0: this counter's address is registered; the other bits: `Reading`s held, times two.
    const REGISTERED: usize = 1;
    const ONE: usize = 2;

    thread_local! {
        /// Written only by its own thread; read by writers through its registered address.
        pub(super) static COUNTER: AtomicUsize = const { AtomicUsize::new(0) };
        /// Removes the counter from the registry when the thread exits.
        static EXIT: Unregister = const { Unregister(Cell::new(false)) };
    }

    /// Counters' addresses of every live thread that has read a list.
    static REGISTRY: Mutex<Vec<usize>> = Mutex::new(Vec::new());
    /// A thread read lists without a registered counter: nothing is freed any more.
    static UNSEEN_READER: AtomicBool = AtomicBool::new(false);

    #[inline]
    pub(super) fn raise(counter: &AtomicUsize) {
        let now = counter.load(Ordering::Relaxed);
        if now & REGISTERED == 0 {
            return raise_unregistered(counter, now);
        }
        counter.store(now + ONE, Ordering::Relaxed);
    }

    #[inline]
    pub(super) fn lower(counter: &AtomicUsize) {
        // Release: every use of the lists loaded under the `Reading` happens before a writer that
        // sees this store frees them.
        counter.store(counter.load(Ordering::Relaxed) - ONE, Ordering::Release);
    }

    #[cold]
    fn raise_unregistered(counter: &AtomicUsize, now: usize) {
        let registered = EXIT.try_with(|exit| {
            if !exit.0.replace(true) {
                registry().push(counter as *const AtomicUsize as usize);
            }
        });
        if registered.is_ok() {
            counter.store((now | REGISTERED) + ONE, Ordering::Relaxed);
        } else {
            // The thread's destructors are running: writers cannot see this thread any more.
            UNSEEN_READER.store(true, Ordering::SeqCst);
            counter.store(now + ONE, Ordering::Relaxed);
        }
    }

    /// Whether no thread is reading lists now. False when that cannot be known (no process-wide
    /// barrier here): the caller then keeps what it would have freed.
    pub(super) fn none_reading() -> bool {
        if UNSEEN_READER.load(Ordering::SeqCst) || !barrier::process_wide() {
            return false;
        }
        let registry = registry();
        let counters_down = registry.iter().all(|&address| {
            // SAFETY: an address stays in the registry only while its thread lives (its `EXIT`
            // destructor removes it, under this lock, before the thread's locals are freed).
            let counter = unsafe { &*(address as *const AtomicUsize) };
            counter.load(Ordering::Acquire) < ONE
        });
        // Read again after the barrier: a reader that set it before loading a list is seen.
        counters_down && !UNSEEN_READER.load(Ordering::SeqCst)
    }

    fn registry() -> MutexGuard<'static, Vec<usize>> {
        REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
    }

    struct Unregister(Cell<bool>);

    impl Drop for Unregister {
        fn drop(&mut self) {
            if !self.0.get() {
                return;
            }
            // `COUNTER` has no destructor, so it is still there: take its address out, and mark it
            // unregistered so that a `Reading` begun later on this thread is counted elsewhere.
            COUNTER.with(|counter| {
                let address = counter as *const AtomicUsize as usize;
                let mut registry = registry();
                registry.retain(|&a| a != address);
                let now = counter.load(Ordering::Relaxed);
                counter.store(now & !REGISTERED, Ordering::Relaxed);
            });
        }
    }

    /// A memory barrier on every thread of the process at once.
    mod barrier {
        #[cfg(target_os = "linux")]
        pub(in super::super) fn process_wide() -> bool {
            use std::sync::OnceLock;
            const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
            const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;
            fn membarrier(cmd: libc::c_int) -> bool {
                // SAFETY: the `membarrier` system call reads no memory of ours; an unknown command
                // or an old kernel is an error return.
                unsafe {
                    libc::syscall(
                        libc::SYS_membarrier,
                        cmd,
                        0 as libc::c_uint,
                        0 as libc::c_int,
                    ) == 0
                }
            }
            static AVAILABLE: OnceLock<bool> = OnceLock::new();
            *AVAILABLE.get_or_init(|| membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED))
                && membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)
        }

        #[cfg(not(target_os = "linux"))]
        pub(in super::super) fn process_wide() -> bool {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_keep_the_list_they_loaded() {
        let list = CowList::new();
        list.update(|_| (Some(vec![1, 2]), ()));
        let reading = Reading::begin();
        let seen = list.load(&reading);
        list.update(|old| (Some(old.iter().map(|x| x * 10).collect()), ()));
        assert_eq!(seen, &[1, 2]);
        assert_eq!(list.load(&reading), &[10, 20]);
        assert_eq!(list.update(|old| (None, old.len())), 2);
        assert_eq!(list.retired(), 1, "[1, 2] kept while this thread reads");
        drop(reading);
        settle(&list);
    }

    /// Changes nothing until the retired lists are freed: the next change after a moment when no
    /// thread reads (other tests of this process send on other threads meanwhile). Fails if that
    /// moment never comes.
    fn settle<T>(list: &CowList<T>) {
        for _ in 0..100_000 {
            list.update(|_| (None, ()));
            if list.retired() == 0 {
                return;
            }
            std::thread::yield_now();
        }
        panic!("the retired lists were never freed");
    }

    #[test]
    fn a_shared_list_outlives_its_reading_and_the_change_that_retired_it() {
        let list = CowList::new();
        list.update(|_| (Some(vec![Arc::new(1)]), ()));
        let shared = {
            let reading = Reading::begin();
            list.load_shared(&reading)
        };
        list.update(|_| (Some(Vec::new()), ()));
        settle(&list);
        assert_eq!(*shared[0], 1, "still readable");
        let item = shared[0].clone();
        drop(shared);
        assert_eq!(
            Arc::strong_count(&item),
            1,
            "the list was freed with its last handle"
        );
    }
}
