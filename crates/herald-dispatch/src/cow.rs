//! A copy-on-write list read with one acquire load and no read-modify-write.
//!
//! # Why this module uses `unsafe`
//!
//! Dispatch must read a receiver list in a few nanoseconds (the budget in BENCHMARKS.md: a send to
//! one trivial receiver ≤ 10 ns).
//! Every safe way to share a list that writers replace (`RwLock`, `ArcSwap::load`, epochs) makes the
//! reader write to shared memory (a lock count, a debt slot, a pin), which costs more than the whole
//! budget. Here readers only load a pointer.
//!
//! Soundness rests on one rule: **a published list is never freed or mutated while the `CowList` is
//! alive.** Writers (serialised by `published`'s mutex) build a new list, keep it in `published` and
//! then point `current` at it. Every list ever published stays in `published` until `CowList` drops,
//! and drop takes `&mut self`, so no reader (who needs `&self`) can exist then. A reader's `&[T]` is
//! tied to its `&self` borrow, so it cannot outlive the `CowList` either.
//!
//! The price is memory: each change keeps the previous list (a vector of `Arc` pointers) until the
//! owner drops. Receivers are connected at start-up and in tests, so this is a handful of small
//! vectors; a program that connects and disconnects in a loop for its whole life should connect once
//! and mute instead.
#![allow(unsafe_code)]

use std::marker::PhantomData;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

pub(crate) struct CowList<T> {
    current: AtomicPtr<Vec<T>>,
    /// Every list ever published, the last one being `current`. Also the writers' lock. Boxed so
    /// that each list's `Vec` header, which `current` points at, keeps its address when this vector
    /// grows.
    #[allow(clippy::vec_box)]
    published: Mutex<Vec<Box<Vec<T>>>>,
    /// Makes `CowList<T>` `Sync` only when `T: Sync` (readers on other threads get `&T`); the mutex
    /// already requires `T: Send`.
    _owns: PhantomData<T>,
}

impl<T> CowList<T> {
    pub(crate) fn new() -> Self {
        let mut first = Box::new(Vec::new());
        let current = AtomicPtr::new(&mut *first as *mut Vec<T>);
        Self {
            current,
            published: Mutex::new(vec![first]),
            _owns: PhantomData,
        }
    }

    /// The current list.
    #[inline]
    pub(crate) fn load(&self) -> &[T] {
        let ptr = self.current.load(Ordering::Acquire);
        // SAFETY: `ptr` points into a `Box<Vec<T>>` held by `published`, which is only ever pushed
        // to while `self` lives (see the module docs); the `Release` store in `update` happened after
        // the list was complete, and the list is never mutated after that.
        unsafe { &*ptr }
    }

    /// Let `change` look at the current list and, if it returns a new one, publish it. Writers are
    /// serialised; readers see either the old or the new list, whole.
    pub(crate) fn update<R>(&self, change: impl FnOnce(&[T]) -> (Option<Vec<T>>, R)) -> R {
        let mut published = self.lock();
        let old: &[T] = published.last().map(|l| l.as_slice()).unwrap_or(&[]);
        let (new, result) = change(old);
        if let Some(new) = new {
            let mut new = Box::new(new);
            let ptr = &mut *new as *mut Vec<T>;
            published.push(new);
            self.current.store(ptr, Ordering::Release);
        }
        result
    }

    #[allow(clippy::vec_box)]
    fn lock(&self) -> MutexGuard<'_, Vec<Box<Vec<T>>>> {
        // A panic inside `change` happens before anything is published: the data is still whole.
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for CowList<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.load()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_keep_the_list_they_loaded() {
        let list = CowList::new();
        list.update(|_| (Some(vec![1, 2]), ()));
        let seen = list.load();
        list.update(|old| (Some(old.iter().map(|x| x * 10).collect()), ()));
        assert_eq!(seen, &[1, 2]);
        assert_eq!(list.load(), &[10, 20]);
        assert_eq!(list.update(|old| (None, old.len())), 2);
        assert_eq!(list.load(), &[10, 20]);
    }
}
