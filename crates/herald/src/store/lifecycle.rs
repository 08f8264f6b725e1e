//! The write lifecycle, written once: which receivers run where, and in which order.
//!
//! **A receiver runs where its caller is, unless it says otherwise.** For `db.save(&mut book)`:
//!
//! ```text
//!  the caller's task                         the connection (one job, one hop)
//!  ─────────────────                         ─────────────────────────────────
//!  1. pre_save receivers (caller phase):
//!     may change the instance; an error
//!     vetoes (nothing is sent)
//!                                   ──job──▶ 2. [BEGIN]  in_transaction pre_save receivers
//!                                            3. INSERT or UPDATE
//!                                            4. in_transaction post_save receivers (e.conn())
//!                                               and background receivers (task rows)
//!                                            5. [COMMIT]  (a write with none of 2 and 4 is one
//!                                               autocommit statement, which group commit batches)
//!  6. post_save receivers (caller phase)  ◀──answer──
//!     an error says the write is kept
//!  7. on_commit receivers and hooks, after
//!     the outermost COMMIT, in order
//! ```
//!
//! Inside a `Tx` the same, except that there is no COMMIT in the job, and step 7 waits for
//! `tx.commit()`. Deletes follow the same steps with `pre_delete` / `post_delete`; bulk writes run
//! every instance's step 1 on the caller, one job for 2 to 5, then every instance's steps 6.
//!
//! The connection's side (steps 2 to 5, and writes made on the connection) is in `on_conn.rs`.
//!
//! A write made on the connection itself (`e.conn()?.save(..)` from an `in_transaction` receiver,
//! or in `db.run(..)`) has no other caller: its caller-phase receivers run right there, inline,
//! inside the transaction it joins; its `on_commit` receivers travel back with the answer and run
//! on the original caller after the COMMIT.
//!
//! Muting, observers (Server-Timing), statistics and the recursion limit follow the receivers
//! wherever they run: the job carries the caller's mutes, observer and nesting depth to the
//! connection, and the caller's async runtime, so that `in_transaction` async receivers can use
//! its timers and IO.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use herald_dispatch::{
    DispatchError, ModelKind, ModelSignal, PostDelete, PostSave, PreDelete, PreSave, Signals,
};

use crate::error::{Error, Result};
use crate::model::Model;
use crate::store::conn::{Conn, Saved, Shared};
use crate::store::hooks::{self, Hook};
use crate::store::pool::{self, JobContext, Jobs};
use crate::store::previous;
use crate::store::rows::{check_fields, target};

/// How a write runs; owned, so that it can cross to the connection.
#[derive(Clone, Debug, Default)]
pub(crate) struct How {
    /// Django's `update_fields`.
    pub(crate) fields: Option<Vec<String>>,
    /// Fixture loading.
    pub(crate) raw: bool,
}

impl How {
    pub(crate) fn fields(fields: &[&str]) -> Self {
        Self {
            fields: Some(fields.iter().map(|s| (*s).to_owned()).collect()),
            raw: false,
        }
    }

    pub(crate) fn raw() -> Self {
        Self {
            fields: None,
            raw: true,
        }
    }

    pub(crate) fn names(&self) -> Option<Vec<&str>> {
        self.fields
            .as_ref()
            .map(|f| f.iter().map(String::as_str).collect())
    }
}

/// Where an operation's jobs go, and what its caller brings: the same operations serve a `Db`, a
/// `Tx` and their `without_signals()` forms through this. (`pub` only because the sealed trait
/// behind [`Store`](crate::Store) returns it; nothing outside the crate can name it.)
#[derive(Clone, Copy)]
#[allow(unreachable_pub)]
pub struct Route<'a> {
    /// Writes: the writer (SQLite) or the pool (PostgreSQL); a transaction's own connection.
    pub(crate) writes: &'a Jobs,
    /// Reads: a reader, or the transaction's own connection.
    pub(crate) reads: &'a Jobs,
    pub(crate) shared: &'a Arc<Shared>,
    /// The jobs run in an open transaction (a `Tx`): writes are ordinary jobs, and commit hooks
    /// wait for the transaction's commit.
    pub(crate) in_tx: bool,
    /// Skip every receiver (`without_signals()`).
    pub(crate) quiet: bool,
}

impl std::fmt::Debug for Route<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("in_tx", &self.in_tx)
            .field("quiet", &self.quiet)
            .finish_non_exhaustive()
    }
}

impl Route<'_> {
    fn signals(&self) -> &Signals {
        &self.shared.signals
    }

    /// Send a write job: one that may share a group commit outside a transaction, an ordinary job
    /// inside one.
    async fn write<R: Send + 'static>(
        &self,
        context: JobContext,
        f: impl FnOnce(&Conn) -> Result<R> + Send + 'static,
    ) -> (Result<R>, Vec<Hook>) {
        let answer = if self.in_tx {
            pool::call(self.writes, context, f).await
        } else {
            pool::write(self.writes, context, f).await
        };
        (answer.result, answer.hooks)
    }

    /// [`write`](Self::write) for a job that changes `value` (a save's instance), without a copy
    /// of it when the job runs on the caller's thread (see `pool::write_in_place`).
    async fn write_in_place<T: Clone + Send + 'static, R: Send + 'static>(
        &self,
        context: JobContext,
        value: &mut T,
        f: impl FnOnce(&Conn, &mut T) -> Result<R> + Send + 'static,
    ) -> (Result<R>, Vec<Hook>) {
        let answer = if self.in_tx {
            pool::on_a_copy(value, f, |job| pool::call(self.writes, context, job)).await
        } else {
            pool::write_in_place(self.writes, context, value, f).await
        };
        (answer.result, answer.hooks)
    }
}

// ---- nesting depth ------------------------------------------------------------------------------

thread_local! {
    /// How deep the receivers being polled on this thread are nested in writes (0: not in a
    /// receiver). Set while a write polls its receivers, so a write those receivers make sees it.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Enter one more level of writes nested in receivers, or [`Error::Recursion`] at the limit.
fn enter<M: Model>(limit: usize, instance: &M) -> Result<usize> {
    let depth = DEPTH.with(Cell::get);
    if depth >= limit {
        return Err(Error::Recursion {
            target: target(instance),
            depth,
        });
    }
    Ok(depth + 1)
}

pin_project_lite::pin_project! {
    /// A future polled with [`DEPTH`] set: the receivers of a write at that depth.
    struct AtDepth<F> {
        depth: usize,
        #[pin]
        fut: F,
    }
}

impl<F: Future> Future for AtDepth<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let outer = DEPTH.with(|d| d.replace(*this.depth));
        let polled = this.fut.poll(cx);
        DEPTH.with(|d| d.set(outer));
        polled
    }
}

fn at_depth<F: Future>(depth: usize, fut: F) -> AtDepth<F> {
    AtDepth { depth, fut }
}

/// Who runs a write's own `on_commit` receivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keep {
    /// The job registers them as a hook on the connection, which fires at the outermost COMMIT
    /// (inside a `Tx`, and for writes made on the connection).
    Register,
    /// The caller runs them with the instance it holds once the answer is back: an autocommit
    /// write has committed by then (no copy of the instance, no hook).
    Caller,
}

impl Keep {
    fn for_route(route: &Route<'_>) -> Self {
        if route.in_tx {
            Keep::Register
        } else {
            Keep::Caller
        }
    }
}

/// How a save or delete whose receivers run on the connection (`in_transaction`, or a read of
/// what an update changes) is made all or nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    /// In a transaction, or a savepoint, of its own: a failure undoes this write alone. For an
    /// autocommit write (also one sharing a group commit) and a write made on a connection (a
    /// receiver's `conn.save(..)`, a job's).
    Own,
    /// Directly in the transaction its caller holds (a `Tx`'s save or delete), with no savepoint:
    /// one statement plus what its receivers do. A failure, of a statement or of a receiver,
    /// marks the transaction failed, so that it can only roll back ([`Error::TransactionFailed`]
    /// at commit, naming the failure), as a failed statement does. A caller that means to go on
    /// after a failed write makes it in a savepoint (`tx.begin()`).
    CallersTx,
}

impl Unit {
    fn for_route(route: &Route<'_>) -> Self {
        if route.in_tx {
            Unit::CallersTx
        } else {
            Unit::Own
        }
    }
}

/// Whether a write's job runs receivers on the connection: `in_transaction` receivers of its
/// `pre` or `post` signal. Background receivers only write their task rows in the transaction,
/// which leaves the job as free to run on its caller's thread as a job with no receiver.
fn runs_receivers<Pre: ModelKind, Post: ModelKind, M: Model>(
    pre: ModelSignal<'_, Pre, M>,
    post: ModelSignal<'_, Post, M>,
) -> bool {
    pre.in_transaction().has_receivers_besides_background()
        || post.in_transaction().has_receivers_besides_background()
}

/// The error of a caller-side `post_*` receiver: the write stands.
fn after_write(error: DispatchError, route: &Route<'_>) -> Error {
    Error::AfterWrite {
        error,
        committed: !route.in_tx,
    }
}

// ---- the caller's side ----------------------------------------------------------------------------

/// Save `instance`: steps 1 to 7 above. The instance gets its key and what `pre_save` receivers
/// changed.
pub(crate) async fn save<M: Model>(route: Route<'_>, instance: &mut M, how: How) -> Result<Saved> {
    if let Some(fields) = &how.fields {
        if fields.is_empty() {
            return Ok(Saved {
                created: false,
                written: false,
            });
        }
        check_fields::<M>(&how.names().unwrap_or_default())?;
    }
    let signals = route.signals();
    let depth = enter(route.shared.recursion_limit, instance)?;
    let quiet = route.quiet;
    let names = how.names();
    if !quiet && signals.pre_save::<M>().has_receivers() {
        let mut event = PreSave::new(&mut *instance)
            .raw(how.raw)
            .using(&route.shared.alias)
            .update_fields(names.as_deref());
        at_depth(depth, signals.pre_save::<M>().send_async(&mut event)).await?;
    }
    let on_conn = !quiet && runs_receivers(signals.pre_save::<M>(), signals.post_save::<M>());
    let context = JobContext::capture(depth, on_conn);
    let job_how = how.clone();
    let (keep, unit) = (Keep::for_route(&route), Unit::for_route(&route));
    let (result, fired) = route
        .write_in_place(context, instance, move |conn, instance| {
            conn.save_in_job(instance, &job_how, quiet, keep, unit)
        })
        .await;
    let (created, previous) = match result {
        Ok(saved) => saved,
        Err(error) => {
            at_depth(depth, hooks::run(fired)).await;
            return Err(error);
        }
    };
    let mut outcome = Ok(());
    if !quiet && signals.post_save::<M>().has_receivers() {
        let event = PostSave::new(&*instance, created)
            .raw(how.raw)
            .using(&route.shared.alias)
            .update_fields(names.as_deref());
        let mut event = previous::with(event, previous.as_ref());
        outcome = at_depth(depth, signals.post_save::<M>().send_async(&mut event))
            .await
            .map_err(|error| after_write(error, &route));
    }
    at_depth(depth, hooks::run(fired)).await;
    if keep == Keep::Caller && !quiet && signals.post_save::<M>().on_commit().has_receivers() {
        // Committed already: this write's own on_commit receivers run here, on the instance.
        let event = PostSave::new(&*instance, created)
            .raw(how.raw)
            .using(&route.shared.alias)
            .update_fields(names.as_deref());
        let mut event = previous::with(event, previous.as_ref());
        let on_commit = signals.post_save::<M>().on_commit();
        at_depth(depth, on_commit.send_async_robust(&mut event)).await;
    }
    outcome.map(|()| Saved {
        created,
        written: true,
    })
}

/// Delete `instance`'s row: the same steps with `pre_delete` / `post_delete`; `post_delete` only
/// when a row was deleted.
pub(crate) async fn delete<M: Model>(route: Route<'_>, instance: &M) -> Result<bool> {
    if instance.pk_value().is_none() {
        return Err(Error::NotFound {
            target: target(instance),
        });
    }
    let signals = route.signals();
    let depth = enter(route.shared.recursion_limit, instance)?;
    let quiet = route.quiet;
    if !quiet && signals.pre_delete::<M>().has_receivers() {
        let mut event = PreDelete::new(instance).using(&route.shared.alias);
        at_depth(depth, signals.pre_delete::<M>().send_async(&mut event)).await?;
    }
    let on_conn = !quiet && runs_receivers(signals.pre_delete::<M>(), signals.post_delete::<M>());
    let context = JobContext::capture(depth, on_conn);
    let copy = instance.clone();
    let (keep, unit) = (Keep::for_route(&route), Unit::for_route(&route));
    let (result, fired) = route
        .write(context, move |conn| {
            conn.delete_in_job(&copy, quiet, keep, unit)
        })
        .await;
    let deleted = match result {
        Ok(deleted) => deleted,
        Err(error) => {
            at_depth(depth, hooks::run(fired)).await;
            return Err(error);
        }
    };
    let mut outcome = Ok(());
    if deleted && !quiet && signals.post_delete::<M>().has_receivers() {
        let mut event = PostDelete::new(instance).using(&route.shared.alias);
        outcome = at_depth(depth, signals.post_delete::<M>().send_async(&mut event))
            .await
            .map_err(|error| after_write(error, &route));
    }
    at_depth(depth, hooks::run(fired)).await;
    if deleted
        && keep == Keep::Caller
        && !quiet
        && signals.post_delete::<M>().on_commit().has_receivers()
    {
        let mut event = PostDelete::new(instance).using(&route.shared.alias);
        let on_commit = signals.post_delete::<M>().on_commit();
        at_depth(depth, on_commit.send_async_robust(&mut event)).await;
    }
    outcome.map(|()| deleted)
}

/// Which bulk write.
#[derive(Clone, Debug)]
pub(crate) enum Bulk {
    Create,
    Update(Vec<String>),
}

/// Insert (or update `fields` of) every instance: each one's caller-side `pre_save` on the caller,
/// one job with one transaction for the statements and the in-transaction receivers, then each
/// one's caller-side `post_save`.
pub(crate) async fn bulk_save<M: Model>(
    route: Route<'_>,
    instances: &mut [M],
    bulk: Bulk,
) -> Result<()> {
    let fields: Option<Vec<&str>> = match &bulk {
        Bulk::Create => None,
        Bulk::Update(fields) => Some(fields.iter().map(String::as_str).collect()),
    };
    if instances.is_empty() || fields.as_ref().is_some_and(Vec::is_empty) {
        return Ok(());
    }
    if let Some(fields) = &fields {
        check_fields::<M>(fields)?;
    }
    let signals = route.signals();
    let depth = enter(route.shared.recursion_limit, &instances[0])?;
    let quiet = route.quiet;
    if !quiet && signals.pre_save::<M>().has_receivers() {
        for instance in instances.iter_mut() {
            let mut event = PreSave::new(&mut *instance)
                .using(&route.shared.alias)
                .update_fields(fields.as_deref());
            at_depth(depth, signals.pre_save::<M>().send_async(&mut event)).await?;
        }
    }
    let on_conn = !quiet && runs_receivers(signals.pre_save::<M>(), signals.post_save::<M>());
    let context = JobContext::capture(depth, on_conn);
    let copies = instances.to_vec();
    let job_bulk = bulk.clone();
    let (result, fired) = route
        .write(context, move |conn| {
            let mut copies = copies;
            let changed = conn.bulk_in_job(&mut copies, &job_bulk, quiet, Keep::Register)?;
            Ok((copies, changed))
        })
        .await;
    let changed = match result {
        Ok((copies, changed)) => {
            for (instance, copy) in instances.iter_mut().zip(copies) {
                *instance = copy;
            }
            changed
        }
        Err(error) => {
            at_depth(depth, hooks::run(fired)).await;
            return Err(error);
        }
    };
    let mut outcome = Ok(());
    if !quiet && signals.post_save::<M>().has_receivers() {
        let created = matches!(bulk, Bulk::Create);
        for (i, instance) in instances.iter().enumerate() {
            let event = PostSave::new(instance, created)
                .using(&route.shared.alias)
                .update_fields(fields.as_deref());
            let mut event = previous::with(event, changed.get(i).and_then(Option::as_ref));
            if let Err(error) =
                at_depth(depth, signals.post_save::<M>().send_async(&mut event)).await
            {
                outcome = Err(after_write(error, &route));
                break;
            }
        }
    }
    at_depth(depth, hooks::run(fired)).await;
    outcome
}

/// Delete every instance: each one's caller-side `pre_delete`, one job, each one's caller-side
/// `post_delete`. Returns how many rows went.
pub(crate) async fn delete_many<M: Model>(route: Route<'_>, instances: &[M]) -> Result<u64> {
    if instances.is_empty() {
        return Ok(0);
    }
    if let Some(keyless) = instances.iter().find(|i| i.pk_value().is_none()) {
        return Err(Error::NotFound {
            target: target(keyless),
        });
    }
    let signals = route.signals();
    let depth = enter(route.shared.recursion_limit, &instances[0])?;
    let quiet = route.quiet;
    if !quiet && signals.pre_delete::<M>().has_receivers() {
        for instance in instances {
            let mut event = PreDelete::new(instance).using(&route.shared.alias);
            at_depth(depth, signals.pre_delete::<M>().send_async(&mut event)).await?;
        }
    }
    let on_conn = !quiet && runs_receivers(signals.pre_delete::<M>(), signals.post_delete::<M>());
    let context = JobContext::capture(depth, on_conn);
    let copies = instances.to_vec();
    let (result, fired) = route
        .write(context, move |conn| {
            conn.delete_many_in_job(&copies, quiet, Keep::Register)
        })
        .await;
    let deleted = match result {
        Ok(deleted) => deleted,
        Err(error) => {
            at_depth(depth, hooks::run(fired)).await;
            return Err(error);
        }
    };
    let mut outcome = Ok(());
    if !quiet && signals.post_delete::<M>().has_receivers() {
        for instance in instances {
            let mut event = PostDelete::new(instance).using(&route.shared.alias);
            if let Err(error) =
                at_depth(depth, signals.post_delete::<M>().send_async(&mut event)).await
            {
                outcome = Err(after_write(error, &route));
                break;
            }
        }
    }
    at_depth(depth, hooks::run(fired)).await;
    outcome.map(|()| deleted)
}

/// Run `f` on the route's connection for writes and run the hooks it fired.
pub(crate) async fn run<R: Send + 'static>(
    route: Route<'_>,
    f: impl FnOnce(&Conn) -> Result<R> + Send + 'static,
) -> Result<R> {
    let depth = DEPTH.with(Cell::get);
    let answer = pool::call(route.writes, JobContext::capture(depth, true), f).await;
    at_depth(depth, hooks::run(answer.hooks)).await;
    answer.result
}

/// Run the read `f` on the route's connection for reads.
pub(crate) async fn read<R: Send + 'static>(
    route: Route<'_>,
    f: impl FnOnce(&Conn) -> Result<R> + Send + 'static,
) -> Result<R> {
    let depth = DEPTH.with(Cell::get);
    let answer = pool::call(route.reads, JobContext::capture(depth, false), f).await;
    hooks::run(answer.hooks).await;
    answer.result
}

/// Run the read by key `f` (one statement, at most one row) on the route's connection for
/// reads, on this thread when a reader is free (see `pool::Jobs`).
pub(crate) async fn read_by_key<R: Send + 'static>(
    route: Route<'_>,
    f: impl FnOnce(&Conn) -> Result<R> + Send + 'static,
) -> Result<R> {
    let depth = DEPTH.with(Cell::get);
    let answer = pool::call_short(route.reads, JobContext::capture(depth, false), f).await;
    hooks::run(answer.hooks).await;
    answer.result
}

/// The blocking runner the store gives its registry: a synchronous receiver declared `blocking`
/// runs through `tokio::task::block_in_place` on a multi-threaded runtime (the runtime moves its
/// other tasks to another worker meanwhile); elsewhere it is called directly. Without the
/// `rt-multi-thread` feature (tokio's `block_in_place` needs it) it is always called directly.
pub(crate) fn block_in_place(f: &mut dyn FnMut()) {
    #[cfg(feature = "rt-multi-thread")]
    {
        use tokio::runtime::{Handle, RuntimeFlavor};
        if let Ok(handle) = Handle::try_current()
            && handle.runtime_flavor() == RuntimeFlavor::MultiThread
        {
            return tokio::task::block_in_place(f);
        }
    }
    f()
}
