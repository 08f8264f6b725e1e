//! [`Tx`]: a transaction pinned to one connection, with nested savepoints.

use crate::ReceiverResult;
use crate::error::Result;
use crate::model::Model;
use crate::store::conn::{Conn, Saved};
use crate::store::ops::{self, Save};
use crate::store::pool::{self, Job, call};
use crate::value::Value;

/// How a `Tx` reaches its connection.
pub(crate) enum Link<'a> {
    /// The outermost transaction: dropping this sender ends the session (rolling back if open).
    Own(flume::Sender<Job>),
    /// A savepoint inside the transaction that lent it.
    Nested(&'a flume::Sender<Job>),
}

/// A transaction, or a savepoint inside one ([`Tx::begin`]).
///
/// Every call runs on the transaction's connection. [`commit`](Tx::commit) makes the work
/// permanent (for the outermost transaction: then runs the on-commit hooks, in order, before it
/// returns); [`rollback`](Tx::rollback), or dropping the `Tx` without committing, undoes it and
/// drops the hooks registered in it. A savepoint borrows its parent mutably, so the parent cannot
/// be used until the savepoint ends.
#[must_use = "a transaction that is dropped rolls back"]
pub struct Tx<'a> {
    pub(crate) link: Link<'a>,
    pub(crate) finished: bool,
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = match self.link {
            Link::Own(_) => "transaction",
            Link::Nested(_) => "savepoint",
        };
        f.debug_struct("Tx")
            .field("level", &level)
            .field("finished", &self.finished)
            .finish()
    }
}

impl Tx<'_> {
    fn jobs(&self) -> &flume::Sender<Job> {
        match &self.link {
            Link::Own(jobs) => jobs,
            Link::Nested(jobs) => jobs,
        }
    }

    /// Run `f` on the transaction's connection.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Conn) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        call(self.jobs(), f).await
    }

    /// Save `instance` with its signals, inside this transaction (its `on_commit` receivers wait
    /// for the outermost commit).
    pub async fn save<M: Model>(&self, instance: &mut M) -> Result<Saved> {
        ops::save(self.jobs(), instance, Save::default()).await
    }

    /// Save only `fields`, inside this transaction.
    pub async fn save_fields<M: Model>(&self, instance: &mut M, fields: &[&str]) -> Result<Saved> {
        ops::save(self.jobs(), instance, Save::fields(fields)).await
    }

    /// Delete `instance`'s row with its signals, inside this transaction.
    pub async fn delete<M: Model>(&self, instance: &M) -> Result<bool> {
        ops::with(self.jobs(), instance, |conn, m| conn.delete(m)).await
    }

    /// The row with this key, as this transaction sees it.
    pub async fn get<M: Model>(&self, key: impl Into<Value>) -> Result<Option<M>> {
        let key = key.into();
        self.run(move |conn| conn.get::<M>(key)).await
    }

    /// Insert every instance, signals for each, inside this transaction.
    pub async fn bulk_create<M: Model>(&self, instances: &mut [M]) -> Result<()> {
        ops::bulk(self.jobs(), instances, |conn, all| conn.bulk_create(all)).await
    }

    /// Run one statement with bound parameters, inside this transaction.
    pub async fn execute(&self, sql: impl Into<String>, params: Vec<Value>) -> Result<u64> {
        let sql = sql.into();
        self.run(move |conn| conn.execute(&sql, &params)).await
    }

    /// Add a task in this transaction: written just before the outermost commit, with the
    /// transaction's other tasks; a rollback leaves none.
    pub async fn enqueue(&self, task: crate::tasks::Task) -> Result<()> {
        self.run(move |conn| conn.enqueue(task)).await
    }

    /// Run `hook` after the outermost transaction commits; dropped if this transaction or
    /// savepoint rolls back. A failure is logged and counted; it never unwinds the commit.
    pub async fn on_commit(
        &self,
        name: &'static str,
        hook: impl FnOnce(&Conn) -> ReceiverResult + Send + 'static,
    ) -> Result<()> {
        self.run(move |conn| {
            conn.on_commit(name, hook);
            Ok(())
        })
        .await
    }

    /// Run `hook` if this transaction or savepoint rolls back.
    pub async fn on_rollback(
        &self,
        name: &'static str,
        hook: impl FnOnce(&Conn) -> ReceiverResult + Send + 'static,
    ) -> Result<()> {
        self.run(move |conn| {
            conn.on_rollback(name, hook);
            Ok(())
        })
        .await
    }

    /// Open a savepoint inside this transaction.
    pub async fn begin(&mut self) -> Result<Tx<'_>> {
        self.run(|conn| conn.begin()).await?;
        Ok(Tx {
            link: Link::Nested(self.jobs()),
            finished: false,
        })
    }

    /// Commit: the outermost transaction commits and then runs its on-commit hooks, in order; a
    /// savepoint is released into its parent.
    pub async fn commit(mut self) -> Result<()> {
        self.finished = true;
        self.run(|conn| conn.commit()).await
    }

    /// Roll back: the work and the commit hooks registered in it are dropped; its rollback hooks run.
    pub async fn rollback(mut self) -> Result<()> {
        self.finished = true;
        self.run(|conn| {
            conn.rollback();
            Ok(())
        })
        .await
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if let (false, Link::Nested(jobs)) = (self.finished, &self.link) {
            pool::send_detached(jobs, |conn| conn.rollback());
        }
        // The outermost transaction's session rolls back by itself when its channel closes.
    }
}
