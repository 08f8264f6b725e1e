//! `/metrics` in the Prometheus text exposition format (version 0.0.4), read from the statistics
//! the dispatcher and the workers already keep: nothing is recorded a second time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use herald::Db;
use herald::dispatch::StatsSnapshot;
use herald::tasks::{TaskKindStats, TaskState};

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Receivers' `le` bounds: every power of two nanoseconds from 2¹⁰ ns (1.024 µs) to 2³² ns
/// (4.29 s). Powers of two nanoseconds are edges of the dispatcher's own histogram, so every
/// bucket count is exact (a round number of microseconds is not an edge and would be rounded).
pub(crate) const RECEIVER_BOUNDS: std::ops::RangeInclusive<u32> = 10..=32;

/// Tasks' `le` bounds, for queue wait and run time: 2¹⁴ ns (16 µs) to 2³⁸ ns (275 s); tasks wait
/// for backoffs and delays and run for longer than receivers.
pub(crate) const TASK_BOUNDS: std::ops::RangeInclusive<u32> = 14..=38;

/// A router serving `GET /metrics`. Mount it where the application binds (it opens no socket):
///
/// ```no_run
/// # async fn app(db: herald::Db) {
/// let app: axum::Router = axum::Router::new().merge(herald_axum::metrics_router(db));
/// # }
/// ```
///
/// See [`metrics_text`] for the families it serves.
pub fn metrics_router(db: Db) -> Router {
    Router::new().route("/metrics", get(serve)).with_state(db)
}

async fn serve(State(db): State<Db>) -> Response {
    let body = metrics_text(&db).await;
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

/// The metrics page: every family has `# HELP` and `# TYPE` lines, then its series.
///
/// Per receiver (labels `receiver` (its full name), `signal`, `sender`, `phase`; receivers with
/// the same four labels are added together):
///
/// - `herald_receiver_calls_total` (counter): timed calls (with `Timing::Off`, none are);
/// - `herald_receiver_errors_total` (counter): calls that failed or panicked;
/// - `herald_receiver_duration_seconds` (histogram): `le` from 1.024 µs to 4.29 s in powers of
///   two nanoseconds (exact edges of the dispatcher's histogram), `+Inf`, `_sum`, `_count`.
///
/// Per task kind (label `kind`), as this process's workers recorded them:
/// `herald_task_runs_total`, `herald_task_failures_total`, `herald_task_retries_total`
/// (counters), `herald_task_queue_wait_seconds` and `herald_task_run_seconds` (histograms, 16 µs
/// to 275 s).
///
/// The queue: `herald_tasks{queue, state}` (gauge, every state of every queue that has tasks,
/// read from the database at each scrape) and `herald_tasks_scrape_ok` (gauge: 0 when that read
/// failed, in which case `herald_tasks` is left out and a warning is logged).
///
/// The same names are recorded through the `metrics` facade as calls happen; serve either this
/// page or a `metrics` exporter, not both, or Prometheus sees each family twice.
pub async fn metrics_text(db: &Db) -> String {
    let counts = db.tasks().counts().await;
    let mut out = Exposition::default();
    receivers(&mut out, db);
    tasks(&mut out, db);
    out.family(
        "herald_tasks_scrape_ok",
        "gauge",
        "1 if the task queue's counts were read for this scrape, 0 if reading them failed.",
    );
    match counts {
        Ok(counts) => {
            out.sample("herald_tasks_scrape_ok", NO_LABELS, 1);
            out.family(
                "herald_tasks",
                "gauge",
                "Tasks in the queue table, by queue and state.",
            );
            let mut by_queue: BTreeMap<&str, BTreeMap<TaskState, u64>> = BTreeMap::new();
            for c in &counts {
                *by_queue
                    .entry(c.queue.as_str())
                    .or_default()
                    .entry(c.state)
                    .or_default() += c.count;
            }
            for (queue, states) in &by_queue {
                for state in TaskState::ALL {
                    let n = states.get(&state).copied().unwrap_or(0);
                    let labels = [("queue", *queue), ("state", state.as_str())];
                    out.sample("herald_tasks", &labels, n);
                }
            }
        }
        Err(error) => {
            tracing::warn!(target: "herald::metrics", %error, "reading the task queue's counts for /metrics failed");
            out.sample("herald_tasks_scrape_ok", NO_LABELS, 0);
        }
    }
    out.text
}

fn receivers(out: &mut Exposition, db: &Db) {
    let bounds = bounds(RECEIVER_BOUNDS);
    let mut series: BTreeMap<[String; 4], (u64, u64, Histogram)> = BTreeMap::new();
    for receiver in db.signals().receivers() {
        let info = receiver.info();
        let stats = receiver.stats();
        let key = [
            info.name().to_owned(),
            info.signal().to_owned(),
            info.sender().to_owned(),
            info.phase().as_str().to_owned(),
        ];
        let entry = series
            .entry(key)
            .or_insert_with(|| (0, 0, Histogram::empty(bounds.len())));
        entry.0 += stats.calls;
        entry.1 += stats.errors;
        entry.2.add(&stats, &bounds);
    }
    let labels = |key: &[String; 4]| {
        [
            ("receiver", key[0].clone()),
            ("signal", key[1].clone()),
            ("sender", key[2].clone()),
            ("phase", key[3].clone()),
        ]
    };
    out.family(
        "herald_receiver_calls_total",
        "counter",
        "Timed calls of a receiver (none while timing is off).",
    );
    for (key, (calls, _, _)) in &series {
        out.sample("herald_receiver_calls_total", &labels(key), calls);
    }
    out.family(
        "herald_receiver_errors_total",
        "counter",
        "Calls of a receiver that returned an error or panicked.",
    );
    for (key, (_, errors, _)) in &series {
        out.sample("herald_receiver_errors_total", &labels(key), errors);
    }
    out.family(
        "herald_receiver_duration_seconds",
        "histogram",
        "How long a receiver's timed calls took.",
    );
    for (key, (_, _, histogram)) in &series {
        out.histogram(
            "herald_receiver_duration_seconds",
            &labels(key),
            histogram,
            &bounds,
        );
    }
}

/// Reads one counter of a task kind.
type KindCounter = fn(&TaskKindStats) -> u64;
/// Reads one histogram of a task kind.
type KindHistogram = fn(&TaskKindStats) -> &StatsSnapshot;

fn tasks(out: &mut Exposition, db: &Db) {
    let bounds = bounds(TASK_BOUNDS);
    let kinds = db.task_stats();
    let counters: [(&str, &str, KindCounter); 3] = [
        (
            "herald_task_runs_total",
            "Attempts run by this process's workers, completed or failed.",
            |k| k.runs,
        ),
        (
            "herald_task_failures_total",
            "Attempts that failed (including those that will be retried).",
            |k| k.failures,
        ),
        (
            "herald_task_retries_total",
            "Failed attempts that will be retried.",
            |k| k.retries,
        ),
    ];
    for (name, help, value) in counters {
        out.family(name, "counter", help);
        for kind in &kinds {
            out.sample(name, &[("kind", kind.kind.as_str())], value(kind));
        }
    }
    let histograms: [(&str, &str, KindHistogram); 2] = [
        (
            "herald_task_queue_wait_seconds",
            "From a task row's creation (its transaction) to the start of each attempt.",
            |k| &k.queue_wait,
        ),
        (
            "herald_task_run_seconds",
            "How long each attempt ran.",
            |k| &k.run_time,
        ),
    ];
    for (name, help, snapshot) in histograms {
        out.family(name, "histogram", help);
        for kind in &kinds {
            let mut histogram = Histogram::empty(bounds.len());
            histogram.add(snapshot(kind), &bounds);
            out.histogram(name, &[("kind", kind.kind.as_str())], &histogram, &bounds);
        }
    }
}

const NO_LABELS: &[(&str, &str)] = &[];

/// The bounds, in nanoseconds: 2^e for each e.
pub(crate) fn bounds(exponents: std::ops::RangeInclusive<u32>) -> Vec<u64> {
    exponents.map(|e| 1u64 << e).collect()
}

/// Cumulative counts at each bound, the total count and the sum: one series of a histogram.
#[derive(Debug)]
struct Histogram {
    below: Vec<u64>,
    count: u64,
    sum: Duration,
}

impl Histogram {
    fn empty(bounds: usize) -> Self {
        Self {
            below: vec![0; bounds],
            count: 0,
            sum: Duration::ZERO,
        }
    }

    fn add(&mut self, stats: &StatsSnapshot, bounds: &[u64]) {
        for (below, bound) in self.below.iter_mut().zip(bounds) {
            *below += stats.count_below(Duration::from_nanos(*bound));
        }
        self.count += stats.calls;
        self.sum += stats.total;
    }
}

/// `ns` nanoseconds as an exact decimal number of seconds (`1024` → `0.000001024`).
pub(crate) fn seconds(ns: u64) -> String {
    let whole = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    if frac == 0 {
        return format!("{whole}");
    }
    let digits = format!("{frac:09}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// A text exposition being written.
#[derive(Debug, Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample<V: AsRef<str>>(
        &mut self,
        name: &str,
        labels: &[(&str, V)],
        value: impl std::fmt::Display,
    ) {
        self.text.push_str(name);
        self.labels(labels, None);
        let _ = writeln!(self.text, " {value}");
    }

    fn labels<V: AsRef<str>>(&mut self, labels: &[(&str, V)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.text.push('{');
        let mut first = true;
        let extra = le.map(|le| ("le", le));
        for (name, value) in labels.iter().map(|(n, v)| (*n, v.as_ref())).chain(extra) {
            if !first {
                self.text.push(',');
            }
            first = false;
            self.text.push_str(name);
            self.text.push_str("=\"");
            escape_label(&mut self.text, value);
            self.text.push('"');
        }
        self.text.push('}');
    }

    fn histogram<V: AsRef<str>>(
        &mut self,
        name: &str,
        labels: &[(&str, V)],
        histogram: &Histogram,
        bounds: &[u64],
    ) {
        let bucket = format!("{name}_bucket");
        for (below, bound) in histogram.below.iter().zip(bounds) {
            self.text.push_str(&bucket);
            self.labels(labels, Some(&seconds(*bound)));
            let _ = writeln!(self.text, " {below}");
        }
        self.text.push_str(&bucket);
        self.labels(labels, Some("+Inf"));
        let _ = writeln!(self.text, " {}", histogram.count);
        self.text.push_str(name);
        self.text.push_str("_sum");
        self.labels(labels, None);
        let _ = writeln!(self.text, " {}", histogram.sum.as_secs_f64());
        self.text.push_str(name);
        self.text.push_str("_count");
        self.labels(labels, None);
        let _ = writeln!(self.text, " {}", histogram.count);
    }
}

/// A label value: `\`, `"` and line feeds escaped.
fn escape_label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A HELP text: `\` and line feeds escaped.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_exact_decimals() {
        assert_eq!(seconds(1024), "0.000001024");
        assert_eq!(seconds(1 << 32), "4.294967296");
        assert_eq!(seconds(2_000_000_000), "2");
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut out = String::new();
        escape_label(&mut out, "a\\b\"c\nd");
        assert_eq!(out, "a\\\\b\\\"c\\nd");
        assert_eq!(escape_help("x\\y\nz \"q\""), "x\\\\y\\nz \"q\"");
    }
}
