//! A boxed slot tagged with its concrete type, downcast by comparing two constants.
//!
//! # Why this module uses `unsafe`
//!
//! `<dyn Any>::downcast_ref` asks the vtable for the type id on every call; on the dispatch path that
//! indirect call and the 16-byte id it returns through memory cost more than the rest of a
//! one-receiver send (measured: a quarter of it, a store-forwarding stall). Here the id is recorded
//! once, from the concrete type, when the box is made, and a downcast compares it with a constant.
//!
//! Soundness: `Tagged::new::<T>` is the only constructor and records `TypeId::of::<T>()` for the very
//! value it boxes; the fields are private to this module and never change. So when the recorded id
//! equals `TypeId::of::<T>()`, the box holds a `T`, and the pointer cast below is the one
//! `downcast_ref` itself performs.
#![allow(unsafe_code)]

use std::any::TypeId;

use crate::slot::ErasedSlot;

pub(crate) struct Tagged {
    type_id: TypeId,
    slot: Box<dyn ErasedSlot>,
}

impl Tagged {
    pub(crate) fn new<T: ErasedSlot>(slot: T) -> Self {
        Self {
            type_id: TypeId::of::<T>(),
            slot: Box::new(slot),
        }
    }

    /// The slot as a `T`, if it is one.
    #[inline]
    pub(crate) fn downcast<T: ErasedSlot>(&self) -> Option<&T> {
        if self.type_id == TypeId::of::<T>() {
            let erased: *const dyn ErasedSlot = &*self.slot;
            // SAFETY: the box holds a `T` (see the module docs); the pointer comes from a live
            // reference with `self`'s lifetime.
            Some(unsafe { &*(erased as *const T) })
        } else {
            None
        }
    }

    /// The slot without its concrete type.
    pub(crate) fn erased(&self) -> &dyn ErasedSlot {
        &*self.slot
    }
}
