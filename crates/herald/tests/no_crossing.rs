//! Which thread runs a write's or a read's job. On SQLite a short job (an autocommit write with no
//! `in_transaction` receiver but background ones, a read by key) runs on its caller's thread with a borrowed
//! connection when one is free; a job with `in_transaction` receivers, and any job while the
//! connection is busy, crosses to the connection's thread. On PostgreSQL every job crosses.
//!
//! A field type records the thread that converts it (binding runs inside the job, decoding too),
//! so each test sees where its job ran.
#![cfg_attr(
    not(all(feature = "sqlite", feature = "postgres")),
    allow(dead_code, unused_imports)
)]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::Mutex;

use common::{queued, within};
use herald::dispatch::PostSave;
use herald::tasks::{Background, TaskOptions, TaskState};
use herald::{Db, Error, Field, Model, SqlType, Store, Value};

/// The threads that converted a [`Traced`] field, in order.
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Converting a [`Traced`] whose text is this panics: a job that fails outside any receiver.
const PANIC: &str = "panic while binding";

/// A text column that notes which thread binds or decodes it.
#[derive(Clone, Debug, PartialEq)]
struct Traced(String);

fn note() {
    let name = std::thread::current().name().unwrap_or("").to_owned();
    SEEN.lock().unwrap().push(name);
}

/// The threads seen since the last call, emptied.
fn seen() -> Vec<String> {
    std::mem::take(&mut *SEEN.lock().unwrap())
}

impl Field for Traced {
    const SQL_TYPE: SqlType = SqlType::Text;
    fn to_value(&self) -> Value {
        note();
        assert_ne!(self.0, PANIC, "{PANIC}");
        Value::Text(self.0.clone())
    }
    fn from_value(value: Value) -> Result<Self, String> {
        note();
        String::from_value(value).map(Traced)
    }
}

#[derive(Model, Clone, Debug, PartialEq)]
#[model(table = "notes")]
struct Note {
    #[model(primary_key)]
    id: Option<i64>,
    text: Traced,
}

fn note_titled(text: &str) -> Note {
    Note {
        id: None,
        text: Traced(text.to_owned()),
    }
}

/// The stored notes' texts, in key order.
async fn texts(db: &Db) -> Vec<String> {
    let notes = db.all::<Note>().await.unwrap();
    notes.into_iter().map(|n| n.text.0).collect()
}

fn here() -> String {
    std::thread::current().name().unwrap_or("").to_owned()
}

/// The writer's connection thread.
const WRITER: &str = "herald-writer-0";

/// Every thread in `threads` is `expected`, and there is at least one.
fn all_on(threads: &[String], expected: &str, what: &str) {
    assert!(!threads.is_empty(), "{what}: no conversion was seen");
    assert!(
        threads.iter().all(|t| t == expected),
        "{what}: expected every conversion on {expected:?}, saw {threads:?}"
    );
}

/// Every thread in `threads` is a connection thread (`herald-<pool>-<n>`).
fn all_crossed(threads: &[String], what: &str) {
    assert!(!threads.is_empty(), "{what}: no conversion was seen");
    assert!(
        threads.iter().all(|t| t.starts_with("herald-")),
        "{what}: expected every conversion on a connection thread, saw {threads:?}"
    );
}

async fn sqlite() -> (Db, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(format!(
        "sqlite://{}",
        dir.path().join("notes.db").display()
    ))
    .signals(herald::dispatch::Signals::new())
    .connect()
    .await
    .unwrap();
    db.create_table::<Note>().await.unwrap();
    (db, dir)
}

// The tests share `SEEN`: each runs its steps under this lock.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_write_and_a_read_by_key_run_on_the_callers_thread() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (db, _dir) = sqlite().await;
    seen();
    let mut n = note_titled("first");
    db.save(&mut n).await.unwrap();
    all_on(&seen(), &here(), "an autocommit save with no receivers");
    n.text = Traced("second".to_owned());
    db.save(&mut n).await.unwrap();
    all_on(&seen(), &here(), "an autocommit update");
    let read = db.get::<Note>(n.id.unwrap()).await.unwrap().unwrap();
    assert_eq!(read.text, Traced("second".to_owned()));
    all_on(&seen(), &here(), "a read by key");
    // A read of many rows crosses to a reader: it may be long.
    db.all::<Note>().await.unwrap();
    all_crossed(&seen(), "every row of a table");
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_with_in_transaction_receivers_crosses_to_the_writer() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (db, _dir) = sqlite().await;
    let _receiver = connect_in_transaction(&db);
    seen();
    db.save(&mut note_titled("audited")).await.unwrap();
    all_on(&seen(), WRITER, "a save with an in_transaction receiver");
}

/// A trivial `in_transaction` receiver of every note's `post_save`, connected while it lives.
fn connect_in_transaction(db: &Db) -> herald::dispatch::Connection {
    db.signals()
        .post_save::<Note>()
        .in_transaction()
        .connect(|_: &PostSave<'_, Note>| Ok(()))
}

/// How many tasks wait to run, over all queues (appended ones included).
async fn available_tasks(db: &Db) -> u64 {
    db.tasks()
        .counts()
        .await
        .unwrap()
        .iter()
        .filter(|c| c.state == TaskState::Available)
        .map(|c| c.count)
        .sum()
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_only_connection_side_receivers_are_background_ones_runs_on_the_callers_thread()
 {
    let _one = ONE_AT_A_TIME.lock().await;
    let (db, _dir) = sqlite().await;
    let _reindex = db
        .signals()
        .post_save::<Note>()
        .background("reindex", TaskOptions::default())
        .connect();
    seen();
    db.save(&mut note_titled("indexed")).await.unwrap();
    all_on(&seen(), &here(), "a save with a background receiver");
    assert_eq!(available_tasks(&db).await, 1, "the save's task row");
    // One in_transaction receiver beside it: the job runs receivers, and crosses.
    let _audit = connect_in_transaction(&db);
    seen();
    db.save(&mut note_titled("audited")).await.unwrap();
    all_on(
        &seen(),
        WRITER,
        "a save with a background and an in_transaction receiver",
    );
    assert_eq!(available_tasks(&db).await, 2, "both saves' task rows");
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_while_a_transaction_holds_the_writer_waits_for_it_on_the_writer() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (db, _dir) = sqlite().await;
    let tx = db.begin().await.unwrap();
    tx.save(&mut note_titled("inside")).await.unwrap();
    seen();
    // Polled once: the outside save's job is on the writer's queue, behind the transaction.
    let outside = queued({
        let db = db.clone();
        async move {
            let mut n = note_titled("outside");
            db.save(&mut n).await.map(|_| n)
        }
    });
    // The writer is the transaction's: nothing of the outside save has run yet.
    assert!(seen().is_empty());
    tx.commit().await.unwrap();
    let saved = within("the outside save", outside).await.unwrap();
    all_crossed(&seen(), "a save queued behind a transaction");
    let texts = texts(&db).await;
    assert_eq!(texts, ["inside", "outside"]);
    assert!(saved.id.is_some());
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_panics_on_the_callers_thread_is_an_error_and_leaves_the_writer_clean() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (db, _dir) = sqlite().await;
    seen();
    let error = db.save(&mut note_titled(PANIC)).await.unwrap_err();
    assert!(matches!(error, Error::Panicked), "{error:?}");
    all_on(&seen(), &here(), "the panicking save");
    // Nothing was left open: the next write commits, and the panicking one left no row.
    db.save(&mut note_titled("after")).await.unwrap();
    let texts = texts(&db).await;
    assert_eq!(texts, ["after"]);
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_writers_all_commit() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (db, _dir) = sqlite().await;
    let writers: Vec<_> = (0..32)
        .map(|client| {
            let db = db.clone();
            tokio::spawn(async move {
                for i in 0..20 {
                    db.save(&mut note_titled(&format!("{client}-{i}")))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        within("a writer", writer).await.unwrap();
    }
    assert_eq!(db.all::<Note>().await.unwrap().len(), 32 * 20);
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs HERALD_TEST_POSTGRES_URL"]
async fn on_postgres_every_job_crosses_to_the_pool() {
    let _one = ONE_AT_A_TIME.lock().await;
    let target = common::postgres("on_postgres_every_job_crosses_to_the_pool");
    let db = target.open().await;
    db.create_table::<Note>().await.unwrap();
    seen();
    let mut n = note_titled("pg");
    db.save(&mut n).await.unwrap();
    all_crossed(&seen(), "a PostgreSQL save");
    db.get::<Note>(n.id.unwrap()).await.unwrap().unwrap();
    all_crossed(&seen(), "a PostgreSQL read by key");
    target.cleanup(db).await;
}
