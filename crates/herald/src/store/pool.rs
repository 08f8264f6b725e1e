//! Connection threads: each owns one connection and runs the jobs sent to it, one at a time.
//!
//! A job is a closure over [`Conn`]; a whole save (receivers and statements) is one job, so it
//! crosses to the connection's thread once however many receivers it has. A transaction pins a
//! thread: its first job opens the transaction and then serves the transaction's own channel
//! until the transaction ends.
//!
//! Both sides spin briefly before they sleep: a write takes microseconds, and a thread wake-up
//! costs more than that on a virtual machine. The spin is bounded ([`SPIN`]), then they block.

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
pub(crate) type Job = Box<dyn FnOnce(&Conn) + Send>;

/// How long each side waits actively before it sleeps: it spins for the first microseconds, then
/// yields its core between checks, so that on a busy machine the thread it waits for can run.
const SPIN: Duration = Duration::from_micros(50);

thread_local! {
    static ON_CONNECTION_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Opens a connection; called again to replace one the server closed.
pub(crate) type Open =
    Arc<dyn Fn() -> std::result::Result<Box<dyn Backend>, DbError> + Send + Sync>;

/// Start `count` threads serving `jobs`, each with its own connection; returns once all are open.
pub(crate) async fn spawn(
    name: &str,
    count: usize,
    open: Open,
    shared: Arc<Shared>,
    jobs: flume::Receiver<Job>,
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
                    serve(Conn::new(backend, shared), &jobs, &open);
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

fn serve(mut conn: Conn, jobs: &flume::Receiver<Job>, open: &Open) {
    ON_CONNECTION_THREAD.with(|on| on.set(true));
    while let Some(job) = receive(jobs) {
        if !conn.backend_alive() {
            match open() {
                Ok(backend) => conn = Conn::new(backend, conn.shared()),
                Err(error) => {
                    tracing::warn!(target: "herald::store", %error, "reconnecting failed")
                }
            }
        }
        run(job, &conn);
    }
}

/// Run one job; a panic outside the receivers (which the dispatcher already catches) is logged and
/// the caller gets [`Error::Panicked`] through its dropped reply.
pub(crate) fn run(job: Job, conn: &Conn) {
    if catch_unwind(AssertUnwindSafe(|| job(conn))).is_err() {
        tracing::error!(target: "herald::store", "a store job panicked; its transaction was rolled back");
        while conn.in_transaction() {
            conn.rollback();
        }
    }
}

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

fn submit(jobs: &flume::Sender<Job>, job: Job) -> Result<()> {
    if on_connection_thread() {
        return Err(Error::WouldDeadlock(DEADLOCK));
    }
    jobs.send(job).map_err(|_| Error::Closed)
}

/// Send `f` to a connection thread and wait for its result.
pub(crate) fn call<R: Send + 'static>(
    jobs: &flume::Sender<Job>,
    f: impl FnOnce(&Conn) -> Result<R> + Send + 'static,
) -> impl Future<Output = Result<R>> + Send + 'static {
    let (reply, answer) = oneshot::channel();
    // The caller's observer (a request measuring its receivers) follows the job to the connection
    // thread, and hears how long the job took there.
    let observer = observe::current();
    let sent = submit(
        jobs,
        Box::new(move |conn| {
            let result = match observer {
                None => f(conn),
                Some(observer) => {
                    let started = Instant::now();
                    let result = observe::scope(Some(observer.clone()), || f(conn));
                    observer.store_job(started.elapsed());
                    result
                }
            };
            let _ = reply.send(result);
        }),
    );
    async move {
        sent?;
        wait(answer).await
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
        Box::new(move |conn| {
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
        }),
    );
    async move {
        sent?;
        wait(answer).await?;
        Ok(session)
    }
}

/// Send a job without waiting for it (a rollback from `Drop`).
pub(crate) fn send_detached(jobs: &flume::Sender<Job>, f: impl FnOnce(&Conn) + Send + 'static) {
    let _ = jobs.send(Box::new(f));
}

/// Wait for a reply: spin for up to [`SPIN`], then await.
async fn wait<R>(mut answer: oneshot::Receiver<Result<R>>) -> Result<R> {
    let start = Instant::now();
    while start.elapsed() < SPIN {
        match answer.try_recv() {
            Ok(Some(result)) => return result,
            Ok(None) => pause(start),
            Err(oneshot::Canceled) => return Err(Error::Panicked),
        }
    }
    answer.await.map_err(|oneshot::Canceled| Error::Panicked)?
}
