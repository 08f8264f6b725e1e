//! Durable background receivers across processes: a writer killed with SIGKILL mid-run loses no
//! committed task and leaves none for uncommitted work, and several worker processes share one
//! PostgreSQL queue, each task running exactly once.
//!
//! Both tests re-run this test binary as child processes (`--exact <child test>`); a child test
//! does its part only when its environment variable is set, and returns at once otherwise.
// A build with one backend leaves out the other's tests, and what only they use.
#![cfg_attr(
    not(all(feature = "sqlite", feature = "postgres")),
    allow(dead_code, unused_imports)
)]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::collections::{BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{BOUND, Book, book, until, within};
use herald::Store;
use herald::dispatch::{Error as ReceiverError, Signals};
use herald::tasks::{Background, Task, TaskContext, TaskCount, TaskOptions, Worker};
use herald::{Db, SqlType, Value};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

/// Set (to a database URL) in the writer child of the crash test.
const CRASH_CHILD: &str = "HERALD_CRASH_CHILD";
/// Set (to a schema) in the writer child when the database is PostgreSQL.
const CRASH_SCHEMA: &str = "HERALD_CRASH_SCHEMA";
/// The writer child's announcement: `READY committed=N uncommitted=M`.
const READY: &str = "HERALD-CRASH-READY";
/// Committed saves the writer child makes before it announces itself.
const COMMITTED_BEFORE_READY: usize = 300;

/// Set (to a PostgreSQL URL) in the worker children of the many-workers test.
const WORKER_CHILD: &str = "HERALD_WORKER_CHILD";
/// Set (to a schema) in the worker children.
const WORKER_SCHEMA: &str = "HERALD_WORKER_SCHEMA";
/// A worker child's announcement, followed by its pid.
const WORKER_READY: &str = "HERALD-WORKER-READY";
/// Tasks the many-workers test enqueues.
const TASKS: i64 = 10_000;

/// How many tasks are in `state`, over all queues.
fn in_state(counts: &[TaskCount], state: &str) -> u64 {
    counts
        .iter()
        .filter(|c| c.state.as_str() == state)
        .map(|c| c.count)
        .sum()
}

/// Open `url` (in `schema` on PostgreSQL) with a fresh registry, as a child process does.
async fn open(url: &str, schema: Option<String>) -> Db {
    let mut builder = Db::open(url).signals(Signals::new()).pool_size(8);
    if let Some(schema) = schema {
        builder = builder.schema(schema);
    }
    builder.connect().await.unwrap()
}

async fn book_count(db: &Db) -> i64 {
    let rows = db
        .read(|c| c.query("SELECT COUNT(*) FROM books", &[], &[SqlType::Int]))
        .await
        .unwrap();
    match rows[0][0] {
        Value::Int(n) => n,
        ref other => panic!("a count of {other:?}"),
    }
}

/// How many PostgreSQL sessions have the application name `name`.
async fn sessions_named(db: &Db, name: String) -> i64 {
    let rows = db
        .read(move |c| {
            c.query(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = $1",
                &[Value::Text(name)],
                &[SqlType::Int],
            )
        })
        .await
        .unwrap();
    match rows[0][0] {
        Value::Int(n) => n,
        ref other => panic!("a count of {other:?}"),
    }
}

/// `url` with every session it opens named `name` (`application_name`), so that
/// [`sessions_named`] finds them.
fn named_sessions(url: &str, name: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}application_name={name}")
}

/// Wait until the sessions named `name` of a killed child have ended. The server finishes the
/// statement a killed client last sent (it may be a COMMIT) before it notices that the client is
/// gone; once the sessions have ended, what the tables hold is final.
async fn sessions_ended(db: &Db, name: &str) {
    until("the killed child's sessions to end", || {
        let (db, name) = (db.clone(), name.to_owned());
        async move { sessions_named(&db, name).await == 0 }
    })
    .await;
}

/// Lines a child test reads from its stdin; the channel closes when the parent closes the pipe
/// (or dies), which is how a child knows to stop if nobody kills it.
fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// This test binary re-run as a child process running only `test`; killed if the parent test
/// fails before it kills it.
struct ChildTest {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: mpsc::UnboundedReceiver<String>,
}

impl ChildTest {
    fn spawn(test: &str, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            stdin: child.stdin.take(),
            child,
            stdout: rx,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait, within the bound, for a line containing `marker`; returns what follows it. (The test
    /// harness prints `test name ... ` on the same line, so the marker need not start it.)
    async fn wait_for(&mut self, marker: &str) -> String {
        let pid = self.child.id();
        within(&format!("`{marker}` from child {pid}"), async {
            loop {
                match self.stdout.recv().await {
                    Some(line) => {
                        if let Some(at) = line.find(marker) {
                            return line[at + marker.len()..].trim().to_owned();
                        }
                    }
                    None => panic!(
                        "child {pid} closed its stdout before `{marker}`: {:?}",
                        self.child.try_wait()
                    ),
                }
            }
        })
        .await
    }

    fn still_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// SIGKILL, then reap.
    fn kill(mut self) -> ExitStatus {
        self.child.kill().unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for ChildTest {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `key=value` from the child's announcement.
fn field(announcement: &str, key: &str) -> usize {
    announcement
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no `{key}` in `{announcement}`"))
}

// ---- 1. a writer killed mid-run ----------------------------------------------------------------

/// The writer child: saves books until it is killed (or its stdin closes), in rounds of three
/// autocommit saves, a transaction of four saves that commits, and a transaction of four saves
/// that never commits. On PostgreSQL the two newest uncommitted transactions stay open while the
/// next rounds run, so uncommitted work is open at any moment; on SQLite, where an open write
/// transaction holds the only writer, each one stays open until the end of its round. It
/// announces itself after its first [`COMMITTED_BEFORE_READY`] committed saves, from inside an
/// uncommitted transaction, and keeps saving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child_saves_books_until_killed() {
    let Ok(url) = std::env::var(CRASH_CHILD) else {
        return;
    };
    let db = open(&url, std::env::var(CRASH_SCHEMA).ok()).await;
    db.create_table::<Book>().await.unwrap();
    db.signals()
        .post_save::<Book>()
        .background("reindex", TaskOptions::default())
        .connect()
        .keep();
    let mut stdin = stdin_lines();
    let (parent_gone_tx, mut parent_gone) = oneshot::channel::<()>();
    tokio::spawn(async move {
        while stdin.recv().await.is_some() {}
        let _ = parent_gone_tx.send(());
    });
    let keep_open = if db.is_postgres() { 2 } else { 0 };
    let mut open_txs = VecDeque::new();
    let (mut committed, mut uncommitted, mut announced) = (0, 0, false);
    for round in 0.. {
        assert!(
            parent_gone.try_recv().is_err(),
            "the parent went away without killing this child"
        );
        for i in 0..3 {
            db.save(&mut book(&format!("autocommit {round}.{i}")))
                .await
                .unwrap();
            committed += 1;
        }
        let tx = db.begin().await.unwrap();
        for i in 0..4 {
            tx.save(&mut book(&format!("committed {round}.{i}")))
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        committed += 4;
        let open = db.begin().await.unwrap();
        for i in 0..4 {
            open.save(&mut book(&format!("uncommitted {round}.{i}")))
                .await
                .unwrap();
            uncommitted += 1;
            if i == 1 && !announced && committed >= COMMITTED_BEFORE_READY {
                println!("{READY} committed={committed} uncommitted={uncommitted}");
                announced = true;
            }
        }
        open_txs.push_back(open);
        while open_txs.len() > keep_open {
            // Dropped without a commit: rolled back.
            drop(open_txs.pop_front());
        }
    }
}

/// Kill the writer child with SIGKILL while it saves, then drain its queue: every book in the
/// table had its task run exactly once, and no task ran for a book that is not there.
mod a_writer_killed_mid_run_leaves_a_task_for_every_committed_save_and_none_for_the_rest {
    use super::*;

    #[cfg(feature = "sqlite")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        killed_writer(common::sqlite("crash")).await;
    }

    #[cfg(feature = "postgres")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs HERALD_TEST_POSTGRES_URL"]
    async fn postgres() {
        killed_writer(common::postgres("crash")).await;
    }
}

async fn killed_writer(target: common::Target) {
    let backend = target.name;
    // On PostgreSQL the child's sessions carry a name, so that the parent can wait for the
    // server to finish with them (see below).
    let session = target
        .schema
        .as_ref()
        .map(|schema| format!("herald_crash_{schema}"));
    let child_url = match &session {
        Some(name) => named_sessions(&target.url, name),
        None => target.url.clone(),
    };
    let mut env = vec![(CRASH_CHILD, child_url.as_str())];
    if let Some(schema) = &target.schema {
        env.push((CRASH_SCHEMA, schema.as_str()));
    }
    let mut child = ChildTest::spawn("crash_child_saves_books_until_killed", &env);
    let announcement = child.wait_for(READY).await;
    let committed_before_ready = field(&announcement, "committed");
    assert!(
        field(&announcement, "uncommitted") > 0,
        "{backend}: {announcement}"
    );
    // Kill it at no particular point of its loop, once it has committed more since.
    let db = open(&target.url, target.schema.clone()).await;
    until("the child to commit more books", || {
        let db = db.clone();
        async move { book_count(&db).await > committed_before_ready as i64 }
    })
    .await;
    if let Some(name) = &session {
        assert!(
            sessions_named(&db, name.clone()).await > 0,
            "the child's sessions carry the name `{name}`"
        );
    }
    assert!(
        child.still_running(),
        "{backend}: the child was still saving just before the kill"
    );
    let status = child.kill();
    assert_eq!(
        status.signal(),
        Some(9),
        "{backend}: the child died of the SIGKILL, not of its own accord: {status:?}"
    );
    if let Some(name) = &session {
        sessions_ended(&db, name).await;
    }

    let books = db.all::<Book>().await.unwrap();
    assert!(
        books.len() > committed_before_ready,
        "{backend}: {} rows, but {committed_before_ready} saves had committed before the \
         announcement and more after it",
        books.len()
    );
    let strays: Vec<&str> = books
        .iter()
        .map(|b| b.title.as_str())
        .filter(|t| t.starts_with("uncommitted"))
        .collect();
    assert!(
        strays.is_empty(),
        "{backend}: uncommitted saves survived: {strays:?}"
    );
    let ids: Vec<i64> = books.iter().map(|b| b.id.unwrap()).collect();
    let counts = db.tasks().counts().await.unwrap();
    assert_eq!(
        (
            in_state(&counts, "available"),
            counts.iter().map(|c| c.count).sum()
        ),
        (ids.len() as u64, ids.len() as u64),
        "{backend}: one waiting task per committed save, and no other: {counts:?}"
    );

    let ran = Arc::new(Mutex::new(Vec::new()));
    let worker = Worker::new(db.clone())
        .poll_interval(Duration::from_millis(20))
        .model_task::<Book, _, _>("reindex", {
            let ran = ran.clone();
            move |book: Book, _ctx: TaskContext| {
                let ran = ran.clone();
                async move {
                    let id = book
                        .id
                        .ok_or_else(|| ReceiverError::msg("a book without id"))?;
                    ran.lock().unwrap().push((id, book.title));
                    Ok(())
                }
            }
        });
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    until("the queue to drain", || {
        let db = db.clone();
        async move {
            let counts = db.tasks().counts().await.unwrap();
            in_state(&counts, "available") + in_state(&counts, "running") == 0
        }
    })
    .await;
    stop.send(()).unwrap();
    let report = within("the worker to stop", running)
        .await
        .unwrap()
        .unwrap();

    let mut ran = std::mem::take(&mut *ran.lock().unwrap());
    ran.sort_unstable();
    let mut expected = ids.clone();
    expected.sort_unstable();
    let unknown: Vec<&(i64, String)> = ran
        .iter()
        .filter(|(id, _)| expected.binary_search(id).is_err())
        .collect();
    assert!(
        unknown.is_empty(),
        "{backend}: tasks ran for books that are not in the table: {unknown:?} (the table \
         has {} books, the largest id {:?}; {} now)",
        expected.len(),
        expected.last(),
        book_count(&db).await
    );
    let ran: Vec<i64> = ran.into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        ran, expected,
        "{backend}: every committed book's task ran exactly once"
    );
    assert_eq!(
        (report.completed, report.failed, report.released),
        (ids.len() as u64, 0, 0),
        "{backend}"
    );
    let counts = db.tasks().counts().await.unwrap();
    assert_eq!(
        in_state(&counts, "completed"),
        ids.len() as u64,
        "{backend}: {counts:?}"
    );
    println!(
        "{backend}: killed after {} committed books ({committed_before_ready} before the \
         announcement); ran {} tasks",
        ids.len(),
        ran.len()
    );
    target.cleanup(db).await;
}

// ---- 2. worker processes sharing one queue -----------------------------------------------------

/// A worker child: a [`Worker`] with concurrency 4 whose `count` task records `(n, pid)` in `runs`.
/// It announces itself once connected, starts on a `go` line on stdin, and stops when its stdin
/// closes (if it is not killed first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_child_runs_count_tasks_until_killed() {
    let Ok(url) = std::env::var(WORKER_CHILD) else {
        return;
    };
    let db = open(&url, Some(std::env::var(WORKER_SCHEMA).unwrap())).await;
    let pid = i64::from(std::process::id());
    let worker = Worker::new(db.clone())
        .concurrency(4)
        .poll_interval(Duration::from_millis(50))
        .task("count", move |data, ctx: TaskContext| async move {
            let n = data["n"]
                .as_i64()
                .ok_or_else(|| ReceiverError::msg(format!("no n in {data}")))?;
            ctx.db()
                .execute(
                    "INSERT INTO runs (n, pid) VALUES ($1, $2)",
                    vec![Value::Int(n), Value::Int(pid)],
                )
                .await?;
            Ok(())
        });
    let mut stdin = stdin_lines();
    println!("{WORKER_READY} {pid}");
    assert_eq!(stdin.recv().await.as_deref(), Some("go"));
    let report = worker
        .run(async move { while stdin.recv().await.is_some() {} })
        .await
        .unwrap();
    println!("worker {pid} stopped: {report:?}");
}

/// Ten thousand tasks, three worker processes of four slots each: every task ran exactly once, and
/// more than one process did the work.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs HERALD_TEST_POSTGRES_URL"]
async fn three_worker_processes_share_the_queue_and_run_every_task_exactly_once() {
    let target = common::postgres("many_workers");
    let schema = target.schema.clone().unwrap();
    let db = target.open().await;
    db.execute(
        "CREATE TABLE runs (n BIGINT NOT NULL, pid BIGINT NOT NULL)",
        vec![],
    )
    .await
    .unwrap();
    for chunk in 0..10 {
        let tx = db.begin().await.unwrap();
        // One job per transaction: each `enqueue` adds to the transaction's batch of tasks.
        tx.run(move |conn| {
            for n in chunk * TASKS / 10..(chunk + 1) * TASKS / 10 {
                conn.enqueue(Task::new("count", json!({ "n": n })))?;
            }
            Ok(())
        })
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    let counts = db.tasks().counts().await.unwrap();
    assert_eq!(in_state(&counts, "available"), TASKS as u64, "{counts:?}");

    let session = format!("herald_workers_{schema}");
    let url = named_sessions(&target.url, &session);
    let env = [
        (WORKER_CHILD, url.as_str()),
        (WORKER_SCHEMA, schema.as_str()),
    ];
    let mut children: Vec<ChildTest> = (0..3)
        .map(|_| ChildTest::spawn("worker_child_runs_count_tasks_until_killed", &env))
        .collect();
    // Start them together, so that no one drains the queue before the others have connected.
    for child in &mut children {
        child.wait_for(WORKER_READY).await;
    }
    for child in &mut children {
        child.send_line("go");
    }
    // Ten thousand tasks take a while on a loaded machine: the bound is on progress, not on the
    // whole run.
    let started = Instant::now();
    let mut progress = (0, Instant::now());
    loop {
        let completed = in_state(&db.tasks().counts().await.unwrap(), "completed");
        if completed == TASKS as u64 {
            break;
        }
        if completed > progress.0 {
            progress = (completed, Instant::now());
        }
        assert!(
            progress.1.elapsed() < BOUND,
            "no task completed for {BOUND:?}: {completed} of {TASKS} done"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("{TASKS} tasks done in {:?}", started.elapsed());
    let pids: BTreeSet<i64> = children.iter().map(|c| i64::from(c.pid())).collect();
    assert!(
        sessions_named(&db, session.clone()).await > 0,
        "the children's sessions carry the name `{session}`"
    );
    for mut child in children {
        assert!(child.still_running(), "a worker process stopped on its own");
        child.kill();
    }
    sessions_ended(&db, &session).await;

    let query = |sql: &'static str, types: &'static [SqlType]| {
        let db = db.clone();
        async move { db.read(move |c| c.query(sql, &[], types)).await.unwrap() }
    };
    let twice = query(
        "SELECT n, COUNT(*) FROM runs GROUP BY n HAVING COUNT(*) <> 1 ORDER BY n LIMIT 20",
        &[SqlType::Int, SqlType::Int],
    )
    .await;
    assert!(twice.is_empty(), "tasks that did not run once: {twice:?}");
    let totals = query(
        "SELECT COUNT(*), COUNT(DISTINCT n), MIN(n), MAX(n) FROM runs",
        &[SqlType::Int, SqlType::Int, SqlType::Int, SqlType::Int],
    )
    .await;
    assert_eq!(
        totals,
        [[
            Value::Int(TASKS),
            Value::Int(TASKS),
            Value::Int(0),
            Value::Int(TASKS - 1)
        ]],
        "(runs, distinct n, min n, max n)"
    );
    let by_pid = query(
        "SELECT pid, COUNT(*) FROM runs GROUP BY pid ORDER BY pid",
        &[SqlType::Int, SqlType::Int],
    )
    .await;
    let workers: BTreeSet<i64> = by_pid
        .iter()
        .map(|row| match row[0] {
            Value::Int(pid) => pid,
            ref other => panic!("pid {other:?}"),
        })
        .collect();
    assert!(
        workers.is_subset(&pids),
        "runs by {workers:?}, children {pids:?}"
    );
    assert!(
        workers.len() >= 2,
        "at least two processes shared the queue: {by_pid:?}"
    );
    println!("tasks per worker process: {by_pid:?}");
    target.cleanup(db).await;
}

// ---- 3. a worker killed while it holds a task, on PostgreSQL --------------------------------------

/// Set (to a PostgreSQL URL) in the holding child of the presence test.
const HOLDER_CHILD: &str = "HERALD_HOLDER_CHILD";
/// The holding child's announcement, followed by the id of the task it holds.
const HOLDING: &str = "HERALD-HOLDING";

/// The holding child: a worker with a ten-minute lease that claims a `hold` task and never
/// finishes it; killed by the parent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holder_child_claims_a_task_and_never_finishes_it() {
    let Ok(url) = std::env::var(HOLDER_CHILD) else {
        return;
    };
    let db = open(&url, Some(std::env::var(WORKER_SCHEMA).unwrap())).await;
    let worker = Worker::new(db)
        .lease(Duration::from_secs(600))
        .poll_interval(Duration::from_millis(50))
        .task("hold", |_data, ctx: TaskContext| async move {
            println!("{HOLDING} {}", ctx.id());
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        });
    worker.run(std::future::pending()).await.unwrap();
}

/// A worker process killed with SIGKILL while it holds a task with a ten-minute lease: its
/// database session ends with it, and a worker here runs the task again long before the lease
/// would have let it.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs HERALD_TEST_POSTGRES_URL"]
async fn a_killed_workers_task_runs_again_long_before_its_lease() {
    let target = common::postgres("presence");
    let schema = target.schema.clone().unwrap();
    let db = target.open().await;
    db.enqueue(Task::new("hold", json!({}))).await.unwrap();
    let env = [
        (HOLDER_CHILD, target.url.as_str()),
        (WORKER_SCHEMA, schema.as_str()),
    ];
    let mut child = ChildTest::spawn("holder_child_claims_a_task_and_never_finishes_it", &env);
    let held: i64 = child.wait_for(HOLDING).await.parse().unwrap();

    let (ran, mut rerun) = mpsc::unbounded_channel::<i64>();
    let rescuer = Worker::new(db.clone())
        .lease(Duration::from_secs(600))
        .poll_interval(Duration::from_millis(50))
        .task("hold", move |_data, ctx: TaskContext| {
            let sent = ran.send(ctx.id()).map_err(ReceiverError::from);
            async move { sent }
        });
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(rescuer.run(async move {
        let _ = stopped.await;
    }));
    let killed = Instant::now();
    child.kill();
    let again = within("the killed worker's task to run again", rerun.recv())
        .await
        .unwrap();
    let took = killed.elapsed();
    assert_eq!(again, held);
    assert!(
        took < Duration::from_secs(600),
        "it ran again after {took:?}, before the lease"
    );
    println!("the killed worker's task ran again {took:?} after the kill");
    let row = db.tasks().get(held).await.unwrap().unwrap();
    assert_eq!(row.attempt, 2, "{row:?}");
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    target.cleanup(db).await;
}
