//! Connection threads: each owns one connection and runs the jobs sent to it, one at a time.
//!
//! A job is a closure over [`Conn`]; the connection's part of a write (its statements, its
//! `in_transaction` receivers, its task rows, its COMMIT) is one job, so a write crosses to the
//! connection's thread once however many receivers it has. A job carries its caller's context
//! ([`JobContext`]: observer, mutes, nesting depth, async runtime) and answers with its result and
//! the hooks that fired while it ran ([`Answer`]), which the caller runs. A transaction pins a
//! thread: its first job opens the transaction and then serves the transaction's own channel
//! until the transaction ends.
//!
//! Both sides spin briefly before they sleep: a write takes microseconds, and a thread wake-up
//! costs more than that on a virtual machine. The spin is bounded ([`SPIN`]), then they block.
//!
//! Group commit (SQLite's one writer): single autocommit writes ([`Job::Write`]: `save`,
//! `save_fields`, `delete`) that are queued behind one another share one transaction, up to
//! [`GROUP`] of them, instead of paying for a commit each. Each keeps its own semantics: a write
//! with `in_transaction` receivers runs in a savepoint of its own (a failure undoes only it), its
//! caller hears back only after the shared COMMIT, with its own hooks (its `on_commit` receivers)
//! or an error if the COMMIT failed. A write that finds the queue empty commits alone, so a lone
//! caller waits for nothing.
//!
//! No crossing where none is needed (SQLite): a short job that runs no receiver on the connection
//! (an autocommit write with no `in_transaction` receiver, a read by key; a background receiver,
//! which only writes its task row, does not count) may run on its caller's
//! own thread, with a connection it borrows for the job's duration ([`Jobs`]): a write through the
//! writer when it is the only autocommit write in flight, no job is queued for the writer and its
//! thread is not waiting for it; a read through a reader that is free. A caller never waits for a
//! connection to borrow: otherwise the job is queued as any other, so that concurrent writes still
//! reach the writer's thread, which groups them into one commit. The job is the same either way;
//! only the thread that runs it changes. A thread answers a queued job's caller once it has let go
//! of its connection ([`answer`]), so that the caller's next short job can borrow it. PostgreSQL's
//! synchronous driver cannot run on an async runtime's thread, so its jobs always cross.

use std::cell::Cell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use futures::future::Either;
use herald_dispatch::{mute, observe};

use crate::error::{DbError, Error, Result};
use crate::store::backend::Backend;
use crate::store::conn::{Conn, Shared};
use crate::store::hooks::{self, Hook, HookKind};

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
    /// Whether this thread reports long holds: SQLite's sole writer (see [`Serving`]).
    static REPORTS_HOLDS: Cell<bool> = const { Cell::new(false) };
    /// What the job running on this connection thread is, when it said so ([`held_by`]).
    static HELD_BY: std::cell::RefCell<Option<HeldBy>> = const { std::cell::RefCell::new(None) };
    /// Answers held back until the thread has let go of its connection ([`answer`]).
    static HELD_ANSWERS: std::cell::RefCell<Vec<Box<dyn FnOnce()>>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Whether answers are held back now: while `serve` holds the connection, not while a
    /// transaction's session runs its jobs (its caller waits for each answer, holding it anyway).
    static HOLD_ANSWERS: Cell<bool> = const { Cell::new(false) };
}

/// Answer a job's caller with `send`: at once, or, while the thread holds its connection for a
/// queued job, as soon as it lets go of it, so that the caller's next short job finds the
/// connection free to borrow rather than crossing again.
fn answer(send: impl FnOnce() + 'static) {
    if HOLD_ANSWERS.with(Cell::get) {
        HELD_ANSWERS.with(|held| held.borrow_mut().push(Box::new(send)));
    } else {
        send();
    }
}

/// Send the answers held back while the connection was held.
fn send_held_answers() {
    let held = HELD_ANSWERS.with(|held| std::mem::take(&mut *held.borrow_mut()));
    for send in held {
        send();
    }
}

/// What held SQLite's writer, as its long-hold report (`herald::writer`) names it: what the job
/// said it is ([`held_by`]), or else how it came to the writer.
pub(crate) enum HeldBy {
    /// Not reported, however long: nothing of this database can be waiting for it (opening the
    /// database: its migrations run before the `Db` is handed to anyone).
    Nobody,
    /// This many autocommit writes: one, or a group sharing one commit.
    Writes(usize),
    /// A transaction (`Db::begin` to its end): the writer is pinned to it throughout.
    Transaction,
    /// Any other job: a `db.run` closure, a bulk write, another call's statements.
    Job,
    /// A job that says what it is (`what`, completing "held .. by"), and what would make it
    /// shorter (`advice`).
    Described { what: String, advice: &'static str },
}

impl HeldBy {
    /// Completes "SQLite's writer was held for .. ms by".
    fn what(&self) -> std::borrow::Cow<'_, str> {
        match self {
            HeldBy::Nobody | HeldBy::Job => {
                "one job (a `db.run` closure, a bulk write, or another call's statements)".into()
            }
            HeldBy::Writes(1) => {
                "one write (its statements, its in_transaction receivers and its commit)".into()
            }
            HeldBy::Writes(n) => format!(
                "{n} writes committed together (their statements, their in_transaction receivers \
                 and one commit)"
            )
            .into(),
            HeldBy::Transaction => "a transaction (from its `begin` to its end)".into(),
            HeldBy::Described { what, .. } => what.as_str().into(),
        }
    }

    fn advice(&self) -> &'static str {
        match self {
            HeldBy::Described { advice, .. } => advice,
            HeldBy::Nobody | HeldBy::Job => {
                "split long `db.run` closures and bulk writes into smaller ones (each a job of its \
                 own, with the writer free between them), and move heavy work out of their \
                 in_transaction receivers"
            }
            HeldBy::Writes(_) | HeldBy::Transaction => {
                "move heavy work out of in_transaction receivers and transactions, to caller-side \
                 receivers (which delay only their own write) or background receivers"
            }
        }
    }
}

/// Say what the job running on this thread is, for the writer's long-hold report (the last call
/// of a job wins). `by` runs only on SQLite's writer thread: elsewhere (another connection's
/// thread, or a caller's with a borrowed connection) nothing is reported, and this costs nothing.
pub(crate) fn held_by(by: impl FnOnce() -> HeldBy) {
    if REPORTS_HOLDS.with(Cell::get) {
        HELD_BY.with(|held| *held.borrow_mut() = Some(by()));
    }
}

/// Opens a connection; called again to replace one the server closed.
pub(crate) type Open =
    Arc<dyn Fn() -> std::result::Result<Box<dyn Backend>, DbError> + Send + Sync>;

/// One connection, owned by its thread and lent to callers for short jobs (see [`Jobs`]). Its
/// thread locks it for each job it runs; a borrower only ever tries the lock.
pub(crate) struct Slot {
    /// `None` until the thread has opened it.
    conn: Mutex<Option<Conn>>,
    /// The thread has a job for the connection and is waiting for it: borrowers step aside, so
    /// that a caller writing in a loop cannot keep the queued jobs waiting.
    wanted: AtomicBool,
}

impl Slot {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            conn: Mutex::new(None),
            wanted: AtomicBool::new(false),
        })
    }

    /// The connection, for its thread: waits while a borrower holds it.
    fn hold(&self) -> MutexGuard<'_, Option<Conn>> {
        self.wanted.store(true, Relaxed);
        let guard = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.wanted.store(false, Relaxed);
        guard
    }

    /// The connection, for a borrower: `None` when its thread or another borrower has it.
    fn try_borrow(&self) -> Option<MutexGuard<'_, Option<Conn>>> {
        if self.wanted.load(Relaxed) {
            return None;
        }
        let guard = match self.conn.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        guard.is_some().then_some(guard)
    }
}

/// Where an operation's jobs go: the queue its connection threads serve and, on SQLite, their
/// connections, which a caller may borrow to run a short job itself (see the module
/// documentation). A transaction's jobs have only the queue: its connection is its thread's.
#[derive(Clone)]
pub(crate) struct Jobs {
    queue: flume::Sender<Job>,
    slots: Arc<[Arc<Slot>]>,
    /// Autocommit writes sent and not yet answered. A write borrows the writer only when it is
    /// the only one: concurrent writes queue, so that the writer's thread groups them into one
    /// commit rather than each committing alone.
    writing: Arc<AtomicUsize>,
}

impl From<flume::Sender<Job>> for Jobs {
    /// Jobs that always cross to the threads serving `queue`.
    fn from(queue: flume::Sender<Job>) -> Self {
        Self::new(queue, Arc::new([]))
    }
}

/// One autocommit write in flight, counted in [`Jobs::writing`] until it is dropped.
struct Writing(Arc<AtomicUsize>);

impl Writing {
    /// Count one more write; also says whether it is the only one.
    fn start(jobs: &Jobs) -> (Self, bool) {
        let before = jobs.writing.fetch_add(1, Relaxed);
        (Self(jobs.writing.clone()), before == 0)
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl Jobs {
    fn new(queue: flume::Sender<Job>, slots: Arc<[Arc<Slot>]>) -> Self {
        Self {
            queue,
            slots,
            writing: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A connection to run a job on here, if one is free and no job waits in the queue (which
    /// goes first).
    fn borrow(&self) -> Option<MutexGuard<'_, Option<Conn>>> {
        if self.slots.is_empty() || !self.queue.is_empty() || on_connection_thread() {
            return None;
        }
        self.slots.iter().find_map(|slot| slot.try_borrow())
    }
}

/// A job that did not run here, given back to be queued.
type NotHere<F> = (JobContext, F);

/// A connection to run a job with `context` on here: one its thread and every other caller have
/// let go of, when the job runs no receivers on the connection (see [`JobContext::receivers`]).
fn lend<'j>(jobs: &'j Jobs, context: &JobContext) -> Option<MutexGuard<'j, Option<Conn>>> {
    if context.receivers {
        return None;
    }
    jobs.borrow()
}

/// Run the job `f` on this thread with the connection `held` lent ([`lend`]): as its own thread
/// would run it alone (a write commits alone), with no box and no channel.
fn run_lent<R>(
    held: &MutexGuard<'_, Option<Conn>>,
    context: JobContext,
    f: impl FnOnce(&Conn) -> Result<R>,
) -> Answer<R> {
    let Some(conn) = held.as_ref() else {
        // `lend` lends only a slot that holds its connection.
        return Answer {
            result: Err(Error::Closed),
            hooks: Vec::new(),
        };
    };
    let outer = ON_CONNECTION_THREAD.with(|on| on.replace(true));
    let answer = match guarded(conn, || context.run(conn, f)) {
        Some(result) => Answer {
            result,
            hooks: conn.take_fired(),
        },
        None => Answer {
            result: Err(Error::Panicked),
            hooks: Vec::new(),
        },
    };
    ON_CONNECTION_THREAD.with(|on| on.set(outer));
    answer
}

/// Run the job `f` on this thread with a borrowed connection, when its context allows it (no
/// receivers on the connection) and a connection is free ([`lend`], [`run_lent`]). Gives `f`
/// back otherwise.
fn run_here<R, F: FnOnce(&Conn) -> Result<R>>(
    jobs: &Jobs,
    context: JobContext,
    f: F,
) -> std::result::Result<Answer<R>, NotHere<F>> {
    match lend(jobs, &context) {
        Some(held) => Ok(run_lent(&held, context, f)),
        None => Err((context, f)),
    }
}

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

/// Start `count` threads serving `queue`, each with its own connection; returns once all are
/// open, with the threads and the [`Jobs`] that reach them (`lend`: whose connections callers
/// may borrow).
pub(crate) async fn spawn(
    name: &str,
    count: usize,
    open: Open,
    shared: Arc<Shared>,
    (sender, queue): (flume::Sender<Job>, flume::Receiver<Job>),
    serving: Serving,
    lend: bool,
) -> std::result::Result<(Vec<JoinHandle<()>>, Jobs), DbError> {
    let mut handles = Vec::with_capacity(count);
    let mut slots = Vec::with_capacity(count);
    let mut ready = Vec::with_capacity(count);
    for index in 0..count {
        let (opened, ready_rx) = oneshot::channel();
        ready.push(ready_rx);
        let slot = Slot::new();
        slots.push(slot.clone());
        let (open, shared, queue) = (open.clone(), shared.clone(), queue.clone());
        let handle = std::thread::Builder::new()
            .name(format!("herald-{name}-{index}"))
            .spawn(move || match open() {
                Ok(backend) => {
                    *slot.hold() = Some(Conn::new(backend, shared));
                    let _ = opened.send(Ok(()));
                    serve(&slot, &queue, &open, serving);
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
    let jobs = Jobs::new(sender, if lend { slots.into() } else { Arc::new([]) });
    Ok((handles, jobs))
}

fn serve(slot: &Slot, jobs: &flume::Receiver<Job>, open: &Open, serving: Serving) {
    ON_CONNECTION_THREAD.with(|on| on.set(true));
    let group = serving == Serving::SoleWriter { group_commit: true };
    let mut holds = (serving != Serving::Pooled).then(Holds::default);
    REPORTS_HOLDS.with(|reports| reports.set(holds.is_some()));
    let mut next = receive(jobs);
    while let Some(job) = next.take() {
        {
            let mut held = slot.hold();
            HOLD_ANSWERS.with(|h| h.set(true));
            let Some(conn) = held.as_mut() else {
                return;
            };
            if !conn.backend_alive() {
                match open() {
                    Ok(backend) => *conn = Conn::new(backend, conn.shared().clone()),
                    Err(error) => {
                        tracing::warn!(target: "herald::store", %error, "reconnecting failed")
                    }
                }
            }
            let conn = &*conn;
            let started = holds.is_some().then(Instant::now);
            let came = match job {
                Job::Write(_) => HeldBy::Writes(1),
                Job::Alone(_) => HeldBy::Job,
            };
            next = match job {
                Job::Write(write) if group && !jobs.is_empty() => write_group(write, conn, jobs),
                job => {
                    run(job, conn);
                    None
                }
            };
            let by = HELD_BY
                .with(|held| held.borrow_mut().take())
                .unwrap_or(came);
            if let (Some(holds), Some(started)) = (&mut holds, started) {
                holds.ended(
                    started.elapsed(),
                    conn.signals().slow_threshold(),
                    jobs.len(),
                    &by,
                );
            }
            HOLD_ANSWERS.with(|h| h.set(false));
        }
        send_held_answers();
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
    /// `by` held the writer for `held`: report it when that is at least `threshold`.
    fn ended(&mut self, held: Duration, threshold: Duration, waiting: usize, by: &HeldBy) {
        if held < threshold || matches!(by, HeldBy::Nobody) {
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
        let what = by.what();
        tracing::warn!(
            target: "herald::writer",
            held_ms = held.as_secs_f64() * 1e3,
            held_by = %what,
            waiting,
            long_holds = self.unreported,
            longest_ms = self.longest.as_secs_f64() * 1e3,
            "SQLite's writer was held for {:.1} ms by {what}, and every write of this database \
             waited meanwhile ({waiting} queued now; long holds since the last report: {}, the \
             longest {:.1} ms): {}",
            held.as_secs_f64() * 1e3,
            self.unreported,
            self.longest.as_secs_f64() * 1e3,
            by.advice(),
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
    guarded(conn, || match job {
        Job::Alone(run) => run(conn),
        Job::Write(write) => write(conn)(Ok(())),
    });
}

/// Run `job` on `conn`; `None` when it panicked outside the receivers (which the dispatcher
/// already catches): that is logged and what it left open is rolled back.
fn guarded<T>(conn: &Conn, job: impl FnOnce() -> T) -> Option<T> {
    let outcome = catch_unwind(AssertUnwindSafe(job));
    if outcome.is_err() {
        tracing::error!(target: "herald::store", "a store job panicked; its transaction was rolled back");
        abandon(conn);
    }
    outcome.ok()
}

/// Roll back whatever is open and run the rollback hooks that fire, here: no caller is waiting
/// for them (its job panicked, or its transaction was dropped).
pub(crate) fn abandon(conn: &Conn) {
    while conn.in_transaction() {
        conn.rollback();
    }
    hooks::run_blocking(conn.take_fired());
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
    conn.grouped.store(true, Relaxed);
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
                conn.grouped.store(false, Relaxed);
                abandon(conn);
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
    conn.grouped.store(false, Relaxed);
    held_by(|| HeldBy::Writes(finishes.len()));
    let committed = conn.commit();
    // Each write took its own hooks; what fired at the shared end is the writes' business only.
    drop(conn.take_fired());
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
fn submit(jobs: &Jobs, job: Job) -> Result<bool> {
    if on_connection_thread() {
        return Err(Error::WouldDeadlock(DEADLOCK));
    }
    jobs.queue.send(job).map_err(|_| Error::Closed)?;
    Ok(jobs.queue.len() <= 1)
}

/// What a job carries from its caller to the connection: the caller's observer (a request
/// measuring its receivers), mutes, nesting depth, and async runtime (so that `in_transaction`
/// async receivers can use its timers and IO). Captured on the caller's thread.
pub(crate) struct JobContext {
    observer: Option<Arc<dyn observe::Observer>>,
    mutes: Option<mute::Mutes>,
    depth: usize,
    runtime: Option<tokio::runtime::Handle>,
    /// The job runs receivers on the connection (`in_transaction` ones; background receivers,
    /// which only write their task rows, do not count), which may await the caller's runtime or
    /// take long: it never runs on the caller's own thread.
    receivers: bool,
}

impl JobContext {
    /// The caller's context; its runtime only when the job will run async receivers
    /// (`receivers`), since a handle is a shared counter that every job would otherwise touch.
    pub(crate) fn capture(depth: usize, receivers: bool) -> Self {
        Self {
            observer: observe::current(),
            mutes: mute::current(),
            depth,
            runtime: if receivers {
                tokio::runtime::Handle::try_current().ok()
            } else {
                None
            },
            receivers,
        }
    }

    /// Run `f` on `conn` in this context, reporting its time to the caller's observer.
    fn run<R>(self, conn: &Conn, f: impl FnOnce(&Conn) -> Result<R>) -> Result<R> {
        let _runtime = self.runtime.as_ref().map(tokio::runtime::Handle::enter);
        conn.save_depth.store(self.depth, Relaxed);
        let result = mute::scope(self.mutes.as_ref(), || match &self.observer {
            None => f(conn),
            Some(observer) => {
                let started = Instant::now();
                let result = observe::scope(Some(observer.clone()), || f(conn));
                observer.store_job(started.elapsed());
                result
            }
        });
        conn.save_depth.store(0, Relaxed);
        result
    }
}

/// A job's answer: its result, and the hooks that fired while it ran (commit hooks after a
/// COMMIT, rollback hooks after a rollback), for the caller to run in order.
pub(crate) struct Answer<R> {
    pub(crate) result: Result<R>,
    pub(crate) hooks: Vec<Hook>,
}

/// Send `f` to a connection thread and wait for its answer.
pub(crate) fn call<R: Send + 'static>(
    jobs: &Jobs,
    context: JobContext,
    f: impl FnOnce(&Conn) -> Result<R> + Send + 'static,
) -> impl Future<Output = Answer<R>> + Send + 'static {
    ask(jobs, |reply| alone(reply, context, f))
}

/// Run the short job `f` (a read by key: one statement, at most one row) on this thread with a
/// borrowed connection when one is free (see [`Jobs`]), else as [`call`] does.
pub(crate) fn call_short<R: Send + 'static>(
    jobs: &Jobs,
    context: JobContext,
    f: impl FnOnce(&Conn) -> Result<R> + Send + 'static,
) -> impl Future<Output = Answer<R>> + Send + 'static {
    match run_here(jobs, context, f) {
        Ok(answer) => Either::Left(std::future::ready(answer)),
        Err((context, f)) => Either::Right(ask(jobs, |reply| alone(reply, context, f))),
    }
}

/// `f` as a job run alone on a connection thread, answering through `reply`.
fn alone<R: Send + 'static>(
    reply: oneshot::Sender<Answer<R>>,
    context: JobContext,
    f: impl FnOnce(&Conn) -> Result<R> + Send + 'static,
) -> Job {
    Job::Alone(Box::new(move |conn| {
        let result = context.run(conn, f);
        let hooks = conn.take_fired();
        answer(move || {
            let _ = reply.send(Answer { result, hooks });
        });
    }))
}

/// Send one autocommit write `f` to a connection thread and wait for its answer, which comes once
/// its transaction has committed (it may share that transaction with other writes: see the module
/// documentation). Inside a pinned transaction it is an ordinary job. Without receivers on the
/// connection it may run on this thread (see [`Jobs`]): it then commits alone.
pub(crate) fn write<R: Send + 'static>(
    jobs: &Jobs,
    context: JobContext,
    f: impl FnOnce(&Conn) -> Result<R> + Send + 'static,
) -> impl Future<Output = Answer<R>> + Send + 'static {
    let (writing, alone) = Writing::start(jobs);
    if alone && let Some(held) = lend(jobs, &context) {
        return Either::Left(std::future::ready(run_lent(&held, context, f)));
    }
    Either::Right(send_write(jobs, context, writing, f))
}

/// [`write`] for a job that changes `value` (a save's instance: the key it gets). Run on this
/// thread, the job changes `value` itself; sent to the writer's thread, it changes a copy, which
/// replaces `value` once the job has succeeded. `f` changes `value` only when it succeeds (a job
/// that runs receivers on the connection, which may change it and then fail, is always sent).
pub(crate) async fn write_in_place<T, R>(
    jobs: &Jobs,
    context: JobContext,
    value: &mut T,
    f: impl FnOnce(&Conn, &mut T) -> Result<R> + Send + 'static,
) -> Answer<R>
where
    T: Clone + Send + 'static,
    R: Send + 'static,
{
    let (writing, alone) = Writing::start(jobs);
    if alone && let Some(held) = lend(jobs, &context) {
        return run_lent(&held, context, |conn| f(conn, value));
    }
    on_a_copy(value, f, |job| send_write(jobs, context, writing, job)).await
}

/// A job over a copy of a value, answering with the changed copy.
pub(crate) type CopyJob<T, R> = Box<dyn FnOnce(&Conn) -> Result<(T, R)> + Send>;

/// Run `f` over a copy of `value` as the job `send` sends to a connection thread (a job there
/// owns what it works on); the copy replaces `value` once the job has succeeded.
pub(crate) async fn on_a_copy<T, R, Sent>(
    value: &mut T,
    f: impl FnOnce(&Conn, &mut T) -> Result<R> + Send + 'static,
    send: impl FnOnce(CopyJob<T, R>) -> Sent,
) -> Answer<R>
where
    T: Clone + Send + 'static,
    Sent: Future<Output = Answer<(T, R)>>,
{
    let copy = value.clone();
    let answer = send(Box::new(move |conn| {
        let mut copy = copy;
        let result = f(conn, &mut copy)?;
        Ok((copy, result))
    }))
    .await;
    let result = answer.result.map(|(copy, result)| {
        *value = copy;
        result
    });
    Answer {
        result,
        hooks: answer.hooks,
    }
}

/// Queue the autocommit write `f` for the writer's thread, counted in flight as `writing` until
/// its answer is back.
fn send_write<R: Send + 'static>(
    jobs: &Jobs,
    context: JobContext,
    writing: Writing,
    f: impl FnOnce(&Conn) -> Result<R> + Send + 'static,
) -> impl Future<Output = Answer<R>> + Send + 'static {
    let asked = ask(jobs, |reply| {
        Job::Write(Box::new(move |conn| {
            let mark = conn.pending_hooks();
            let result = context.run(conn, f);
            if result.is_err() && conn.grouped.load(Relaxed) {
                // Its one statement failed and SQLite undid it: the writes sharing the
                // transaction go on (a write with `in_transaction` receivers ran in a savepoint,
                // rolled back already).
                conn.forgive_failed_statement();
            }
            let mut hooks = conn.take_fired();
            // In a group, what this write registered waits for the shared COMMIT: it is this
            // write's, and goes back with its answer.
            let pending = if conn.grouped.load(Relaxed) {
                conn.take_pending_since(mark)
            } else {
                Vec::new()
            };
            Box::new(move |ended| {
                let (result, ending) = match (result, ended) {
                    (Ok(_), Err(error)) => (Err(error.for_grouped_write()), HookKind::Rollback),
                    (result, _) => (result, HookKind::Commit),
                };
                hooks.extend(pending.into_iter().filter(|h| h.kind == ending));
                answer(move || {
                    let _ = reply.send(Answer { result, hooks });
                });
            })
        }))
    });
    async move {
        let answer = asked.await;
        drop(writing);
        answer
    }
}

/// Queue the job `make` builds around the reply channel, and wait for the reply.
fn ask<R: Send + 'static>(
    jobs: &Jobs,
    make: impl FnOnce(oneshot::Sender<Answer<R>>) -> Job,
) -> impl Future<Output = Answer<R>> + Send + 'static {
    let (reply, answer) = oneshot::channel();
    let sent = submit(jobs, make(reply));
    async move {
        match sent {
            Ok(spin) => wait(answer, spin).await,
            Err(error) => Answer {
                result: Err(error),
                hooks: Vec::new(),
            },
        }
    }
}

/// Pin a connection for a transaction: one job opens the transaction and then serves the returned
/// channel on that connection until every sender of it is gone, rolling back whatever is still
/// open then. Nothing else runs on the connection meanwhile.
/// With `pipelined`, the transaction pipelines its INSERTs of new rows (`Db::begin_pipelined`).
pub(crate) fn pin(
    jobs: &Jobs,
    pipelined: bool,
) -> impl Future<Output = Result<Jobs>> + Send + 'static {
    let (session, session_jobs) = flume::unbounded::<Job>();
    let began = ask(jobs, move |reply| {
        Job::Alone(Box::new(move |conn| {
            let result = conn.begin();
            if pipelined && result.is_ok() {
                conn.pipeline_inserts();
            }
            let ok = result.is_ok();
            let _ = reply.send(Answer {
                result,
                hooks: Vec::new(),
            });
            if !ok {
                return;
            }
            // The session's caller waits for each answer: they go out at once.
            let outer = HOLD_ANSWERS.with(|h| h.replace(false));
            while let Some(job) = receive(&session_jobs) {
                run(job, conn);
            }
            abandon(conn);
            // Last, over whatever a job of the transaction said of itself.
            held_by(|| HeldBy::Transaction);
            HOLD_ANSWERS.with(|h| h.set(outer));
        }))
    });
    async move {
        began.await.result?;
        Ok(Jobs::from(session))
    }
}

/// Send a job without waiting for it (a rollback from `Drop`): the hooks it fires run on the
/// connection.
pub(crate) fn send_detached(jobs: &Jobs, f: impl FnOnce(&Conn) + Send + 'static) {
    let _ = jobs.queue.send(Job::Alone(Box::new(move |conn| {
        f(conn);
        hooks::run_blocking(conn.take_fired());
    })));
}

/// Wait for an answer: spin for up to [`SPIN`] when `spin`, then await.
async fn wait<R>(mut answer: oneshot::Receiver<Answer<R>>, spin: bool) -> Answer<R> {
    let dropped = || Answer {
        result: Err(Error::Panicked),
        hooks: Vec::new(),
    };
    let start = Instant::now();
    while spin && start.elapsed() < SPIN {
        match answer.try_recv() {
            Ok(Some(answer)) => return answer,
            Ok(None) => pause(start),
            Err(oneshot::Canceled) => return dropped(),
        }
    }
    answer.await.unwrap_or_else(|oneshot::Canceled| dropped())
}
