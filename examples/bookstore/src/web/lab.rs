//! `/lab`: the page, a save with one pattern, its background task's progress, and comparison runs.

use std::time::Instant;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use herald::dispatch::observe;
use serde::Deserialize;
use serde_json::json;

use super::{LINKS, Links, html};
use crate::lab::run::{self, MAX_BOOKS, MAX_CLIENTS, MAX_HEAVY_MS, Settings};
use crate::lab::{Lab, LabBook, Pattern, Timeline, Work, progress};

/// The heaviest single save the form allows (the seed's example sleeps 2 s).
const MAX_SAVE_HEAVY_MS: u64 = 3_000;

/// The lab's routes; the POSTs go behind the shop's `SameOriginLayer` with the others.
pub(super) fn routes(lab: Lab) -> Router {
    Router::new()
        .route("/lab", get(page))
        .route("/lab/save", post(save))
        .route("/lab/saves/{id}", get(save_progress))
        .route("/lab/run", get(run_state).post(start_run))
        .with_state(lab)
}

/// One pattern as the page lists it.
struct PatternRow {
    name: &'static str,
    label: &'static str,
    receiver: &'static str,
    seed_verdict: &'static str,
}

#[derive(Template)]
#[template(path = "lab.html")]
struct LabPage {
    title: &'static str,
    links: Links,
    patterns: Vec<PatternRow>,
    max_save_heavy_ms: u64,
    max_books: u64,
    max_clients: u64,
    max_heavy_ms: u64,
}

async fn page() -> Html<String> {
    html(&LabPage {
        title: "Lab: the seed's four patterns, live",
        links: LINKS,
        patterns: Pattern::ALL
            .into_iter()
            .map(|p| PatternRow {
                name: p.name(),
                label: p.label(),
                receiver: p.receiver(),
                seed_verdict: p.seed_verdict(),
            })
            .collect(),
        max_save_heavy_ms: MAX_SAVE_HEAVY_MS,
        max_books: MAX_BOOKS,
        max_clients: MAX_CLIENTS,
        max_heavy_ms: MAX_HEAVY_MS,
    })
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

#[derive(Deserialize)]
struct SaveInput {
    pattern: String,
    heavy_ms: u64,
    work: String,
}

/// Save one `LabBook` with the pattern asked for. The answer: the book, how long the save took
/// here, and every receiver call and store job with when it began and how long it took (the
/// response's `Server-Timing` header has the same calls, summed).
async fn save(State(lab): State<Lab>, Json(input): Json<SaveInput>) -> Response {
    let Some(pattern) = Pattern::from_name(&input.pattern) else {
        return bad_request(format!("no pattern named {:?}", input.pattern));
    };
    let Some(work) = Work::from_name(&input.work) else {
        return bad_request(format!("work must be sleep or cpu, not {:?}", input.work));
    };
    if input.heavy_ms > MAX_SAVE_HEAVY_MS {
        return bad_request(format!(
            "heavy_ms must be at most {MAX_SAVE_HEAVY_MS}, not {}",
            input.heavy_ms
        ));
    }
    let mut book = LabBook {
        id: None,
        run: 0,
        pattern: pattern.name().to_owned(),
        heavy_ms: i64::try_from(input.heavy_ms).unwrap_or(i64::MAX),
        work: work.name().to_owned(),
        title: format!("A {} book", pattern.label()),
        slug: String::new(),
    };
    let timeline = Timeline::new();
    let saved = observe::observed(timeline.clone(), lab.save(pattern, &mut book)).await;
    let response_ms = Instant::now()
        .saturating_duration_since(timeline.started())
        .as_secs_f64()
        * 1e3;
    match saved {
        Ok(()) => Json(json!({
            "book": book,
            "pattern": pattern.name(),
            "response_ms": response_ms,
            "steps": timeline.steps(),
            "background": pattern == Pattern::HeavyPostSaveBackground,
        }))
        .into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": error.to_string(), "steps": timeline.steps() })),
        )
            .into_response(),
    }
}

/// Where a lab save is now: committed, and its background task waiting, running or done, with
/// the task's row as the queue has it.
async fn save_progress(State(lab): State<Lab>, Path(id): Path<i64>) -> Response {
    let Some(p) = progress().get(&id).cloned() else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no lab save {id} in this process") })),
        )
            .into_response();
    };
    let since_commit = |at: Instant| {
        p.committed
            .map(|c| at.saturating_duration_since(c).as_secs_f64() * 1e3)
    };
    let state = match (&p.started, p.finished) {
        (_, Some(_)) => "done",
        (Some(_), None) => "running",
        (None, None) => "waiting",
    };
    let task = match &p.started {
        Some(started) => lab.db.tasks().get(started.task).await.ok().flatten(),
        None => None,
    };
    let waiting = match lab.db.tasks().counts().await {
        Ok(counts) => counts
            .into_iter()
            .filter(|c| c.queue == "lab" && c.state.is_pending())
            .map(|c| c.count)
            .sum::<u64>(),
        Err(_) => 0,
    };
    Json(json!({
        "id": id,
        "committed": p.committed.is_some(),
        "state": state,
        "task_id": p.started.as_ref().map(|s| s.task),
        "attempt": p.started.as_ref().map(|s| s.attempt),
        "started_after_commit_ms": p.started.as_ref().and_then(|s| since_commit(s.at)),
        "finished_after_commit_ms": p.finished.and_then(since_commit),
        "queue_state": task.as_ref().map(|t| t.state.as_str()),
        "lab_queue_pending": waiting,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct RunInput {
    books: u64,
    clients: u64,
    heavy_ms: u64,
    work: String,
}

/// Start a comparison run: 202 with its state, 400 naming a bad setting, 409 while another runs.
async fn start_run(State(lab): State<Lab>, Json(input): Json<RunInput>) -> Response {
    let settings = match Settings::new(input.books, input.clients, input.heavy_ms, &input.work) {
        Ok(settings) => settings,
        Err(message) => return bad_request(message),
    };
    match run::start(&lab, settings) {
        Ok(state) => (StatusCode::ACCEPTED, Json(state)).into_response(),
        Err(message) => (StatusCode::CONFLICT, Json(json!({ "error": message }))).into_response(),
    }
}

async fn run_state(State(lab): State<Lab>) -> Response {
    let state = lab.runs.state().clone();
    Json(state).into_response()
}
