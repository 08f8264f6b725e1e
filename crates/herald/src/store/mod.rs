//! The store: connections, the signal lifecycle of every write, and the async API over them.

pub(crate) mod backend;
pub(crate) mod conn;
pub(crate) mod db;
pub(crate) mod event;
pub(crate) mod listen;
pub(crate) mod migrate;
pub(crate) mod ops;
pub(crate) mod pool;
pub(crate) mod postgres;
pub(crate) mod sqlite;
pub(crate) mod tx;
