//! The lab page and the dashboard of a running bookstore, in headless Chromium (WebDriver through
//! chromedriver) at 1280 px wide.
//!
//! Needs Debian's `chromium` and `chromium-driver`: the tests run `scripts/install-browser.sh`
//! when they are missing. With `HERALD_LAB_SCREENSHOTS=DIR` the comparison test saves the lab
//! page before and after its run there (`lab-before.png`, `lab-after.png`).
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::Server;
use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const WIDTH: u32 = 1280;

/// The verdicts a measured row may show (`lab/run.rs`).
const VERDICTS: [&str; 4] = [
    "[X] Bad: heavy work lost",
    "[X] Bad: blocks the write and the response",
    "[!] OK but risky: blocks the response",
    "[OK] Good",
];

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
}

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, port)
}

async fn browser(port: u16, profile: &Path) -> Client {
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
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
                format!("--window-size={WIDTH},1700"),
            ],
        },
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!("an object literal")
    };
    within(
        "a WebDriver session",
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}")),
    )
    .await
    .unwrap_or_else(|e| panic!("no WebDriver session with headless Chromium: {e}"))
}

/// A bookstore without sample data, a browser, and `scenario` run between them; the browser is
/// closed whatever happens.
async fn in_browser<F, Fut>(scenario: F)
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = ()>,
{
    ensure_browser();
    let server = Server::start(&[("BOOKSTORE_SAMPLE_DATA", "0")]);
    let (mut driver, port) = start_chromedriver().await;
    let profile = tempfile::tempdir().unwrap();
    let client = browser(port, profile.path()).await;
    let base = format!("http://{}", server.addr);
    let outcome = AssertUnwindSafe(scenario(client.clone(), base))
        .catch_unwind()
        .await;
    let closed = client.close().await;
    let _ = driver.kill().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    closed.unwrap();
}

async fn js(client: &Client, script: &str) -> serde_json::Value {
    client
        .execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// Wait until `expression` is true in the page, checking every 25 ms, at most 60 s.
async fn wait_for(client: &Client, what: &str, expression: &str) {
    let script = format!("return Boolean({expression});");
    within(what, async {
        while js(client, &script).await != json!(true) {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await;
}

async fn set_value(client: &Client, id: &str, value: &str) {
    js(
        client,
        &format!(
            "document.getElementById({}).value = {};",
            json!(id),
            json!(value)
        ),
    )
    .await;
}

/// Where the waterfall says `receiver` ran (`data-where` of its row), or null.
async fn where_ran(client: &Client, receiver: &str) -> serde_json::Value {
    js(
        client,
        &format!(
            "const r = document.querySelector('#waterfall .row[data-receiver={}]'); \
             return r ? r.dataset.where : null;",
            json!(receiver)
        ),
    )
    .await
}

async fn screenshot(client: &Client, name: &str) {
    if let Some(dir) = std::env::var_os("HERALD_LAB_SCREENSHOTS") {
        std::fs::create_dir_all(&dir).unwrap();
        let png = client.screenshot().await.unwrap();
        std::fs::write(Path::new(&dir).join(name), png).unwrap();
    }
}

/// Each pattern's save: the response time, a waterfall with the phases, the store job and the
/// total, and the pattern's receiver in the place it ran (the others muted); the background
/// pattern's task followed until it has run, then drawn in the waterfall as run in the background.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lab_saves_with_each_pattern_and_draws_where_each_receiver_ran() {
    in_browser(|client, base| async move {
        client.goto(&format!("{base}/lab")).await.unwrap();
        let patterns = [
            ("heavy_pre_save_blocking", "lab_heavy_pre_save", "caller", "pre_save"),
            ("light_pre_save", "lab_light_pre_save", "caller", "pre_save"),
            (
                "heavy_post_save_background",
                "lab_heavy_post_save_background",
                "in_transaction",
                "background",
            ),
            ("heavy_post_save_blocking", "lab_heavy_post_save", "caller", "post_save"),
        ];
        let all: Vec<&str> = patterns.iter().map(|p| p.1).collect();
        for (pattern, receiver, ran, phase) in patterns {
            let before = js(
                &client,
                "return document.getElementById('waterfall').dataset.saved || '';",
            )
            .await;
            set_value(&client, "pattern", pattern).await;
            set_value(&client, "heavy-ms", "30").await;
            client.find(Locator::Id("save")).await.unwrap().click().await.unwrap();
            wait_for(
                &client,
                &format!("the waterfall of a {pattern} save"),
                &format!(
                    "(document.getElementById('waterfall').dataset.saved || '') !== {before} && \
                     document.querySelector('#waterfall .row-total') !== null"
                ),
            )
            .await;
            assert!(
                js(&client, "return document.getElementById('response-time').textContent;")
                    .await
                    .as_str()
                    .unwrap()
                    .ends_with(" ms"),
                "{pattern}: the response time is shown"
            );
            let header = js(
                &client,
                "return document.getElementById('server-timing').textContent;",
            )
            .await;
            assert!(
                header.as_str().unwrap().contains("total;dur="),
                "{pattern}: the raw Server-Timing header is shown: {header}"
            );
            let phases = js(
                &client,
                "return [...document.querySelectorAll('#waterfall .row-phase .label')].map(e => e.textContent);",
            )
            .await;
            for expected in [phase, "on_commit"] {
                assert!(
                    phases.as_array().unwrap().contains(&json!(expected)),
                    "{pattern}: phase {expected} in {phases}"
                );
            }
            assert!(
                js(&client, "return document.querySelector('#waterfall .row-db') !== null;")
                    .await
                    == json!(true),
                "{pattern}: the store job is drawn"
            );
            let bars = js(
                &client,
                "return [...document.querySelectorAll('#waterfall .bar')].every(b => b.getBoundingClientRect().width >= 1);",
            )
            .await;
            assert_eq!(bars, json!(true), "{pattern}: every entry has a bar");
            assert_eq!(
                where_ran(&client, receiver).await,
                json!(ran),
                "{pattern}: {receiver} ran there"
            );
            assert_eq!(
                where_ran(&client, "lab_committed").await,
                json!("on_commit"),
                "{pattern}: lab_committed runs on commit"
            );
            for other in all.iter().filter(|r| **r != receiver) {
                assert_eq!(
                    where_ran(&client, other).await,
                    json!(null),
                    "{pattern}: {other} is muted for this save"
                );
            }
            if pattern == "heavy_post_save_background" {
                wait_for(
                    &client,
                    "the background task to have run",
                    "document.getElementById('task-progress').dataset.state === 'done' && \
                     document.querySelector('#waterfall .row[data-receiver=\"lab_heavy_post_save_background:task\"]') !== null",
                )
                .await;
                assert_eq!(
                    where_ran(&client, "lab_heavy_post_save_background:task").await,
                    json!("background")
                );
                let steps = js(
                    &client,
                    "return document.getElementById('task-progress').textContent;",
                )
                .await;
                assert!(
                    steps.as_str().unwrap().contains("picked up by a worker"),
                    "{steps}"
                );
                screenshot(&client, "lab-background-save.png").await;
            }
        }
    })
    .await;
}

/// A small comparison run fills the table: every pattern gets its figures and a verdict computed
/// from them (which verdict depends on the machine, so only that it is one of the rule's), next
/// to the seed's; the progress bar ends full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_comparison_run_fills_the_table_with_four_verdicts() {
    in_browser(|client, base| async move {
        client.goto(&format!("{base}/lab")).await.unwrap();
        wait_for(&client, "the page's script", "document.getElementById('run') !== null").await;
        screenshot(&client, "lab-before.png").await;
        set_value(&client, "run-books", "8").await;
        set_value(&client, "run-clients", "2").await;
        set_value(&client, "run-heavy-ms", "20").await;
        client.find(Locator::Id("run")).await.unwrap().click().await.unwrap();
        wait_for(
            &client,
            "the run to finish",
            "document.getElementById('comparison').dataset.running === 'false'",
        )
        .await;
        let verdicts = js(
            &client,
            "return [...document.querySelectorAll('#comparison tr.pattern .verdict')].map(e => e.textContent);",
        )
        .await;
        let verdicts = verdicts.as_array().unwrap();
        assert_eq!(verdicts.len(), 4, "{verdicts:?}");
        for verdict in verdicts {
            assert!(
                VERDICTS.contains(&verdict.as_str().unwrap()),
                "a computed verdict: {verdict}"
            );
        }
        let seed = js(
            &client,
            "return [...document.querySelectorAll('#comparison tr.pattern .seed-verdict')].map(e => e.textContent);",
        )
        .await;
        assert_eq!(
            seed,
            json!(["[X] Bad", "[OK] Good", "[OK] Good", "[!] OK but risky"])
        );
        let filled = js(
            &client,
            "return [...document.querySelectorAll('#comparison tr.pattern')].map(r => \
             [r.querySelector('.saves-per-s').textContent, r.querySelector('.p50').textContent, \
              r.querySelector('.p99').textContent, r.querySelector('.work').textContent]);",
        )
        .await;
        for row in filled.as_array().unwrap() {
            let cells: Vec<&str> = row.as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
            assert!(!cells.contains(&"—"), "every figure is filled: {cells:?}");
            assert!(cells[3].ends_with("/8"), "8 saves per pattern: {cells:?}");
        }
        let bar = js(
            &client,
            "const p = document.getElementById('run-progress'); return p.value === p.max;",
        )
        .await;
        assert_eq!(bar, json!(true), "the progress bar ends full");
        screenshot(&client, "lab-after.png").await;
    })
    .await;
}
/// At 1280 px the dashboard's receiver table, with the shop's and the lab's receivers, fits the
/// window: no sideways scroll, the latency column inside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_fits_a_1280_px_window() {
    in_browser(|client, base| async move {
        client.goto(&format!("{base}/_herald")).await.unwrap();
        wait_for(
            &client,
            "the receivers table",
            "document.querySelectorAll('#receivers tr.receiver').length > 10",
        )
        .await;
        let fit = js(
            &client,
            "const last = document.querySelector('#receivers thead th:last-child').getBoundingClientRect(); \
             return [document.documentElement.scrollWidth, window.innerWidth, Math.round(last.right)];",
        )
        .await;
        let [scroll, inner, latency_right] = [0, 1, 2].map(|i| fit[i].as_f64().unwrap());
        assert!(inner <= f64::from(WIDTH), "{fit}");
        assert!(scroll <= inner, "no sideways scroll: {fit}");
        assert!(latency_right <= inner, "the latency column is in the window: {fit}");
        screenshot(&client, "dashboard.png").await;
    })
    .await;
}
