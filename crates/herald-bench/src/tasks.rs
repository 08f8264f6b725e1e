//! The task rows: the worker side of background receivers. (`save_background`, what a background
//! receiver adds to the save itself, is a save row, in `rows.rs`.)
//!
//! - `tasks_drain_*`: how fast one worker in this process empties a queue of no-op tasks.
//! - `tasks_drain_floor_*`: the floor under those: the worker's claim and completion statements
//!   through the bare driver, with nothing else ([`floor`]).
//! - `commit_to_start_*`: from a save's commit to its background task starting, one save at a
//!   time. SQLite: the worker in this process, woken by the commit. PostgreSQL: the worker in
//!   another process, woken by `NOTIFY` (or by its poll).
//! - `rescue_after_death`: a worker holding a task is killed with SIGKILL; from the kill to the task
//!   starting again in a worker here (the dead worker's lease expires, a rescue puts it back).
//! - `rescue_after_death_postgres`: the same on PostgreSQL, where the dead worker's database
//!   session ends with it and its presence lock goes: a worker here puts its task back within a
//!   look (500 ms), long before its lease.
//!
//! The other process is this binary run with the hidden `--worker-for URL [--schema S]`
//! ([`child`]): a worker with the production defaults that reports on its stdout, one line per
//! event, and stops when its stdin closes (so it cannot outlive a bench that dies).

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use herald::Db;
use herald::Store;
use herald::dispatch::Error as ReceiverError;
use herald::tasks::{Background, Task, TaskContext, TaskOptions, Worker, WorkerReport};
use serde_json::json;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::Row;
use crate::rows::{Book, Plan, Samples, new_book};

mod floor;

/// The tasks the drain rows run: they do nothing.
const NOOP: &str = "bench_noop";
/// The kind of the background receiver on `Book`'s `post_save`.
const REINDEX: &str = "reindex";
/// The task the rescue row's child claims and never finishes.
const LONG: &str = "bench_long";

/// The bound on every wait for a worker: a row that exceeds it fails instead of hanging.
const BOUND: Duration = Duration::from_secs(60);

/// The drain rows enqueue their tasks in this many transactions.
const ENQUEUE_TRANSACTIONS: usize = 10;

/// The drain worker's concurrency. Each turn of the worker records every outcome that finished and
/// claims as many tasks as there are free slots, in one transaction, so for no-op tasks the
/// concurrency is the batch size: 4 (the default) drained about 19,000 tasks/s on SQLite, 32 about
/// 58,000, 128 about 69,000 (2 cores, loaded machine); PostgreSQL 5,300, 18,000 and 23,000.
const DRAIN_CONCURRENCY: usize = 128;

/// Saves whose task is waited for but not measured, before a `commit_to_start` row: the worker
/// (and, on PostgreSQL, the child's `LISTEN` connection) settle.
const WARM_UP: usize = 5;

/// The most a `commit_to_start` row spends per measured save on average; past
/// `starts × this`, it reports the saves it has (a worker woken only by its 500 ms poll would
/// otherwise take minutes).
const START_BUDGET_PER_SAVE: Duration = Duration::from_millis(25);

/// The SQLite task rows, in files of their own in `dir`.
pub(crate) async fn sqlite(
    plan: &Plan,
    dir: &Path,
    wanted: &dyn Fn(&str) -> bool,
) -> anyhow::Result<Vec<Row>> {
    let url = |file: &str| format!("sqlite://{}", dir.join(file).display());
    let mut rows = Vec::new();
    if wanted("tasks_drain_sqlite") {
        let db = open(&url("drain.db"), None).await?;
        rows.push(drain(&db, plan.ops).await?.row("tasks_drain_sqlite"));
    }
    if wanted("tasks_drain_floor_sqlite") {
        let path = dir.join("floor.db");
        let db = open(&format!("sqlite://{}", path.display()), None).await?;
        enqueue_noops(&db, plan.ops).await?;
        let tasks = plan.ops;
        let drained = on_a_thread(move || floor::sqlite(&path, tasks)).await?;
        rows.push(drained.row("tasks_drain_floor_sqlite"));
    }
    if wanted("commit_to_start_sqlite") {
        let db = open_reindexing(&url("start.db"), None).await?;
        let starts = Starts::in_process(&db);
        rows.push(
            commit_to_start(&db, starts, plan)
                .await?
                .row("commit_to_start_sqlite".to_owned(), "op")
                .latency_only(),
        );
    }
    if wanted("rescue_after_death") {
        rows.push(
            rescue(&url("rescue.db"), None, plan.rescues)
                .await?
                .row("rescue_after_death".to_owned(), "op")
                .latency_only(),
        );
    }
    Ok(rows)
}

/// The PostgreSQL task rows, each in a schema of its own, dropped after.
pub(crate) async fn postgres(
    plan: &Plan,
    url: &str,
    wanted: &dyn Fn(&str) -> bool,
) -> anyhow::Result<Vec<Row>> {
    let schema = |row: &str| format!("herald_bench_{row}_{}", std::process::id());
    let mut rows = Vec::new();
    if wanted("tasks_drain_postgres") {
        let schema = schema("drain");
        let db = open(url, Some(&schema)).await?;
        let drained = drain(&db, plan.ops).await;
        drop_schema(&db, &schema).await?;
        rows.push(drained?.row("tasks_drain_postgres"));
    }
    if wanted("tasks_drain_floor_postgres") {
        let schema = schema("floor");
        let db = open(url, Some(&schema)).await?;
        let drained = async {
            enqueue_noops(&db, plan.ops).await?;
            let (url, schema, tasks) = (url.to_owned(), schema.clone(), plan.ops);
            on_a_thread(move || floor::postgres(&url, &schema, tasks)).await
        }
        .await;
        drop_schema(&db, &schema).await?;
        rows.push(drained?.row("tasks_drain_floor_postgres"));
    }
    if wanted("commit_to_start_postgres") {
        let schema = schema("start");
        let db = open_reindexing(url, Some(&schema)).await?;
        let measured = async {
            let starts = Starts::child(url, Some(&schema)).await?;
            commit_to_start(&db, starts, plan).await
        }
        .await;
        drop_schema(&db, &schema).await?;
        rows.push(
            measured?
                .row("commit_to_start_postgres".to_owned(), "op")
                .latency_only(),
        );
    }
    if wanted("rescue_after_death_postgres") {
        let schema = schema("rescue");
        let db = open(url, Some(&schema)).await?;
        let measured = rescue(url, Some(&schema), plan.rescues).await;
        drop_schema(&db, &schema).await?;
        rows.push(
            measured?
                .row("rescue_after_death_postgres".to_owned(), "op")
                .latency_only(),
        );
    }
    Ok(rows)
}

impl Row {
    /// The row measures a latency, not a rate: no `per_second`.
    fn latency_only(mut self) -> Self {
        self.per_second = None;
        self
    }
}

async fn open(url: &str, schema: Option<&str>) -> anyhow::Result<Db> {
    let mut builder = Db::open(url);
    if let Some(schema) = schema {
        builder = builder.schema(schema);
    }
    builder
        .connect()
        .await
        .with_context(|| format!("opening {url}"))
}

/// A database with the books table and one background receiver: every save adds a `reindex` task.
async fn open_reindexing(url: &str, schema: Option<&str>) -> anyhow::Result<Db> {
    let db = open(url, schema).await?;
    db.create_table::<Book>().await?;
    db.signals()
        .post_save::<Book>()
        .background(REINDEX, TaskOptions::default())
        .connect()
        .keep();
    Ok(db)
}

async fn drop_schema(db: &Db, schema: &str) -> anyhow::Result<()> {
    db.execute(
        format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"),
        vec![],
    )
    .await?;
    Ok(())
}

async fn within<T>(what: &str, f: impl Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(BOUND, f)
        .await
        .map_err(|_| anyhow!("waited {BOUND:?} for {what}"))
}

/// Now, in µs since the epoch (the queue's own clock).
fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// A worker running on this runtime until stopped.
pub(crate) struct Running {
    stop: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<herald::Result<WorkerReport>>,
}

impl Running {
    /// Start `worker` on the current runtime.
    pub(crate) fn spawn(worker: Worker) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(worker.run(async move {
            let _ = stopped.await;
        }));
        Self { stop, handle }
    }

    /// Ask it to stop and wait (within [`BOUND`]) until it has: its running tasks finish within
    /// the worker's shutdown grace or are handed back.
    pub(crate) async fn stop(self) -> anyhow::Result<WorkerReport> {
        let _ = self.stop.send(());
        Ok(within("the worker to stop", self.handle).await???)
    }
}

/// One worker's run through a queue of tasks.
struct Drained {
    tasks: usize,
    elapsed: Duration,
}

impl Drained {
    fn row(&self, name: &str) -> Row {
        Row {
            name: name.to_owned(),
            unit: "task",
            median_ns: self.elapsed.as_nanos() as f64 / self.tasks as f64,
            p99_ns: None,
            per_second: Some(self.tasks as f64 / self.elapsed.as_secs_f64()),
            ops: None,
        }
    }
}

/// Enqueue `tasks` no-op tasks (outside the timing), then time one worker from its start until no
/// task is available or running. The task function counts its runs; the queue is polled (every
/// millisecond) only once the last one has run, for the outcomes still being recorded.
async fn drain(db: &Db, tasks: usize) -> anyhow::Result<Drained> {
    enqueue_noops(db, tasks).await?;
    let ran = Arc::new(AtomicUsize::new(0));
    let all_ran = Arc::new(Notify::new());
    let worker = {
        let (ran, all_ran) = (ran.clone(), all_ran.clone());
        Worker::new(db.clone())
            .concurrency(DRAIN_CONCURRENCY)
            .task(NOOP, move |_data, _ctx| {
                if ran.fetch_add(1, Ordering::Relaxed) + 1 == tasks {
                    all_ran.notify_one();
                }
                std::future::ready(Ok(()))
            })
    };
    let started = Instant::now();
    let worker = Running::spawn(worker);
    within("the drain's last task to run", all_ran.notified()).await?;
    within("the drain's outcomes to be recorded", async {
        while unfinished(db).await? > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        anyhow::Ok(())
    })
    .await??;
    let elapsed = started.elapsed();
    let report = worker.stop().await?;
    if report.completed != tasks as u64 {
        bail!("the drain worker completed {report:?}, not {tasks} tasks");
    }
    Ok(Drained { tasks, elapsed })
}

/// Enqueue `tasks` no-op tasks in [`ENQUEUE_TRANSACTIONS`] transactions.
async fn enqueue_noops(db: &Db, tasks: usize) -> anyhow::Result<()> {
    let per_transaction = tasks.div_ceil(ENQUEUE_TRANSACTIONS).max(1);
    for first in (0..tasks).step_by(per_transaction) {
        let tx = db.begin().await?;
        for i in first..(first + per_transaction).min(tasks) {
            tx.enqueue(Task::new(NOOP, json!({ "i": i }))).await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// `f` on a thread of its own, outside the runtime (the `postgres` crate's client blocks on a
/// runtime of its own, which cannot run inside another).
async fn on_a_thread<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let (sender, answer) = oneshot::channel();
    std::thread::spawn(move || {
        let _ = sender.send(f());
    });
    answer.await.context("the floor's thread panicked")?
}

/// Tasks available or running.
async fn unfinished(db: &Db) -> anyhow::Result<u64> {
    Ok(db
        .tasks()
        .counts()
        .await?
        .iter()
        .filter(|c| c.state.is_pending())
        .map(|c| c.count)
        .sum())
}

/// Where a `commit_to_start` row learns that a save's task started.
enum Starts {
    /// A worker in this process sends the book's key and the `Instant` its task started.
    InProcess {
        worker: Running,
        started: mpsc::UnboundedReceiver<(Option<i64>, Instant)>,
    },
    /// A worker in another process prints the book's key and the wall-clock µs its task started.
    Child(ChildWorker),
}

impl Starts {
    /// A worker here with the production defaults, running `reindex` tasks.
    fn in_process(db: &Db) -> Self {
        let (sender, started) = mpsc::unbounded_channel();
        let worker = Worker::new(db.clone()).model_task::<Book, _, _>(
            REINDEX,
            move |book: Book, _ctx: TaskContext| {
                let sent = sender
                    .send((book.id, Instant::now()))
                    .map_err(|_| ReceiverError::msg("the row has ended"));
                std::future::ready(sent)
            },
        );
        Self::InProcess {
            worker: Running::spawn(worker),
            started,
        }
    }

    async fn child(url: &str, schema: Option<&str>) -> anyhow::Result<Self> {
        Ok(Self::Child(ChildWorker::spawn(url, schema).await?))
    }

    /// How long after the commit of `book` (`committed`: an `Instant` and the wall clock in µs,
    /// both taken just after the save returned) its task started, in ns.
    async fn latency(&mut self, book: i64, committed: (Instant, i64)) -> anyhow::Result<f64> {
        let (id, ns) = match self {
            Self::InProcess { started, .. } => {
                let (id, at) = within("the task to start", started.recv())
                    .await?
                    .context("the worker stopped")?;
                (
                    id,
                    at.saturating_duration_since(committed.0).as_nanos() as f64,
                )
            }
            Self::Child(child) => {
                let line = child.line("the task to start").await?;
                let parsed = line
                    .strip_prefix("started ")
                    .and_then(|rest| rest.split_once(' '))
                    .and_then(|(id, us)| Some((id.parse::<i64>().ok()?, us.parse::<i64>().ok()?)));
                let Some((id, started_us)) = parsed else {
                    bail!("the worker process said `{line}`, not `started <id> <µs>`");
                };
                (Some(id), ((started_us - committed.1).max(0) * 1_000) as f64)
            }
        };
        if id != Some(book) {
            bail!("waited for the task of book {book}; the task of {id:?} started");
        }
        Ok(ns)
    }

    async fn finish(self) -> anyhow::Result<()> {
        match self {
            Self::InProcess { worker, .. } => {
                worker.stop().await?;
            }
            Self::Child(mut child) => {
                child.kill()?;
            }
        }
        Ok(())
    }
}

/// Autocommit saves one at a time, each waiting for its task to start before the next: every
/// latency from the commit to the task's start (`means` holds them too, for the median).
async fn commit_to_start(db: &Db, mut starts: Starts, plan: &Plan) -> anyhow::Result<Samples> {
    let mut samples = Samples::default();
    let budget = START_BUDGET_PER_SAVE * plan.starts as u32;
    let began = Instant::now();
    for i in 0..WARM_UP + plan.starts {
        let mut book = new_book(i);
        db.save(&mut book).await?;
        let committed = (Instant::now(), now_us());
        let id = book.id.context("the save gave the book no key")?;
        let ns = starts.latency(id, committed).await?;
        if i >= WARM_UP {
            samples.each.push(ns);
        }
        if began.elapsed() > budget {
            eprintln!(
                "commit_to_start: stopped after {} of {} saves ({budget:?} spent)",
                samples.each.len(),
                plan.starts
            );
            break;
        }
    }
    starts.finish().await?;
    if samples.each.is_empty() {
        bail!("commit_to_start measured no save within {budget:?}");
    }
    samples.means = samples.each.clone();
    Ok(samples)
}

/// `count` times: a worker in another process claims a task that never ends and is killed with
/// SIGKILL; a worker here (started before the kill) runs the task once its lease has expired and
/// a rescue has put it back. From the kill to the task starting here.
async fn rescue(url: &str, schema: Option<&str>, count: usize) -> anyhow::Result<Samples> {
    let db = open(url, schema).await?;
    let mut samples = Samples::default();
    for _ in 0..count {
        db.enqueue(Task::new(LONG, json!({}))).await?;
        let mut child = ChildWorker::spawn(url, schema).await?;
        let line = child.line("the worker process to claim the task").await?;
        let Some(id) = line
            .strip_prefix("long ")
            .and_then(|id| id.parse::<i64>().ok())
        else {
            bail!("the worker process said `{line}`, not `long <id>`");
        };
        let (sender, mut started) = mpsc::unbounded_channel();
        let rescuer = Running::spawn(Worker::new(db.clone()).task(
            LONG,
            move |_data, ctx: TaskContext| {
                let sent = sender
                    .send((ctx.id(), Instant::now()))
                    .map_err(|_| ReceiverError::msg("the row has ended"));
                std::future::ready(sent)
            },
        ));
        // Let the rescuer enter its loop (its first claim finds nothing: the task is held).
        tokio::time::sleep(Duration::from_millis(50)).await;
        let killed = child.kill()?;
        let (rescued, at) = within("the killed worker's task to run again", started.recv())
            .await?
            .context("the rescuing worker stopped")?;
        if rescued != id {
            bail!("waited for task {id} to run again; task {rescued} ran");
        }
        samples
            .each
            .push(at.duration_since(killed).as_nanos() as f64);
        rescuer.stop().await?;
    }
    samples.means = samples.each.clone();
    Ok(samples)
}

/// This binary re-run as a worker ([`child`]): its stdout, line by line, and a kill.
struct ChildWorker {
    process: Child,
    lines: mpsc::UnboundedReceiver<String>,
}

impl ChildWorker {
    /// Start it, and wait for its `ready`.
    async fn spawn(url: &str, schema: Option<&str>) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding this binary to re-run it")?;
        let mut command = Command::new(exe);
        command.arg("--worker-for").arg(url);
        if let Some(schema) = schema {
            command.arg("--schema").arg(schema);
        }
        let mut process = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the worker process")?;
        let stdout = process
            .stdout
            .take()
            .context("the worker process has no stdout")?;
        let (sender, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut child = Self { process, lines };
        let ready = child.line("the worker process to start").await?;
        if ready != "ready" {
            bail!("the worker process said `{ready}`, not `ready`");
        }
        Ok(child)
    }

    async fn line(&mut self, what: &str) -> anyhow::Result<String> {
        within(what, self.lines.recv())
            .await?
            .with_context(|| format!("the worker process ended while waiting for {what}"))
    }

    /// SIGKILL it; returns the moment just after the signal was sent (then reaps it).
    fn kill(&mut self) -> anyhow::Result<Instant> {
        self.process.kill().context("killing the worker process")?;
        let killed = Instant::now();
        self.process
            .wait()
            .context("waiting for the killed worker process")?;
        Ok(killed)
    }
}

impl Drop for ChildWorker {
    fn drop(&mut self) {
        // Killed already, or a row failed half-way: either way it must not outlive the row.
        if let Ok(None) = self.process.try_wait() {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}

/// The other process (`--worker-for URL [--schema S]`): a worker on `url` with the production
/// defaults (lease 10 s, poll 500 ms, concurrency 4) until its stdin closes. It prints `ready`,
/// then one line as each task starts: `started <book key> <µs since the epoch>` for a `reindex`
/// task; `long <task id>` for a `bench_long` task, which then sleeps for an hour.
pub(crate) fn child(url: &str, schema: Option<&str>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let db = open(url, schema).await?;
        let worker = Worker::new(db)
            .model_task::<Book, _, _>(REINDEX, |book: Book, _ctx: TaskContext| {
                let started_us = now_us();
                say(&format!("started {} {started_us}", book.id.unwrap_or(-1)));
                std::future::ready(Ok(()))
            })
            .task(LONG, |_data, ctx: TaskContext| {
                say(&format!("long {}", ctx.id()));
                async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(())
                }
            });
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = stop.send(());
        });
        say("ready");
        worker
            .run(async move {
                let _ = stopped.await;
            })
            .await?;
        Ok(())
    })
}

/// One line to the parent.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // A parent that stopped reading is about to kill this process: nothing to do about it.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}
