//! Typed model signals: Django's `pre_save` / `post_save` receivers, with a dispatcher that costs one
//! relaxed atomic load when nobody listens.
//!
//! This crate owns the signals, the receiver registry, dispatch, muting and per-receiver statistics.
//! It does no IO and knows nothing of databases: a store (the `herald` crate) builds the events and
//! sends them at the right moments of a write.
//!
//! ```
//! use herald_dispatch::{AnyModel, PostSave, PreSave, Signals};
//!
//! #[derive(Debug)]
//! struct Book { id: Option<i64>, title: String, slug: String }
//! impl AnyModel for Book {
//!     fn model_name(&self) -> &'static str { "Book" }
//!     fn pk_string(&self) -> Option<String> { self.id.map(|id| id.to_string()) }
//!     fn to_json(&self) -> serde_json::Value { serde_json::json!({ "id": self.id, "title": self.title }) }
//! }
//! herald_dispatch::sender!(Book);
//!
//! let signals = Signals::new();
//! let _slug = signals.pre_save::<Book>().connect(|e: &mut PreSave<'_, Book>| {
//!     if e.instance.slug.is_empty() {
//!         e.instance.slug = e.instance.title.to_lowercase().replace(' ', "-");
//!     }
//!     Ok(())
//! });
//! let _log = signals.post_save::<Book>().connect(|e: &PostSave<'_, Book>| {
//!     assert!(e.created);
//!     Ok(())
//! });
//!
//! let mut book = Book { id: None, title: "Alice in Wonderland".into(), slug: String::new() };
//! signals.pre_save::<Book>().send(&mut PreSave::new(&mut book))?;
//! book.id = Some(1); // the write
//! signals.post_save::<Book>().send(&mut PostSave::new(&book, true))?;
//! assert_eq!(book.slug, "alice-in-wonderland");
//! # Ok::<(), herald_dispatch::DispatchError>(())
//! ```
//!
//! See [`Signals`] for the ordering, failure and threading contracts, [`mute`] for muting, and
//! [`Signal`] for signals of your own.

#![warn(missing_docs)]

mod connect;
mod cow;
mod error;
mod handler;
mod info;
mod model;
pub mod mute;
pub mod observe;
mod receiver;
mod registry;
mod sender;
mod signal;
mod signals;
mod slot;
mod stats;
mod tagged;
mod walk;

pub use connect::{ConnectError, Connection, ReceiverBuilder};
pub use error::{Cause, DispatchError, Error, Result};
pub use handler::{AsyncReceiverMut, AsyncReceiverRef};
pub use info::{Condition, Phase, ReceiverId, ReceiverInfo, SourceLocation, WriteKind};
pub use model::{
    AsyncReceiver, DEFAULT_ALIAS, Lent, Listen, ModelKind, ModelSignal, OnPostDelete, OnPostSave,
    OnPreDelete, OnPreSave, PostDelete, PostSave, PreDelete, PreSave, SyncReceiver,
};
pub use mute::{Mute, mute_thread, muted, muted_by};
pub use receiver::{BlockingRunner, DEFAULT_SLOW_THRESHOLD, Receiver, Timing};
pub use sender::{AnyModel, MAX_SENDERS, Sender, SenderKey};
pub use signal::Signal;
pub use signals::{Signals, SignalsBuilder, StaticReceiver};
pub use slot::ReceiverFuture;
pub use stats::{Latency, StatsSnapshot};

/// `PostSave` for every sender, as `post_save_any()` receivers get it.
pub type PostSaveAny<'e> = PostSave<'e, dyn AnyModel>;
/// `PreSave` for every sender.
pub type PreSaveAny<'e> = PreSave<'e, dyn AnyModel>;
/// `PreDelete` for every sender.
pub type PreDeleteAny<'e> = PreDelete<'e, dyn AnyModel>;
/// `PostDelete` for every sender.
pub type PostDeleteAny<'e> = PostDelete<'e, dyn AnyModel>;

#[doc(hidden)]
pub mod __private {
    pub use inventory;

    /// Whether `name` is one of `fields`: the compile-time check of a `when_changed` name.
    pub const fn has_field(fields: &[&str], name: &str) -> bool {
        let mut i = 0;
        while i < fields.len() {
            if same(fields[i].as_bytes(), name.as_bytes()) {
                return true;
            }
            i += 1;
        }
        false
    }

    const fn same(a: &[u8], b: &[u8]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }
}
