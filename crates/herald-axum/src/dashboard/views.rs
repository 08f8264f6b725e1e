//! What the dashboard shows, as data: the JSON endpoints serialize these, and the page renders the
//! same values server-side. The receivers' part is `herald::report`'s, shared with the CLI.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald::Db;
use herald::dispatch::StatsSnapshot;
use herald::report::ReceiversReport;
use herald::tasks::{TaskCount, TaskKindStats, TaskRow, TaskState};
use serde::Serialize;

use crate::metrics::{RECEIVER_BOUNDS, bounds};

/// `GET /api/receivers`: the receivers' report, the type `receivers --from` reads back.
pub(crate) fn receivers(db: &Db) -> ReceiversReport {
    let bounds: Vec<Duration> = bounds(RECEIVER_BOUNDS)
        .into_iter()
        .map(Duration::from_nanos)
        .collect();
    ReceiversReport::of(db.signals(), &bounds)
}

pub(crate) fn micros(d: Duration) -> f64 {
    herald::report::micros(d)
}

/// `GET /api/tasks`.
#[derive(Debug, Serialize)]
pub(crate) struct TasksView {
    /// Every state, in the order the dashboard shows them.
    pub(crate) states: &'static [&'static str],
    /// Counts now, per queue (every state present, zeros included).
    pub(crate) queues: Vec<QueueView>,
    /// Counts now, all queues together.
    pub(crate) totals: BTreeMap<String, u64>,
    /// Per task kind, as this process's workers recorded them.
    pub(crate) kinds: Vec<KindView>,
    /// Earlier totals, oldest first (samples taken when this endpoint or the page is read).
    pub(crate) history: Vec<Sample>,
}

#[derive(Debug, Serialize)]
pub(crate) struct QueueView {
    pub(crate) queue: String,
    pub(crate) counts: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Sample {
    /// When, in ms since the Unix epoch.
    pub(crate) at_ms: u64,
    /// Totals by state.
    pub(crate) counts: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct KindView {
    pub(crate) kind: String,
    pub(crate) runs: u64,
    pub(crate) failures: u64,
    pub(crate) retries: u64,
    pub(crate) queue_wait: Summary,
    pub(crate) run_time: Summary,
}

#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    pub(crate) count: u64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) max_us: f64,
}

impl Summary {
    fn of(stats: &StatsSnapshot) -> Self {
        Self {
            count: stats.calls,
            p50_us: micros(stats.p50()),
            p99_us: micros(stats.p99()),
            max_us: micros(stats.max),
        }
    }
}

/// The task states' names, pending first (as [`TaskState::ALL`]).
pub(crate) static STATES: LazyLock<[&str; 5]> =
    LazyLock::new(|| TaskState::ALL.map(TaskState::as_str));

fn zeros() -> BTreeMap<String, u64> {
    STATES.iter().map(|s| ((*s).to_owned(), 0)).collect()
}

/// The current counts (queues and totals) from the queue's `(queue, state)` counts.
pub(crate) fn counts(counts: &[TaskCount]) -> (Vec<QueueView>, BTreeMap<String, u64>) {
    let mut queues: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut totals = zeros();
    for c in counts {
        *queues
            .entry(c.queue.clone())
            .or_insert_with(zeros)
            .entry(c.state.to_string())
            .or_default() += c.count;
        *totals.entry(c.state.to_string()).or_default() += c.count;
    }
    let queues = queues
        .into_iter()
        .map(|(queue, counts)| QueueView { queue, counts })
        .collect();
    (queues, totals)
}

pub(crate) fn kinds(stats: Vec<TaskKindStats>) -> Vec<KindView> {
    stats
        .into_iter()
        .map(|k| KindView {
            queue_wait: Summary::of(&k.queue_wait),
            run_time: Summary::of(&k.run_time),
            kind: k.kind,
            runs: k.runs,
            failures: k.failures,
            retries: k.retries,
        })
        .collect()
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `GET /api/tasks/dead`.
#[derive(Debug, Serialize)]
pub(crate) struct DeadView {
    pub(crate) limit: usize,
    pub(crate) tasks: Vec<DeadTask>,
}

/// A dead task (its payload is left out: it may hold personal data, and reading needs no token).
#[derive(Debug, Serialize)]
pub(crate) struct DeadTask {
    pub(crate) id: i64,
    pub(crate) kind: String,
    pub(crate) queue: String,
    pub(crate) attempt: u32,
    pub(crate) max_attempts: u32,
    pub(crate) last_error: Option<String>,
    /// µs since the Unix epoch.
    pub(crate) created_at_us: i64,
    /// µs since the Unix epoch.
    pub(crate) run_at_us: i64,
}

impl From<TaskRow> for DeadTask {
    fn from(t: TaskRow) -> Self {
        Self {
            id: t.id,
            kind: t.kind,
            queue: t.queue,
            attempt: t.attempt,
            max_attempts: t.max_attempts,
            last_error: t.last_error,
            created_at_us: t.created_at,
            run_at_us: t.run_at,
        }
    }
}
