//! Herald: Django's `pre_save` / `post_save` signals, rebuilt in Rust and taken further.
//!
//! Typed receivers run around every database write of a model; a dispatcher costs one relaxed
//! atomic load when nobody listens; every receiver is timed and a slow one is named as it happens.
//!
//! **A receiver runs where its caller is, unless it says otherwise.** `pre_save` and `post_save`
//! receivers run on the task that called `db.save(..)` (async ones awaited there), so a slow one
//! delays only its own save; `in_transaction` receivers run on the connection inside the write's
//! transaction (the only ones that get `e.conn()`); `on_commit` receivers run on the caller after
//! the commit; `background` receivers run in workers from durable task rows. The store's
//! operations are the [`Store`] trait's, shared by [`Db`], [`Tx`] and [`Quiet`].
//!
//! This crate is what applications depend on. It re-exports the dispatcher
//! ([`dispatch`], from `herald-dispatch`) and the `#[receiver]` attribute.
//!
//! ```
//! use herald::prelude::*;
//!
//! #[derive(Debug)]
//! struct Book { id: Option<i64>, title: String, slug: String }
//! impl AnyModel for Book {
//!     fn model_name(&self) -> &'static str { "Book" }
//!     fn pk_string(&self) -> Option<String> { self.id.map(|id| id.to_string()) }
//!     fn to_json(&self) -> serde_json::Value { serde_json::json!({ "id": self.id }) }
//! }
//! herald::dispatch::sender!(Book);
//!
//! let signals = Signals::new();
//! let _slug = signals.pre_save::<Book>().connect(|e: &mut PreSave<'_, Book>| {
//!     if e.instance.slug.is_empty() {
//!         e.instance.slug = e.instance.title.to_lowercase().replace(' ', "-");
//!     }
//!     Ok(())
//! });
//! let mut book = Book { id: None, title: "Dune Messiah".into(), slug: String::new() };
//! signals.pre_save::<Book>().send(&mut PreSave::new(&mut book))?;
//! assert_eq!(book.slug, "dune-messiah");
//! # Ok::<(), herald::dispatch::DispatchError>(())
//! ```

#![warn(missing_docs)]
// A build without a backend compiles (a library such as `herald-axum` leaves the choice to the
// application) but opens no database: the code that only a backend reaches is unused there.
#![cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(unused))]

mod error;
mod model;
pub mod query;
#[cfg(feature = "report")]
pub mod report;
mod store;
pub mod tasks;
mod value;

pub use error::{DbError, DbErrorKind, Error, Result, Target};
pub use herald_dispatch as dispatch;
pub use herald_macros::Model;
pub use herald_macros::receiver;
pub use model::{Column, DialectSql, Model, Statements, from_json};
pub use store::conn::{Conn, DEFAULT_RECURSION_LIMIT, Saved};
pub use store::db::{Db, DbBuilder, Quiet};
pub use store::event::EventConn;
pub use store::ops::Store;
pub use store::tx::Tx;
pub use value::{Field, SqlType, Value};

/// What a receiver returns: `Ok(())`, or an error that any `std::error::Error` converts into
/// with `?`. (Receivers have one fixed error type so that closures infer `Ok(())` without
/// annotations; the dispatcher, a lower layer, cannot name the store's error type.)
pub type ReceiverResult = herald_dispatch::Result<()>;

/// `url` with any password replaced by `***` (`postgres://app:***@db/shop`, or
/// `password=***` in a key=value connection string): for messages and logs.
pub fn masked_url(url: &str) -> String {
    store::db::mask(url)
}

/// The names most programs use.
pub mod prelude {
    pub use crate::query::{Col, Expr, Query};
    pub use crate::receiver;
    pub use crate::{Db, EventConn, Model, ReceiverResult, Saved, Store, Tx};
    pub use herald_dispatch::{
        AnyModel, Connection, DispatchError, Mute, Phase, PostDelete, PostDeleteAny, PostSave,
        PostSaveAny, PreDelete, PreDeleteAny, PreSave, PreSaveAny, Sender, Signal, Signals, Timing,
        muted, muted_by,
    };
}

#[doc(hidden)]
pub mod __private {
    pub use serde_json;
}
