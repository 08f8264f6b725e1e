//! The worker: claims tasks in batches, runs them on the async runtime, records the outcome, keeps
//! their leases alive, rescues tasks whose worker died, and prunes old completed ones.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::task::JoinSet;

use crate::ReceiverResult;
use crate::error::Result;
use crate::model::{Model, from_json};
use crate::store::conn::Conn;
use crate::store::db::Db;
use crate::store::ops::Store;
use crate::tasks::listen::Listening;
use crate::tasks::presence::{self, Presence};
use crate::tasks::queue::{self, Claimed};
use crate::tasks::stats::TaskStats;
use crate::tasks::{PAYLOAD_VERSION, RunError, Runner};

/// What a running task knows about itself.
#[derive(Clone, Debug)]
pub struct TaskContext {
    id: i64,
    kind: Arc<str>,
    attempt: u32,
    max_attempts: u32,
    db: Db,
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
    db: Db,
    kinds: HashMap<String, Runner>,
    queues: Vec<String>,
    concurrency: usize,
    lease: Duration,
    poll: Duration,
    retry_base: Duration,
    retention: Duration,
    grace: Duration,
    name: String,
    /// The statistics of the `Db`'s workers (its extension).
    stats: Arc<TaskStats>,
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

enum Outcome {
    Done,
    Failed(String),
    Dead(String),
}

struct Finished {
    task: Claimed,
    outcome: Outcome,
    ran: Duration,
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

    fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        let base = self
            .retry_base
            .saturating_mul(1 << exponent)
            .min(Duration::from_secs(3600));
        let jitter = 0.75 + 0.5 * fastrand_unit();
        base.mul_f64(jitter)
    }

    /// Run until `shutdown` completes: then stop claiming, let running tasks finish within the
    /// shutdown grace, and hand back the ones that did not.
    ///
    /// Each turn of the loop is one transaction: it records the outcomes of the attempts that
    /// finished since the last turn and claims as many new tasks as there are free slots.
    ///
    /// On PostgreSQL the worker also holds a presence lock on a session of its own for as long as
    /// it runs, and looks twice a second for workers whose session is gone (a `kill -9`, a lost
    /// network): their running tasks run again within about a second instead of after their lease.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<WorkerReport> {
        tracing::info!(target: "herald::worker", worker = %self.name, queues = ?self.queues, kinds = ?self.kinds(), concurrency = self.concurrency, "worker started");
        let wake = self.db.tasks_added();
        self.db.extension::<Listening>().start(&self.db);
        let presence = match self.db.postgres_session() {
            Some((config, schema)) => {
                let key = presence::key(schema.as_deref(), &self.name);
                let name = self.name.clone();
                tokio::task::spawn_blocking(move || Presence::hold(config, key, &name))
                    .await
                    .ok()
                    .flatten()
                    .map(|held| (held, schema))
            }
            None => None,
        };
        let mut next_look = tokio::time::Instant::now() + presence::LOOK_EVERY;
        let mut shutdown = std::pin::pin!(shutdown);
        let mut running: JoinSet<Finished> = JoinSet::new();
        let mut held: HashMap<i64, u32> = HashMap::new();
        let mut finished: Vec<Finished> = Vec::new();
        let mut report = WorkerReport::default();
        let mut stopping: Option<tokio::time::Instant> = None;
        let mut busy_at: Option<tokio::time::Instant> = None;
        let mut next_heartbeat = tokio::time::Instant::now() + self.lease / 3;
        let mut next_rescue = tokio::time::Instant::now();
        let mut next_prune = tokio::time::Instant::now() + Duration::from_secs(60);
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
                    Ok(claimed) => {
                        full = free > 0 && claimed.len() == free;
                        if had_outcomes || !claimed.is_empty() {
                            busy_at = Some(tokio::time::Instant::now());
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
            let mut maintenance = next_heartbeat.min(next_rescue).min(next_prune);
            if presence.is_some() {
                maintenance = maintenance.min(next_look);
            }
            tokio::select! {
                () = &mut shutdown, if stopping.is_none() => {
                    tracing::info!(target: "herald::worker", running = running.len(), "shutting down");
                    stopping = Some(tokio::time::Instant::now() + self.grace);
                }
                Some(done) = running.join_next(), if !running.is_empty() => {
                    collect(done, &mut held, &mut finished);
                    if stopping.is_none() {
                        self.linger(&mut running, &mut held, &mut finished).await;
                    }
                }
                () = wake.notified(), if stopping.is_none() => {}
                () = tokio::time::sleep(if claim_backoff.is_zero() { poll } else { claim_backoff }), if stopping.is_none() => {
                    claim_backoff = Duration::ZERO;
                }
                () = tokio::time::sleep_until(deadline), if stopping.is_some() => {
                    running.abort_all();
                    while let Some(done) = running.try_join_next() {
                        collect(done, &mut held, &mut finished);
                    }
                    let outcomes: Vec<Settle> = finished.drain(..).map(|f| self.judge(f, &mut report)).collect();
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
                        .await?;
                    break;
                }
                () = tokio::time::sleep_until(maintenance) => {
                    let now = tokio::time::Instant::now();
                    if now >= next_heartbeat {
                        next_heartbeat = now + self.lease / 3;
                        let ids: Vec<(i64, u32)> = held.iter().map(|(k, v)| (*k, *v)).collect();
                        let lease = self.lease;
                        if let Err(error) = self.db.run(move |conn| queue::heartbeat(conn, &ids, lease)).await {
                            tracing::warn!(target: "herald::worker", %error, "heartbeat failed");
                        }
                    }
                    if now >= next_rescue {
                        next_rescue = now + (self.lease / 2).max(Duration::from_millis(20));
                        match self.db.run(queue::rescue).await {
                            Ok(0) => {}
                            Ok(n) => tracing::warn!(target: "herald::worker", rescued = n, "rescued tasks whose worker stopped"),
                            Err(error) => tracing::warn!(target: "herald::worker", %error, "rescue failed"),
                        }
                    }
                    if let Some((_, schema)) = &presence
                        && now >= next_look
                    {
                        next_look = now + presence::LOOK_EVERY;
                        let (schema, me) = (schema.clone(), self.name.clone());
                        match self.db.run(move |conn| presence::rescue_gone(conn, schema.as_deref(), &me)).await {
                            Ok(0) => {}
                            Ok(n) => {
                                tracing::warn!(target: "herald::worker", rescued = n, "rescued tasks whose worker is gone (its database session ended)");
                                wake.notify_one();
                            }
                            Err(error) => tracing::warn!(target: "herald::worker", %error, "looking for gone workers failed"),
                        }
                    }
                    if now >= next_prune {
                        next_prune = now + Duration::from_secs(60);
                        let retention = self.retention;
                        if let Err(error) = self.db.run(move |conn| queue::prune(conn, retention)).await {
                            tracing::warn!(target: "herald::worker", %error, "pruning failed");
                        }
                    }
                }
            }
        }
        tracing::info!(target: "herald::worker", worker = %self.name, ?report, "worker stopped");
        Ok(report)
    }

    fn start(&self, running: &mut JoinSet<Finished>, task: Claimed) {
        let runner = self.kinds.get(&task.kind).cloned();
        let ctx = TaskContext {
            id: task.id,
            kind: Arc::from(task.kind.as_str()),
            attempt: task.attempt,
            max_attempts: task.max_attempts,
            db: self.db.clone(),
        };
        let wait = Duration::from_micros((task.started_at - task.created_at).max(0) as u64);
        self.stats.kind(&task.kind).started(wait);
        running.spawn(async move {
            let started = Instant::now();
            let outcome = match runner {
                None => Outcome::Dead(format!("no worker knows the task kind `{}`", task.kind)),
                Some(runner) => {
                    let payload = serde_json::from_str(&task.payload)
                        .unwrap_or_else(|e| serde_json::json!({ "undecodable": e.to_string() }));
                    let attempt = AssertUnwindSafe(runner(payload, ctx)).catch_unwind();
                    match tokio::time::timeout(task.timeout, attempt).await {
                        Err(_) => Outcome::Failed(format!("timed out after {:?}", task.timeout)),
                        Ok(Err(panic)) => {
                            Outcome::Failed(format!("panicked: {}", panic_text(&*panic)))
                        }
                        Ok(Ok(Err(RunError::Undecodable(e)))) => Outcome::Dead(e),
                        Ok(Ok(Err(RunError::Failed(e)))) => Outcome::Failed(e),
                        Ok(Ok(Ok(()))) => Outcome::Done,
                    }
                }
            };
            Finished {
                task,
                outcome,
                ran: started.elapsed(),
            }
        });
    }

    /// Decide what a finished attempt means (complete, retry after a backoff, or dead), count it,
    /// and log failures.
    fn judge(&self, finished: Finished, report: &mut WorkerReport) -> Settle {
        let Finished { task, outcome, ran } = finished;
        let stats = self.stats.kind(&task.kind);
        let (id, attempt, kind) = (task.id, task.attempt, task.kind);
        match outcome {
            Outcome::Done => {
                report.completed += 1;
                stats.finished(&kind, ran, false, false);
                Settle::Done { id, attempt }
            }
            Outcome::Failed(error) => {
                report.failed += 1;
                let retry = (attempt < task.max_attempts).then(|| self.backoff(attempt));
                stats.finished(&kind, ran, true, retry.is_some());
                tracing::warn!(target: "herald::worker", task = id, kind = %kind, attempt, error = %error, retry_in = ?retry, "task failed");
                Settle::Failed {
                    id,
                    attempt,
                    error,
                    retry,
                }
            }
            Outcome::Dead(error) => {
                report.failed += 1;
                stats.finished(&kind, ran, true, false);
                tracing::error!(target: "herald::worker", task = id, kind = %kind, error = %error, "task is dead");
                Settle::Failed {
                    id,
                    attempt,
                    error,
                    retry: None,
                }
            }
        }
    }
}

/// What to write for one finished attempt.
enum Settle {
    Done {
        id: i64,
        attempt: u32,
    },
    Failed {
        id: i64,
        attempt: u32,
        error: String,
        retry: Option<Duration>,
    },
}

/// After a task finishes while others still run, how long the worker waits for more to finish
/// before it records them and claims again, in one transaction.
const LINGER: Duration = Duration::from_millis(1);

impl Worker {
    /// Collect the attempts that finish within [`LINGER`], until a quarter of the slots are free:
    /// one turn then records them all, instead of a transaction for each finished task (which,
    /// under load, competes with the application's writes for SQLite's one writer). A new task's
    /// start does not wait for this: a free slot claims as soon as a commit wakes the worker.
    async fn linger(
        &self,
        running: &mut JoinSet<Finished>,
        held: &mut HashMap<i64, u32>,
        finished: &mut Vec<Finished>,
    ) {
        let enough = self.concurrency.div_ceil(4);
        let until = tokio::time::Instant::now() + LINGER;
        while finished.len() < enough && !running.is_empty() {
            tokio::select! {
                Some(done) = running.join_next() => collect(done, held, finished),
                () = tokio::time::sleep_until(until) => break,
            }
        }
    }
}

fn collect(
    done: std::result::Result<Finished, tokio::task::JoinError>,
    held: &mut HashMap<i64, u32>,
    finished: &mut Vec<Finished>,
) {
    match done {
        Ok(done) => {
            held.remove(&done.task.id);
            finished.push(done);
        }
        // A runner that was aborted (shutdown) or whose task panicked outside the catch: its
        // lease expires and the task runs again.
        Err(error) => tracing::error!(target: "herald::worker", %error, "a task runner stopped"),
    }
}

/// Write the outcomes: completions in one statement, failures one by one. An attempt whose lease
/// was taken over is not recorded (fenced by its attempt number), nor one of a task cancelled
/// while it ran (fenced by its state).
fn record(conn: &Conn, outcomes: &[Settle]) -> Result<()> {
    let done: Vec<(i64, u32)> = outcomes
        .iter()
        .filter_map(|o| match o {
            Settle::Done { id, attempt } => Some((*id, *attempt)),
            Settle::Failed { .. } => None,
        })
        .collect();
    let completed = queue::complete_many(conn, &done)?;
    if completed < done.len() as u64 {
        tracing::warn!(target: "herald::worker", lost = done.len() as u64 - completed, "some tasks were cancelled while they ran, or their leases were taken over; their completions were not recorded");
    }
    for outcome in outcomes {
        if let Settle::Failed {
            id,
            attempt,
            error,
            retry,
        } = outcome
            && !queue::fail(conn, *id, *attempt, error, *retry)?
        {
            tracing::warn!(target: "herald::worker", task = id, attempt, "the task was cancelled while it ran, or its lease was taken over; this failure was not recorded");
        }
    }
    Ok(())
}

/// On PostgreSQL, let the worker's own transaction commit without waiting for its WAL flush. A
/// claim or an outcome lost to a server crash only means the task runs again, which at-least-once
/// delivery allows; the enqueueing transaction, which must not lose the task, keeps its durability.
fn relax_durability(conn: &Conn) -> Result<()> {
    if conn.dialect() == crate::model::Dialect::Postgres {
        conn.batch("SET LOCAL synchronous_commit = off")?;
    }
    Ok(())
}

/// One turn of the worker: record `outcomes` and claim up to `free` tasks, in one transaction.
fn settle(
    conn: &Conn,
    outcomes: &[Settle],
    queues: &[String],
    free: usize,
    name: &str,
    lease: Duration,
) -> Result<Vec<Claimed>> {
    conn.atomic(|conn| {
        relax_durability(conn)?;
        record(conn, outcomes)?;
        if free == 0 {
            return Ok(Vec::new());
        }
        queue::claim(conn, queues, free, name, lease)
    })
}

/// A runner: decode the payload into what `run` takes (an undecodable payload is dead at once),
/// then run it; its error fails the attempt.
fn runner<T, D, F, Fut>(decode: D, run: F) -> Runner
where
    T: Send + 'static,
    D: Fn(&serde_json::Value) -> std::result::Result<T, RunError> + Send + Sync + 'static,
    F: Fn(T, TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ReceiverResult> + Send + 'static,
{
    let (decode, run) = (Arc::new(decode), Arc::new(run));
    Arc::new(move |payload, ctx| {
        let (decode, run) = (decode.clone(), run.clone());
        async move {
            let input = decode(&payload)?;
            run(input, ctx)
                .await
                .map_err(|e| RunError::Failed(e.to_string()))
        }
        .boxed()
    })
}

fn decode_payload(
    payload: &serde_json::Value,
    model: Option<&str>,
) -> std::result::Result<serde_json::Value, RunError> {
    if let Some(e) = payload.get("undecodable") {
        return Err(RunError::Undecodable(format!(
            "the payload is not JSON: {e}"
        )));
    }
    let version = payload.get("v").and_then(serde_json::Value::as_i64);
    if version != Some(PAYLOAD_VERSION) {
        return Err(RunError::Undecodable(format!(
            "payload version {} is not one this worker reads ({PAYLOAD_VERSION})",
            version.map_or_else(|| "missing".to_owned(), |v| v.to_string())
        )));
    }
    match model {
        None => Ok(payload
            .get("data")
            .cloned()
            .unwrap_or(serde_json::Value::Null)),
        Some(expected) => {
            let found = payload
                .get("model")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("none");
            if found != expected {
                return Err(RunError::Undecodable(format!(
                    "the payload is for model `{found}`, not `{expected}`"
                )));
            }
            payload
                .get("instance")
                .cloned()
                .ok_or_else(|| RunError::Undecodable("the payload has no instance".to_owned()))
        }
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic".to_owned())
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

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "localhost".to_owned(), |h| h.trim().to_owned())
}

/// A number in [0, 1) for jitter; not for anything that needs real randomness.
fn fastrand_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}
