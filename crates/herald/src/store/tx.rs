//! [`Tx`]: a transaction pinned to one connection, with nested savepoints.

use std::sync::Arc;

use crate::ReceiverResult;
use crate::error::Result;
use crate::store::conn::Shared;
use crate::store::db::Quiet;
use crate::store::hooks;
use crate::store::lifecycle::Route;
use crate::store::ops::{Sealed, Store};
use crate::store::pool::{self, JobContext, Jobs};

/// How a `Tx` reaches its connection.
pub(crate) enum Link<'a> {
    /// The outermost transaction: dropping this sender ends the session (rolling back if open).
    Own(Jobs),
    /// A savepoint inside the transaction that lent it.
    Nested(&'a Jobs),
}

/// A transaction, or a savepoint inside one ([`Tx::begin`]). Its model operations are the
/// [`Store`] ones, run inside it.
///
/// Every call runs on the transaction's connection, which it holds until it ends (SQLite: the one
/// writer, so every other write of the database waits meanwhile). Caller-side receivers of its
/// writes run on the calling task as they happen; `on_commit` receivers and hooks wait for the
/// outermost commit. [`commit`](Tx::commit) makes the work permanent (the outermost transaction
/// then runs its `on_commit` receivers and hooks, in order, on the calling task, before it
/// returns); [`rollback`](Tx::rollback), or dropping the `Tx` without committing, undoes it, drops
/// the hooks registered in it and runs its rollback hooks. A savepoint borrows its parent
/// mutably, so the parent cannot be used until the savepoint ends.
///
/// A write that fails inside a `Tx` (a statement, or one of its `in_transaction` receivers) fails
/// the transaction: it has no savepoint of its own, so the transaction can only roll back, and
/// [`commit`](Tx::commit) says so ([`Error::TransactionFailed`](crate::Error::TransactionFailed),
/// naming the failure). To go on after a write that may fail, make it in a savepoint
/// ([`begin`](Tx::begin)) and roll that back.
#[must_use = "a transaction that is dropped rolls back"]
pub struct Tx<'a> {
    pub(crate) link: Link<'a>,
    pub(crate) shared: Arc<Shared>,
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

impl Store for Tx<'_> {}

impl Sealed for Tx<'_> {
    fn route(&self) -> Route<'_> {
        let jobs = self.jobs();
        Route {
            writes: jobs,
            reads: jobs,
            shared: &self.shared,
            in_tx: true,
            quiet: false,
        }
    }
}

impl Tx<'static> {
    /// Open a transaction on the route's connection for writes; `pipelined`: see
    /// `Db::begin_pipelined`.
    pub(crate) async fn begin_on(route: Route<'_>, pipelined: bool) -> Result<Tx<'static>> {
        let jobs = pool::pin(route.writes, pipelined).await?;
        Ok(Tx {
            link: Link::Own(jobs),
            shared: route.shared.clone(),
            finished: false,
        })
    }
}

impl Tx<'_> {
    fn jobs(&self) -> &Jobs {
        match &self.link {
            Link::Own(jobs) => jobs,
            Link::Nested(jobs) => jobs,
        }
    }

    /// The same operations without any signal, inside this transaction.
    pub fn without_signals(&self) -> Quiet<'_> {
        Quiet::new(Route {
            quiet: true,
            ..self.route()
        })
    }

    /// Add a task in this transaction: written just before the outermost commit, with the
    /// transaction's other tasks; a rollback leaves none.
    pub async fn enqueue(&self, task: crate::store::outbox::Task) -> Result<()> {
        self.run(move |conn| conn.enqueue(task)).await
    }

    /// Run `hook` on this task after the outermost transaction commits; dropped if this
    /// transaction or savepoint rolls back. A failure is logged and counted; it never unwinds the
    /// commit.
    pub async fn on_commit(
        &self,
        name: &'static str,
        hook: impl FnOnce() -> ReceiverResult + Send + 'static,
    ) -> Result<()> {
        self.run(move |conn| {
            conn.on_commit(name, hook);
            Ok(())
        })
        .await
    }

    /// [`on_commit`](Self::on_commit) for async work: `hook` starts a future awaited here after the
    /// outermost commit (for example a write through a `Db` the hook captured).
    pub async fn on_commit_async<F>(
        &self,
        name: &'static str,
        hook: impl FnOnce() -> F + Send + 'static,
    ) -> Result<()>
    where
        F: std::future::Future<Output = ReceiverResult> + Send + 'static,
    {
        self.run(move |conn| {
            conn.on_commit_async(name, hook);
            Ok(())
        })
        .await
    }

    /// Run `hook` if this transaction or savepoint rolls back (on this task when the rollback is
    /// awaited; on the connection when the `Tx` is dropped).
    pub async fn on_rollback(
        &self,
        name: &'static str,
        hook: impl FnOnce() -> ReceiverResult + Send + 'static,
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
            shared: self.shared.clone(),
            finished: false,
        })
    }

    /// Commit: the outermost transaction commits, releases its connection, then runs its
    /// `on_commit` receivers and hooks, in order, here (so they may write through the `Db`); a
    /// savepoint is released into its parent.
    pub async fn commit(mut self) -> Result<()> {
        self.finished = true;
        let answer = pool::call(self.jobs(), JobContext::capture(0, true), |conn| {
            conn.commit()
        })
        .await;
        self.release();
        hooks::run(answer.hooks).await;
        answer.result
    }

    /// Roll back: the work and the commit hooks registered in it are dropped; the connection is
    /// released, and its rollback hooks run here.
    pub async fn rollback(mut self) -> Result<()> {
        self.finished = true;
        let answer = pool::call(self.jobs(), JobContext::capture(0, true), |conn| {
            conn.rollback();
            Ok(())
        })
        .await;
        self.release();
        hooks::run(answer.hooks).await;
        answer.result
    }

    /// End the outermost transaction's hold on its connection (its session ends once its jobs are
    /// done). A savepoint holds nothing of its own.
    fn release(&mut self) {
        if let Link::Own(jobs) = &mut self.link {
            *jobs = Jobs::from(flume::unbounded().0);
        }
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
