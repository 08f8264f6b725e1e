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
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};

use herald_dispatch::{DispatchError, PostDelete, PostSave, PreDelete, PreSave, Signals};

use crate::error::{Error, Result};
use crate::model::Model;
use crate::store::conn::{Conn, Saved, Shared};
use crate::store::hooks::{self, Hook, HookKind, HookRun};
use crate::store::pool::{self, Job, JobContext};
use crate::store::rows::{self, check_fields, target};

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

    fn names(&self) -> Option<Vec<&str>> {
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
    pub(crate) writes: &'a flume::Sender<Job>,
    /// Reads: a reader, or the transaction's own connection.
    pub(crate) reads: &'a flume::Sender<Job>,
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
    let on_conn = !quiet
        && (signals.pre_save::<M>().in_transaction().has_receivers()
            || signals.post_save::<M>().in_transaction().has_receivers());
    let context = JobContext::capture(depth, on_conn);
    let copy = instance.clone();
    let job_how = how.clone();
    let keep = Keep::for_route(&route);
    let (result, fired) = route
        .write(context, move |conn| {
            let mut copy = copy;
            let created = conn.save_in_job(&mut copy, &job_how, quiet, keep)?;
            Ok((copy, created))
        })
        .await;
    let created = match result {
        Ok((copy, created)) => {
            *instance = copy;
            created
        }
        Err(error) => {
            at_depth(depth, hooks::run(fired)).await;
            return Err(error);
        }
    };
    let mut outcome = Ok(());
    if !quiet && signals.post_save::<M>().has_receivers() {
        let mut event = PostSave::new(&*instance, created)
            .raw(how.raw)
            .using(&route.shared.alias)
            .update_fields(names.as_deref());
        outcome = at_depth(depth, signals.post_save::<M>().send_async(&mut event))
            .await
            .map_err(|error| after_write(error, &route));
    }
    at_depth(depth, hooks::run(fired)).await;
    if keep == Keep::Caller && !quiet && signals.post_save::<M>().on_commit().has_receivers() {
        // Committed already: this write's own on_commit receivers run here, on the instance.
        let mut event = PostSave::new(&*instance, created)
            .raw(how.raw)
            .using(&route.shared.alias)
            .update_fields(names.as_deref());
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
    let on_conn = !quiet
        && (signals.pre_delete::<M>().in_transaction().has_receivers()
            || signals.post_delete::<M>().in_transaction().has_receivers());
    let context = JobContext::capture(depth, on_conn);
    let copy = instance.clone();
    let keep = Keep::for_route(&route);
    let (result, fired) = route
        .write(context, move |conn| conn.delete_in_job(&copy, quiet, keep))
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
    let on_conn = !quiet
        && (signals.pre_save::<M>().in_transaction().has_receivers()
            || signals.post_save::<M>().in_transaction().has_receivers());
    let context = JobContext::capture(depth, on_conn);
    let copies = instances.to_vec();
    let job_bulk = bulk.clone();
    let (result, fired) = route
        .write(context, move |conn| {
            let mut copies = copies;
            conn.bulk_in_job(&mut copies, &job_bulk, quiet, Keep::Register)?;
            Ok(copies)
        })
        .await;
    match result {
        Ok(copies) => {
            for (instance, copy) in instances.iter_mut().zip(copies) {
                *instance = copy;
            }
        }
        Err(error) => {
            at_depth(depth, hooks::run(fired)).await;
            return Err(error);
        }
    }
    let mut outcome = Ok(());
    if !quiet && signals.post_save::<M>().has_receivers() {
        let created = matches!(bulk, Bulk::Create);
        for instance in instances.iter() {
            let mut event = PostSave::new(instance, created)
                .using(&route.shared.alias)
                .update_fields(fields.as_deref());
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
    let on_conn = !quiet
        && (signals.pre_delete::<M>().in_transaction().has_receivers()
            || signals.post_delete::<M>().in_transaction().has_receivers());
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

// ---- the connection's side ------------------------------------------------------------------------

/// The `on_commit` receivers of one write, as a hook that sends them on the caller.
fn on_commit_save<M: Model>(conn: &Conn, instance: &M, created: bool, how: &How) -> Hook {
    let (signals, alias) = (conn.signals().clone(), conn.shared().alias.clone());
    let (copy, how) = (instance.clone(), how.clone());
    Hook {
        kind: HookKind::Commit,
        name: "post_save on_commit receivers",
        run: HookRun::Receivers(Box::new(move || {
            Box::pin(async move {
                let names = how.names();
                let mut event = PostSave::new(&copy, created)
                    .raw(how.raw)
                    .using(&alias)
                    .update_fields(names.as_deref());
                signals
                    .post_save::<M>()
                    .on_commit()
                    .send_async_robust(&mut event)
                    .await
            })
        })),
    }
}

fn on_commit_delete<M: Model>(conn: &Conn, instance: &M) -> Hook {
    let (signals, alias, copy) = (
        conn.signals().clone(),
        conn.shared().alias.clone(),
        instance.clone(),
    );
    Hook {
        kind: HookKind::Commit,
        name: "post_delete on_commit receivers",
        run: HookRun::Receivers(Box::new(move || {
            Box::pin(async move {
                let mut event = PostDelete::new(&copy).using(&alias);
                signals
                    .post_delete::<M>()
                    .on_commit()
                    .send_async_robust(&mut event)
                    .await
            })
        })),
    }
}

/// Decrements the connection's nesting depth when a nested write ends, however it ends.
struct Nested<'a>(&'a Conn);

impl Drop for Nested<'_> {
    fn drop(&mut self) {
        self.0.save_depth.fetch_sub(1, Relaxed);
    }
}

impl Conn {
    fn enter<M: Model>(&self, instance: &M) -> Result<Nested<'_>> {
        let depth = self.save_depth.load(Relaxed);
        if depth >= self.shared().recursion_limit {
            return Err(Error::Recursion {
                target: target(instance),
                depth,
            });
        }
        self.save_depth.store(depth + 1, Relaxed);
        Ok(Nested(self))
    }

    /// Steps 2 to 5 of a save, on this connection: in a transaction (a savepoint when one is open)
    /// when an `in_transaction` receiver is connected, else one statement. Registers the
    /// `on_commit` receivers. True when it inserted.
    pub(crate) fn save_in_job<M: Model>(
        &self,
        instance: &mut M,
        how: &How,
        quiet: bool,
        keep: Keep,
    ) -> Result<bool> {
        let signals = self.signals();
        let names = how.names();
        let pre = !quiet && signals.pre_save::<M>().in_transaction().has_receivers();
        let post = !quiet && signals.post_save::<M>().in_transaction().has_receivers();
        let on_commit = keep == Keep::Register
            && !quiet
            && signals.post_save::<M>().on_commit().has_receivers();
        let mut write = |conn: &Conn| -> Result<bool> {
            if pre {
                let mut event = PreSave::new(&mut *instance)
                    .raw(how.raw)
                    .using(conn.alias())
                    .update_fields(names.as_deref())
                    .with_store(conn);
                signals.pre_save::<M>().in_transaction().send(&mut event)?;
            }
            let created = rows::write_row(conn, instance, names.as_deref())?;
            if post {
                let mut event = PostSave::new(&*instance, created)
                    .raw(how.raw)
                    .using(conn.alias())
                    .update_fields(names.as_deref())
                    .with_store(conn);
                signals.post_save::<M>().in_transaction().send(&mut event)?;
            }
            if on_commit {
                conn.push_hook(on_commit_save(conn, instance, created, how));
            }
            Ok(created)
        };
        if pre || post {
            self.atomic_write(write)
        } else {
            write(self)
        }
    }

    /// Steps 2 to 5 of a delete, on this connection. True when a row was deleted.
    pub(crate) fn delete_in_job<M: Model>(
        &self,
        instance: &M,
        quiet: bool,
        keep: Keep,
    ) -> Result<bool> {
        let signals = self.signals();
        let pre = !quiet && signals.pre_delete::<M>().in_transaction().has_receivers();
        let post = !quiet && signals.post_delete::<M>().in_transaction().has_receivers();
        let on_commit = keep == Keep::Register
            && !quiet
            && signals.post_delete::<M>().on_commit().has_receivers();
        let delete = |conn: &Conn| -> Result<bool> {
            if pre {
                let mut event = PreDelete::new(instance)
                    .using(conn.alias())
                    .with_store(conn);
                signals
                    .pre_delete::<M>()
                    .in_transaction()
                    .send(&mut event)?;
            }
            let deleted = rows::delete_row(conn, instance)?;
            if deleted && post {
                let mut event = PostDelete::new(instance)
                    .using(conn.alias())
                    .with_store(conn);
                signals
                    .post_delete::<M>()
                    .in_transaction()
                    .send(&mut event)?;
            }
            if deleted && on_commit {
                conn.push_hook(on_commit_delete(conn, instance));
            }
            Ok(deleted)
        };
        if pre || post {
            self.atomic_write(delete)
        } else {
            delete(self)
        }
    }

    /// Steps 2 to 5 of a bulk save, in one transaction.
    pub(crate) fn bulk_in_job<M: Model>(
        &self,
        instances: &mut [M],
        bulk: &Bulk,
        quiet: bool,
        keep: Keep,
    ) -> Result<()> {
        let signals = self.signals();
        let (how, created) = match bulk {
            Bulk::Create => (How::default(), true),
            Bulk::Update(fields) => (
                How {
                    fields: Some(fields.clone()),
                    raw: false,
                },
                false,
            ),
        };
        let names = how.names();
        let pre = !quiet && signals.pre_save::<M>().in_transaction().has_receivers();
        let post = !quiet && signals.post_save::<M>().in_transaction().has_receivers();
        let on_commit = keep == Keep::Register
            && !quiet
            && signals.post_save::<M>().on_commit().has_receivers();
        self.atomic_write(|conn| {
            if pre {
                for instance in instances.iter_mut() {
                    let mut event = PreSave::new(&mut *instance)
                        .using(conn.alias())
                        .update_fields(names.as_deref())
                        .with_store(conn);
                    signals.pre_save::<M>().in_transaction().send(&mut event)?;
                }
            }
            match &names {
                None => rows::insert_many(conn, instances)?,
                Some(fields) => rows::update_rows(conn, instances, fields)?,
            }
            for instance in instances.iter() {
                if post {
                    let mut event = PostSave::new(instance, created)
                        .using(conn.alias())
                        .update_fields(names.as_deref())
                        .with_store(conn);
                    signals.post_save::<M>().in_transaction().send(&mut event)?;
                }
                if on_commit {
                    conn.push_hook(on_commit_save(conn, instance, created, &how));
                }
            }
            Ok(())
        })
    }

    /// Steps 2 to 5 of a bulk delete, in one transaction. Returns how many rows went.
    pub(crate) fn delete_many_in_job<M: Model>(
        &self,
        instances: &[M],
        quiet: bool,
        keep: Keep,
    ) -> Result<u64> {
        let signals = self.signals();
        let pre = !quiet && signals.pre_delete::<M>().in_transaction().has_receivers();
        let post = !quiet && signals.post_delete::<M>().in_transaction().has_receivers();
        let on_commit = keep == Keep::Register
            && !quiet
            && signals.post_delete::<M>().on_commit().has_receivers();
        self.atomic_write(|conn| {
            if pre {
                for instance in instances {
                    let mut event = PreDelete::new(instance)
                        .using(conn.alias())
                        .with_store(conn);
                    signals
                        .pre_delete::<M>()
                        .in_transaction()
                        .send(&mut event)?;
                }
            }
            let deleted = rows::delete_rows(conn, instances)?;
            for instance in instances {
                if post {
                    let mut event = PostDelete::new(instance)
                        .using(conn.alias())
                        .with_store(conn);
                    signals
                        .post_delete::<M>()
                        .in_transaction()
                        .send(&mut event)?;
                }
                if on_commit {
                    conn.push_hook(on_commit_delete(conn, instance));
                }
            }
            Ok(deleted)
        })
    }

    // ---- writes made on the connection: every phase inline ----------------------------------------

    /// The caller-phase receivers of a write made on the connection run here, inline; a failure of
    /// a `post_*` one after an autocommit write says the write is kept.
    fn after_write_here(&self, error: DispatchError) -> Error {
        if self.in_transaction() {
            Error::Receiver(error)
        } else {
            Error::AfterWrite {
                error,
                committed: true,
            }
        }
    }

    /// Save `instance` with its signals, on this connection (inside the transaction that is open,
    /// if any): insert it when it has no key or its key matched no row (`created`), update it
    /// otherwise. Every phase runs here, the caller-side ones inline; `on_commit` receivers run on
    /// the task that called the store, after the outermost commit.
    pub fn save<M: Model>(&self, instance: &mut M) -> Result<Saved> {
        self.save_here(instance, &How::default())
    }

    /// Save only `fields` (Django's `update_fields`): an empty list writes and sends nothing; an
    /// unknown name is an error before any receiver runs; a row that no longer exists is
    /// [`Error::NotFound`].
    pub fn save_fields<M: Model>(&self, instance: &mut M, fields: &[&str]) -> Result<Saved> {
        self.save_here(instance, &How::fields(fields))
    }

    fn save_here<M: Model>(&self, instance: &mut M, how: &How) -> Result<Saved> {
        let names = how.names();
        if let Some(fields) = &names {
            if fields.is_empty() {
                return Ok(Saved {
                    created: false,
                    written: false,
                });
            }
            check_fields::<M>(fields)?;
        }
        let _nested = self.enter(instance)?;
        let signals = self.signals().clone();
        let mut event = PreSave::new(&mut *instance)
            .raw(how.raw)
            .using(self.alias())
            .update_fields(names.as_deref());
        signals.pre_save::<M>().send(&mut event)?;
        let created = self.save_in_job(instance, how, false, Keep::Register)?;
        let mut event = PostSave::new(&*instance, created)
            .raw(how.raw)
            .using(self.alias())
            .update_fields(names.as_deref());
        signals
            .post_save::<M>()
            .send(&mut event)
            .map_err(|e| self.after_write_here(e))?;
        Ok(Saved {
            created,
            written: true,
        })
    }

    /// Delete `instance`'s row with its signals, on this connection; true if a row was deleted.
    /// `post_delete` is sent only when one was; the instance keeps its key.
    pub fn delete<M: Model>(&self, instance: &M) -> Result<bool> {
        if instance.pk_value().is_none() {
            return Err(Error::NotFound {
                target: target(instance),
            });
        }
        let _nested = self.enter(instance)?;
        let signals = self.signals().clone();
        signals
            .pre_delete::<M>()
            .send(&mut PreDelete::new(instance).using(self.alias()))?;
        let deleted = self.delete_in_job(instance, false, Keep::Register)?;
        if deleted {
            signals
                .post_delete::<M>()
                .send(&mut PostDelete::new(instance).using(self.alias()))
                .map_err(|e| self.after_write_here(e))?;
        }
        Ok(deleted)
    }

    /// Insert every instance in one transaction with as few statements as the database allows,
    /// sending `pre_save` and `post_save` (`created` true) for each. Keys are assigned in order.
    pub fn bulk_create<M: Model>(&self, instances: &mut [M]) -> Result<()> {
        self.bulk_here(instances, Bulk::Create)
    }

    /// Update `fields` of every instance in one transaction, sending `pre_save` and `post_save`
    /// (`created` false, `update_fields` = `fields`) for each.
    pub fn bulk_update<M: Model>(&self, instances: &mut [M], fields: &[&str]) -> Result<()> {
        if fields.is_empty() {
            return Ok(());
        }
        check_fields::<M>(fields)?;
        self.bulk_here(
            instances,
            Bulk::Update(fields.iter().map(|f| (*f).to_owned()).collect()),
        )
    }

    fn bulk_here<M: Model>(&self, instances: &mut [M], bulk: Bulk) -> Result<()> {
        let Some(first) = instances.first() else {
            return Ok(());
        };
        let _nested = self.enter(first)?;
        let signals = self.signals().clone();
        let (names, created): (Option<Vec<&str>>, bool) = match &bulk {
            Bulk::Create => (None, true),
            Bulk::Update(fields) => (Some(fields.iter().map(String::as_str).collect()), false),
        };
        for instance in instances.iter_mut() {
            let mut event = PreSave::new(&mut *instance)
                .using(self.alias())
                .update_fields(names.as_deref());
            signals.pre_save::<M>().send(&mut event)?;
        }
        self.bulk_in_job(instances, &bulk, false, Keep::Register)?;
        for instance in instances.iter() {
            let mut event = PostSave::new(instance, created)
                .using(self.alias())
                .update_fields(names.as_deref());
            signals
                .post_save::<M>()
                .send(&mut event)
                .map_err(|e| self.after_write_here(e))?;
        }
        Ok(())
    }

    /// Delete every instance in one transaction with as few statements as the database allows,
    /// sending `pre_delete` and `post_delete` for each; returns how many rows were deleted.
    pub fn delete_many<M: Model>(&self, instances: &[M]) -> Result<u64> {
        let Some(first) = instances.first() else {
            return Ok(0);
        };
        let _nested = self.enter(first)?;
        let signals = self.signals().clone();
        for instance in instances {
            signals
                .pre_delete::<M>()
                .send(&mut PreDelete::new(instance).using(self.alias()))?;
        }
        let deleted = self.delete_many_in_job(instances, false, Keep::Register)?;
        for instance in instances {
            signals
                .post_delete::<M>()
                .send(&mut PostDelete::new(instance).using(self.alias()))
                .map_err(|e| self.after_write_here(e))?;
        }
        Ok(deleted)
    }
}

/// The blocking runner the store gives its registry: a synchronous receiver declared `blocking`
/// runs through `tokio::task::block_in_place` on a multi-threaded runtime (the runtime moves its
/// other tasks to another worker meanwhile); elsewhere it is called directly.
pub(crate) fn block_in_place(f: &mut dyn FnMut()) {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
