//! `herald-bench --quick` end to end: it runs, prints every SQLite row and the seed table, and its
//! JSON report has them with sane figures. Shape only: no assertion depends on speed.

use std::process::Command;

#[path = "../src/names.rs"]
#[allow(dead_code, unreachable_pub)]
mod names;

use serde_json::Value;

/// What one quick run printed and wrote.
struct Run {
    stdout: String,
    report: Value,
}

/// Run the built binary with `--quick --json <tmp>` and `args`; it must exit 0.
fn quick_run(args: &[&str]) -> Run {
    let dir = tempfile::tempdir().expect("a scratch folder");
    let json = dir.path().join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_herald-bench"))
        .arg("--quick")
        .arg("--json")
        .arg(&json)
        .args(args)
        .env_remove("HERALD_BENCH_POSTGRES_URL")
        .output()
        .expect("herald-bench starts");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "herald-bench --quick failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&json).expect("the JSON report was written");
    let report = serde_json::from_str(&text).expect("the JSON report parses");
    Run { stdout, report }
}

/// The SQLite rows: every row but those that need `--postgres`.
fn sqlite_rows() -> impl Iterator<Item = &'static str> {
    names::ROWS
        .iter()
        .copied()
        .filter(|name| !name.ends_with("_postgres"))
}

/// A table line (`| name | ...`) for `name` is printed.
fn assert_table_has(stdout: &str, name: &str) {
    let prefix = format!("| {name} |");
    assert!(
        stdout.lines().any(|line| line.starts_with(&prefix)),
        "no table line for {name} in:\n{stdout}"
    );
}

/// `value[key]` is a number greater than zero.
fn assert_positive(value: &Value, key: &str) {
    let number = value[key].as_f64();
    assert!(
        number.is_some_and(|n| n > 0.0),
        "`{key}` is not a positive number in {value}"
    );
}

#[test]
fn quick_run_prints_and_reports_every_row_and_seed_pattern() {
    let run = quick_run(&[]);

    for name in sqlite_rows() {
        assert_table_has(&run.stdout, name);
        let row = run.report["rows"]
            .as_array()
            .expect("`rows` is an array")
            .iter()
            .find(|row| row["name"] == name)
            .unwrap_or_else(|| panic!("no JSON row {name}"));
        assert_positive(row, "median_ns");
    }

    assert!(
        run.stdout.contains("Performance Comparison"),
        "no seed table in:\n{}",
        run.stdout
    );
    let seed = &run.report["seed"];
    for key in ["heavy_ms", "clients", "seconds_per_pattern"] {
        assert_positive(seed, key);
    }
    assert_eq!(seed["background_worker"], true, "{seed}");
    let seed_rows = seed["rows"].as_array().expect("`seed.rows` is an array");
    for pattern in names::SEED_PATTERNS {
        assert_table_has(&run.stdout, pattern);
        let row = seed_rows
            .iter()
            .find(|row| row["side"] == "herald" && row["pattern"] == *pattern)
            .unwrap_or_else(|| panic!("no Herald seed row {pattern}"));
        for key in ["saves", "elapsed_s", "p50_ms", "p99_ms", "saves_per_second"] {
            assert_positive(row, key);
        }
        let completed = row["completed_pct"]
            .as_f64()
            .expect("`completed_pct` is a number");
        assert!(
            (0.0..=100.0).contains(&completed),
            "{pattern}: completed {completed} %"
        );
        assert!(
            row["verdict"].as_str().is_some_and(|v| !v.is_empty()),
            "{pattern}: no verdict in {row}"
        );
    }
}

#[test]
fn without_a_worker_the_background_pattern_saves_and_leaves_its_tasks_queued() {
    let run = quick_run(&["--only", "seed", "--no-worker"]);

    assert!(
        run.stdout.contains("ran with no worker (`--no-worker`)"),
        "the table does not say so:\n{}",
        run.stdout
    );
    let seed = &run.report["seed"];
    assert_eq!(seed["background_worker"], false, "{seed}");
    let background = seed["rows"]
        .as_array()
        .expect("`seed.rows` is an array")
        .iter()
        .find(|row| row["side"] == "herald" && row["pattern"] == "heavy_post_save_background")
        .expect("the background row");
    assert_positive(background, "saves_per_second");
    assert_eq!(
        background["completed_pct"].as_f64(),
        Some(0.0),
        "{background}"
    );
    assert!(background["drain_s"].is_null(), "{background}");
    assert_eq!(
        background["verdict"], "— (no worker: its tasks stayed queued)",
        "not judged as work lost: {background}"
    );
}
