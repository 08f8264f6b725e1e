//! Senders: the model types a model signal is sent for, and their type-erased view.

use std::any::Any;
use std::sync::atomic::{AtomicU32, Ordering};

/// The type-erased view of a model instance, which receivers for every sender get
/// (Django's `sender=None`).
///
/// `herald`'s `#[derive(Model)]` implements it; a type used with this crate alone implements it by hand.
pub trait AnyModel: Any + Send + Sync {
    /// The model's name, as receivers and errors show it (`"Book"`).
    fn model_name(&self) -> &'static str;
    /// The primary key as text, or `None` while the instance has none (not yet saved).
    fn pk_string(&self) -> Option<String>;
    /// The instance as JSON (its columns).
    fn to_json(&self) -> serde_json::Value;
}

impl dyn AnyModel {
    /// The instance as a `T`, if it is one.
    pub fn downcast_ref<T: AnyModel>(&self) -> Option<&T> {
        (self as &dyn Any).downcast_ref::<T>()
    }

    /// The instance as a mutable `T`, if it is one.
    pub fn downcast_mut<T: AnyModel>(&mut self) -> Option<&mut T> {
        (self as &mut dyn Any).downcast_mut::<T>()
    }
}

/// A type that model signals can be sent for.
///
/// Implementations keep one `static` [`SenderKey`] per type and return it from
/// [`sender_key`](Sender::sender_key); `#[derive(Model)]` writes this, and so does
/// [`sender!`](crate::sender!) for types used with this crate alone.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a model: derive `Model` for it, or implement `AnyModel` and use `sender!`"
)]
pub trait Sender: AnyModel + Sized {
    /// The model's name (`"Book"`).
    const NAME: &'static str;
    /// The names of its fields as conditions name them (`when_changed`), and as
    /// [`PostSave::changed_fields`](crate::PostSave::changed_fields) lists them: the column names,
    /// in declaration order. `#[derive(Model)]` writes them; [`sender!`](crate::sender!) leaves
    /// them empty.
    const FIELD_NAMES: &'static [&'static str] = &[];
    /// This type's key: receivers are indexed by it, so a send finds its receivers without hashing.
    fn sender_key() -> &'static SenderKey;
}

/// The most sender types one process can have: registries index senders in a fixed two-level table.
pub const MAX_SENDERS: usize = 64 * 64;

const UNSET: u32 = u32::MAX;
static NEXT_INDEX: AtomicU32 = AtomicU32::new(0);

/// A sender type's dense index, assigned once on first use, process-wide.
///
/// It is an identity only (like a `TypeId` that fits an array index); it holds no receivers, so
/// registries built by different tests share nothing through it.
#[derive(Debug)]
pub struct SenderKey {
    index: AtomicU32,
}

impl SenderKey {
    /// A key with no index yet; put it in a `static`.
    pub const fn new() -> Self {
        Self {
            index: AtomicU32::new(UNSET),
        }
    }

    /// This sender's index: one relaxed load once assigned.
    #[inline]
    pub fn index(&self) -> usize {
        let index = self.index.load(Ordering::Relaxed);
        if index != UNSET {
            index as usize
        } else {
            self.assign()
        }
    }

    #[cold]
    #[inline(never)]
    fn assign(&self) -> usize {
        let fresh = NEXT_INDEX.fetch_add(1, Ordering::Relaxed);
        assert!(
            (fresh as usize) < MAX_SENDERS,
            "herald: more than {MAX_SENDERS} sender types in one process"
        );
        match self
            .index
            .compare_exchange(UNSET, fresh, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => fresh as usize,
            Err(existing) => existing as usize,
        }
    }
}

impl Default for SenderKey {
    fn default() -> Self {
        Self::new()
    }
}

/// Implements [`Sender`] for a type that already implements [`AnyModel`]:
/// `herald_dispatch::sender!(Book);` or `sender!(Book, "Book")`.
#[macro_export]
macro_rules! sender {
    ($ty:ty) => {
        $crate::sender!($ty, stringify!($ty));
    };
    ($ty:ty, $name:expr) => {
        impl $crate::Sender for $ty {
            const NAME: &'static str = $name;
            fn sender_key() -> &'static $crate::SenderKey {
                static KEY: $crate::SenderKey = $crate::SenderKey::new();
                &KEY
            }
        }
    };
}
