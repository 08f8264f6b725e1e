//! The dashboard's endpoints: what they answer, and that bad input of every kind gets a 4xx with a
//! JSON message, never a 5xx.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::{Answer, Book, call, connect_fill_slug, decode_html, fresh_db, get, request};
use herald::Store;
use herald::dispatch::{PostSave, Signals};
use herald::{Db, Value};
use herald_axum::{DashboardOptions, dashboard, metrics_router};

const TOKEN: &str = "s3cret-token-for-tests";

/// A task row in `state`, as a worker would have left it; returns its id.
async fn task_in(db: &Db, state: &str) -> i64 {
    db.execute(
        "INSERT INTO herald_tasks (kind, queue, state, payload, priority, attempt, max_attempts, \
         timeout_ms, created_at, run_at, last_error) \
         VALUES ('send_receipt', 'mail', ?1, '{\"v\":1,\"data\":null}', 0, 5, 5, 1000, 0, 0, ?2)",
        vec![
            Value::Text(state.to_owned()),
            Value::Text("smtp: connection refused".to_owned()),
        ],
    )
    .await
    .unwrap();
    db.tasks().list(state.parse().unwrap(), 1).await.unwrap()[0].id
}

struct Fixture {
    db: Db,
    guarded: Router,
    read_only: Router,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let signals = Signals::new();
    connect_fill_slug(&signals);
    let (db, dir) = fresh_db(signals).await;
    let guarded = dashboard(
        db.clone(),
        DashboardOptions {
            token: Some(TOKEN.to_owned()),
            ..Default::default()
        },
    );
    let read_only = dashboard(db.clone(), DashboardOptions::default());
    Fixture {
        db,
        guarded,
        read_only,
        _dir: dir,
    }
}

fn post(uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::builder().method(Method::POST).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::empty()).unwrap()
}

const WITH_TOKEN: &[(&str, &str)] = &[("x-herald-token", TOKEN), ("host", "127.0.0.1:8080")];

/// The answer has `status`, a JSON body whose `error` contains `needle`.
#[track_caller]
fn refused(answer: &Answer, status: StatusCode, needle: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    let error = answer.json()["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message: {}", answer.body))
        .to_owned();
    assert!(
        error.contains(needle),
        "the message `{error}` should mention `{needle}`"
    );
    assert!(error.len() < 400, "messages stay short: {error}");
}

#[tokio::test]
async fn reading_endpoints_answer_json() {
    let f = fixture().await;
    let dead = task_in(&f.db, "dead").await;

    let receivers = get(&f.guarded, "/api/receivers").await;
    assert_eq!(receivers.status, StatusCode::OK);
    assert_eq!(receivers.headers[header::CONTENT_TYPE], "application/json");
    let json = receivers.json();
    assert_eq!(json["receivers"][0]["name"], "shop::fill_slug");
    assert_eq!(json["receivers"][0]["signal"], "pre_save");
    assert_eq!(
        json["receivers"][0]["histogram"].as_array().unwrap().len(),
        json["bounds_us"].as_array().unwrap().len() + 1
    );

    let tasks = get(&f.guarded, "/api/tasks").await.json();
    assert_eq!(tasks["totals"]["dead"], 1);
    assert_eq!(tasks["queues"][0]["queue"], "mail");
    assert_eq!(tasks["history"].as_array().unwrap().len(), 1);

    let listed = get(&f.guarded, "/api/tasks/dead?limit=5").await.json();
    assert_eq!(listed["limit"], 5);
    assert_eq!(listed["tasks"][0]["id"], dead);
    assert_eq!(listed["tasks"][0]["last_error"], "smtp: connection refused");
    assert!(
        listed["tasks"][0].get("payload").is_none(),
        "payloads are not shown"
    );

    let page = get(&f.guarded, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("shop::fill_slug") && page.body.contains("<svg"));
    assert!(
        page.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
}

/// A receiver's condition is in the report and on the page, under its phase.
#[tokio::test]
async fn a_receivers_condition_is_reported_and_shown() {
    let f = fixture().await;
    f.db.signals()
        .post_save::<Book>()
        .receiver(|_: &PostSave<'_, Book>| Ok(()))
        .name("shop::record_price")
        .when_changed(["title"])
        .connect()
        .keep();
    let json = get(&f.guarded, "/api/receivers").await.json();
    let receivers = json["receivers"].as_array().unwrap();
    let find = |name: &str| receivers.iter().find(|r| r["name"] == name).unwrap();
    assert_eq!(
        find("shop::record_price")["condition"],
        "when title changed"
    );
    assert_eq!(
        find("shop::fill_slug")["condition"],
        serde_json::Value::Null
    );
    let page = get(&f.guarded, "/").await;
    assert!(
        page.body
            .contains("<td>caller<div class=\"cond\">when title changed</div></td>"),
        "{}",
        page.body
    );
}

/// Markup in what the application or its data chose (the title, a receiver's name, a dead task's
/// kind, queue and error) is shown as text on the page, never run: in element content and in
/// attribute values alike.
#[tokio::test]
async fn markup_in_names_and_errors_is_shown_as_text_on_the_page() {
    const HOSTILE: &str = "<script>alert(\"x\")</script><img src=x onerror='y'>&";
    let signals = Signals::new();
    signals
        .post_save::<Book>()
        .receiver(|_e: &PostSave<'_, Book>| Ok(()))
        .name(HOSTILE)
        .connect()
        .keep();
    let (db, _dir) = fresh_db(signals).await;
    db.execute(
        "INSERT INTO herald_tasks (kind, queue, state, payload, priority, attempt, max_attempts, \
         timeout_ms, created_at, run_at, last_error) \
         VALUES (?1, ?1, 'dead', '{\"v\":1,\"data\":null}', 0, 5, 5, 1000, 0, 0, ?1)",
        vec![Value::Text(HOSTILE.to_owned())],
    )
    .await
    .unwrap();
    let app = dashboard(
        db,
        DashboardOptions {
            title: HOSTILE.to_owned(),
            ..Default::default()
        },
    );

    let page = get(&app, "/").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(
        page.body.matches("<script").count(),
        1,
        "only the dashboard's own script tag: {}",
        page.body
    );
    assert!(!page.body.contains("<img"), "{}", page.body);
    assert!(
        !page.body.contains("onerror='y'") && !page.body.contains("alert(\"x\")"),
        "quotes are escaped, so no attribute is closed early: {}",
        page.body
    );
    let shown = decode_html(&page.body);
    for place in [
        format!("<title>{HOSTILE}</title>"),
        format!("<div class=\"full\">{HOSTILE}</div>"),
        format!("aria-label=\"latency histogram of {HOSTILE}\""),
        format!("<td>{HOSTILE}</td><td>{HOSTILE}</td>"),
        format!("title=\"{HOSTILE}\">{HOSTILE}</td>"),
    ] {
        assert!(shown.contains(&place), "{place} in {shown}");
    }
}

#[tokio::test]
async fn the_page_links_its_assets_under_the_mount_point() {
    let f = fixture().await;
    let app = Router::new().nest("/_herald", f.guarded.clone());
    let page = get(&app, "/_herald").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("data-base=\"/_herald\""));
    assert!(page.body.contains("src=\"/_herald/assets/dashboard.js\""));
    let script = get(&app, "/_herald/assets/dashboard.js").await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(
        script.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert_eq!(get(&app, "/_herald/api/tasks").await.status, StatusCode::OK);
}

#[tokio::test]
async fn retry_and_purge_work_with_the_token() {
    let f = fixture().await;
    let dead = task_in(&f.db, "dead").await;
    let answer = call(
        &f.guarded,
        post(&format!("/api/tasks/{dead}/retry"), WITH_TOKEN),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.json()["retried"], dead);
    assert_eq!(
        f.db.tasks()
            .get(dead)
            .await
            .unwrap()
            .unwrap()
            .state
            .as_str(),
        "available"
    );

    // The dashboard's own page posting: its Origin is the Host it was served from.
    let again = task_in(&f.db, "dead").await;
    let same_origin = [
        ("x-herald-token", TOKEN),
        ("host", "127.0.0.1:8080"),
        ("origin", "http://127.0.0.1:8080"),
        ("sec-fetch-site", "same-origin"),
    ];
    let answer = call(
        &f.guarded,
        post(&format!("/api/tasks/{again}/retry"), &same_origin),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);

    task_in(&f.db, "dead").await;
    let purged = call(&f.guarded, post("/api/tasks/purge?state=dead", WITH_TOKEN)).await;
    assert_eq!(purged.status, StatusCode::OK, "{}", purged.body);
    assert_eq!(purged.json()["purged"], 1);
    assert!(f.db.tasks().dead(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn actions_without_the_right_token_or_from_another_origin_are_refused() {
    let f = fixture().await;
    let dead = task_in(&f.db, "dead").await;
    let retry = format!("/api/tasks/{dead}/retry");

    let answer = call(&f.read_only, post(&retry, WITH_TOKEN)).await;
    refused(&answer, StatusCode::FORBIDDEN, "read-only");
    let answer = call(&f.read_only, post("/api/tasks/purge?state=dead", &[])).await;
    refused(&answer, StatusCode::FORBIDDEN, "read-only");

    let answer = call(&f.guarded, post(&retry, &[])).await;
    refused(&answer, StatusCode::FORBIDDEN, "x-herald-token");
    let answer = call(&f.guarded, post(&retry, &[("x-herald-token", "guess")])).await;
    refused(&answer, StatusCode::FORBIDDEN, "not the dashboard's");
    let answer = call(
        &f.guarded,
        post(&retry, &[("x-herald-token", &format!("{TOKEN}x"))]),
    )
    .await;
    refused(&answer, StatusCode::FORBIDDEN, "not the dashboard's");

    let evil = [
        ("x-herald-token", TOKEN),
        ("host", "127.0.0.1:8080"),
        ("origin", "http://evil.example"),
    ];
    let answer = call(&f.guarded, post(&retry, &evil)).await;
    refused(&answer, StatusCode::FORBIDDEN, "evil.example");
    let null = [
        ("x-herald-token", TOKEN),
        ("host", "127.0.0.1:8080"),
        ("origin", "null"),
    ];
    refused(
        &call(&f.guarded, post(&retry, &null)).await,
        StatusCode::FORBIDDEN,
        "cross-origin",
    );
    let cross_site = [("x-herald-token", TOKEN), ("sec-fetch-site", "cross-site")];
    refused(
        &call(&f.guarded, post(&retry, &cross_site)).await,
        StatusCode::FORBIDDEN,
        "cross-site",
    );
    let answer = call(&f.guarded, post("/api/tasks/purge?state=dead", &[])).await;
    refused(&answer, StatusCode::FORBIDDEN, "x-herald-token");

    assert_eq!(
        f.db.tasks()
            .get(dead)
            .await
            .unwrap()
            .unwrap()
            .state
            .as_str(),
        "dead",
        "nothing was changed"
    );
}

#[tokio::test]
async fn cancel_stops_pending_work_with_the_token() {
    let f = fixture().await;
    let available = task_in(&f.db, "available").await;
    let running = task_in(&f.db, "running").await;
    let completed = task_in(&f.db, "completed").await;
    let state = |id: i64| {
        let db = f.db.clone();
        async move { db.tasks().get(id).await.unwrap().unwrap().state.to_string() }
    };

    // Guarded as retry and purge are.
    let cancel = format!("/api/tasks/{available}/cancel");
    refused(
        &call(&f.read_only, post(&cancel, WITH_TOKEN)).await,
        StatusCode::FORBIDDEN,
        "read-only",
    );
    refused(
        &call(&f.guarded, post(&cancel, &[])).await,
        StatusCode::FORBIDDEN,
        "x-herald-token",
    );
    let cross_site = [("x-herald-token", TOKEN), ("sec-fetch-site", "cross-site")];
    refused(
        &call(&f.guarded, post(&cancel, &cross_site)).await,
        StatusCode::FORBIDDEN,
        "cross-site",
    );
    refused(
        &call(
            &f.guarded,
            post("/api/tasks/cancel?kind=send_receipt", &cross_site),
        )
        .await,
        StatusCode::FORBIDDEN,
        "cross-site",
    );
    assert_eq!(state(available).await, "available", "nothing changed yet");

    for id in [available, running] {
        let answer = call(
            &f.guarded,
            post(&format!("/api/tasks/{id}/cancel"), WITH_TOKEN),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert_eq!(answer.json()["cancelled"], id);
        assert_eq!(state(id).await, "cancelled");
    }
    for (id, needle) in [
        (available, "is cancelled: only pending"),
        (completed, "is completed: only pending"),
    ] {
        let answer = call(
            &f.guarded,
            post(&format!("/api/tasks/{id}/cancel"), WITH_TOKEN),
        )
        .await;
        refused(&answer, StatusCode::CONFLICT, needle);
    }
    refused(
        &call(&f.guarded, post("/api/tasks/424242/cancel", WITH_TOKEN)).await,
        StatusCode::NOT_FOUND,
        "424242",
    );
    refused(
        &call(&f.guarded, post("/api/tasks/-1/cancel", WITH_TOKEN)).await,
        StatusCode::BAD_REQUEST,
        "`-1`",
    );

    // Every pending task of a kind.
    let (a, b) = (
        task_in(&f.db, "available").await,
        task_in(&f.db, "available").await,
    );
    let answer = call(
        &f.guarded,
        post("/api/tasks/cancel?kind=send_receipt", WITH_TOKEN),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.json()["cancelled"], 2);
    assert_eq!(answer.json()["kind"], "send_receipt");
    assert_eq!(
        (state(a).await, state(b).await),
        ("cancelled".to_owned(), "cancelled".to_owned())
    );
    assert_eq!(state(completed).await, "completed", "finished tasks stay");
    for (query, needle) in [
        ("", "needs `kind`"),
        ("?kind=", "`kind` is empty"),
        ("?kind=a&kind=b", "twice"),
        ("?kind=a&state=dead", "`state`"),
    ] {
        let answer = call(
            &f.guarded,
            post(&format!("/api/tasks/cancel{query}"), WITH_TOKEN),
        )
        .await;
        refused(&answer, StatusCode::BAD_REQUEST, needle);
    }
}

#[tokio::test]
async fn bad_ids_states_and_limits_get_400_naming_the_value() {
    let f = fixture().await;
    let completed = task_in(&f.db, "completed").await;
    let running = task_in(&f.db, "running").await;
    let huge = "9".repeat(10_000);

    for (id, needle) in [
        ("-3", "`-3`"),
        ("0", "`0`"),
        ("abc", "`abc`"),
        ("1.5", "`1.5`"),
        ("99999999999999999999", "too large"),
        (huge.as_str(), "10000 bytes"),
        ("%FF", "task id"),
        ("%20", "` `"),
    ] {
        let answer = call(
            &f.guarded,
            post(&format!("/api/tasks/{id}/retry"), WITH_TOKEN),
        )
        .await;
        refused(&answer, StatusCode::BAD_REQUEST, needle);
    }
    let answer = call(&f.guarded, post("/api/tasks/424242/retry", WITH_TOKEN)).await;
    refused(&answer, StatusCode::NOT_FOUND, "424242");
    for id in [completed, running] {
        let answer = call(
            &f.guarded,
            post(&format!("/api/tasks/{id}/retry"), WITH_TOKEN),
        )
        .await;
        refused(&answer, StatusCode::CONFLICT, &id.to_string());
    }
    let answer = call(&f.guarded, post("/api/tasks/1/retry?force=1", WITH_TOKEN)).await;
    refused(&answer, StatusCode::BAD_REQUEST, "force");

    for (query, needle) in [
        ("", "needs `state`"),
        ("?state=running", "running tasks cannot be purged"),
        ("?state=available", "pending work"),
        ("?state=available", "cancel them instead"),
        ("?state=zombie", "`zombie`"),
        ("?state=", "``"),
        ("?state=dead&state=completed", "twice"),
        ("?state=dead&all=1", "`all`"),
    ] {
        let answer = call(
            &f.guarded,
            post(&format!("/api/tasks/purge{query}"), WITH_TOKEN),
        )
        .await;
        refused(&answer, StatusCode::BAD_REQUEST, needle);
    }
    let answer = call(
        &f.guarded,
        post(&format!("/api/tasks/purge?state={huge}"), WITH_TOKEN),
    )
    .await;
    refused(&answer, StatusCode::BAD_REQUEST, "10000 bytes");

    for (query, needle) in [
        ("limit=0", "`0`"),
        ("limit=-1", "`-1`"),
        ("limit=abc", "`abc`"),
        ("limit=", "``"),
        ("limit=1001", "not clamped"),
        ("limit=99999999999999999999999", "not clamped"),
        ("limit=1&limit=2", "twice"),
        ("offset=3", "`offset`"),
    ] {
        let answer = get(&f.guarded, &format!("/api/tasks/dead?{query}")).await;
        refused(&answer, StatusCode::BAD_REQUEST, needle);
    }
    let answer = get(&f.guarded, &format!("/api/tasks/dead?limit={huge}")).await;
    refused(&answer, StatusCode::BAD_REQUEST, "10000 bytes");
    let answer = get(&f.guarded, "/api/receivers?verbose=1").await;
    refused(&answer, StatusCode::BAD_REQUEST, "`verbose`");
    let answer = get(&f.guarded, "/api/tasks?x=%FF").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
}

#[tokio::test]
async fn wrong_methods_get_405_and_unknown_paths_404_with_json() {
    let f = fixture().await;
    for (method, path, allowed) in [
        (Method::POST, "/api/receivers", "GET, HEAD"),
        (Method::POST, "/api/tasks", "GET, HEAD"),
        (Method::POST, "/api/tasks/dead", "GET, HEAD"),
        (Method::DELETE, "/api/tasks/dead", "GET, HEAD"),
        (Method::GET, "/api/tasks/1/retry", "POST"),
        (Method::PUT, "/api/tasks/1/retry", "POST"),
        (Method::GET, "/api/tasks/purge", "POST"),
        (Method::POST, "/", "GET, HEAD"),
        (Method::OPTIONS, "/api/tasks/1/retry", "POST"),
        (Method::PATCH, "/assets/dashboard.js", "GET, HEAD"),
        (Method::GET, "/api/tasks/1/cancel", "POST"),
        (Method::DELETE, "/api/tasks/cancel", "POST"),
    ] {
        let answer = call(&f.guarded, request(method.clone(), path)).await;
        refused(
            &answer,
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("method {method} is not allowed here; allowed: {allowed}"),
        );
        assert_eq!(
            answer.headers[header::ALLOW]
                .to_str()
                .unwrap()
                .replace(',', ", "),
            allowed,
            "{method} {path}: 405 keeps its Allow header, and the message agrees with it"
        );
    }
    // Mounted in an application, as the bookstore mounts it.
    let app = Router::new().nest("/_herald", f.guarded.clone());
    let answer = call(&app, request(Method::DELETE, "/_herald/api/tasks")).await;
    refused(
        &answer,
        StatusCode::METHOD_NOT_ALLOWED,
        "allowed: GET, HEAD",
    );
    let long = format!("/api/{}", "a".repeat(10_000));
    for path in [
        "/nope",
        "/api/nope",
        "/api/tasks/1",
        "/api/tasks/1/retry/x",
        long.as_str(),
    ] {
        let answer = get(&f.guarded, path).await;
        refused(&answer, StatusCode::NOT_FOUND, "no such page");
    }
    let metrics = metrics_router(f.db.clone());
    assert_eq!(
        call(&metrics, request(Method::DELETE, "/metrics"))
            .await
            .status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(get(&metrics, "/nope").await.status, StatusCode::NOT_FOUND);
}

fn dashboard_with_token(token: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (db, _dir) = runtime.block_on(fresh_db(Signals::new()));
    let _ = dashboard(
        db,
        DashboardOptions {
            token: Some(token.to_owned()),
            ..Default::default()
        },
    );
}

#[test]
#[should_panic(expected = "DashboardOptions::token is refused: the dashboard token is blank")]
fn an_empty_token_is_refused_at_startup() {
    dashboard_with_token("");
}

#[test]
#[should_panic(expected = "the dashboard token has 5 characters; it needs at least 16")]
fn a_short_token_is_refused_at_startup() {
    dashboard_with_token("hunt2");
}

#[test]
#[should_panic(expected = "cannot go in an HTTP header (character 16)")]
fn a_token_that_cannot_go_in_a_header_is_refused_at_startup() {
    dashboard_with_token("0123456789abcdeé");
}
