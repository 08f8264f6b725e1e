//! The `Server-Timing` layer: what each request spent in receivers, per phase and per receiver,
//! and in store jobs, as a header that the browser's DevTools show under the request's Timing tab.
//!
//! How it measures: for each request the layer installs an [`Observer`] (a task-scoped sink, see
//! [`herald::dispatch::observe`]) around the inner service's future. Caller-side and `on_commit`
//! receivers run in that future; the store carries the observer to its connection with each job,
//! so every timed receiver call the request causes — caller-side `pre_save` and `post_save`,
//! `in_transaction` receivers, `on_commit`, the enqueueing of background receivers — and every
//! store job reports to it. Nothing is recorded twice: the observer hears the same `Instant`
//! readings the dispatcher records in its statistics.
//!
//! What it does not see: work the handler hands to another task (`tokio::spawn`), background
//! receivers' runs in workers (they happen after the response), and receivers of a registry with
//! [`Timing::Off`](herald::dispatch::Timing::Off) (untimed calls are not reported).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use herald::dispatch::observe::{self, Observed, Observer};
use herald::dispatch::{Phase, ReceiverId, ReceiverInfo};
use http::header::HeaderName;
use http::{HeaderValue, Method, Request, Response, Uri};
use tower::{Layer, Service};

/// The `Server-Timing` header's name.
pub const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// How many of a request's slowest receivers the header names by default.
pub const DEFAULT_SLOWEST: usize = 5;

/// A tower layer that adds a `Server-Timing` header to every response whose request ran a
/// receiver or a store job:
///
/// ```text
/// server-timing: pre_save;dur=0.012, post_save;dur=25.310, on_commit;dur=0.004,
///     recv_recompute_bestsellers;dur=25.290;desc="shop::recompute_bestsellers",
///     recv_fill_slug;dur=0.009;desc="shop::fill_slug", db;dur=25.804;desc="1 store job",
///     total;dur=26.120
/// ```
///
/// - one entry per phase, with the receivers' summed time in it (milliseconds): `pre_save`,
///   `post_save`, `pre_delete`, `post_delete` and custom signals' names for receivers that run
///   on the caller or inside the transaction, `on_commit` for those after it, `background` for the
///   enqueueing of background receivers;
/// - `recv_<short name>` for the [`slowest`](Self::slowest) receivers of the request (their summed
///   time, the full name in `desc`), and for **every receiver that was slow** (slower than the
///   registry's slow threshold) however many there are. Each slow receiver is also named in a
///   `tracing` warning (target `herald::slow`) with the request's method and path;
/// - `db`: the time of the request's store jobs on their connection threads (receivers included);
/// - `total`: from the request's arrival at the layer to its response head.
///
/// A request that ran no receiver and no store job gets no header. The layer then costs an
/// allocation, a clock read and a few relaxed atomic operations: about 0.25 µs over a trivial
/// route, half of which is axum's `Router::layer` wrapping that any layer pays (`benches/layer.rs`;
/// the figures are in the crate's README).
///
/// ```
/// use axum::{Router, routing::get};
/// use herald_axum::ServerTimingLayer;
///
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(ServerTimingLayer::new().slowest(3));
/// ```
#[derive(Clone, Debug)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct ServerTimingLayer {
    config: Arc<Config>,
}

#[derive(Clone, Debug)]
struct Config {
    slowest: usize,
}

impl ServerTimingLayer {
    /// A layer naming the [`DEFAULT_SLOWEST`] slowest receivers of each request.
    pub fn new() -> Self {
        Self {
            config: Arc::new(Config {
                slowest: DEFAULT_SLOWEST,
            }),
        }
    }

    /// How many of a request's slowest receivers (by their summed time in the request) the header
    /// names. Receivers that were slow are named whatever this is; 0 names only those. Default:
    /// [`DEFAULT_SLOWEST`] (5): enough to see where the time went without a header that
    /// DevTools shows as a wall of bars.
    pub fn slowest(self, n: usize) -> Self {
        Self {
            config: Arc::new(Config { slowest: n }),
        }
    }
}

impl Default for ServerTimingLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for ServerTimingLayer {
    type Service = ServerTiming<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerTiming {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service [`ServerTimingLayer`] wraps around an inner service.
#[derive(Clone, Debug)]
pub struct ServerTiming<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S, B, R> Service<Request<B>> for ServerTiming<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let timings = Arc::new(RequestTimings {
            started: Instant::now(),
            method: request.method().clone(),
            uri: request.uri().clone(),
            recorded: Mutex::new(Recorded::default()),
        });
        let observer: Arc<dyn Observer> = timings.clone();
        // A service may do work in `call` itself, not only in its future: observe both.
        let inner = &mut self.inner;
        let future = observe::scope(Some(observer.clone()), move || inner.call(request));
        ResponseFuture {
            inner: observe::observed(observer, future),
            timings: Some(timings),
            config: self.config.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`ServerTiming`]: the inner future, observed; adds the header when
    /// the response head is ready.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Observed<F>,
        timings: Option<Arc<RequestTimings>>,
        config: Arc<Config>,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, R, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = Result<Response<R>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Ready(Ok(response)) => response,
        };
        if let Some(timings) = this.timings.take() {
            timings.finish(this.config, &mut response);
        }
        Poll::Ready(Ok(response))
    }
}

/// One request's observer.
struct RequestTimings {
    started: Instant,
    method: Method,
    uri: Uri,
    recorded: Mutex<Recorded>,
}

#[derive(Default)]
struct Recorded {
    /// Summed receiver time per phase entry, in the order the phases first ran.
    phases: Vec<(Cow<'static, str>, Duration)>,
    receivers: Vec<ReceiverTotal>,
    db: Duration,
    db_jobs: u32,
}

/// One receiver's calls in one request.
struct ReceiverTotal {
    id: ReceiverId,
    name: String,
    short_name: String,
    signal: &'static str,
    sender: &'static str,
    phase: Phase,
    total: Duration,
    longest: Duration,
    calls: u32,
    failed: u32,
    slow: bool,
}

impl Observer for RequestTimings {
    fn receiver(
        &self,
        receiver: &ReceiverInfo,
        sender: &'static str,
        elapsed: Duration,
        failed: bool,
        slow: bool,
    ) {
        let mut recorded = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        let phase = phase_metric(receiver.signal(), receiver.phase());
        match recorded.phases.iter_mut().find(|(name, _)| *name == phase) {
            Some((_, total)) => *total += elapsed,
            None => recorded.phases.push((phase, elapsed)),
        }
        let id = receiver.id();
        match recorded.receivers.iter_mut().find(|r| r.id == id) {
            Some(r) => {
                r.total += elapsed;
                r.longest = r.longest.max(elapsed);
                r.calls += 1;
                r.failed += u32::from(failed);
                r.slow |= slow;
            }
            None => recorded.receivers.push(ReceiverTotal {
                id,
                name: receiver.name().to_owned(),
                short_name: receiver.short_name(),
                signal: receiver.signal(),
                sender,
                phase: receiver.phase(),
                total: elapsed,
                longest: elapsed,
                calls: 1,
                failed: u32::from(failed),
                slow,
            }),
        }
    }

    fn store_job(&self, elapsed: Duration) {
        let mut recorded = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        recorded.db += elapsed;
        recorded.db_jobs += 1;
    }
}

impl RequestTimings {
    /// The response head is ready: add the header and warn about slow receivers.
    fn finish<R>(&self, config: &Config, response: &mut Response<R>) {
        let recorded = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        if recorded.receivers.is_empty() && recorded.db_jobs == 0 {
            return;
        }
        let total = self.started.elapsed();
        for slow in recorded.receivers.iter().filter(|r| r.slow) {
            self.warn_slow(slow);
        }
        let header = header_value(&recorded, config.slowest, total);
        match HeaderValue::try_from(header) {
            Ok(value) => {
                response.headers_mut().append(SERVER_TIMING, value);
            }
            Err(error) => {
                // Every part is escaped to visible ASCII, so this is a bug here, not bad input.
                tracing::error!(target: "herald::server_timing", %error, "a Server-Timing value was not a valid header value");
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn warn_slow(&self, r: &ReceiverTotal) {
        let path = self.uri.path();
        let method = &self.method;
        let longest_ms = millis(r.longest);
        tracing::warn!(
            target: "herald::slow",
            receiver = %r.name,
            signal = r.signal,
            sender = r.sender,
            phase = r.phase.as_str(),
            method = %method,
            path,
            elapsed_ms = longest_ms,
            total_ms = millis(r.total),
            calls = r.calls,
            failed = r.failed,
            "slow receiver: {} took {:.3} ms on {} for {} in {} {}",
            r.name,
            longest_ms,
            r.signal,
            r.sender,
            method,
            path,
        );
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The header entry a receiver's time is summed into.
fn phase_metric(signal: &'static str, phase: Phase) -> Cow<'static, str> {
    match phase {
        Phase::Caller | Phase::InTransaction => metric_name(signal),
        Phase::OnCommit => Cow::Borrowed("on_commit"),
        Phase::Background => Cow::Borrowed("background"),
        other => Cow::Borrowed(other.as_str()),
    }
}

/// `name` as a Server-Timing metric name: an HTTP token, kept to `[A-Za-z0-9_]` so that it reads
/// the same everywhere (other characters become `_`).
fn metric_name(name: &'static str) -> Cow<'static, str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if !name.is_empty() && name.chars().all(plain) {
        Cow::Borrowed(name)
    } else if name.is_empty() {
        Cow::Borrowed("signal")
    } else {
        Cow::Owned(
            name.chars()
                .map(|c| if plain(c) { c } else { '_' })
                .collect(),
        )
    }
}

/// Append one `name;dur=..[;desc=".."]` entry.
fn entry(out: &mut String, name: &str, dur: Duration, desc: Option<&str>) {
    if !out.is_empty() {
        out.push_str(", ");
    }
    // `write!` to a String cannot fail.
    let _ = write!(out, "{name};dur={:.3}", millis(dur));
    if let Some(desc) = desc {
        out.push_str(";desc=\"");
        push_quoted(out, desc);
        out.push('"');
    }
}

/// `text` as the inside of an HTTP quoted-string: `"` and `\` escaped; anything that is not
/// visible ASCII or a space (which a header value cannot carry portably) becomes `?`.
fn push_quoted(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
}

fn header_value(recorded: &Recorded, slowest: usize, total: Duration) -> String {
    let mut out = String::with_capacity(64 + 64 * recorded.receivers.len().min(slowest + 2));
    for (phase, dur) in &recorded.phases {
        entry(&mut out, phase, *dur, None);
    }
    let mut ranked: Vec<&ReceiverTotal> = recorded.receivers.iter().collect();
    ranked.sort_by_key(|r| std::cmp::Reverse(r.total));
    let mut used: Vec<String> = Vec::new();
    for (rank, r) in ranked.into_iter().enumerate() {
        if rank >= slowest && !r.slow {
            continue;
        }
        let base = format!("recv_{}", r.short_name);
        let mut name = base.clone();
        let mut n = 2;
        while used.contains(&name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        entry(&mut out, &name, r.total, Some(&r.name));
        used.push(name);
    }
    if recorded.db_jobs > 0 {
        let jobs = if recorded.db_jobs == 1 {
            "1 store job".to_owned()
        } else {
            format!("{} store jobs", recorded.db_jobs)
        };
        entry(&mut out, "db", recorded.db, Some(&jobs));
    }
    entry(&mut out, "total", total, None);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct M;
    impl herald::dispatch::AnyModel for M {
        fn model_name(&self) -> &'static str {
            "M"
        }
        fn pk_string(&self) -> Option<String> {
            None
        }
        fn to_json(&self) -> serde_json::Value {
            serde_json::Value::Null
        }
    }
    herald::dispatch::sender!(M);

    /// Some receiver's id (the header does not look at ids; the observer does).
    fn some_id() -> ReceiverId {
        let signals = herald::dispatch::Signals::new();
        let _c = signals
            .post_save::<M>()
            .connect(|_e: &herald::dispatch::PostSave<'_, M>| Ok(()));
        signals.receivers()[0].info().id()
    }

    fn receiver(name: &str, ms: u64, slow: bool) -> ReceiverTotal {
        ReceiverTotal {
            id: some_id(),
            name: format!("app::{name}"),
            short_name: name.to_owned(),
            signal: "post_save",
            sender: "Book",
            phase: Phase::InTransaction,
            total: Duration::from_millis(ms),
            longest: Duration::from_millis(ms),
            calls: 1,
            failed: 0,
            slow,
        }
    }

    #[test]
    fn the_header_names_phases_the_slowest_receivers_every_slow_one_db_and_total() {
        let recorded = Recorded {
            phases: vec![
                (Cow::Borrowed("pre_save"), Duration::from_micros(120)),
                (Cow::Borrowed("post_save"), Duration::from_millis(30)),
            ],
            receivers: vec![
                receiver("a", 3, false),
                receiver("b", 2, false),
                receiver("c", 1, true),
                receiver("a", 1, false),
            ],
            db: Duration::from_millis(31),
            db_jobs: 2,
        };
        assert_eq!(
            header_value(&recorded, 1, Duration::from_millis(32)),
            "pre_save;dur=0.120, post_save;dur=30.000, recv_a;dur=3.000;desc=\"app::a\", \
             recv_c;dur=1.000;desc=\"app::c\", db;dur=31.000;desc=\"2 store jobs\", total;dur=32.000"
        );
        assert_eq!(
            header_value(&recorded, 5, Duration::ZERO)
                .matches("recv_a")
                .count(),
            2,
            "a repeated short name gets a suffix: {}",
            header_value(&recorded, 5, Duration::ZERO)
        );
        assert!(header_value(&recorded, 5, Duration::ZERO).contains("recv_a_2;"));
    }

    #[test]
    fn names_and_descriptions_are_escaped_for_a_header() {
        assert_eq!(metric_name("post_save"), "post_save");
        assert_eq!(metric_name("order.paid!"), "order_paid_");
        assert_eq!(metric_name(""), "signal");
        let mut out = String::new();
        push_quoted(&mut out, "a \"b\" \\ é\n");
        assert_eq!(out, "a \\\"b\\\" \\\\ ??");
    }
}
