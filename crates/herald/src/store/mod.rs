//! The store: connections, the signal lifecycle of every write, and the async API over them.
//!
//! `lifecycle.rs` says what runs where for every write; read it first.
//!
//! Each backend's code is behind its feature: `sqlite.rs` (`sqlite`), `postgres.rs`,
//! `pg_config.rs`, `pg_values.rs` (`postgres`) and `pg_tls.rs` (`postgres-tls`). The rest of the
//! store speaks to a backend only through `backend.rs`, and builds SQL for both dialects.

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
#[cfg(feature = "postgres")]
pub(crate) mod pg_config;
#[cfg(feature = "postgres-tls")]
pub(crate) mod pg_tls;
#[cfg(feature = "postgres")]
pub(crate) mod pg_values;
pub(crate) mod pool;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
pub(crate) mod previous;
pub(crate) mod rows;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;
pub(crate) mod tx;
