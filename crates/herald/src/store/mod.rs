//! The store: connections, the signal lifecycle of every write, and the async API over them.

pub(crate) mod backend;
pub(crate) mod postgres;
