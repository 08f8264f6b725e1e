//! [`Store`]: the operations a [`Db`](crate::Db), a [`Tx`](crate::Tx) and their
//! `without_signals()` form ([`Quiet`](crate::Quiet)) share, written once over a route to their
//! connections (as sqlx's `Executor` serves a pool, a connection and a transaction alike).

use std::future::Future;

use crate::error::Result;
use crate::model::Model;
use crate::query::{Assign, Query};
use crate::store::conn::{Conn, Saved};
use crate::store::lifecycle::{self, Bulk, How};
use crate::value::Value;

mod sealed {
    use crate::store::lifecycle::Route;

    /// Implemented by the store's own types only: where their operations' jobs go.
    pub trait Sealed {
        fn route(&self) -> Route<'_>;
    }
}
pub(crate) use sealed::Sealed;

/// The model operations of a [`Db`](crate::Db) (autocommit), a [`Tx`](crate::Tx) (inside its
/// transaction) and a [`Quiet`](crate::Quiet) (the same without any receiver). Every write runs the
/// lifecycle of `herald::store`'s documentation: caller-side receivers on the calling task, one job
/// on the connection for the statements and the `in_transaction` receivers, `on_commit` receivers
/// after the outermost commit.
///
/// In [`prelude`](crate::prelude); write code that works in and out of a transaction against
/// `&impl Store`. Every future is `Send`.
pub trait Store: Sealed + Sync {
    /// Save `instance` with its signals: insert it when it has no key or its key matched no row
    /// (`created`), update it otherwise. The instance gets its key and what `pre_save` receivers
    /// changed. A caller-side `pre_save` error vetoes the write (nothing is sent); a caller-side
    /// `post_save` error after the write is [`Error::AfterWrite`](crate::Error::AfterWrite): the write stands.
    fn save<M: Model>(&self, instance: &mut M) -> impl Future<Output = Result<Saved>> + Send {
        lifecycle::save(self.route(), instance, How::default())
    }

    /// Save only `fields` (Django's `update_fields`): an empty list writes and sends nothing; an
    /// unknown name is [`Error::UnknownField`](crate::Error::UnknownField) before any receiver runs; a row that no longer
    /// exists is [`Error::NotFound`](crate::Error::NotFound). Receivers see exactly these fields in `update_fields`.
    fn save_fields<M: Model>(
        &self,
        instance: &mut M,
        fields: &[&str],
    ) -> impl Future<Output = Result<Saved>> + Send {
        lifecycle::save(self.route(), instance, How::fields(fields))
    }

    /// Delete `instance`'s row with its signals; true if a row was deleted. `post_delete` is sent
    /// only when one was; the instance keeps its key. An instance with no key is
    /// [`Error::NotFound`](crate::Error::NotFound).
    fn delete<M: Model>(&self, instance: &M) -> impl Future<Output = Result<bool>> + Send {
        lifecycle::delete(self.route(), instance)
    }

    /// Insert every instance in one transaction, with as few statements as the database allows:
    /// each one's caller-side `pre_save`, one job, each one's caller-side `post_save` (`created`
    /// true). Keys are assigned in order.
    fn bulk_create<M: Model>(
        &self,
        instances: &mut [M],
    ) -> impl Future<Output = Result<()>> + Send {
        lifecycle::bulk_save(self.route(), instances, Bulk::Create)
    }

    /// Update `fields` of every instance in one transaction, signals for each (`created` false,
    /// `update_fields` = `fields`). On PostgreSQL one statement per batch of up to 1000 rows
    /// (`UPDATE .. FROM (VALUES ..)`); on SQLite one UPDATE per row through one prepared
    /// statement. Every row must exist: an instance without a key, or whose row is gone, is
    /// [`Error::NotFound`](crate::Error::NotFound) naming it, and nothing of the call is written.
    /// An instance given twice is written with its last values.
    fn bulk_update<M: Model>(
        &self,
        instances: &mut [M],
        fields: &[&str],
    ) -> impl Future<Output = Result<()>> + Send {
        let fields = Bulk::Update(fields.iter().map(|f| (*f).to_owned()).collect());
        lifecycle::bulk_save(self.route(), instances, fields)
    }

    /// Delete every instance in one transaction, signals for each; returns how many rows went.
    fn delete_many<M: Model>(&self, instances: &[M]) -> impl Future<Output = Result<u64>> + Send {
        lifecycle::delete_many(self.route(), instances)
    }

    /// The row with this key, or `None` (inside a transaction: as the transaction sees it).
    fn get<M: Model>(
        &self,
        key: impl Into<Value>,
    ) -> impl Future<Output = Result<Option<M>>> + Send {
        let key = key.into();
        lifecycle::read_by_key(self.route(), move |conn| conn.get::<M>(key))
    }

    /// Every row of `M`, in key order.
    fn all<M: Model>(&self) -> impl Future<Output = Result<Vec<M>>> + Send {
        lifecycle::read(self.route(), |conn| conn.all::<M>())
    }

    /// Set `set` on every row `query` matches; returns how many rows changed.
    /// `db.update_where(Book::query().filter(Book::PRICE_CENTS.lt(100)), &[Book::PRICE_CENTS.set(100)])`.
    ///
    /// When a `pre_save` or `post_save` receiver of `M` is connected in any phase (and the store
    /// is not [`Quiet`](crate::Quiet)), the matching rows are read, the assignments applied to
    /// each instance, and the rows saved as [`bulk_update`](Self::bulk_update) saves them (by
    /// key, in one transaction), with `update_fields` the assigned columns: every row's signals
    /// fire where they would for `bulk_update`, and `pre_save` receivers may change the assigned
    /// fields. Inside a `Tx` the read is part of it (locked with `FOR UPDATE` on PostgreSQL). On a
    /// `Db` no transaction is open while the caller-side receivers run, so they may write through
    /// the `Db`; a row deleted between the read and the write is
    /// [`Error::NotFound`](crate::Error::NotFound) naming it, and nothing is written. A
    /// caller-side `post_save` failure is [`Error::AfterWrite`](crate::Error::AfterWrite) (on a
    /// `Db`, the writes are committed).
    ///
    /// Otherwise, and always through [`without_signals()`](crate::Db::without_signals), it is one
    /// `UPDATE .. SET .. WHERE ..` statement (with a limit or offset:
    /// `WHERE key IN (SELECT key .. LIMIT ..)`). Setting the key is
    /// [`Error::InvalidQuery`](crate::Error::InvalidQuery); an empty `set` changes nothing.
    fn update_where<M: Model>(
        &self,
        query: Query<M>,
        set: &[Assign<M>],
    ) -> impl Future<Output = Result<u64>> + Send {
        crate::query::write::update_where(self.route(), query, set.to_vec())
    }

    /// Delete every row `query` matches; returns how many went. With a `pre_delete` or
    /// `post_delete` receiver of `M` connected in any phase (and a store that is not quiet), the
    /// rows are read and deleted as [`delete_many`](Self::delete_many) deletes them, signals for
    /// each, as for [`update_where`](Self::update_where); otherwise one
    /// `DELETE .. WHERE ..` statement.
    fn delete_where<M: Model>(&self, query: Query<M>) -> impl Future<Output = Result<u64>> + Send {
        crate::query::write::delete_where(self.route(), query)
    }

    /// Run one statement with bound parameters; returns how many rows it changed.
    fn execute(
        &self,
        sql: impl Into<String>,
        params: Vec<Value>,
    ) -> impl Future<Output = Result<u64>> + Send {
        let sql = sql.into();
        lifecycle::run(self.route(), move |conn| conn.execute(&sql, &params))
    }

    /// Run `f` on the connection that writes (for a transaction, its own), for work the typed
    /// methods do not cover. Writes `f` makes through the [`Conn`] run every receiver phase on the
    /// connection (there is no other caller), except `on_commit` receivers, which run here after
    /// the commit. Use [`Conn::atomic`] for a transaction outside a `Tx`.
    fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Conn) -> Result<R> + Send + 'static,
    ) -> impl Future<Output = Result<R>> + Send {
        lifecycle::run(self.route(), f)
    }

    /// Create `M`'s table if it does not exist (for quick starts and tests; applications keep
    /// their own migrations).
    fn create_table<M: Model>(&self) -> impl Future<Output = Result<()>> + Send {
        lifecycle::run(self.route(), |conn| conn.create_table::<M>())
    }

    /// Load fixture rows (Django's JSON format: `[{"model": "Book", "pk": 1, "fields": {..}}]`)
    /// for `M`, each saved with `raw = true`, all in one transaction (a `Db` opens one; a `Tx`
    /// uses its own). Rows for other models are an error naming the row. Returns how many rows
    /// were saved.
    fn load_fixture<M: Model>(&self, json: &str) -> impl Future<Output = Result<usize>> + Send {
        let parsed = crate::store::fixture::parse::<M>(json);
        let route = self.route();
        async move {
            let mut instances = parsed?;
            let count = instances.len();
            if route.in_tx {
                for instance in &mut instances {
                    lifecycle::save(route, instance, How::raw()).await?;
                }
                return Ok(count);
            }
            let tx = crate::store::tx::Tx::begin_on(route, false).await?;
            for instance in &mut instances {
                lifecycle::save(tx.route(), instance, How::raw()).await?;
            }
            tx.commit().await?;
            Ok(count)
        }
    }
}
