//! `#[receiver(post_save, .., on = .., when_changed = [..], changes)]` expanded for real against
//! `herald`: the conditions decide which saves call a receiver (or enqueue a background task),
//! `changes` gives the previous row, and the registry lists each condition.
//!
//! Discovery is process-wide (`inventory`), so every receiver this test binary declares is here.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::sync::Mutex;

use herald::Store;
use herald::dispatch::{PostSave, Signals};
use herald::tasks::{TaskContext, TaskState};
use herald::{Db, Model, ReceiverResult, receiver};

#[derive(Model, Clone, Debug, PartialEq)]
#[model(table = "books")]
pub struct Book {
    #[model(primary_key)]
    pub id: Option<i64>,
    pub title: String,
    pub price_cents: i64,
}

static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn log(entry: String) {
    LOG.lock().unwrap().push(entry);
}

fn take_log() -> Vec<String> {
    let mut log = std::mem::take(&mut *LOG.lock().unwrap());
    log.sort();
    log
}

#[receiver(post_save, sender = Book, on = "create")]
fn welcome(e: &PostSave<'_, Book>) -> ReceiverResult {
    log(format!("created {}", e.instance.title));
    Ok(())
}

#[receiver(post_save, sender = Book, on = "update")]
fn touched(e: &PostSave<'_, Book>) -> ReceiverResult {
    log(format!("updated {}", e.instance.title));
    Ok(())
}

#[receiver(post_save, sender = Book, when_changed = ["price_cents"], in_transaction)]
fn repriced(e: &PostSave<'_, Book>) -> ReceiverResult {
    let old = e.previous().map(|b| b.price_cents);
    log(format!("repriced {old:?} -> {}", e.instance.price_cents));
    Ok(())
}

#[receiver(post_save, sender = Book, changes)]
fn watched(e: &PostSave<'_, Book>) -> ReceiverResult {
    log(format!("changed {:?}", e.changed_fields()));
    Ok(())
}

#[receiver(post_save, sender = Book, background, when_changed = ["title"])]
async fn retitled(book: Book, ctx: TaskContext) -> ReceiverResult {
    let _ = (book, ctx);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_conditions_decide_which_saves_call_each_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let db = Db::open(url)
        .signals(Signals::builder().autodiscover().build())
        .connect()
        .await
        .unwrap();
    db.create_table::<Book>().await.unwrap();

    let mut dune = Book {
        id: None,
        title: "Dune".into(),
        price_cents: 900,
    };
    db.save(&mut dune).await.unwrap();
    assert_eq!(take_log(), ["changed None", "created Dune"]);

    dune.price_cents = 1200;
    db.save(&mut dune).await.unwrap();
    assert_eq!(
        take_log(),
        [
            "changed Some([\"price_cents\"])",
            "repriced Some(900) -> 1200",
            "updated Dune"
        ]
    );
    assert!(
        db.tasks()
            .list(TaskState::Available, 10)
            .await
            .unwrap()
            .is_empty(),
        "the title did not change: nothing enqueued"
    );

    dune.title = "Dune Messiah".into();
    db.save(&mut dune).await.unwrap();
    assert_eq!(
        take_log(),
        ["changed Some([\"title\"])", "updated Dune Messiah"]
    );
    let tasks = db.tasks().list(TaskState::Available, 10).await.unwrap();
    assert_eq!(tasks.len(), 1, "the title changed: one task");
    assert!(
        tasks[0].payload.contains("\"changed\":[\"title\"]"),
        "{tasks:?}"
    );

    let mut conditions: Vec<(String, String)> = db
        .signals()
        .receivers()
        .into_iter()
        .filter_map(|r| {
            let info = r.info();
            let condition = info.condition()?.to_string();
            Some((info.short_name(), condition))
        })
        .collect();
    conditions.sort();
    assert_eq!(
        conditions,
        [
            ("repriced".to_owned(), "when price_cents changed".to_owned()),
            ("retitled".to_owned(), "when title changed".to_owned()),
            ("touched".to_owned(), "on update".to_owned()),
            ("welcome".to_owned(), "on create".to_owned()),
        ]
    );
}
