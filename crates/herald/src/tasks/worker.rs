//! The worker: its options, and its loop, which ties the parts together: the producer (claim and
//! settle, `producer.rs`), the executor (one attempt, `executor.rs`) and maintenance (heartbeats,
//! rescue, pruning, `maintenance.rs`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::task::{JoinError, JoinSet};

use crate::ReceiverResult;
use crate::error::{Error, Result};
use crate::model::{Model, from_json};
use crate::store::db::Db;
use crate::store::ops::Store;
use crate::tasks::executor::{Finished, decode_payload, runner};
#[cfg(feature = "postgres")]
use crate::tasks::listen::Listening;
use crate::tasks::maintenance::Maintenance;
use crate::tasks::producer::{Settle, Turn, collect, record, settle};
use crate::tasks::queue;
use crate::tasks::stats::TaskStats;
use crate::tasks::{RunError, Runner};

/// What woke the worker's loop: the first of these to happen (each is waited for only while it
/// can matter: shutdown, a new task and the poll interval until the worker is stopping, its grace
/// period after).
enum Woke {
    /// The shutdown future completed: stop claiming, wait up to the grace for running tasks.
    Shutdown,
    /// A running attempt finished.
    Finished(std::result::Result<Finished, JoinError>),
    /// A commit (or a NOTIFY) added tasks.
    Notified,
    /// The poll interval (or the backoff after a failed claim) passed.
    Napped,
    /// The grace period after shutdown is over.
    GraceOver,
    /// A piece of maintenance is due.
    MaintenanceDue,
}

/// What a running task knows about itself.
#[derive(Clone, Debug)]
pub struct TaskContext {
    pub(super) id: i64,
    pub(super) kind: Arc<str>,
    pub(super) attempt: u32,
    pub(super) max_attempts: u32,
    pub(super) db: Db,
    /// What the update that enqueued it changed, when it was carried (`previous`, `changed`).
    pub(super) changes: Option<Arc<Changes>>,
}

/// The previous row and the changed fields a task's payload carries.
#[derive(Debug)]
pub(super) struct Changes {
    previous: serde_json::Value,
    changed: Vec<String>,
}

impl Changes {
    /// What the payload carries, if it carries both parts.
    pub(super) fn from_payload(payload: &serde_json::Value) -> Option<Arc<Changes>> {
        let previous = payload.get("previous")?.clone();
        let changed = payload
            .get("changed")?
            .as_array()?
            .iter()
            .filter_map(|f| f.as_str().map(str::to_owned))
            .collect();
        Some(Arc::new(Changes { previous, changed }))
    }
}

impl TaskContext {
    /// The task's id.
    pub fn id(&self) -> i64 {
        self.id
    }
    /// Its kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }
    /// This attempt's number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
    /// Attempts allowed.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }
    /// The database the task came from.
    pub fn db(&self) -> &Db {
        &self.db
    }
    /// The fields the update that enqueued this task changed (column names), when the task
    /// carries them: a background receiver with `when_changed` or `changes`, enqueued by an
    /// update. `None` for a create, and when nothing asked.
    pub fn changed_fields(&self) -> Option<Vec<&str>> {
        let changes = self.changes.as_ref()?;
        Some(changes.changed.iter().map(String::as_str).collect())
    }

    /// Whether the update that enqueued this task changed `field`.
    pub fn has_changed(&self, field: &str) -> bool {
        self.changes
            .as_ref()
            .is_some_and(|c| c.changed.iter().any(|f| f == field))
    }

    /// The row as it was before the update that enqueued this task, when the task carries it;
    /// an error if it no longer decodes as an `M` (the model changed since).
    pub fn previous<M: Model>(&self) -> Result<Option<M>> {
        let Some(changes) = &self.changes else {
            return Ok(None);
        };
        from_json::<M>(&changes.previous)
            .map(Some)
            .map_err(|reason| Error::TaskQueue {
                op: "reading the previous row",
                reason: format!("task {} ({}): {reason}", self.id, M::NAME),
            })
    }

    /// What the update changed, as JSON (`{"price_cents": {"old": 900, "new": 1200}}`), from
    /// the previous row and `instance` as a worker got it.
    pub fn changes_json(&self, instance: &serde_json::Value) -> Option<serde_json::Value> {
        let changes = self.changes.as_ref()?;
        let mut out = serde_json::Map::new();
        for field in &changes.changed {
            let value = |row: &serde_json::Value| row.get(field).cloned().unwrap_or_default();
            out.insert(
                field.clone(),
                serde_json::json!({ "old": value(&changes.previous), "new": value(instance) }),
            );
        }
        Some(serde_json::Value::Object(out))
    }

    /// Record progress (any JSON) on the task's row, for people watching the queue.
    pub async fn progress(&self, progress: serde_json::Value) -> Result<()> {
        let (id, attempt) = (self.id, self.attempt);
        let text = progress.to_string();
        self.db
            .run(move |conn| queue::progress(conn, id, attempt, &text).map(drop))
            .await
    }
}

/// Runs tasks: `Worker::new(db).task(..).concurrency(n).run(shutdown).await`.
///
/// Embed one in the application process (`tokio::spawn(worker.run(shutdown))`) or run it alone in a
/// process of its own, on as many machines as wanted (PostgreSQL). Every option documents its default.
#[must_use = "a worker does nothing until `.run(..)` is awaited"]
pub struct Worker {
    pub(super) db: Db,
    pub(super) kinds: HashMap<String, Runner>,
    queues: Vec<String>,
    pub(super) concurrency: usize,
    lease: Duration,
    poll: Duration,
    retry_base: Duration,
    retention: Duration,
    grace: Duration,
    name: String,
    /// The statistics of the `Db`'s workers (its extension).
    pub(super) stats: Arc<TaskStats>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kinds: Vec<&String> = self.kinds.keys().collect();
        kinds.sort();
        f.debug_struct("Worker")
            .field("name", &self.name)
            .field("queues", &self.queues)
            .field("kinds", &kinds)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

/// Why a worker stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Attempts that completed.
    pub completed: u64,
    /// Attempts that failed (retried or dead).
    pub failed: u64,
    /// Tasks handed back unfinished at shutdown.
    pub released: u64,
}

impl Worker {
    /// A worker for `db`'s task queue, serving queue `"default"`, 4 at a time.
    pub fn new(db: Db) -> Self {
        Self {
            stats: db.extension::<TaskStats>(),
            db,
            kinds: HashMap::new(),
            queues: vec!["default".to_owned()],
            concurrency: 4,
            lease: Duration::from_secs(10),
            poll: Duration::from_millis(500),
            retry_base: Duration::from_secs(1),
            retention: Duration::from_secs(24 * 3600),
            grace: Duration::from_secs(10),
            name: default_name(),
        }
    }

    /// Also run every task kind declared with `#[receiver(.., background)]` in the program.
    pub fn autodiscover(mut self) -> Self {
        for declared in inventory::iter::<crate::tasks::StaticTask> {
            self = (declared.register)(self);
        }
        self
    }

    /// The task kinds this worker runs.
    pub fn kinds(&self) -> Vec<&str> {
        let mut kinds: Vec<&str> = self.kinds.keys().map(String::as_str).collect();
        kinds.sort_unstable();
        kinds
    }

    /// Run tasks of `kind` with `run`, which gets the task's JSON data (see [`crate::tasks::Task::new`]).
    pub fn task<F, Fut>(mut self, kind: &str, run: F) -> Self
    where
        F: Fn(serde_json::Value, TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ReceiverResult> + Send + 'static,
    {
        let runner = runner(|payload| decode_payload(payload, None), run);
        self.kinds.insert(kind.to_owned(), runner);
        self
    }

    /// Run background-receiver tasks of `kind` for model `M` with `run`, which gets the instance as
    /// it was written.
    pub fn model_task<M: Model, F, Fut>(mut self, kind: &str, run: F) -> Self
    where
        F: Fn(M, TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ReceiverResult> + Send + 'static,
    {
        let decode = |payload: &serde_json::Value| {
            let instance = decode_payload(payload, Some(M::NAME))?;
            from_json::<M>(&instance).map_err(|e| {
                RunError::Undecodable(format!(
                    "the {} in the payload no longer decodes: {e}",
                    M::NAME
                ))
            })
        };
        self.kinds.insert(kind.to_owned(), runner(decode, run));
        self
    }

    /// The queues to serve. Default: `["default"]`.
    pub fn queues<I: IntoIterator<Item = S>, S: Into<String>>(mut self, queues: I) -> Self {
        self.queues = queues.into_iter().map(Into::into).collect();
        self
    }

    /// How many tasks run at once. Default: 4.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// How long a claim holds a task without a heartbeat; a worker that dies loses its tasks after
    /// this, and another runs them. Heartbeats renew it every third of it. Default: 10 s.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(30));
        self
    }

    /// How often to look for tasks when nothing wakes the worker (a commit in this process does,
    /// and on PostgreSQL a notification from another process). Default: 500 ms.
    pub fn poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// The first retry's delay; each further retry doubles it (with ±25 % jitter, at most 1 h).
    /// Default: 1 s.
    pub fn retry_base(mut self, base: Duration) -> Self {
        self.retry_base = base;
        self
    }

    /// How long completed tasks are kept. Default: 24 h.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// At shutdown, how long running tasks may take to finish before they are handed back.
    /// Default: 10 s.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The name recorded on the tasks it claims; on PostgreSQL also the name of its presence (see
    /// [`run`](Self::run)), so live workers need distinct names. Default: `host:pid`, and
    /// `host:pid-N` for the Nth worker of a process.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    pub(super) fn backoff(&self, attempt: u32) -> Duration {
        backoff(self.retry_base, attempt, fastrand::f64())
    }

    /// Run until `shutdown` completes: then stop claiming, let running tasks finish within the
    /// shutdown grace, and hand back the ones that did not.
    ///
    /// Each turn of the loop is one transaction: it records the outcomes of the attempts that
    /// finished since the last turn and, with free slots, moves the tasks writes appended to the
    /// outbox into the tasks table (unless another worker is moving them) and claims as many as
    /// there are free slots.
    ///
    /// On PostgreSQL the worker also holds a presence lock on a session of its own for as long as
    /// it runs, and looks twice a second for workers whose session is gone (a `kill -9`, a lost
    /// network): their running tasks run again within about a second instead of after their lease.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<WorkerReport> {
        tracing::info!(target: "herald::worker", worker = %self.name, queues = ?self.queues, kinds = ?self.kinds(), concurrency = self.concurrency, "worker started");
        let wake = self.db.tasks_added();
        #[cfg(feature = "postgres")]
        self.db.extension::<Listening>().start(&self.db);
        let mut maintenance =
            Maintenance::start(&self.db, &self.name, self.lease, self.retention).await;
        let mut shutdown = std::pin::pin!(shutdown);
        let mut running: JoinSet<Finished> = JoinSet::new();
        let mut held: HashMap<i64, u32> = HashMap::new();
        let mut finished: Vec<Finished> = Vec::new();
        let mut report = WorkerReport::default();
        let mut stopping: Option<tokio::time::Instant> = None;
        let mut busy_at: Option<tokio::time::Instant> = None;
        let mut claim_backoff = Duration::ZERO;
        loop {
            while let Some(done) = running.try_join_next() {
                collect(done, &mut held, &mut finished);
            }
            let free = if stopping.is_none() && claim_backoff.is_zero() {
                self.concurrency - running.len()
            } else {
                0
            };
            let mut full = false;
            if !finished.is_empty() || free > 0 {
                let outcomes: Vec<Settle> = finished
                    .drain(..)
                    .map(|f| self.judge(f, &mut report))
                    .collect();
                let had_outcomes = !outcomes.is_empty();
                let (queues, name, lease) = (self.queues.clone(), self.name.clone(), self.lease);
                let settled = self
                    .db
                    .run(move |conn| settle(conn, &outcomes, &queues, free, &name, lease))
                    .await;
                match settled {
                    Ok(Turn { claimed, left_work }) => {
                        full = free > 0 && claimed.len() == free;
                        if had_outcomes || !claimed.is_empty() {
                            busy_at = Some(tokio::time::Instant::now());
                        }
                        if left_work {
                            // Moved, committed, and not all claimed here: another worker of this
                            // process may take the rest now.
                            wake.notify_one();
                        }
                        for task in claimed {
                            held.insert(task.id, task.attempt);
                            self.start(&mut running, task);
                        }
                    }
                    Err(error) => {
                        // The outcomes were not recorded: their leases expire and the tasks run
                        // again (at least once).
                        tracing::warn!(target: "herald::worker", %error, "recording outcomes and claiming tasks failed; retrying");
                        claim_backoff = Duration::from_millis(200);
                    }
                }
            }
            if stopping.is_some() && running.is_empty() {
                break;
            }
            if full {
                continue;
            }
            // Recently busy: look again soon, in case a throttled NOTIFY (or a commit between two
            // claims) left a task waiting.
            let poll = match busy_at {
                Some(at) if at.elapsed() < queue::BUSY_POLL_WINDOW => queue::NOTIFY_EVERY,
                _ => self.poll,
            };
            let deadline =
                stopping.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            let nap = if claim_backoff.is_zero() {
                poll
            } else {
                claim_backoff
            };
            let woke = {
                let mut notified = std::pin::pin!(wake.notified());
                let mut nap = std::pin::pin!(tokio::time::sleep(nap));
                let mut grace = std::pin::pin!(tokio::time::sleep_until(deadline));
                let mut due = std::pin::pin!(tokio::time::sleep_until(maintenance.due()));
                let stopping = stopping.is_some();
                std::future::poll_fn(|cx| {
                    if !stopping && shutdown.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Woke::Shutdown);
                    }
                    if !running.is_empty()
                        && let Poll::Ready(Some(done)) = running.poll_join_next(cx)
                    {
                        return Poll::Ready(Woke::Finished(done));
                    }
                    if !stopping {
                        if notified.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Woke::Notified);
                        }
                        if nap.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Woke::Napped);
                        }
                    } else if grace.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Woke::GraceOver);
                    }
                    if due.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Woke::MaintenanceDue);
                    }
                    Poll::Pending
                })
                .await
            };
            match woke {
                Woke::Shutdown => {
                    tracing::info!(target: "herald::worker", running = running.len(), "shutting down");
                    stopping = Some(tokio::time::Instant::now() + self.grace);
                }
                Woke::Finished(done) => {
                    collect(done, &mut held, &mut finished);
                    if stopping.is_none() {
                        self.linger(&mut running, &mut held, &mut finished).await;
                    }
                }
                Woke::Notified => {}
                Woke::Napped => claim_backoff = Duration::ZERO,
                Woke::GraceOver => {
                    self.hand_back(&mut running, &mut held, &mut finished, &mut report)
                        .await?;
                    break;
                }
                Woke::MaintenanceDue => {
                    if maintenance.turn(&self.db, &held).await.rescued > 0 {
                        wake.notify_one();
                    }
                }
            }
        }
        tracing::info!(target: "herald::worker", worker = %self.name, ?report, "worker stopped");
        Ok(report)
    }

    /// The shutdown grace is over: stop what still runs, record what finished and hand the rest
    /// back to the queue, in one transaction.
    async fn hand_back(
        &self,
        running: &mut JoinSet<Finished>,
        held: &mut HashMap<i64, u32>,
        finished: &mut Vec<Finished>,
        report: &mut WorkerReport,
    ) -> Result<()> {
        running.abort_all();
        while let Some(done) = running.try_join_next() {
            collect(done, held, finished);
        }
        let outcomes: Vec<Settle> = finished.drain(..).map(|f| self.judge(f, report)).collect();
        let unfinished: Vec<(i64, u32)> = held.drain().collect();
        report.released += unfinished.len() as u64;
        self.db
            .run(move |conn| {
                conn.atomic(|conn| {
                    record(conn, &outcomes)?;
                    for (id, attempt) in &unfinished {
                        queue::release(conn, *id, *attempt)?;
                    }
                    Ok(())
                })
            })
            .await
    }
}

/// `host:pid` for a process's first worker, `host:pid-N` for its Nth.
fn default_name() -> String {
    static WORKERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = WORKERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let base = format!("{}:{}", hostname(), std::process::id());
    if n == 0 {
        base
    } else {
        format!("{base}-{}", n + 1)
    }
}

/// The delay before retrying after failed attempt number `attempt` (1 for the first): `base`
/// doubled for each attempt after the first, at most 1 h, times a jitter between 0.75 and 1.25
/// picked by `unit` (in [0, 1)).
fn backoff(base: Duration, attempt: u32, unit: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    let delay = base
        .saturating_mul(1 << exponent)
        .min(Duration::from_secs(3600));
    delay.mul_f64(0.75 + 0.5 * unit)
}

/// This machine's host name (`localhost` if it is not valid Unicode or cannot be read).
fn hostname() -> String {
    gethostname::gethostname()
        .into_string()
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_per_attempt_within_a_quarter_either_way_and_stops_at_an_hour() {
        let base = Duration::from_millis(100);
        assert_eq!(backoff(base, 1, 0.0), Duration::from_millis(75));
        assert_eq!(backoff(base, 1, 0.5), Duration::from_millis(100));
        assert_eq!(backoff(base, 3, 0.5), Duration::from_millis(400));
        assert_eq!(backoff(base, 3, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(base, 40, 0.5), Duration::from_secs(3600));
        for _ in 0..100 {
            let delay = backoff(base, 2, fastrand::f64());
            assert!(
                (Duration::from_millis(150)..Duration::from_millis(250)).contains(&delay),
                "{delay:?}"
            );
        }
    }

    #[test]
    fn the_host_name_is_never_empty() {
        assert!(!hostname().is_empty());
    }
}
