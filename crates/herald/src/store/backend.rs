//! The one small trait each database driver sits behind, so the signal lifecycle is written once.
//!
//! A backend is one connection, owned by one connection thread (see `pool.rs`); every call is
//! synchronous and made on that thread. Transactions are plain statements (`BEGIN`, `SAVEPOINT`,
//! ...) sent through [`Backend::control`]; the lifecycle in `conn.rs` keeps their depth. A backend
//! may hold a `BEGIN` back until the transaction's first statement, and send both at once.

use crate::error::DbError;
use crate::model::Dialect;
use crate::value::{SqlType, Value};

/// The INSERT of a row whose key the database assigns, two ways (see [`Backend::insert_auto`]).
/// Only SQLite reads the plain one and what it needs to choose.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
pub(crate) struct InsertAuto<'a> {
    /// The table, and its key column, unquoted.
    pub(crate) table: &'a str,
    pub(crate) key: &'a str,
    /// The INSERT ending in `RETURNING` the key.
    pub(crate) returning: &'a str,
    /// The same INSERT without it.
    pub(crate) plain: &'a str,
}

/// One database connection.
pub(crate) trait Backend: Send + 'static {
    /// Which SQL the connection speaks.
    fn dialect(&self) -> Dialect;

    /// Run one statement with bound parameters; returns how many rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError>;

    /// Run one query with bound parameters and decode every row, column `i` as `types[i]`.
    /// A column that is NULL decodes as `Value::Null` whatever its type.
    fn query(
        &mut self,
        sql: &str,
        params: &[Value],
        types: &[SqlType],
    ) -> Result<Vec<Vec<Value>>, DbError>;

    /// Run one query with bound parameters and decode its first row only, if any, as
    /// [`Backend::query`] does (a read by key: at most one row). Backends that can stop reading
    /// after the first row do (SQLite).
    fn query_first(
        &mut self,
        sql: &str,
        params: &[Value],
        types: &[SqlType],
    ) -> Result<Option<Vec<Value>>, DbError> {
        Ok(self.query(sql, params, types)?.into_iter().next())
    }

    /// Run one INSERT of a row whose key the database assigns, and return that key: `insert`'s
    /// statement with `RETURNING`, or, on a backend that knows the key without it (SQLite, when
    /// the key column is the table's rowid), the plain statement, skipping `RETURNING`'s cost.
    fn insert_auto(&mut self, insert: &InsertAuto<'_>, params: &[Value]) -> Result<Value, DbError> {
        self.insert_returning(insert, params)
    }

    /// `insert`'s statement with `RETURNING`, run to its end (on SQLite a committing statement
    /// reset early would skip the automatic checkpoint), and the key it returned.
    fn insert_returning(
        &mut self,
        insert: &InsertAuto<'_>,
        params: &[Value],
    ) -> Result<Value, DbError> {
        self.query(insert.returning, params, &[SqlType::Int])?
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next())
            .ok_or_else(|| DbError::new(crate::DbErrorKind::Other, "INSERT returned no key"))
    }

    /// Run one statement whose row count nobody reads, inside a transaction (a transaction's task
    /// rows just before its `COMMIT`; a pipelined transaction's INSERTs). A backend may hold it
    /// back and send it with its next call, in one round trip (PostgreSQL); its failure is then
    /// that call's failure, and the transaction cannot commit; a `ROLLBACK` drops it unsent. The
    /// default runs it at once.
    fn execute_held(&mut self, sql: &str, params: Vec<Value>) -> Result<(), DbError> {
        self.execute(sql, &params).map(drop)
    }

    /// A key for a new row of `table` whose key column `key` the database fills from a sequence,
    /// taken from a block of keys this connection reserved, so that the INSERT can name its key
    /// and need not be awaited for it (see [`Backend::execute_held`]). `None` when the backend
    /// does not reserve keys (SQLite, where nothing is gained), or the column has no sequence it
    /// may draw from (no default from one, or `GENERATED ALWAYS`).
    fn reserve_key(&mut self, table: &str, key: &str) -> Result<Option<Value>, DbError> {
        let _ = (table, key);
        Ok(None)
    }

    /// Run statements without parameters (DDL, raw SQL); several may be separated by `;`. The store
    /// sends transaction control through [`Backend::control`] only.
    fn batch(&mut self, sql: &str) -> Result<(), DbError>;

    /// Run one transaction-control statement (`BEGIN`, `COMMIT`, `SAVEPOINT x`, ...). Backends that
    /// can prepare it once and reuse it do (SQLite); the default sends it as a batch.
    fn control(&mut self, sql: &str) -> Result<(), DbError> {
        self.batch(sql)
    }

    /// The statement that opens a write transaction (SQLite: `BEGIN IMMEDIATE`, so that a writer
    /// takes the lock up front instead of failing to upgrade later).
    fn begin_sql(&self) -> &'static str {
        "BEGIN"
    }

    /// Whether the connection is still usable; `false` after the server closed it.
    fn is_alive(&mut self) -> bool;
}
