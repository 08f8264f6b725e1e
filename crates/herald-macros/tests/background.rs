//! `#[receiver(.., background)]` expanded for real against `herald`: a save writes a task row with
//! the options the attribute gives, the registry lists the enqueuing receiver, and a worker built
//! with `Worker::autodiscover` runs the declared function with the instance as it was written.
//!
//! Discovery is process-wide (`inventory`), so every receiver this test binary declares is in this
//! file. The declared functions are plain `async fn`s: they report on a channel kept in a static.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use herald::Store;
use herald::dispatch::{Error as ReceiverError, Phase, Signals};
use herald::tasks::{TaskContext, TaskRow, Worker, WorkerReport};
use herald::{Db, Model, ReceiverResult, SqlType, Value, receiver};
use tokio::sync::{mpsc, oneshot};

#[derive(Model, Clone, Debug, PartialEq)]
#[model(table = "books")]
pub struct Book {
    #[model(primary_key)]
    pub id: Option<i64>,
    pub title: String,
}

/// What a declared task saw: its kind, the attempt, and the book's title.
type Ran = (String, u32, String);

/// Where the declared tasks report; set by the one test that runs them.
static RAN: OnceLock<mpsc::UnboundedSender<Ran>> = OnceLock::new();

fn report(ctx: &TaskContext, book: &Book) -> ReceiverResult {
    RAN.get()
        .ok_or_else(|| ReceiverError::msg("no test listens"))?
        .send((ctx.kind().to_owned(), ctx.attempt(), book.title.clone()))
        .map_err(|_| ReceiverError::msg("the test ended"))?;
    Ok(())
}

// ---- the declared receivers -------------------------------------------------------------------

/// Every task option through the attribute; the kind is `name`.
#[receiver(
    post_save,
    sender = Book,
    background,
    unique = "pk",
    queue = "search",
    max_attempts = 3,
    timeout_ms = 30_000,
    delay_ms = 0,
    priority = 7,
    name = "reindex"
)]
async fn reindex_book(book: Book, ctx: TaskContext) -> ReceiverResult {
    report(&ctx, &book)
}

/// Every option left to its default: the kind is the function's name.
#[receiver(post_delete, sender = Book, background)]
async fn forget_book(book: Book, ctx: TaskContext) -> ReceiverResult {
    report(&ctx, &book)
}

// ---- helpers ----------------------------------------------------------------------------------

/// The bound on every wait.
const BOUND: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A fresh SQLite file with the declared receivers and the books table. Keep the directory alive.
async fn open() -> (Db, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let db = Db::open(url)
        .signals(Signals::builder().autodiscover().build())
        .connect()
        .await
        .unwrap();
    db.create_table::<Book>().await.unwrap();
    (db, dir)
}

/// The only task in `state`.
async fn only_task(db: &Db, state: &str) -> TaskRow {
    let mut tasks = db.tasks().list(state.parse().unwrap(), 10).await.unwrap();
    assert_eq!(tasks.len(), 1, "one {state} task: {tasks:#?}");
    tasks.remove(0)
}

/// The columns `TaskRow` does not show: priority, timeout and unique key.
async fn task_settings(db: &Db, id: i64) -> (i64, i64, Option<String>) {
    let rows = db
        .read(move |c| {
            c.query(
                "SELECT priority, timeout_ms, unique_key FROM herald_tasks WHERE id = ?",
                &[Value::Int(id)],
                &[SqlType::Int, SqlType::Int, SqlType::Text],
            )
        })
        .await
        .unwrap();
    match rows.as_slice() {
        [row] => match row.as_slice() {
            [Value::Int(priority), Value::Int(timeout), key] => (
                *priority,
                *timeout,
                match key {
                    Value::Text(key) => Some(key.clone()),
                    _ => None,
                },
            ),
            other => panic!("unexpected row {other:?}"),
        },
        other => panic!("expected one row, got {other:?}"),
    }
}

/// The line and column (from 1) of `name` in the line of this file that starts with `declaration`.
fn position_of(declaration: &str, name: &str) -> (u32, u32) {
    let source = include_str!("background.rs");
    let (index, line) = source
        .lines()
        .enumerate()
        .find(|(_, line)| line.starts_with(declaration))
        .unwrap_or_else(|| panic!("{declaration:?} is in this file"));
    let column = line.find(name).unwrap();
    (index as u32 + 1, column as u32 + 1)
}

fn spawn_worker(worker: Worker) -> (oneshot::Sender<()>, tokio::task::JoinHandle<WorkerReport>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        worker
            .run(async {
                let _ = stopped.await;
            })
            .await
            .unwrap()
    });
    (stop, handle)
}

// ---- the tests --------------------------------------------------------------------------------

#[test]
fn the_registry_lists_each_background_receiver_by_its_kind_where_it_is_written() {
    let signals = Signals::builder().autodiscover().build();
    let mut listed: Vec<_> = signals
        .receivers()
        .iter()
        .map(|r| {
            let info = r.info();
            let location = info.location();
            assert!(
                location
                    .file
                    .replace('\\', "/")
                    .ends_with("tests/background.rs"),
                "{}: {location}",
                info.name()
            );
            (
                info.name().to_owned(),
                info.signal(),
                info.sender(),
                info.phase(),
                (location.line, location.column),
            )
        })
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            (
                "forget_book".to_owned(),
                "post_delete",
                "Book",
                Phase::Background,
                position_of("async fn forget_book(", "forget_book"),
            ),
            (
                "reindex".to_owned(),
                "post_save",
                "Book",
                Phase::Background,
                position_of("async fn reindex_book(", "reindex_book"),
            ),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_queues_a_task_with_the_declared_options_and_the_worker_runs_it() {
    let (ran_tx, mut ran) = mpsc::unbounded_channel();
    RAN.set(ran_tx).unwrap();
    let (db, _dir) = open().await;

    let mut dune = Book {
        id: None,
        title: "Dune".into(),
    };
    db.save(&mut dune).await.unwrap();
    dune.title = "Dune Messiah".into();
    db.save(&mut dune).await.unwrap();

    // `unique = "pk"`: the second save's task coalesced with the first, with the newest instance.
    let task = only_task(&db, "available").await;
    assert_eq!(
        (
            task.kind.as_str(),
            task.queue.as_str(),
            task.max_attempts,
            task.attempt
        ),
        ("reindex", "search", 3, 0)
    );
    assert!(task.payload.contains("Dune Messiah"), "{}", task.payload);
    assert_eq!(
        task_settings(&db, task.id).await,
        (7, 30_000, Some("reindex:Book:1".to_owned()))
    );

    let worker = Worker::new(db.clone())
        .autodiscover()
        .queues(["search", "default"])
        .poll_interval(Duration::from_millis(20));
    assert_eq!(worker.kinds(), ["forget_book", "reindex"]);
    let (stop, worker) = spawn_worker(worker);

    assert_eq!(
        within("the reindex task", ran.recv()).await,
        Some(("reindex".to_owned(), 1, "Dune Messiah".to_owned()))
    );

    db.delete(&dune).await.unwrap();
    assert_eq!(
        within("the forget task", ran.recv()).await,
        Some(("forget_book".to_owned(), 1, "Dune Messiah".to_owned()))
    );

    stop.send(()).unwrap();
    let report = within("the worker to stop", worker).await.unwrap();
    assert_eq!((report.completed, report.failed), (2, 0));
    let mut completed: Vec<_> = db
        .tasks()
        .list(herald::tasks::TaskState::Completed, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.kind, t.queue, t.max_attempts, t.attempt))
        .collect();
    completed.sort();
    assert_eq!(
        completed,
        [
            ("forget_book".to_owned(), "default".to_owned(), 5, 1),
            ("reindex".to_owned(), "search".to_owned(), 3, 1),
        ],
        "the defaults: queue `default`, 5 attempts"
    );
    assert!(ran.try_recv().is_err(), "each task ran once");
}
