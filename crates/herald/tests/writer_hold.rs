//! SQLite's one writer held by a slow job is reported (`herald::writer`), naming how long, what
//! held it and how many jobs waited, through a captured `tracing` subscriber (the writer is
//! another thread, so the subscriber is this test binary's global one, and the tests take turns).
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{Book, book, queued, save, spawn_worker, within};
use herald::Store;
use herald::dispatch::{Error as ReceiverError, PreSave};
use herald::tasks::{Background, TaskContext, TaskOptions, Worker};
use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// One event's fields, as `(field, value)` pairs.
type Event = Vec<(String, String)>;

/// Every `herald::writer` event.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<Event>>>);

struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Captured {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() == "herald::writer" {
            let mut fields = Fields(Vec::new());
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
    }
}

/// The events captured since the calling test began: the tests of this file take turns, each
/// holding the returned guard throughout.
async fn capture() -> (tokio::sync::MutexGuard<'static, ()>, Captured) {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    let turn = TURN.lock().await;
    let captured = CAPTURED
        .get_or_init(|| {
            let captured = Captured::default();
            tracing::subscriber::set_global_default(
                tracing_subscriber::registry().with(captured.clone()),
            )
            .unwrap();
            captured
        })
        .clone();
    captured.0.lock().unwrap().clear();
    (turn, captured)
}

/// A test's turn, its captured events, and a fresh SQLite database named `name` (kept while the
/// returned [`Watched`] lives).
async fn watched(name: &str) -> Watched {
    let (turn, captured) = capture().await;
    let target = common::sqlite(name);
    let db = target.open().await;
    Watched {
        _turn: turn,
        captured,
        db,
        _target: target,
    }
}

struct Watched {
    _turn: tokio::sync::MutexGuard<'static, ()>,
    captured: Captured,
    db: herald::Db,
    _target: common::Target,
}

/// The one report captured, checked to say the writer was held at least `at_least_ms`.
fn the_one_report(captured: &Captured, at_least_ms: f64) -> Event {
    let events = captured.0.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    let held: f64 = field(&events[0], "held_ms").parse().unwrap();
    assert!(held >= at_least_ms, "held {held} ms");
    events.into_iter().next().unwrap()
}

fn field(event: &[(String, String)], name: &str) -> String {
    event
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no field {name} in {event:?}"))
        .1
        .clone()
}

/// A slow threshold of 200 ms, and an `in_transaction` receiver that works 300 ms for a book
/// titled "heavy": heavy work inside the write's transaction, on the connection, holds the writer
/// (a caller-side receiver would delay only its own save). The margins are wide enough that a
/// light save on a loaded machine stays far below the threshold.
fn heavy_in_transaction(db: &herald::Db) -> herald::dispatch::Connection {
    db.signals().set_slow_threshold(Duration::from_millis(200));
    db.signals()
        .pre_save::<Book>()
        .in_transaction()
        .connect(|e: &mut PreSave<'_, Book>| {
            if e.instance.title == "heavy" {
                std::thread::sleep(Duration::from_millis(300));
            }
            Ok(())
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_holds_the_writer_past_the_slow_threshold_is_reported() {
    let watched = watched("writer_hold").await;
    let (captured, db) = (&watched.captured, &watched.db);
    let _heavy = heavy_in_transaction(db);

    // The writer reports a job after answering it; the next job's answer comes after that report.
    // (Opening ran the migrations on the writer: not reported, since nothing could wait for them.)
    db.save(&mut book("light")).await.unwrap();
    db.save(&mut book("light again")).await.unwrap();
    let early = captured.0.lock().unwrap().clone();
    assert!(early.is_empty(), "a fast write is not reported: {early:?}");

    db.save(&mut book("heavy")).await.unwrap();
    db.save(&mut book("light, after")).await.unwrap();
    let event = the_one_report(captured, 300.0);
    assert_eq!(field(&event, "long_holds"), "1");
    assert!(field(&event, "held_by").starts_with("one write"));
    assert!(
        field(&event, "message")
            .contains("by one write (its statements, its in_transaction receivers")
    );
    assert!(field(&event, "message").contains("background receivers"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_sharing_a_commit_are_reported_as_so_many_writes_committed_together() {
    let watched = watched("writer_hold_group").await;
    let (captured, db) = (&watched.captured, &watched.db);
    let _heavy = heavy_in_transaction(db);

    // Three saves queued behind an open transaction: its commit releases them as one group.
    let tx = db.begin().await.unwrap();
    let pending: Vec<_> = ["light", "heavy", "light again"]
        .into_iter()
        .map(|title| queued(save(db, book(title))))
        .collect();
    tx.commit().await.unwrap();
    for saved in pending {
        saved.await.unwrap();
    }
    db.save(&mut book("after")).await.unwrap();

    let event = the_one_report(captured, 300.0);
    assert_eq!(
        field(&event, "held_by"),
        "3 writes committed together (their statements, their in_transaction receivers and one \
         commit)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_db_run_closure_is_reported_as_one_job_with_the_advice_to_split_it() {
    let watched = watched("writer_hold_run").await;
    let (captured, db) = (&watched.captured, &watched.db);
    db.signals().set_slow_threshold(Duration::from_millis(200));

    db.run(|conn| {
        // The closure's own slow work, on the writer's connection.
        std::thread::sleep(Duration::from_millis(300));
        conn.batch("DELETE FROM books")
    })
    .await
    .unwrap();
    db.save(&mut book("after")).await.unwrap();

    let event = the_one_report(captured, 300.0);
    assert_eq!(
        field(&event, "held_by"),
        "one job (a `db.run` closure, a bulk write, or another call's statements)"
    );
    let message = field(&event, "message");
    assert!(
        message.contains("split long `db.run` closures and bulk writes into smaller ones"),
        "{message}"
    );
    assert!(!message.contains("caller-side receivers"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_held_open_past_the_slow_threshold_is_reported_as_a_transaction() {
    let watched = watched("writer_hold_transaction").await;
    let (captured, db) = (&watched.captured, &watched.db);
    db.signals().set_slow_threshold(Duration::from_millis(200));

    let tx = db.begin().await.unwrap();
    tx.save(&mut book("in the transaction")).await.unwrap();
    // The caller's slow work while its transaction is open: the writer is pinned to it meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.commit().await.unwrap();
    // Reported when the transaction's job ends, before the next job's answer.
    db.save(&mut book("after")).await.unwrap();

    let event = the_one_report(captured, 300.0);
    assert_eq!(
        field(&event, "held_by"),
        "a transaction (from its `begin` to its end)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_workers_long_turn_is_reported_as_the_workers_turn() {
    let watched = watched("writer_hold_worker").await;
    let (captured, db) = (&watched.captured, &watched.db);
    db.signals()
        .post_save::<Book>()
        .background("reindex", TaskOptions::default())
        .connect()
        .keep();
    db.save(&mut book("queued")).await.unwrap();
    // Claiming a task runs this trigger, in the worker's turn: a slow turn without a slow task
    // (a three-way cross join of 300 rows, 27 million rows counted: 0.3 s and more, three times
    // the threshold, where 200 rows came close to it on a fast CPU).
    db.run(|conn| {
        conn.batch(
            "CREATE TABLE slow_rows (n INTEGER);
             WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 300)
             INSERT INTO slow_rows SELECT n FROM c;
             CREATE TRIGGER slow_claim AFTER UPDATE OF state ON herald_tasks
             WHEN new.state = 'running'
             BEGIN SELECT count(*) FROM slow_rows a, slow_rows b, slow_rows c; END;",
        )
    })
    .await
    .unwrap();
    db.signals().set_slow_threshold(Duration::from_millis(100));

    let (ran_tx, mut ran) = mpsc::unbounded_channel();
    let worker = Worker::new(db.clone())
        .name("w1")
        .concurrency(4)
        .model_task::<Book, _, _>("reindex", move |book: Book, _ctx: TaskContext| {
            let ran = ran_tx.clone();
            async move {
                ran.send(book.title)
                    .map_err(|_| ReceiverError::msg("test ended"))?;
                Ok(())
            }
        });
    let (stop, handle) = spawn_worker(worker);
    // The task starts once the turn that claimed it has ended, and so has been reported.
    assert_eq!(within("the task", ran.recv()).await.unwrap(), "queued");
    stop.send(()).unwrap();
    handle.await.unwrap();

    let event = the_one_report(captured, 100.0);
    assert_eq!(
        field(&event, "held_by"),
        "the turn of task worker w1 (0 finished tasks recorded, 1 appended tasks moved, 1 claimed, \
         in one transaction)"
    );
    assert!(
        field(&event, "message").contains("as many tasks as it has slots (`Worker::concurrency`)")
    );
}
