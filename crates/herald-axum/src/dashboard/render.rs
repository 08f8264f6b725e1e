//! The page, rendered on the server through the askama template `templates/dashboard.html`, which
//! HTML-escapes every value it writes: this module only prepares the values (formatted durations,
//! chart geometry). `dashboard.js` renders the same markup again from the JSON endpoints when it
//! refreshes; keep the two in step (class names, the charts' geometry).

use std::time::Duration;

use askama::Template;

use herald::report::{ReceiverReport, ReceiversReport};

use super::views::{DeadTask, DeadView, KindView, Sample, TasksView};

/// The refresh script.
pub(crate) const SCRIPT: &str = include_str!("dashboard.js");
/// The stylesheet.
pub(crate) const STYLE: &str = include_str!("dashboard.css");

/// Everything one page shows.
pub(crate) struct Page<'a> {
    pub(crate) base: &'a str,
    pub(crate) title: &'a str,
    pub(crate) refresh: Duration,
    pub(crate) read_only: bool,
    pub(crate) receivers: &'a ReceiversReport,
    pub(crate) tasks: Result<&'a TasksView, &'a String>,
    pub(crate) dead: Result<&'a DeadView, &'a String>,
    pub(crate) now_ms: u64,
}

/// A duration in µs, in the unit that reads best (`850 ns`, `12.3 µs`, `4.56 ms`, `1.23 s`).
pub(crate) fn duration(us: f64) -> String {
    if us <= 0.0 {
        "0".to_owned()
    } else if us < 1.0 {
        format!("{:.0} ns", us * 1e3)
    } else if us < 1e3 {
        format!("{} µs", three(us))
    } else if us < 1e6 {
        format!("{} ms", three(us / 1e3))
    } else {
        format!("{} s", three(us / 1e6))
    }
}

/// Three significant digits.
fn three(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// How long ago `at_us` (µs since the epoch) was.
fn age(now_ms: u64, at_us: i64) -> String {
    let seconds = (now_ms as i64 - at_us / 1000).max(0) / 1000;
    match seconds {
        s if s < 60 => format!("{s} s ago"),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 86_400 => format!("{} h ago", s / 3600),
        s => format!("{} d ago", s / 86_400),
    }
}

// Chart geometry, shared with dashboard.js.
const BAR_W: usize = 5;
const BAR_GAP: usize = 1;
const BAR_H: usize = 28;
const LABEL_H: usize = 9;

/// The page's template: the values it shows, prepared.
#[derive(Template)]
#[template(path = "dashboard.html")]
struct PageTemplate<'a> {
    base: &'a str,
    title: &'a str,
    refresh_ms: u128,
    read_only: bool,
    slow_threshold: String,
    timing: &'a str,
    receivers: Vec<ReceiverRow<'a>>,
    tasks: Result<TasksPart<'a>, &'a str>,
    purgeable: &'static [&'static str],
    dead: Result<Vec<DeadRow<'a>>, &'a str>,
}

struct ReceiverRow<'a> {
    view: &'a ReceiverReport,
    p50: String,
    p99: String,
    max: String,
    chart: HistogramChart,
}

/// One receiver's latency histogram as inline SVG bars.
struct HistogramChart {
    width: usize,
    height: usize,
    axis_y: usize,
    bars: Vec<Bar>,
    ticks: Vec<Tick>,
}

struct Bar {
    class: &'static str,
    x: usize,
    y: usize,
    width: usize,
    height: usize,
    label: String,
    count: u64,
}

struct Tick {
    x: usize,
    y: usize,
    text: &'static str,
}

/// One bar per bucket, linear heights, the buckets at or above the slow threshold drawn as slow.
fn histogram_chart(r: &ReceiverReport, bounds_us: &[f64], slow_us: f64) -> HistogramChart {
    let n = r.histogram.len();
    let width = n * (BAR_W + BAR_GAP);
    let height = BAR_H + LABEL_H;
    let max = r.histogram.iter().copied().max().unwrap_or(0).max(1);
    let bars = r
        .histogram
        .iter()
        .enumerate()
        .map(|(i, count)| {
            let low = if i == 0 { 0.0 } else { bounds_us[i - 1] };
            let label = match (i, bounds_us.get(i)) {
                (0, Some(high)) => format!("under {}", duration(*high)),
                (_, Some(high)) => format!("{} to {}", duration(low), duration(*high)),
                (_, None) => format!("over {}", duration(low)),
            };
            let h = if *count == 0 {
                0
            } else {
                ((*count as f64 / max as f64) * BAR_H as f64)
                    .round()
                    .max(1.0) as usize
            };
            Bar {
                class: if low >= slow_us { "bar over" } else { "bar" },
                x: i * (BAR_W + BAR_GAP),
                y: BAR_H - h,
                width: BAR_W,
                height: h,
                label,
                count: *count,
            }
        })
        .collect();
    let ticks = [(0, "1µs"), (10, "1ms"), (20, "1s")]
        .into_iter()
        .filter(|(i, _)| *i < n)
        .map(|(i, text)| Tick {
            x: i * (BAR_W + BAR_GAP),
            y: height - 1,
            text,
        })
        .collect();
    HistogramChart {
        width,
        height,
        axis_y: BAR_H,
        bars,
        ticks,
    }
}

struct TasksPart<'a> {
    states: &'a [&'a str],
    queues: Vec<QueueRow<'a>>,
    chart: QueueChart,
    kinds: Vec<KindRow<'a>>,
}

struct QueueRow<'a> {
    queue: &'a str,
    cells: Vec<Cell>,
}

struct Cell {
    count: u64,
    bad: bool,
}

fn tasks_part(view: &TasksView) -> TasksPart<'_> {
    let queues = view
        .queues
        .iter()
        .map(|q| QueueRow {
            queue: &q.queue,
            cells: view
                .states
                .iter()
                .map(|state| {
                    let count = q.counts.get(*state).copied().unwrap_or(0);
                    Cell {
                        count,
                        bad: *state == "dead" && count > 0,
                    }
                })
                .collect(),
        })
        .collect();
    TasksPart {
        states: view.states,
        queues,
        chart: queue_chart(view.states, &view.history),
        kinds: view.kinds.iter().map(KindRow::of).collect(),
    }
}

// Queue chart geometry, shared with dashboard.js.
const CHART_W: usize = 560;
const CHART_H: usize = 150;
const PAD: usize = 28;

/// The queue's totals over time: one line per state.
struct QueueChart {
    width: usize,
    height: usize,
    left: usize,
    right: usize,
    top: usize,
    bottom: usize,
    max: u64,
    lines: Vec<Line>,
    /// The time the samples span, when there are samples.
    span: Option<String>,
}

struct Line {
    state: String,
    points: String,
}

fn queue_chart(states: &[&str], history: &[Sample]) -> QueueChart {
    let max = history
        .iter()
        .flat_map(|s| s.counts.values())
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    let (left, right, top, bottom) = (PAD, CHART_W - 8, 8, CHART_H - 18);
    let span = history.len().saturating_sub(1).max(1);
    let lines = if history.is_empty() {
        Vec::new()
    } else {
        states
            .iter()
            .map(|state| {
                let points: Vec<String> = history
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let v = s.counts.get(*state).copied().unwrap_or(0);
                        let x = left as f64 + (right - left) as f64 * i as f64 / span as f64;
                        let y = bottom as f64 - (bottom - top) as f64 * v as f64 / max as f64;
                        format!("{x:.1},{y:.1}")
                    })
                    .collect();
                Line {
                    state: (*state).to_owned(),
                    points: points.join(" "),
                }
            })
            .collect()
    };
    let span = match (history.first(), history.last()) {
        (Some(first), Some(last)) => Some(span_text(last.at_ms.saturating_sub(first.at_ms))),
        _ => None,
    };
    QueueChart {
        width: CHART_W,
        height: CHART_H,
        left,
        right,
        top,
        bottom,
        max,
        lines,
        span,
    }
}

/// The chart's time span: tenths of a second under 10 s, whole seconds under 10 min, else minutes.
fn span_text(ms: u64) -> String {
    if ms < 10_000 {
        format!("{:.1} s", ms as f64 / 1e3)
    } else if ms < 600_000 {
        format!("{} s", ms / 1000)
    } else {
        format!("{} min", ms / 60_000)
    }
}

struct KindRow<'a> {
    kind: &'a str,
    runs: u64,
    failures: u64,
    retries: u64,
    wait_p50: String,
    wait_p99: String,
    run_p50: String,
    run_p99: String,
    run_max: String,
}

impl<'a> KindRow<'a> {
    fn of(k: &'a KindView) -> Self {
        Self {
            kind: &k.kind,
            runs: k.runs,
            failures: k.failures,
            retries: k.retries,
            wait_p50: duration(k.queue_wait.p50_us),
            wait_p99: duration(k.queue_wait.p99_us),
            run_p50: duration(k.run_time.p50_us),
            run_p99: duration(k.run_time.p99_us),
            run_max: duration(k.run_time.max_us),
        }
    }
}

struct DeadRow<'a> {
    task: &'a DeadTask,
    error: &'a str,
    age: String,
}

/// The whole page.
pub(crate) fn page(page: &Page<'_>) -> String {
    let receivers = page.receivers;
    let template = PageTemplate {
        base: page.base,
        title: page.title,
        refresh_ms: page.refresh.as_millis(),
        read_only: page.read_only,
        slow_threshold: duration(receivers.slow_threshold_us),
        timing: &receivers.timing,
        receivers: receivers
            .receivers
            .iter()
            .map(|r| ReceiverRow {
                view: r,
                p50: duration(r.p50_us),
                p99: duration(r.p99_us),
                max: duration(r.max_us),
                chart: histogram_chart(r, &receivers.bounds_us, receivers.slow_threshold_us),
            })
            .collect(),
        tasks: page.tasks.map(tasks_part).map_err(String::as_str),
        purgeable: &["dead", "completed", "cancelled"],
        dead: page
            .dead
            .map(|view| {
                view.tasks
                    .iter()
                    .map(|task| DeadRow {
                        task,
                        error: task.last_error.as_deref().unwrap_or(""),
                        age: age(page.now_ms, task.created_at_us),
                    })
                    .collect()
            })
            .map_err(String::as_str),
    };
    template
        .render()
        .expect("the page's template writes into a String and calls nothing that fails")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_their_unit() {
        assert_eq!(duration(0.0), "0");
        assert_eq!(duration(0.85), "850 ns");
        assert_eq!(duration(12.34), "12.3 µs");
        assert_eq!(duration(4_560.0), "4.56 ms");
        assert_eq!(duration(1_234_000.0), "1.23 s");
    }
}
