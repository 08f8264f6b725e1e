//! The store: connections, the signal lifecycle of every write, and the async API over them.
//!
//! `lifecycle.rs` says what runs where for every write; read it first.

pub(crate) mod backend;
pub(crate) mod conn;
pub(crate) mod db;
pub(crate) mod event;
pub(crate) mod fixture;
pub(crate) mod hooks;
pub(crate) mod lifecycle;
pub(crate) mod migrate;
pub(crate) mod on_conn;
pub(crate) mod ops;
pub(crate) mod outbox;
pub(crate) mod pg_config;
#[cfg(feature = "postgres-tls")]
pub(crate) mod pg_tls;
pub(crate) mod pg_values;
pub(crate) mod pool;
pub(crate) mod postgres;
pub(crate) mod rows;
pub(crate) mod sqlite;
pub(crate) mod tx;
