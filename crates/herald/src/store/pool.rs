//! Connection threads: each owns one connection and runs the jobs sent to it, one at a time.
//!
//! A job is a closure over [`Conn`]; a whole save (receivers and statements) is one job, so it
//! crosses to the connection's thread once however many receivers it has. A transaction pins a
//! thread: its first job opens the transaction and then serves the transaction's own channel
//! until the transaction ends.
//!
//! Both sides spin briefly before they sleep: a write takes microseconds, and a thread wake-up
//! costs more than that on a virtual machine. The spin is bounded ([`SPIN`]), then they block.
//!
//! Group commit (SQLite's one writer): single autocommit writes ([`Job::Write`]: `save`,
//! `save_fields`, `delete`) that are queued behind one another share one transaction, up to
//! [`GROUP`] of them, instead of paying for a commit each. Each keeps its own semantics: a write
//! with receivers runs in a savepoint of its own (a veto or failure undoes only it), its
//! `on_commit` receivers run after the shared COMMIT, and its caller hears back only after that
//! COMMIT, with an error if the COMMIT failed. A write that finds the queue empty commits alone, so
//! a lone caller waits for nothing.

use std::cell::Cell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use herald_dispatch::observe;

use crate::error::{DbError, Error, Result};
use crate::store::backend::Backend;
use crate::store::conn::{Conn, Shared};

/// A unit of work for a connection thread.
pub(crate) enum Job {
    /// Runs alone on the connection: transactions, bulk writes, statements, reads.
    Alone(Box<dyn FnOnce(&Conn) + Send>),
    /// One autocommit write that may share a transaction with the writes queued beside it (group
    /// commit). It runs, and returns how to answer its caller once the transaction it ran in has
    /// ended.
    Write(WriteFn),
}

/// Answers a [`Job::Write`]'s caller, given how its transaction ended.
pub(crate) type Finish = Box<dyn FnOnce(std::result::Result<(), &Error>) + Send>;

/// At most this many writes share one commit, so that the first of them waits a bounded time.
const GROUP: usize = 64;

/// How long each side waits actively before it sleeps: it spins for the first microseconds, then
/// yields its core between checks, so that on a busy machine the thread it waits for can run.
const SPIN: Duration = Duration::from_micros(50);

thread_local! {
    static ON_CONNECTION_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Opens a connection; called again to replace one the server closed.
pub(crate) type Open =
    Arc<dyn Fn() -> std::result::Result<Box<dyn Backend>, DbError> + Send + Sync>;

/// How a connection thread serves its queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Serving {
    /// SQLite's one writer: every write of the database waits while a job runs, so a job that holds
    /// it for longer than the slow threshold is reported (`herald::writer`). `group_commit` lets
    /// queued [`Job::Write`]s share a commit.
    SoleWriter { group_commit: bool },
    /// One of several connections (SQLite's readers, PostgreSQL's pool).
    Pooled,
}

/// Start `count` threads serving `jobs`, each with its own connection; returns once all are open.
pub(crate) async fn spawn(
    name: &str,
    count: usize,
    open: Open,
    shared: Arc<Shared>,
    jobs: flume::Receiver<Job>,
    serving: Serving,
) -> std::result::Result<Vec<JoinHandle<()>>, DbError> {
    let mut handles = Vec::with_capacity(count);
    let mut ready = Vec::with_capacity(count);
    for index in 0..count {
        let (opened, ready_rx) = oneshot::channel();
        ready.push(ready_rx);
        let (open, shared, jobs) = (open.clone(), shared.clone(), jobs.clone());
        let handle = std::thread::Builder::new()
            .name(format!("herald-{name}-{index}"))
            .spawn(move || match open() {
                Ok(backend) => {
                    let _ = opened.send(Ok(()));
                    serve(Conn::new(backend, shared), &jobs, &open, serving);
                }
                Err(error) => {
                    let _ = opened.send(Err(error));
                }
            })
            .map_err(|e| {
                DbError::new(
                    crate::DbErrorKind::Other,
                    format!("cannot start a connection thread: {e}"),
                )
            })?;
        handles.push(handle);
    }
    for ready in ready {
        match ready.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(error),
            Err(_) => {
                return Err(DbError::new(
                    crate::DbErrorKind::Other,
                    "a connection thread stopped while opening",
                ));
            }
        }
    }
    Ok(handles)
}

fn serve(mut conn: Conn, jobs: &flume::Receiver<Job>, open: &Open, serving: Serving) {
    ON_CONNECTION_THREAD.with(|on| on.set(true));
    let group = serving == Serving::SoleWriter { group_commit: true };
    let mut holds = (serving != Serving::Pooled).then(Holds::default);
    let mut next = receive(jobs);
    while let Some(job) = next.take() {
        if !conn.backend_alive() {
            match open() {
                Ok(backend) => conn = Conn::new(backend, conn.shared()),
                Err(error) => {
                    tracing::warn!(target: "herald::store", %error, "reconnecting failed")
                }
            }
        }
        let started = holds.is_some().then(Instant::now);
        next = match job {
            Job::Write(write) if group && !jobs.is_empty() => write_group(write, &conn, jobs),
            job => {
                run(job, &conn);
                None
            }
        };
        if let (Some(holds), Some(started)) = (&mut holds, started) {
            holds.ended(
                started.elapsed(),
                conn.signals().slow_threshold(),
                jobs.len(),
            );
        }
        if next.is_none() {
            next = receive(jobs);
        }
    }
}

/// The sole writer's long holds, reported at most once a second.
#[derive(Default)]
struct Holds {
    reported: Option<Instant>,
    /// Long holds since the last report, and the longest of them.
    unreported: u64,
    longest: Duration,
}

impl Holds {
    /// A job held the writer for `held`: report it when that is at least `threshold`.
    fn ended(&mut self, held: Duration, threshold: Duration, waiting: usize) {
        if held < threshold {
            return;
        }
        self.unreported += 1;
        self.longest = self.longest.max(held);
        if self
            .reported
            .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        tracing::warn!(
            target: "herald::writer",
            held_ms = held.as_secs_f64() * 1e3,
            waiting,
            long_holds = self.unreported,
            longest_ms = self.longest.as_secs_f64() * 1e3,
            "SQLite's writer was held for {:.1} ms by one job (a write and its receivers, or a \
             transaction), and every write of this database waited meanwhile ({waiting} queued now; \
             long holds since the last report: {}, the longest {:.1} ms): move heavy work out of \
             pre_save and in-transaction post_save receivers, into background receivers",
            held.as_secs_f64() * 1e3,
            self.unreported,
            self.longest.as_secs_f64() * 1e3,
        );
        self.reported = Some(Instant::now());
        self.unreported = 0;
        self.longest = Duration::ZERO;
    }
}

/// Run one job on its own; a panic outside the receivers (which the dispatcher already catches)
/// is logged, what it left open is rolled back, and the caller gets [`Error::Panicked`] through
/// its dropped reply.
pub(crate) fn run(job: Job, conn: &Conn) {
    let outcome = catch_unwind(AssertUnwindSafe(|| match job {
        Job::Alone(run) => run(conn),
        Job::Write(write) => {
            write(conn)(Ok(()));
        }
    }));
    if outcome.is_err() {
        tracing::error!(target: "herald::store", "a store job panicked; its transaction was rolled back");
        while conn.in_transaction() {
            conn.rollback();
        }
    }
}

/// Group commit: run `first` and the writes queued behind it (up to [`GROUP`]) in one
/// transaction, commit it, then answer each caller. Returns the job that ended the group by not
/// being a write, to run next.
fn write_group(first: WriteFn, conn: &Conn, jobs: &flume::Receiver<Job>) -> Option<Job> {
    if conn.begin().is_err() {
        // Could not open the shared transaction (the database is busy): the write tries alone
        // and reports its own error.
        run(Job::Write(first), conn);
        return None;
    }
    let mut finishes: Vec<Finish> = Vec::with_capacity(GROUP);
    let mut leftover = None;
    let mut write = first;
    loop {
        match catch_unwind(AssertUnwindSafe(|| write(conn))) {
            Ok(finish) => finishes.push(finish),
            Err(_) => {
                // A panic outside the receivers may have left a statement half done at the
                // group's level: nothing of the group is kept, and every caller is told.
                tracing::error!(target: "herald::store", writes = finishes.len() + 1, "a store write panicked inside a group commit; the group was rolled back");
                while conn.in_transaction() {
                    conn.rollback();
                }
                let error = Error::Panicked;
                for finish in finishes {
                    finish(Err(&error));
                }
                return None;
            }
        }
        if finishes.len() >= GROUP {
            break;
        }
        match jobs.try_recv() {
            Ok(Job::Write(next)) => write = next,
            Ok(other) => {
                leftover = Some(other);
                break;
            }
            Err(_) => break,
        }
    }
    let committed = conn.commit();
    for finish in finishes {
        finish(committed.as_ref().map(|_| ()));
    }
    leftover
}

/// A [`Job::Write`]'s work.
pub(crate) type WriteFn = Box<dyn FnOnce(&Conn) -> Finish + Send>;

/// The next job: spin for up to [`SPIN`], then block. `None` when every sender is gone.
pub(crate) fn receive(jobs: &flume::Receiver<Job>) -> Option<Job> {
    let start = Instant::now();
    loop {
        match jobs.try_recv() {
            Ok(job) => return Some(job),
            Err(flume::TryRecvError::Disconnected) => return None,
            Err(flume::TryRecvError::Empty) if start.elapsed() < SPIN => pause(start),
            Err(flume::TryRecvError::Empty) => return jobs.recv().ok(),
        }
    }
}

/// One step of an active wait: a spin hint for the first few microseconds, then a yield.
fn pause(start: Instant) {
    if start.elapsed() < Duration::from_micros(3) {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// Whether the current thread is a connection thread (where waiting on a store call would wait on
/// itself).
pub(crate) fn on_connection_thread() -> bool {
    ON_CONNECTION_THREAD.with(Cell::get)
}

const DEADLOCK: &str = "a store call from a connection thread (a receiver, hook or job) would wait on \
    itself: write through the connection the event lends (`event.conn()?`) instead";

/// Queue `job`; returns whether it is worth spinning for the answer: not when other jobs are
/// queued ahead of it (the answer will take longer than the spin, and a caller on an async runtime
/// would hold its thread from the tasks that could run meanwhile).
fn submit(jobs: &flume::Sender<Job>, job: Job) -> Result<bool> {
    if on_connection_thread() {
        return Err(Error::WouldDeadlock(DEADLOCK));
    }
    jobs.send(job).map_err(|_| Error::Closed)?;
    Ok(jobs.len() <= 1)
}

/// Send `f` to a connection thread and wait for its result.
pub(crate) fn call<R: Send + 'static>(
    jobs: &flume::Sender<Job>,
    f: impl FnOnce(&Conn) -> Result<R> + Send + 'static,
) -> impl Future<Output = Result<R>> + Send + 'static {
    ask(jobs, |reply, observer| {
        Job::Alone(Box::new(move |conn| {
            let _ = reply.send(observed(observer, conn, f));
        }))
    })
}

/// Send one autocommit write `f` to a connection thread and wait for its result, which comes once
/// its transaction has committed (it may share that transaction with other writes: see the module
/// documentation). Inside a pinned transaction it is an ordinary job.
pub(crate) fn write<R: Send + 'static>(
    jobs: &flume::Sender<Job>,
    f: impl FnOnce(&Conn) -> Result<R> + Send + 'static,
) -> impl Future<Output = Result<R>> + Send + 'static {
    ask(jobs, |reply, observer| {
        Job::Write(Box::new(move |conn| {
            let result = observed(observer, conn, f);
            Box::new(move |ended| {
                let _ = reply.send(match (result, ended) {
                    (Ok(_), Err(error)) => Err(error.for_grouped_write()),
                    (result, _) => result,
                });
            })
        }))
    })
}

/// Queue the job `make` builds around the reply channel and the caller's observer (captured
/// here, on the caller's thread), and wait for the reply.
fn ask<R: Send + 'static>(
    jobs: &flume::Sender<Job>,
    make: impl FnOnce(oneshot::Sender<Result<R>>, Option<Arc<dyn observe::Observer>>) -> Job,
) -> impl Future<Output = Result<R>> + Send + 'static {
    let (reply, answer) = oneshot::channel();
    let sent = submit(jobs, make(reply, observe::current()));
    async move { wait(answer, sent?).await }
}

/// Run `f`, reporting its receivers and its time to the caller's observer (a request measuring
/// its receivers) when there is one.
fn observed<R>(
    observer: Option<Arc<dyn observe::Observer>>,
    conn: &Conn,
    f: impl FnOnce(&Conn) -> Result<R>,
) -> Result<R> {
    match observer {
        None => f(conn),
        Some(observer) => {
            let started = Instant::now();
            let result = observe::scope(Some(observer.clone()), || f(conn));
            observer.store_job(started.elapsed());
            result
        }
    }
}

/// Pin a connection for a transaction: one job opens the transaction and then serves the returned
/// channel on that connection until every sender of it is gone, rolling back whatever is still
/// open then. Nothing else runs on the connection meanwhile.
pub(crate) fn pin(
    jobs: &flume::Sender<Job>,
) -> impl Future<Output = Result<flume::Sender<Job>>> + Send + 'static {
    let (session, session_jobs) = flume::unbounded::<Job>();
    let (reply, answer) = oneshot::channel();
    let sent = submit(
        jobs,
        Job::Alone(Box::new(move |conn| {
            let began = conn.begin();
            let ok = began.is_ok();
            let _ = reply.send(began);
            if !ok {
                return;
            }
            while let Some(job) = receive(&session_jobs) {
                run(job, conn);
            }
            while conn.in_transaction() {
                conn.rollback();
            }
        })),
    );
    async move {
        wait(answer, sent?).await?;
        Ok(session)
    }
}

/// Send a job without waiting for it (a rollback from `Drop`).
pub(crate) fn send_detached(jobs: &flume::Sender<Job>, f: impl FnOnce(&Conn) + Send + 'static) {
    let _ = jobs.send(Job::Alone(Box::new(f)));
}

/// Wait for a reply: spin for up to [`SPIN`] when `spin`, then await.
async fn wait<R>(mut answer: oneshot::Receiver<Result<R>>, spin: bool) -> Result<R> {
    let start = Instant::now();
    while spin && start.elapsed() < SPIN {
        match answer.try_recv() {
            Ok(Some(result)) => return result,
            Ok(None) => pause(start),
            Err(oneshot::Canceled) => return Err(Error::Panicked),
        }
    }
    answer.await.map_err(|oneshot::Canceled| Error::Panicked)?
}
