//! `/metrics` in the Prometheus text exposition format (version 0.0.4), encoded by
//! `prometheus-client` from one registry whose collectors read, at each scrape, the statistics the
//! dispatcher and the workers already keep: nothing is recorded a second time.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use herald::Db;
use herald::dispatch::StatsSnapshot;
use herald::tasks::{TaskCount, TaskKindStats, TaskState};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet, prometheus_text,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

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

/// The metrics page, in the Prometheus text format (version 0.0.4): every family has `# HELP` and
/// `# TYPE` lines, then its series. `le` labels are written as Prometheus's Go client writes them
/// (`1.024e-06`, `4.294967296`).
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
/// read from the database at each scrape, as [`herald::tasks::TaskQueue::counts`] reads it: tasks
/// still in the outbox count as `available`) and `herald_tasks_scrape_ok` (gauge: 0 when that read
/// failed, in which case `herald_tasks` is left out and a warning is logged).
///
/// The same names are recorded through the `metrics` facade as calls happen; serve either this
/// page or a `metrics` exporter, not both, or Prometheus sees each family twice.
pub async fn metrics_text(db: &Db) -> String {
    let counts = db.tasks().counts().await.map_err(|error| {
        tracing::warn!(target: "herald::metrics", %error, "reading the task queue's counts for /metrics failed");
    });
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Receivers(db.clone())));
    registry.register_collector(Box::new(TaskKinds(db.clone())));
    registry.register_collector(Box::new(Queue(counts.ok())));
    let mut text = String::new();
    prometheus_text::encode(&mut text, &registry)
        .expect("encoding into a String fails only if a collector fails, and none does");
    text
}

/// Per receiver: calls, errors and the latency histogram, from the dispatcher's statistics.
#[derive(Debug)]
struct Receivers(Db);

impl Collector for Receivers {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let bounds = bounds(RECEIVER_BOUNDS);
        let mut series: BTreeMap<[String; 4], (u64, u64, Histogram)> = BTreeMap::new();
        for receiver in self.0.signals().receivers() {
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
                .or_insert_with(|| (0, 0, Histogram::empty(&bounds)));
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
        let mut family = encoder.encode_descriptor(
            "herald_receiver_calls",
            "Timed calls of a receiver (none while timing is off).",
            None,
            MetricType::Counter,
        )?;
        for (key, (calls, _, _)) in &series {
            ConstCounter::new(*calls).encode(family.encode_family(&labels(key))?)?;
        }
        let mut family = encoder.encode_descriptor(
            "herald_receiver_errors",
            "Calls of a receiver that returned an error or panicked.",
            None,
            MetricType::Counter,
        )?;
        for (key, (_, errors, _)) in &series {
            ConstCounter::new(*errors).encode(family.encode_family(&labels(key))?)?;
        }
        let mut family = encoder.encode_descriptor(
            "herald_receiver_duration_seconds",
            "How long a receiver's timed calls took.",
            None,
            MetricType::Histogram,
        )?;
        for (key, (_, _, histogram)) in &series {
            histogram.encode(family.encode_family(&labels(key))?)?;
        }
        Ok(())
    }
}

/// Reads one counter of a task kind.
type KindCounter = fn(&TaskKindStats) -> u64;
/// Reads one histogram of a task kind.
type KindHistogram = fn(&TaskKindStats) -> &StatsSnapshot;

/// Per task kind, as this process's workers recorded them.
#[derive(Debug)]
struct TaskKinds(Db);

impl Collector for TaskKinds {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let bounds = bounds(TASK_BOUNDS);
        let kinds = self.0.task_stats();
        let counters: [(&str, &str, KindCounter); 3] = [
            (
                "herald_task_runs",
                "Attempts run by this process's workers, completed or failed.",
                |k| k.runs,
            ),
            (
                "herald_task_failures",
                "Attempts that failed (including those that will be retried).",
                |k| k.failures,
            ),
            (
                "herald_task_retries",
                "Failed attempts that will be retried.",
                |k| k.retries,
            ),
        ];
        for (name, help, value) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for kind in &kinds {
                let labels = [("kind", kind.kind.as_str())];
                ConstCounter::new(value(kind)).encode(family.encode_family(&labels)?)?;
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
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for kind in &kinds {
                let mut histogram = Histogram::empty(&bounds);
                histogram.add(snapshot(kind), &bounds);
                let labels = [("kind", kind.kind.as_str())];
                histogram.encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// The queue's depth by queue and state, read from the database for this scrape (`None`: the
/// read failed).
#[derive(Debug)]
struct Queue(Option<Vec<TaskCount>>);

impl Collector for Queue {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let ok = encoder.encode_descriptor(
            "herald_tasks_scrape_ok",
            "1 if the task queue's counts were read for this scrape, 0 if reading them failed.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(self.0.is_some())).encode(ok)?;
        let Some(counts) = &self.0 else {
            return Ok(());
        };
        let mut by_queue: BTreeMap<&str, BTreeMap<TaskState, u64>> = BTreeMap::new();
        for c in counts {
            *by_queue
                .entry(c.queue.as_str())
                .or_default()
                .entry(c.state)
                .or_default() += c.count;
        }
        let mut family = encoder.encode_descriptor(
            "herald_tasks",
            "Tasks in the queue table, by queue and state.",
            None,
            MetricType::Gauge,
        )?;
        for (queue, states) in &by_queue {
            for state in TaskState::ALL {
                let n = states.get(&state).copied().unwrap_or(0);
                let labels = [("queue", *queue), ("state", state.as_str())];
                ConstGauge::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// The bounds, in nanoseconds: 2^e for each e.
pub(crate) fn bounds(exponents: std::ops::RangeInclusive<u32>) -> Vec<u64> {
    exponents.map(|e| 1u64 << e).collect()
}

/// One series of a histogram: the count in each bucket (not cumulative: the encoder adds them up),
/// the total count and the sum.
#[derive(Debug)]
struct Histogram {
    /// `(upper bound in seconds, calls in the bucket that ends there)`; the calls above the last
    /// bound are `count` minus all of these.
    buckets: Vec<(f64, u64)>,
    count: u64,
    sum: Duration,
}

impl Histogram {
    fn empty(bounds: &[u64]) -> Self {
        Self {
            buckets: bounds.iter().map(|ns| (*ns as f64 / 1e9, 0)).collect(),
            count: 0,
            sum: Duration::ZERO,
        }
    }

    /// Adds one receiver's (or task kind's) calls, bucket by bucket.
    fn add(&mut self, stats: &StatsSnapshot, bounds: &[u64]) {
        let mut previous = 0;
        for ((_, in_bucket), bound) in self.buckets.iter_mut().zip(bounds) {
            let below = stats.count_below(Duration::from_nanos(*bound));
            *in_bucket += below.saturating_sub(previous);
            previous = below;
        }
        self.count += stats.calls;
        self.sum += stats.total;
    }

    fn encode(&self, mut encoder: MetricEncoder<'_>) -> fmt::Result {
        encoder.encode_histogram::<NoLabelSet>(
            self.sum.as_secs_f64(),
            self.count,
            &self.buckets,
            None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_powers_of_two_nanoseconds_and_exact_in_seconds() {
        let bounds = bounds(RECEIVER_BOUNDS);
        assert_eq!(bounds.first(), Some(&1024));
        assert_eq!(bounds.last(), Some(&(1 << 32)));
        let histogram = Histogram::empty(&bounds);
        // A power of two nanoseconds divided by 1e9 is the f64 nearest that many seconds: the
        // edge Prometheus reads back from the `le` label is the dispatcher's edge.
        assert_eq!(histogram.buckets[0].0, 0.000_001_024);
        assert_eq!(histogram.buckets.last().map(|b| b.0), Some(4.294_967_296));
    }
}
