//! The dashboard, and `SameOriginLayer` in front of a shop's form, in a real browser: headless
//! Chromium driven through chromedriver (WebDriver).
//!
//! Needs Debian's `chromium` and `chromium-driver`: the test runs `scripts/install-browser.sh` when
//! they are missing (CI runs it before the tests too). If they cannot be installed the test fails
//! and says so; it never skips.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use axum::Router;
use axum::extract::{Form, State};
use axum::response::{Html, Redirect};
use axum::routing::{get, post};
use common::{book, connect_fill_slug, connect_on_commit, connect_slow, fresh_db, until, within};
use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt;
use herald::Db;
use herald::Store;
use herald::dispatch::Signals;
use herald::tasks::{Task, TaskOptions, Worker};
use herald_axum::{DashboardOptions, SameOriginLayer, dashboard};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const TOKEN: &str = "browser-test-token-7f3a";

fn screenshot_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/herald-dashboard.png")
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn save_books(db: &Db, n: usize) {
    for i in 0..n {
        let mut b = book(&format!("Book {i}"));
        db.save(&mut b).await.unwrap();
    }
}

/// Two dead `send_receipt` tasks (their one attempt failed) and two completed `reindex` tasks,
/// made by a real worker, which is stopped before the browser looks.
async fn tasks_with_two_dead(db: &Db) -> Vec<i64> {
    let once = TaskOptions::default().max_attempts(1).queue("mail");
    for n in 0..2 {
        db.enqueue(Task::new("send_receipt", json!({ "order": n })).options(once.clone()))
            .await
            .unwrap();
        db.enqueue(Task::new("reindex", json!({ "book": n })))
            .await
            .unwrap();
    }
    let worker = Worker::new(db.clone())
        .queues(["default", "mail"])
        .task("send_receipt", |_data, _ctx| async {
            Err(herald::dispatch::Error::msg(
                "smtp: connection refused by mail.example:25",
            ))
        })
        .task("reindex", |_data, _ctx| async { Ok(()) })
        .poll_interval(Duration::from_millis(10));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    until("two dead and two completed tasks", || {
        let db = db.clone();
        async move {
            let dead = db.tasks().dead(10).await.unwrap().len();
            let done = db
                .tasks()
                .list(herald::tasks::TaskState::Completed, 10)
                .await
                .unwrap()
                .len();
            dead == 2 && done == 2
        }
    })
    .await;
    stop.send(()).unwrap();
    handle.await.unwrap().unwrap();
    let mut ids: Vec<i64> = db
        .tasks()
        .dead(10)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    ids.sort_unstable();
    ids
}

/// Chromium and chromedriver, installed by the project's own script when missing (so that a plain
/// `cargo test --workspace` works on a fresh machine); a failure to install fails the test.
fn ensure_browser() {
    if [CHROMIUM, CHROMEDRIVER]
        .iter()
        .all(|b| Path::new(b).exists())
    {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/install-browser.sh");
    let status = std::process::Command::new("bash")
        .arg(&script)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        status.success(),
        "{} failed ({status}): chromium and chromedriver are needed",
        script.display()
    );
    for binary in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(binary).exists(),
            "{binary} is still missing after {}",
            script.display()
        );
    }
}

/// Start chromedriver on a free port and wait for it to say it is ready.
async fn start_chromedriver() -> (tokio::process::Child, u16) {
    let port = free_port();
    let mut child = tokio::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {CHROMEDRIVER}: {e}"));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    within("chromedriver to start", async {
        loop {
            match lines.next_line().await.unwrap() {
                Some(line) if line.contains("started successfully") => break,
                Some(_) => {}
                None => panic!("chromedriver exited before it was ready"),
            }
        }
    })
    .await;
    // Keep reading so that chromedriver never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, port)
}

async fn browser(port: u16, profile: &Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".to_owned(), json!("chrome"));
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                format!("--user-data-dir={}", profile.display()),
                "--window-size=1400,1500",
            ],
        }),
    );
    within(
        "a WebDriver session",
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}")),
    )
    .await
    .unwrap_or_else(|e| panic!("no WebDriver session with headless Chromium: {e}"))
}

/// Run `script` in the page and return its value.
async fn js(client: &Client, script: &str) -> serde_json::Value {
    client
        .execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// Wait until `script` (an expression) is true in the page, checking every 25 ms, at most 20 s.
async fn wait_for(client: &Client, what: &str, expression: &str) {
    let script = format!("return Boolean({expression});");
    within(what, async {
        while js(client, &script).await != json!(true) {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await;
}

/// Click the element `css` finds, finding it again if a refresh replaced it meanwhile.
async fn click(client: &Client, css: &str) {
    within(&format!("clicking {css}"), async {
        loop {
            let clicked = match client.find(Locator::Css(css)).await {
                Ok(element) => element.click().await,
                Err(e) => Err(e),
            };
            match clicked {
                Ok(()) => return,
                Err(e) if e.is_stale_element_reference() || e.is_no_such_element() => {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                Err(e) => panic!("clicking {css}: {e}"),
            }
        }
    })
    .await;
}

async fn text(client: &Client, css: &str) -> String {
    let script = format!(
        "const e = document.querySelector({}); return e ? e.textContent : null;",
        json!(css)
    );
    js(client, &script).await.as_str().unwrap_or("").to_owned()
}

async fn task_state(db: &Db, id: i64) -> String {
    db.tasks().get(id).await.unwrap().unwrap().state.to_string()
}

async fn scenario(client: &Client, url: &str, db: &Db, dead: &[i64]) {
    client.goto(url).await.unwrap();

    // The receivers table, server-rendered, with the slow receiver marked.
    wait_for(
        client,
        "the receivers table",
        "document.querySelectorAll('#receivers tbody tr.receiver').length === 3",
    )
    .await;
    let names = js(
        client,
        "return [...document.querySelectorAll('#receivers tr.receiver .full')].map(e => e.textContent);",
    )
    .await;
    for name in [
        "shop::fill_slug",
        "shop::recompute_bestsellers",
        "shop::invalidate_cache",
    ] {
        assert!(
            names.as_array().unwrap().contains(&json!(name)),
            "{name} in {names}"
        );
    }
    assert_eq!(
        text(client, "#receivers tr.receiver.slow .full").await,
        "shop::recompute_bestsellers"
    );
    assert_eq!(
        text(client, "#receivers tr.receiver.slow .slow-badge").await,
        "SLOW"
    );

    // The charts: histogram bars with a height, and the queue's chart.
    wait_for(
        client,
        "histogram bars",
        "[...document.querySelectorAll('#receivers svg.hist rect.bar')].some(r => r.getBBox().height > 0)",
    )
    .await;
    wait_for(
        client,
        "the queue chart",
        "document.querySelector('#queue-chart svg polyline') !== null",
    )
    .await;

    // Live: the page picks up calls made after it was rendered.
    save_books(db, 3).await;
    wait_for(
        client,
        "fill_slug's calls to reach 7",
        "[...document.querySelectorAll('#receivers tr.receiver')].some(r => \
         r.querySelector('.full').textContent === 'shop::fill_slug' && r.cells[5].textContent === '7')",
    )
    .await;

    // Retry without the token: refused, and the page says so.
    let (first, second) = (dead[0], dead[1]);
    wait_for(
        client,
        "both dead tasks listed",
        &format!(
            "document.querySelector('tr.dead-task[data-id=\"{first}\"]') && \
             document.querySelector('tr.dead-task[data-id=\"{second}\"]')"
        ),
    )
    .await;
    assert_eq!(
        js(client, "return document.getElementById('token').value;").await,
        json!("")
    );
    click(client, &format!("button.retry[data-task=\"{first}\"]")).await;
    wait_for(
        client,
        "the refusal",
        "document.querySelector('#status.error') && document.getElementById('status').textContent.includes('403')",
    )
    .await;
    let refusal = text(client, "#status").await;
    assert!(refusal.contains("x-herald-token"), "{refusal}");
    assert_eq!(task_state(db, first).await, "dead", "nothing changed");

    // With the token typed into the page: the task leaves the dead list.
    client
        .find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(TOKEN)
        .await
        .unwrap();
    click(client, &format!("button.retry[data-task=\"{first}\"]")).await;
    wait_for(
        client,
        "the retried task to leave the dead list",
        &format!("document.querySelector('tr.dead-task[data-id=\"{first}\"]') === null"),
    )
    .await;
    assert_eq!(task_state(db, first).await, "available");
    assert_eq!(
        text(client, "#status").await,
        format!("Task {first} is queued again.")
    );
    assert!(
        !text(client, &format!("tr.dead-task[data-id=\"{second}\"]"))
            .await
            .is_empty(),
        "the other dead task is still listed"
    );
    wait_for(
        client,
        "the error text of the other task",
        "document.querySelector('tr.dead-task td.error').textContent.includes('smtp: connection refused')",
    )
    .await;

    // Pending work of one kind, cancelled from the page (cancelling can be undone: no dialog).
    for n in 0..2 {
        db.enqueue(Task::new("send_report", json!({ "report": n })))
            .await
            .unwrap();
    }
    client
        .find(Locator::Id("cancel-kind"))
        .await
        .unwrap()
        .send_keys("send_report")
        .await
        .unwrap();
    click(client, "button.cancel-kind").await;
    wait_for(
        client,
        "the cancellation to be reported",
        "document.getElementById('status').textContent === 'Cancelled 2 pending send_report tasks.'",
    )
    .await;
    let cancelled = db
        .tasks()
        .list(herald::tasks::TaskState::Cancelled, 10)
        .await
        .unwrap();
    assert_eq!(cancelled.len(), 2);
    assert!(cancelled.iter().all(|t| t.kind == "send_report"));
    assert_eq!(
        task_state(db, first).await,
        "available",
        "another kind's pending task is left alone"
    );

    let png = client.screenshot().await.unwrap();
    let path = screenshot_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, png).unwrap();

    // The token stays for this tab: a reload keeps it (sessionStorage), not the server.
    client.refresh().await.unwrap();
    wait_for(
        client,
        "the token field after a reload",
        &format!(
            "document.getElementById('token').value === {}",
            json!(TOKEN)
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_headless_chromium_lists_receivers_draws_charts_retries_and_cancels_with_the_token()
 {
    ensure_browser();

    let signals = Signals::builder()
        .slow_threshold(Duration::from_millis(2))
        .build();
    connect_fill_slug(&signals);
    connect_slow(&signals, Duration::from_millis(3));
    connect_on_commit(&signals);
    let (db, _dir) = fresh_db(signals).await;
    save_books(&db, 4).await;
    let dead = tasks_with_two_dead(&db).await;

    let app = Router::new().nest(
        "/_herald",
        dashboard(
            db.clone(),
            DashboardOptions {
                token: Some(TOKEN.to_owned()),
                refresh: Duration::from_millis(250),
                sample_every: Duration::from_millis(200),
                ..Default::default()
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let (mut driver, port) = start_chromedriver().await;
    let profile = tempfile::tempdir().unwrap();
    let client = browser(port, profile.path()).await;
    let url = format!("http://{address}/_herald");
    let outcome = AssertUnwindSafe(scenario(&client, &url, &db, &dead))
        .catch_unwind()
        .await;
    // Close the browser whatever happened, so that no Chromium outlives the test.
    let closed = client.close().await;
    let _ = driver.kill().await;
    server.abort();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    closed.unwrap();
    assert!(screenshot_path().exists());
}

/// A shop: a page listing its books with a form that creates one, and the form's endpoint, which
/// changes state and so sits behind `SameOriginLayer`.
fn shop(db: Db) -> Router {
    async fn page(State(db): State<Db>) -> Html<String> {
        let items: String = db
            .all::<common::Book>()
            .await
            .unwrap()
            .iter()
            .map(|b| format!("<li>{}</li>", b.title))
            .collect();
        Html(format!(
            "<!doctype html><title>Shop</title><ul id=\"books\">{items}</ul>\
             <form method=\"post\" action=\"/books\"><input id=\"title\" name=\"title\">\
             <button id=\"create\">Create</button></form>"
        ))
    }
    async fn create(
        State(db): State<Db>,
        Form(fields): Form<std::collections::HashMap<String, String>>,
    ) -> Redirect {
        db.save(&mut book(&fields["title"])).await.unwrap();
        Redirect::to("/")
    }
    Router::new()
        .route("/", get(page))
        .route("/books", post(create))
        .layer(SameOriginLayer::new())
        .with_state(db)
}

/// A page on another site whose button posts a form to the shop, as a page that forges requests
/// would (with a script, it would not even need the click).
fn elsewhere(shop: std::net::SocketAddr) -> Router {
    let html = format!(
        "<!doctype html><title>Win a prize</title>\
         <form method=\"post\" action=\"http://{shop}/books\">\
         <input type=\"hidden\" name=\"title\" value=\"Forged\">\
         <button id=\"claim\">Claim your prize</button></form>"
    );
    Router::new().route("/", get(move || async move { Html(html) }))
}

async fn titles(db: &Db) -> Vec<String> {
    db.all::<common::Book>()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.title)
        .collect()
}

async fn cross_site_scenario(client: &Client, db: &Db, shop: &str, elsewhere: &str) {
    // The shop's own form creates a book: the browser's headers on a same-origin post pass.
    client.goto(&format!("{shop}/")).await.unwrap();
    client
        .find(Locator::Id("title"))
        .await
        .unwrap()
        .send_keys("Kindred")
        .await
        .unwrap();
    click(client, "#create").await;
    wait_for(
        client,
        "the shop's page listing the created book",
        "document.getElementById('books') && document.getElementById('books').textContent === 'Kindred'",
    )
    .await;
    assert_eq!(titles(db).await, ["Kindred"]);

    // A page on another site (localhost is another site than 127.0.0.1) posts its form to the
    // shop: the browser sends it, with the visitor's cookies were there any, and the shop refuses.
    client.goto(&format!("{elsewhere}/")).await.unwrap();
    click(client, "#claim").await;
    wait_for(
        client,
        "the shop's refusal in the browser",
        "document.body && document.body.textContent.includes('cross-site request refused')",
    )
    .await;
    assert_eq!(
        client.current_url().await.unwrap().as_str(),
        format!("{shop}/books"),
        "the browser did post to the shop"
    );
    let refusal = js(client, "return document.body.textContent;").await;
    let refusal = refusal.as_str().unwrap();
    assert!(
        refusal.contains(&format!("Origin `{elsewhere}`")),
        "{refusal}"
    );
    assert!(refusal.contains("Sec-Fetch-Site: cross-site"), "{refusal}");
    assert_eq!(
        titles(db).await,
        ["Kindred"],
        "the forged book was not written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_another_site_posts_to_the_shop_in_headless_chromium_is_refused() {
    ensure_browser();
    let (db, _dir) = fresh_db(Signals::new()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shop_address = listener.local_addr().unwrap();
    let shop_server = tokio::spawn(axum::serve(listener, shop(db.clone())).into_future());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_port = listener.local_addr().unwrap().port();
    let other_server = tokio::spawn(axum::serve(listener, elsewhere(shop_address)).into_future());

    let (mut driver, port) = start_chromedriver().await;
    let profile = tempfile::tempdir().unwrap();
    let client = browser(port, profile.path()).await;
    let outcome = AssertUnwindSafe(cross_site_scenario(
        &client,
        &db,
        &format!("http://{shop_address}"),
        &format!("http://localhost:{other_port}"),
    ))
    .catch_unwind()
    .await;
    let closed = client.close().await;
    let _ = driver.kill().await;
    shop_server.abort();
    other_server.abort();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    closed.unwrap();
}
