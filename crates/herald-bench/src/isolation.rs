//! The isolation table: does a slow receiver delay only its own save?
//!
//! For each case, a fresh SQLite file and registry; [`PLAIN_CLIENTS`] clients save plain books in
//! a loop beside one client whose saves hit a receiver that takes [`SLOW`] (a sleep): a
//! synchronous `pre_save` declared `blocking`, an async `pre_save` awaiting a tokio timer, a
//! synchronous `post_save` declared `blocking`, or an `on_commit` receiver. The receiver is
//! connected for every save and returns at once for the plain ones, as an application's would.
//! The plain clients' save p50/p99 and saves per second are compared with the case where no client
//! is slow: the goal is their p99 within [`GOAL`] of it.
//!
//! With `--django`, `django/seed.py --isolation` runs the same cases on Django (a thread and
//! connection per client; no async case: Django's `save()` is synchronous).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use herald::dispatch::{PostSave, PreSave, Signals};
use herald::{Db, Store};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::names::ISOLATION_CASES;
use crate::rows::{Book, new_book};
use crate::seed::{percentile, print_progress};

/// Clients saving plain books.
pub(crate) const PLAIN_CLIENTS: usize = 4;

/// How long the slow client's receiver takes.
pub(crate) const SLOW: Duration = Duration::from_millis(200);

/// The goal: the plain clients' p99 at most this times their p99 with no slow client.
const GOAL: f64 = 2.0;

/// What one case measured, on either side; `django/seed.py --isolation` prints the same fields.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct Case {
    /// One of [`ISOLATION_CASES`].
    pub(crate) case: String,
    /// The plain clients' saves.
    pub(crate) saves: u64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) saves_per_second: f64,
    /// The slow client's saves and their median.
    pub(crate) slow_saves: u64,
    pub(crate) slow_p50_ms: f64,
}

/// The table's part of `--json`.
#[derive(Serialize, Debug)]
pub(crate) struct Report {
    slow_ms: f64,
    plain_clients: usize,
    seconds_per_case: f64,
    herald: Vec<Case>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    django: Vec<Case>,
    #[serde(skip_serializing_if = "Option::is_none")]
    django_skipped: Option<String>,
}

/// Measure every case on Herald (and on Django with `django`), print the table.
pub(crate) fn run(seconds: f64, django: Option<&std::path::Path>) -> anyhow::Result<Report> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the multi-thread runtime")?;
    let dir = tempfile::tempdir().context("creating a scratch folder")?;
    let duration = Duration::from_secs_f64(seconds);
    let mut herald = Vec::new();
    for case in ISOLATION_CASES {
        print_progress(&format!("isolation: Herald {case}"));
        let measured = runtime
            .block_on(measure(case, duration, dir.path()))
            .with_context(|| format!("measuring the isolation case {case}"))?;
        herald.push(measured);
    }
    let (django, django_skipped) = match django {
        None => (Vec::new(), None),
        Some(venv) => match crate::seed::django_isolation(venv, seconds) {
            Ok(cases) => (cases, None),
            Err(error) => (Vec::new(), Some(format!("{error:#}").replace('\n', " "))),
        },
    };
    let report = Report {
        slow_ms: SLOW.as_secs_f64() * 1e3,
        plain_clients: PLAIN_CLIENTS,
        seconds_per_case: seconds,
        herald,
        django,
        django_skipped,
    };
    print_table(&report);
    Ok(report)
}

/// One case: a fresh database and registry, the plain clients and the slow one.
async fn measure(case: &str, duration: Duration, dir: &std::path::Path) -> anyhow::Result<Case> {
    let signals = Signals::builder().slow_threshold(SLOW * 2).build();
    connect(case, &signals);
    let url = format!(
        "sqlite://{}",
        dir.join(format!("isolation_{case}.db")).display()
    );
    let db = Db::open(&url).signals(signals).connect().await?;
    db.create_table::<Book>().await?;
    let until = Instant::now() + duration;
    let started = Instant::now();
    let mut clients = JoinSet::new();
    let saves = Arc::new(AtomicU64::new(0));
    for client in 0..=PLAIN_CLIENTS {
        let slow = client == PLAIN_CLIENTS;
        clients.spawn(save_until(db.clone(), client, slow, until, saves.clone()));
    }
    let (mut plain, mut slow) = (Vec::new(), Vec::new());
    while let Some(joined) = clients.join_next().await {
        let (is_slow, latencies) = joined.context("a client stopped")??;
        if is_slow {
            slow.extend(latencies);
        } else {
            plain.extend(latencies);
        }
    }
    let elapsed = started.elapsed();
    tokio::task::spawn_blocking(move || db.close()).await?;
    plain.sort_by(f64::total_cmp);
    slow.sort_by(f64::total_cmp);
    Ok(Case {
        case: case.to_owned(),
        saves: plain.len() as u64,
        p50_ms: percentile(&plain, 0.50),
        p99_ms: percentile(&plain, 0.99),
        saves_per_second: plain.len() as f64 / elapsed.as_secs_f64(),
        slow_saves: slow.len() as u64,
        slow_p50_ms: percentile(&slow, 0.50),
    })
}

fn is_slow(title: &str) -> bool {
    title.starts_with("slow")
}

/// The case's receiver: connected for every save, slow for the slow client's books only.
fn connect(case: &str, signals: &Signals) {
    let connection = match case {
        "none" => return,
        "sync_pre_save" => signals
            .pre_save::<Book>()
            .receiver(|e: &mut PreSave<'_, Book>| {
                if is_slow(&e.instance.title) {
                    std::thread::sleep(SLOW);
                }
                Ok(())
            })
            .name("slow_pre_save")
            .blocking()
            .connect(),
        "async_pre_save" => signals
            .pre_save::<Book>()
            .receiver_async(async |e: &mut PreSave<'_, Book>| {
                if is_slow(&e.instance.title) {
                    tokio::time::sleep(SLOW).await;
                }
                Ok(())
            })
            .name("slow_async_pre_save")
            .connect(),
        "sync_post_save" => signals
            .post_save::<Book>()
            .receiver(|e: &PostSave<'_, Book>| {
                if is_slow(&e.instance.title) {
                    std::thread::sleep(SLOW);
                }
                Ok(())
            })
            .name("slow_post_save")
            .blocking()
            .connect(),
        _ => signals
            .post_save::<Book>()
            .on_commit()
            .receiver(|e: &PostSave<'_, Book>| {
                if is_slow(&e.instance.title) {
                    std::thread::sleep(SLOW);
                }
                Ok(())
            })
            .name("slow_on_commit")
            .blocking()
            .connect(),
    };
    connection.keep();
}

/// One client: save books until `until`; whether it is the slow one, and each save's latency (ms).
async fn save_until(
    db: Db,
    client: usize,
    slow: bool,
    until: Instant,
    saves: Arc<AtomicU64>,
) -> anyhow::Result<(bool, Vec<f64>)> {
    let mut latencies = Vec::new();
    while Instant::now() < until {
        let mut book = new_book(client * 1_000_000 + latencies.len());
        book.title = format!("{} {client}", if slow { "slow" } else { "plain" });
        let one = Instant::now();
        db.save(&mut book)
            .await
            .with_context(|| format!("client {client} saving a book"))?;
        latencies.push(one.elapsed().as_secs_f64() * 1e3);
        saves.fetch_add(1, Ordering::Relaxed);
    }
    Ok((slow, latencies))
}

fn print_table(report: &Report) {
    println!("\n## Isolation: a slow receiver delays only its own save\n");
    println!(
        "{} clients save plain books beside one client whose saves hit a receiver taking {} ms; \
         {:.1} s per case, a fresh SQLite file (WAL/NORMAL) each. Goal: the plain clients' p99 \
         within {GOAL:.0}x of their p99 with no slow client.\n",
        report.plain_clients, report.slow_ms, report.seconds_per_case
    );
    println!(
        "| slow receiver of the fifth client | side | plain p50 | plain p99 | plain saves/s | slow client's saves (p50) | p99 vs none |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for side in ["herald", "django"] {
        let cases = if side == "herald" {
            &report.herald
        } else {
            &report.django
        };
        let Some(none) = cases.iter().find(|c| c.case == "none") else {
            continue;
        };
        for case in cases {
            let ratio = case.p99_ms / none.p99_ms.max(1e-9);
            let goal = if case.case == "none" {
                String::new()
            } else if ratio <= GOAL {
                " (goal met)".to_owned()
            } else {
                " (goal missed)".to_owned()
            };
            println!(
                "| {} | {} | {} | {} | {:.0} | {} ({}) | {ratio:.2}x{goal} |",
                case.case,
                if side == "herald" { "Herald" } else { "Django" },
                crate::format_ns(case.p50_ms * 1e6),
                crate::format_ns(case.p99_ms * 1e6),
                case.saves_per_second,
                case.slow_saves,
                crate::format_ns(case.slow_p50_ms * 1e6),
            );
        }
    }
    if let Some(reason) = &report.django_skipped {
        println!("\nDjango: skipped ({reason})");
    }
}
