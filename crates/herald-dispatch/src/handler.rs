//! What an async receiver is: a function that takes its event by reference and returns a `Send`
//! future, so that a write's future stays `Send` (usable in `tokio::spawn` and axum handlers)
//! while it awaits its receivers.
//!
//! Both traits are implemented for every `async fn` taking the event (`async fn f(e: &mut
//! PreSave<'_, Book>) -> Result`), and for every async closure that captures nothing. A closure
//! that captures state returns a boxed future instead and is connected with `connect_boxed`:
//!
//! ```
//! # use herald_dispatch::{AnyModel, PostSave, Signals};
//! # #[derive(Debug)] struct Book { id: Option<i64> }
//! # impl AnyModel for Book {
//! #     fn model_name(&self) -> &'static str { "Book" }
//! #     fn pk_string(&self) -> Option<String> { self.id.map(|id| id.to_string()) }
//! #     fn to_json(&self) -> serde_json::Value { serde_json::json!({ "id": self.id }) }
//! # }
//! # herald_dispatch::sender!(Book);
//! let signals = Signals::new();
//! let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
//! let counter = seen.clone();
//! let _c = signals.post_save::<Book>().connect_boxed(move |e| {
//!     let counter = counter.clone();
//!     Box::pin(async move {
//!         counter.fetch_add(usize::from(e.created), std::sync::atomic::Ordering::Relaxed);
//!         Ok(())
//!     })
//! });
//! ```
//!
//! A receiver whose future is not `Send` (it holds an `Rc` or a `RefCell` borrow across an
//! `.await`) is a compile error at the connect: "future cannot be sent between threads safely",
//! naming the value.

use std::future::Future;

use crate::error::Result;
use crate::slot::ReceiverFuture;

/// An async receiver that takes its event by `&mut` (`pre_save`). See the module documentation.
pub trait AsyncReceiverMut<'a, E: 'a>: Send + Sync + 'static {
    /// Start the receiver on `event`.
    fn call(&self, event: &'a mut E) -> ReceiverFuture<'a>;
}

impl<'a, E: 'a, F, Fut> AsyncReceiverMut<'a, E> for F
where
    F: Fn(&'a mut E) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result> + Send + 'a,
{
    fn call(&self, event: &'a mut E) -> ReceiverFuture<'a> {
        Box::pin(self(event))
    }
}

/// An async receiver that takes its event by `&` (every signal but `pre_save`, and custom
/// signals). See the module documentation.
pub trait AsyncReceiverRef<'a, E: ?Sized + 'a>: Send + Sync + 'static {
    /// Start the receiver on `event`.
    fn call(&self, event: &'a E) -> ReceiverFuture<'a>;
}

impl<'a, E: ?Sized + 'a, F, Fut> AsyncReceiverRef<'a, E> for F
where
    F: Fn(&'a E) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result> + Send + 'a,
{
    fn call(&self, event: &'a E) -> ReceiverFuture<'a> {
        Box::pin(self(event))
    }
}
