//! The Server-Timing layer: a request that saves a model gets a well-formed header with the
//! phases, the slowest receivers and the store's time, and a slow receiver is named in the header
//! and in a warning with the request's path.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use common::{
    Book, Captured, Metric, book, call, connect_fill_slug, connect_on_commit, connect_slow, field,
    fresh_db, get as get_page, parse_server_timing, request,
};
use herald::Db;
use herald::Store;
use herald::dispatch::Signals;
use herald_axum::{SERVER_TIMING, ServerTimingLayer};

async fn create_book(State(db): State<Db>) -> Result<String, (StatusCode, String)> {
    let mut b: Book = book("The Left Hand of Darkness");
    db.save(&mut b)
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(format!("{}", b.id.unwrap_or_default()))
}

fn app(db: Db, layer: ServerTimingLayer) -> Router {
    Router::new()
        .route("/books", post(create_book))
        .route("/plain", get(|| async { "no receivers here" }))
        .with_state(db)
        .layer(layer)
}

/// The signals of a bookshop whose `post_save` has a receiver slower than the threshold.
fn shop_signals() -> Signals {
    let signals = Signals::builder()
        .slow_threshold(Duration::from_millis(2))
        .build();
    connect_fill_slug(&signals);
    connect_slow(&signals, Duration::from_millis(3));
    connect_on_commit(&signals);
    signals
}

fn header(answer: &common::Answer) -> Vec<Metric> {
    let values: Vec<&str> = answer
        .headers
        .get_all(SERVER_TIMING)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(values.len(), 1, "one Server-Timing header: {values:?}");
    parse_server_timing(values[0])
        .unwrap_or_else(|e| panic!("malformed Server-Timing `{}`: {e}", values[0]))
}

fn metric<'a>(metrics: &'a [Metric], name: &str) -> &'a Metric {
    metrics
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no `{name}` in {metrics:?}"))
}

#[tokio::test]
async fn a_save_gets_phases_receivers_db_and_total_and_the_slow_receiver_is_named_and_warned() {
    let (db, _dir) = fresh_db(shop_signals()).await;
    let app = app(db, ServerTimingLayer::new());
    let (captured, _guard) = Captured::install("herald::slow");

    let answer = call(&app, request(Method::POST, "/books?x=1")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let metrics = header(&answer);

    for phase in ["pre_save", "post_save", "on_commit"] {
        assert!(metric(&metrics, phase).dur.is_some(), "{phase} has a dur");
    }
    let slow = metric(&metrics, "recv_recompute_bestsellers");
    assert_eq!(slow.desc.as_deref(), Some("shop::recompute_bestsellers"));
    assert!(
        slow.dur.unwrap() >= 3.0,
        "the slow receiver's own time: {slow:?}"
    );
    assert!(
        metric(&metrics, "post_save").dur.unwrap() >= slow.dur.unwrap(),
        "the phase sums its receivers"
    );
    assert_eq!(
        metric(&metrics, "recv_fill_slug").desc.as_deref(),
        Some("shop::fill_slug")
    );
    assert_eq!(
        metric(&metrics, "recv_invalidate_cache").desc.as_deref(),
        Some("shop::invalidate_cache")
    );
    let db_time = metric(&metrics, "db");
    assert!(db_time.dur.unwrap() >= slow.dur.unwrap(), "{db_time:?}");
    assert!(metric(&metrics, "total").dur.unwrap() >= db_time.dur.unwrap());

    let warnings: Vec<_> = captured
        .events()
        .into_iter()
        .filter(|e| e.iter().any(|(name, _)| name == "path"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one request warning, for the slow receiver only: {warnings:?}"
    );
    let warning = &warnings[0];
    assert_eq!(field(warning, "receiver"), "shop::recompute_bestsellers");
    assert_eq!(field(warning, "path"), "/books");
    assert_eq!(field(warning, "method"), "POST");
    let message = field(warning, "message");
    assert!(
        message.contains("shop::recompute_bestsellers") && message.contains("POST /books"),
        "{message}"
    );
}

#[tokio::test]
async fn a_slow_receiver_is_named_even_past_the_slowest_n_and_fast_ones_are_cut() {
    let (db, _dir) = fresh_db(shop_signals()).await;
    let answer = call(
        &app(db, ServerTimingLayer::new().slowest(0)),
        request(Method::POST, "/books"),
    )
    .await;
    let metrics = header(&answer);
    let receivers: Vec<&str> = metrics
        .iter()
        .map(|m| m.name.as_str())
        .filter(|n| n.starts_with("recv_"))
        .collect();
    assert_eq!(receivers, ["recv_recompute_bestsellers"]);
}

#[tokio::test]
async fn a_request_that_runs_no_receiver_and_no_store_job_gets_no_header() {
    let (db, _dir) = fresh_db(shop_signals()).await;
    let answer = get_page(&app(db, ServerTimingLayer::new()), "/plain").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.headers.get(SERVER_TIMING).is_none(),
        "{:?}",
        answer.headers
    );
}

#[tokio::test]
async fn requests_are_measured_separately() {
    let (db, _dir) = fresh_db(shop_signals()).await;
    let app = app(db, ServerTimingLayer::new());
    let (first, second) = tokio::join!(
        call(&app, request(Method::POST, "/books")),
        call(&app, request(Method::POST, "/books")),
    );
    for answer in [first, second] {
        let metrics = header(&answer);
        let db_jobs = metric(&metrics, "db").desc.clone().unwrap();
        assert_eq!(
            db_jobs, "1 store job",
            "each request hears its own save only"
        );
    }
}
