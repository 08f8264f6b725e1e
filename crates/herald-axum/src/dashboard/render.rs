//! The page, rendered on the server: every value from the views, HTML-escaped. `dashboard.js`
//! renders the same markup again from the JSON endpoints when it refreshes; keep the two in step
//! (class names, the charts' geometry).

use std::fmt::Write as _;
use std::time::Duration;

use super::views::{DeadView, KindView, ReceiverView, ReceiversView, Sample, TasksView};

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
    pub(crate) receivers: &'a ReceiversView,
    pub(crate) tasks: Result<&'a TasksView, &'a String>,
    pub(crate) dead: Result<&'a DeadView, &'a String>,
    pub(crate) now_ms: u64,
}

/// `text` with `&`, `<`, `>`, `"` and `'` escaped: safe in element content and quoted attributes.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
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

/// One receiver's latency histogram as inline SVG bars: one bar per bucket, linear heights,
/// the buckets at or above the slow threshold drawn as slow.
pub(crate) fn histogram_svg(r: &ReceiverView, bounds_us: &[f64], slow_us: f64) -> String {
    let n = r.histogram.len();
    let width = n * (BAR_W + BAR_GAP);
    let height = BAR_H + LABEL_H;
    let max = r.histogram.iter().copied().max().unwrap_or(0).max(1);
    let mut svg = format!(
        "<svg class=\"hist\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" \
         role=\"img\" aria-label=\"latency histogram of {}\">",
        escape(&r.name)
    );
    let _ = write!(
        svg,
        "<line class=\"axis\" x1=\"0\" y1=\"{BAR_H}.5\" x2=\"{width}\" y2=\"{BAR_H}.5\"/>"
    );
    for (i, count) in r.histogram.iter().enumerate() {
        let low = if i == 0 { 0.0 } else { bounds_us[i - 1] };
        let label = match (i, bounds_us.get(i)) {
            (0, Some(high)) => format!("under {}", duration(*high)),
            (_, Some(high)) => format!("{} to {}", duration(low), duration(*high)),
            (_, None) => format!("over {}", duration(low)),
        };
        let x = i * (BAR_W + BAR_GAP);
        let h = if *count == 0 {
            0
        } else {
            ((*count as f64 / max as f64) * BAR_H as f64)
                .round()
                .max(1.0) as usize
        };
        let class = if low >= slow_us { "bar over" } else { "bar" };
        let _ = write!(
            svg,
            "<rect class=\"{class}\" x=\"{x}\" y=\"{}\" width=\"{BAR_W}\" height=\"{h}\"><title>{}: {count}</title></rect>",
            BAR_H - h,
            escape(&label)
        );
    }
    for (i, text) in [(0, "1µs"), (10, "1ms"), (20, "1s")] {
        if i < n {
            let _ = write!(
                svg,
                "<text class=\"tick\" x=\"{}\" y=\"{}\">{text}</text>",
                i * (BAR_W + BAR_GAP),
                height - 1
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn receiver_row(out: &mut String, r: &ReceiverView, view: &ReceiversView) {
    let slow = if r.slow {
        format!(
            " <span class=\"badge slow-badge\" title=\"p99 at or above the slow threshold ({})\">SLOW</span>",
            duration(view.slow_threshold_us)
        )
    } else {
        String::new()
    };
    let _ = write!(
        out,
        "<tr class=\"receiver{}\" data-id=\"{}\">\
         <td class=\"name\"><span class=\"short\">{}</span>{slow}<div class=\"full\">{}</div></td>\
         <td>{}</td><td>{}</td><td>{}</td><td class=\"loc\">{}</td>\
         <td class=\"num\">{}</td><td class=\"num{}\">{}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
         <td class=\"chart\">{}</td></tr>",
        if r.slow { " slow" } else { "" },
        r.id,
        escape(&r.short_name),
        escape(&r.name),
        escape(r.signal),
        escape(r.sender),
        escape(r.phase),
        escape(&r.location),
        r.calls,
        if r.errors > 0 { " bad" } else { "" },
        r.errors,
        duration(r.p50_us),
        duration(r.p99_us),
        duration(r.max_us),
        histogram_svg(r, &view.bounds_us, view.slow_threshold_us),
    );
}

fn receivers_section(out: &mut String, view: &ReceiversView) {
    out.push_str(
        "<section id=\"receivers-section\"><h2>Receivers</h2>\
         <table id=\"receivers\"><thead><tr><th>Receiver</th><th>Signal</th><th>Sender</th>\
         <th>Phase</th><th>Source</th><th class=\"num\">Calls</th><th class=\"num\">Errors</th>\
         <th class=\"num\">p50</th><th class=\"num\">p99</th><th class=\"num\">Max</th>\
         <th>Latency (1 µs … 4 s)</th></tr></thead><tbody>",
    );
    if view.receivers.is_empty() {
        out.push_str(
            "<tr class=\"empty\"><td colspan=\"11\">No receivers are connected.</td></tr>",
        );
    }
    for r in &view.receivers {
        receiver_row(out, r, view);
    }
    out.push_str("</tbody></table></section>");
}

// Queue chart geometry, shared with dashboard.js.
const CHART_W: usize = 560;
const CHART_H: usize = 150;
const PAD: usize = 28;

/// The queue's totals over time: one line per state.
pub(crate) fn queue_chart(states: &[&str], history: &[Sample]) -> String {
    let mut svg = format!(
        "<svg id=\"queue-svg\" class=\"queue-chart\" width=\"{CHART_W}\" height=\"{CHART_H}\" \
         viewBox=\"0 0 {CHART_W} {CHART_H}\" role=\"img\" aria-label=\"task counts over time\">"
    );
    let max = history
        .iter()
        .flat_map(|s| s.counts.values())
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    let (left, right, top, bottom) = (PAD, CHART_W - 8, 8, CHART_H - 18);
    let _ = write!(
        svg,
        "<line class=\"axis\" x1=\"{left}\" y1=\"{bottom}\" x2=\"{right}\" y2=\"{bottom}\"/>\
         <line class=\"axis\" x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{bottom}\"/>\
         <text class=\"tick\" x=\"2\" y=\"{}\">{max}</text><text class=\"tick\" x=\"2\" y=\"{bottom}\">0</text>",
        top + 8
    );
    if history.is_empty() {
        let _ = write!(
            svg,
            "<text class=\"tick\" x=\"{}\" y=\"{}\">no samples yet</text>",
            left + 10,
            CHART_H / 2
        );
    }
    let span = history.len().saturating_sub(1).max(1);
    for state in states {
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
        if !points.is_empty() {
            let _ = write!(
                svg,
                "<polyline class=\"line state-{}\" points=\"{}\"><title>{}</title></polyline>",
                escape(state),
                points.join(" "),
                escape(state)
            );
        }
    }
    if let (Some(first), Some(last)) = (history.first(), history.last()) {
        let span = span_text(last.at_ms.saturating_sub(first.at_ms));
        let _ = write!(
            svg,
            "<text class=\"tick\" x=\"{left}\" y=\"{}\">{span} ago</text>\
             <text class=\"tick end\" x=\"{right}\" y=\"{}\">now</text>",
            CHART_H - 4,
            CHART_H - 4
        );
    }
    svg.push_str("</svg>");
    svg
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

fn legend(states: &[&str]) -> String {
    let mut out = String::from("<div class=\"legend\">");
    for state in states {
        let _ = write!(
            out,
            "<span class=\"key state-{0}\"><i></i>{0}</span>",
            escape(state)
        );
    }
    out.push_str("</div>");
    out
}

fn counts_table(out: &mut String, view: &TasksView) {
    out.push_str("<table id=\"queue-counts\"><thead><tr><th>Queue</th>");
    for state in view.states {
        let _ = write!(out, "<th class=\"num\">{}</th>", escape(state));
    }
    out.push_str("</tr></thead><tbody>");
    if view.queues.is_empty() {
        let _ = write!(
            out,
            "<tr class=\"empty\"><td colspan=\"{}\">The queue is empty.</td></tr>",
            view.states.len() + 1
        );
    }
    for q in &view.queues {
        let _ = write!(out, "<tr><td>{}</td>", escape(&q.queue));
        for state in view.states {
            let n = q.counts.get(*state).copied().unwrap_or(0);
            let class = if *state == "dead" && n > 0 {
                "num bad"
            } else {
                "num"
            };
            let _ = write!(out, "<td class=\"{class}\">{n}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

fn kinds_table(out: &mut String, kinds: &[KindView]) {
    out.push_str(
        "<table id=\"kinds\"><thead><tr><th>Kind</th><th class=\"num\">Runs</th>\
         <th class=\"num\">Failures</th><th class=\"num\">Retries</th>\
         <th class=\"num\">Wait p50</th><th class=\"num\">Wait p99</th>\
         <th class=\"num\">Run p50</th><th class=\"num\">Run p99</th><th class=\"num\">Run max</th>\
         </tr></thead><tbody>",
    );
    if kinds.is_empty() {
        out.push_str(
            "<tr class=\"empty\"><td colspan=\"9\">No task has run in this process yet.</td></tr>",
        );
    }
    for k in kinds {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num{}\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(&k.kind),
            k.runs,
            if k.failures > 0 { " bad" } else { "" },
            k.failures,
            k.retries,
            duration(k.queue_wait.p50_us),
            duration(k.queue_wait.p99_us),
            duration(k.run_time.p50_us),
            duration(k.run_time.p99_us),
            duration(k.run_time.max_us),
        );
    }
    out.push_str("</tbody></table>");
}

fn dead_table(out: &mut String, view: &DeadView, now_ms: u64) {
    out.push_str(
        "<table id=\"dead\"><thead><tr><th class=\"num\">Id</th><th>Kind</th><th>Queue</th>\
         <th class=\"num\">Attempts</th><th>Error</th><th>Created</th><th></th></tr></thead><tbody>",
    );
    if view.tasks.is_empty() {
        out.push_str("<tr class=\"empty\"><td colspan=\"7\">No dead tasks.</td></tr>");
    }
    for t in &view.tasks {
        let error = t.last_error.as_deref().unwrap_or("");
        let _ = write!(
            out,
            "<tr class=\"dead-task\" data-id=\"{id}\"><td class=\"num\">{id}</td><td>{}</td><td>{}</td>\
             <td class=\"num\">{}/{}</td><td class=\"error\" title=\"{}\">{}</td><td>{}</td>\
             <td><button type=\"button\" class=\"retry\" data-task=\"{id}\">Retry</button></td></tr>",
            escape(&t.kind),
            escape(&t.queue),
            t.attempt,
            t.max_attempts,
            escape(error),
            escape(error),
            age(now_ms, t.created_at_us),
            id = t.id,
        );
    }
    out.push_str("</tbody></table>");
}

fn tasks_section(out: &mut String, page: &Page<'_>) {
    out.push_str("<section id=\"tasks-section\"><h2>Task queue</h2>");
    match page.tasks {
        Ok(view) => {
            out.push_str(
                "<div class=\"grid\"><div class=\"card\"><h3>Now, by queue and state</h3>",
            );
            counts_table(out, view);
            out.push_str("<div class=\"actions\">");
            for state in ["dead", "completed", "cancelled"] {
                let _ = write!(
                    out,
                    "<button type=\"button\" class=\"purge danger\" data-state=\"{state}\">Purge {state}</button>"
                );
            }
            out.push_str(
                "</div><div class=\"actions\"><input id=\"cancel-kind\" type=\"text\" \
                 autocomplete=\"off\" spellcheck=\"false\" placeholder=\"task kind\" \
                 aria-label=\"kind of the pending tasks to cancel\">\
                 <button type=\"button\" class=\"cancel-kind\">Cancel pending</button>",
            );
            out.push_str(
                "</div></div><div class=\"card\"><h3>Over time</h3><div id=\"queue-chart\">",
            );
            out.push_str(&queue_chart(view.states, &view.history));
            out.push_str("</div>");
            out.push_str(&legend(view.states));
            out.push_str("</div></div><h3>Task kinds</h3>");
            kinds_table(out, &view.kinds);
        }
        Err(message) => {
            let _ = write!(
                out,
                "<p class=\"notice bad\" id=\"tasks-error\">{}</p>",
                escape(message)
            );
        }
    }
    out.push_str("<h3>Dead tasks</h3>");
    match page.dead {
        Ok(view) => dead_table(out, view, page.now_ms),
        Err(message) => {
            let _ = write!(out, "<p class=\"notice bad\">{}</p>", escape(message));
        }
    }
    out.push_str("</section>");
}

/// The whole page.
pub(crate) fn page(page: &Page<'_>) -> String {
    let base = escape(page.base);
    let title = escape(page.title);
    let receivers = page.receivers;
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><link rel=\"stylesheet\" href=\"{base}/assets/dashboard.css\"></head>\
         <body data-base=\"{base}\" data-refresh=\"{}\" data-read-only=\"{}\">\
         <header><div class=\"brand\"><h1>{title}</h1><span id=\"meta\" class=\"meta\">{} receivers \
         · slow threshold {} · timing {} · <span id=\"updated\">rendered by the server</span></span></div>\
         <div class=\"token\">",
        page.refresh.as_millis(),
        page.read_only,
        receivers.receivers.len(),
        duration(receivers.slow_threshold_us),
        receivers.timing,
    );
    if page.read_only {
        out.push_str(
            "<span class=\"badge ro\" title=\"the application configured no token\">read-only</span>",
        );
    }
    out.push_str(
        "<label for=\"token\">Token</label><input id=\"token\" type=\"password\" autocomplete=\"off\" \
         spellcheck=\"false\" placeholder=\"needed to retry, cancel or purge\"></div></header>\
         <div id=\"status\" class=\"status\" role=\"status\" aria-live=\"polite\"></div><main>",
    );
    receivers_section(&mut out, receivers);
    tasks_section(&mut out, page);
    let _ = write!(
        out,
        "</main><footer>JSON: <a href=\"{base}/api/receivers\">receivers</a> · \
         <a href=\"{base}/api/tasks\">tasks</a> · <a href=\"{base}/api/tasks/dead\">dead tasks</a>\
         </footer><script src=\"{base}/assets/dashboard.js\" defer></script></body></html>"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<b a=\"1\">'&'</b>"),
            "&lt;b a=&quot;1&quot;&gt;&#39;&amp;&#39;&lt;/b&gt;"
        );
    }

    #[test]
    fn durations_read_in_their_unit() {
        assert_eq!(duration(0.0), "0");
        assert_eq!(duration(0.85), "850 ns");
        assert_eq!(duration(12.34), "12.3 µs");
        assert_eq!(duration(4_560.0), "4.56 ms");
        assert_eq!(duration(1_234_000.0), "1.23 s");
    }
}
