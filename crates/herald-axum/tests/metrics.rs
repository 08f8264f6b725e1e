//! `/metrics`: strict Prometheus text whose counters move as rows are saved and tasks run.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{Method, StatusCode, header};
use common::{
    Book, Family, book, call, connect_fill_slug, fresh_db, get, parse_prometheus, request, until,
    value,
};
use herald::Db;
use herald::Store;
use herald::dispatch::{PostSave, Signals};
use herald::tasks::{Task, Worker};
use herald_axum::metrics_router;

async fn scrape(db: &Db) -> BTreeMap<String, Family> {
    let answer = get(&metrics_router(db.clone()), "/metrics").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.headers[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    parse_prometheus(&answer.body)
        .unwrap_or_else(|e| panic!("not valid Prometheus text: {e}\n{}", answer.body))
}

async fn save(db: &Db, n: usize) {
    for i in 0..n {
        let mut b: Book = book(&format!("Book {i}"));
        db.save(&mut b).await.unwrap();
    }
}

const FILL_SLUG: &[(&str, &str)] = &[
    ("receiver", "shop::fill_slug"),
    ("signal", "pre_save"),
    ("sender", "Book"),
    ("phase", "caller"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_counters_and_histograms_move_with_saves() {
    let signals = Signals::new();
    connect_fill_slug(&signals);
    // A name that needs escaping in a label value.
    signals
        .post_save::<Book>()
        .receiver(|_e: &PostSave<'_, Book>| Err(herald::dispatch::Error::msg("refused")))
        .name("odd \"quoted\" \\ name\nsecond line")
        .connect()
        .keep();
    let (db, _dir) = fresh_db(signals).await;

    let before = scrape(&db).await;
    for family in [
        "herald_receiver_calls_total",
        "herald_receiver_errors_total",
        "herald_receiver_duration_seconds",
        "herald_task_runs_total",
        "herald_task_failures_total",
        "herald_task_retries_total",
        "herald_task_queue_wait_seconds",
        "herald_task_run_seconds",
        "herald_tasks",
    ] {
        assert!(before.contains_key(family), "{family} is served");
    }
    assert_eq!(before["herald_receiver_calls_total"].kind, "counter");
    assert_eq!(before["herald_receiver_duration_seconds"].kind, "histogram");
    assert_eq!(before["herald_tasks"].kind, "gauge");
    assert_eq!(
        value(&before, "herald_receiver_calls_total", FILL_SLUG),
        0.0
    );

    // The failing post_save receiver rolls each save back; both receivers are called and counted.
    for i in 0..3 {
        let mut b = book(&format!("Book {i}"));
        assert!(
            db.save(&mut b).await.is_err(),
            "the failing receiver rolls the save back"
        );
    }
    let after = scrape(&db).await;
    assert_eq!(value(&after, "herald_receiver_calls_total", FILL_SLUG), 3.0);
    let odd = [("receiver", "odd \"quoted\" \\ name\nsecond line")];
    assert_eq!(value(&after, "herald_receiver_errors_total", &odd), 3.0);
    assert_eq!(
        value(&after, "herald_receiver_duration_seconds_count", FILL_SLUG),
        3.0
    );
    let inf: Vec<(&str, &str)> = FILL_SLUG.iter().copied().chain([("le", "+Inf")]).collect();
    assert_eq!(
        value(&after, "herald_receiver_duration_seconds_bucket", &inf),
        3.0
    );
    let top: Vec<(&str, &str)> = FILL_SLUG
        .iter()
        .copied()
        .chain([("le", "4.294967296")])
        .collect();
    assert_eq!(
        value(&after, "herald_receiver_duration_seconds_bucket", &top),
        3.0,
        "a fast receiver's calls are all under the top bound"
    );
    assert!(value(&after, "herald_receiver_duration_seconds_sum", FILL_SLUG) > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_grow_after_more_saves_and_tasks_are_counted_by_kind_queue_and_state() {
    let signals = Signals::new();
    connect_fill_slug(&signals);
    let (db, _dir) = fresh_db(signals).await;

    save(&db, 2).await;
    let first = scrape(&db).await;
    assert_eq!(value(&first, "herald_receiver_calls_total", FILL_SLUG), 2.0);
    save(&db, 3).await;
    let second = scrape(&db).await;
    assert_eq!(
        value(&second, "herald_receiver_calls_total", FILL_SLUG),
        5.0
    );

    for _ in 0..2 {
        db.enqueue(Task::new("reindex", serde_json::json!({})))
            .await
            .unwrap();
    }
    let queued = scrape(&db).await;
    let available = [("queue", "default"), ("state", "available")];
    assert_eq!(value(&queued, "herald_tasks", &available), 2.0);
    assert_eq!(
        value(
            &queued,
            "herald_tasks",
            &[("queue", "default"), ("state", "dead")]
        ),
        0.0,
        "every state of a queue is served, zeros included"
    );

    let worker = Worker::new(db.clone())
        .task("reindex", |_data, _ctx| async { Ok(()) })
        .poll_interval(Duration::from_millis(10));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    until("two completed tasks", || {
        let db = db.clone();
        async move {
            db.task_stats()
                .iter()
                .any(|k| k.kind == "reindex" && k.runs == 2)
        }
    })
    .await;
    stop.send(()).unwrap();
    handle.await.unwrap().unwrap();

    let ran = scrape(&db).await;
    let kind = [("kind", "reindex")];
    assert_eq!(value(&ran, "herald_task_runs_total", &kind), 2.0);
    assert_eq!(value(&ran, "herald_task_failures_total", &kind), 0.0);
    assert_eq!(value(&ran, "herald_task_run_seconds_count", &kind), 2.0);
    assert_eq!(
        value(&ran, "herald_task_queue_wait_seconds_count", &kind),
        2.0
    );
    assert_eq!(value(&ran, "herald_tasks", &available), 0.0);
    assert_eq!(
        value(
            &ran,
            "herald_tasks",
            &[("queue", "default"), ("state", "completed")]
        ),
        2.0
    );
    assert_eq!(value(&ran, "herald_tasks_scrape_ok", &[]), 1.0);
}

#[tokio::test]
async fn only_get_is_served() {
    let (db, _dir) = fresh_db(Signals::new()).await;
    let answer = call(&metrics_router(db), request(Method::POST, "/metrics")).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
}
