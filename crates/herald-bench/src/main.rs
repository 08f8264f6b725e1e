//! `herald-bench`: Herald's save path measured on this machine, row by row, in the units Django's
//! baseline uses (`../shared/anchors/django/bench.py`), so the two can be read side by side; then
//! the seed's "Performance Comparison" table, measured.
//!
//! ```text
//! cargo run --release -p herald-bench                 # every row, SQLite, then the seed table
//! cargo run --release -p herald-bench -- --quick      # seconds, for a smoke test
//! cargo run --release -p herald-bench -- --only save_pre_post --only raw_insert
//! cargo run --release -p herald-bench -- --only seed --django   # the seed table, Django beside
//! cargo run --release -p herald-bench -- --only seed --heavy-ms 50 --heavy-work spin --clients 16
//! cargo run --release -p herald-bench -- --postgres postgres://postgres@127.0.0.1/test
//! cargo run --release -p herald-bench -- --json out.json
//! ```
//!
//! Every save row is an autocommit write of a `Book` (title, slug, body, price) to a SQLite file in
//! WAL/NORMAL, as Django's script does; the table is emptied (and the WAL truncated) before each
//! sample, outside the timing. The task rows (`tasks.rs`) measure the worker side of background
//! receivers; two of them run a worker in a second process, this binary re-run with a hidden flag.
//!
//! The seed table (`seed.rs`, `--only seed`) runs the seed's four patterns (heavy `pre_save`,
//! light `pre_save`, heavy `post_save` as a durable background task, heavy `post_save` inline)
//! with concurrent clients for a fixed time each: save latency p50/p99, saves per second, how much
//! of the work completed, and a verdict computed from those. With `--django` the same patterns
//! run on Django (`django/seed.py`, in a venv under `target/herald-bench/`) beside Herald's; when
//! that cannot run, one "Django: skipped (..)" line says why. Herald's slow-receiver warnings are
//! counted per receiver and named under the table instead of printed one by one.

mod isolation;
mod logging;
mod names;
mod queries;
mod rows;
mod seed;
mod tasks;

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use serde::Serialize;

/// Herald's save path, measured.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// A run of seconds: 10x fewer operations and 3 samples.
    #[arg(long)]
    quick: bool,
    /// Run only these rows (repeatable); `seed` is the seed's table.
    #[arg(long = "only", value_name = "NAME")]
    only: Vec<String>,
    /// Also run the rows on PostgreSQL at this URL (a schema of its own is created and dropped).
    #[arg(long, value_name = "URL", env = "HERALD_BENCH_POSTGRES_URL")]
    postgres: Option<String>,
    /// Write the results as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also show the spread of each row's single ops (p10, p50, p90, p99, mean) in a second table.
    /// The main table's median is of the samples' means, which carry the rare slow op (SQLite's
    /// automatic checkpoint falls on about one insert in 500); the spread shows it apart.
    #[arg(long)]
    spread: bool,
    /// Internal: run only a worker on this database, reporting on stdout (the task rows' second
    /// process).
    #[arg(long, value_name = "URL", hide = true)]
    worker_for: Option<String>,
    /// Internal: the PostgreSQL schema of `--worker-for`.
    #[arg(long, value_name = "SCHEMA", hide = true, requires = "worker_for")]
    schema: Option<String>,
    #[command(flatten)]
    seed: seed::SeedArgs,
}

/// One measured row.
#[derive(Serialize, Debug, Clone)]
pub struct Row {
    name: String,
    unit: &'static str,
    median_ns: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    p99_ns: Option<f64>,
    /// None for the rows that measure a latency only.
    #[serde(skip_serializing_if = "Option::is_none")]
    per_second: Option<f64>,
    /// The spread of the single ops, for the rows that time each op.
    #[serde(skip_serializing_if = "Option::is_none")]
    ops: Option<Spread>,
}

/// The spread of a row's single ops, in ns.
#[derive(Serialize, Debug, Clone, Copy)]
pub struct Spread {
    p10_ns: f64,
    p50_ns: f64,
    p90_ns: f64,
    mean_ns: f64,
}

#[derive(Serialize)]
struct Report {
    machine: Machine,
    rows: Vec<Row>,
    /// The seed's "Performance Comparison" table, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<seed::Report>,
    #[serde(skip_serializing_if = "Option::is_none")]
    isolation: Option<isolation::Report>,
}

#[derive(Serialize)]
struct Machine {
    cpu: String,
    cores: usize,
    os: String,
    sqlite: String,
}

fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let os = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| format!("{} {}", std::env::consts::OS, r.trim()))
        .unwrap_or_else(|_| std::env::consts::OS.to_owned());
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        os,
        sqlite: rusqlite::version().to_owned(),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let logging = logging::Logging::install()?;
    if let Some(url) = &args.worker_for {
        return tasks::child(url, args.schema.as_deref());
    }
    check_names(&args.only)?;
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let mut results = Vec::new();
    if rows::NAMES.iter().any(|name| wanted(name)) {
        results = main_rows(&args, &wanted)?;
        print_table(&results);
        if args.spread {
            print_spread(&results);
        }
        let slow = logging.take_slow();
        if !slow.is_empty() {
            println!(
                "\nslow receivers named in warnings: {}",
                logging::format_counts(&slow)
            );
        }
    }
    let seed = if wanted(names::SEED) {
        Some(seed::run(&args.seed, args.quick, &logging)?)
    } else {
        None
    };
    let isolation = if wanted(names::ISOLATION) {
        let seconds = args
            .seed
            .seconds()
            .unwrap_or(if args.quick { 1.0 } else { 3.0 });
        let venv = args.seed.django_venv_if_wanted();
        Some(isolation::run(seconds, venv.as_deref())?)
    } else {
        None
    };
    if let Some(path) = &args.json {
        let report = Report {
            machine: machine(),
            rows: results,
            seed,
            isolation,
        };
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    Ok(())
}

/// Every `--only` name must be a row or `seed`.
fn check_names(only: &[String]) -> anyhow::Result<()> {
    let known =
        |name: &str| name == names::SEED || name == names::ISOLATION || rows::NAMES.contains(&name);
    let unknown: Vec<&String> = only.iter().filter(|o| !known(o)).collect();
    if !unknown.is_empty() {
        anyhow::bail!(
            "unknown row(s) {unknown:?}; the rows are: {}, {}, {}",
            rows::NAMES.join(", "),
            names::SEED,
            names::ISOLATION
        );
    }
    Ok(())
}

/// The rows of the main table that `wanted` selects: SQLite, then PostgreSQL with `--postgres`.
fn main_rows(args: &Args, wanted: &dyn Fn(&str) -> bool) -> anyhow::Result<Vec<Row>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let plan = rows::Plan::new(args.quick);
    let mut results = runtime.block_on(rows::sqlite(&plan, wanted))?;
    if let Some(url) = &args.postgres {
        results.extend(runtime.block_on(rows::postgres(&plan, url, wanted))?);
    }
    Ok(results)
}

fn print_table(rows: &[Row]) {
    println!("| row | unit | median | p99 | per second | vs Django |");
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    for row in rows {
        let django = rows::django_ns(&row.name).map_or_else(
            || "—".to_owned(),
            |ns| format!("{:.1}x faster", ns / row.median_ns),
        );
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            row.name,
            row.unit,
            format_ns(row.median_ns),
            row.p99_ns.map_or_else(|| "—".to_owned(), format_ns),
            row.per_second
                .map_or_else(|| "—".to_owned(), |n| format!("{n:.0}")),
            django
        );
    }
}

/// The second table of `--spread`: each row's single ops.
fn print_spread(rows: &[Row]) {
    println!("\n| row (single ops) | p10 | p50 | p90 | p99 | mean |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for row in rows {
        let (Some(ops), Some(p99)) = (row.ops, row.p99_ns) else {
            continue;
        };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            row.name,
            format_ns(ops.p10_ns),
            format_ns(ops.p50_ns),
            format_ns(ops.p90_ns),
            format_ns(p99),
            format_ns(ops.mean_ns)
        );
    }
}

fn format_ns(ns: f64) -> String {
    if ns >= 1_000_000_000.0 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1_000.0 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}
