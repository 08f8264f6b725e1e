//! Shared by the integration tests: a model, a fresh database, calling a router, strict parsers
//! for `Server-Timing` and the Prometheus text format, and a capture of `tracing` events.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use herald::dispatch::{PostSave, PreSave, Signals};
use herald::{Db, Model, Store};
use tower::ServiceExt;

#[derive(Model, Clone, Debug, PartialEq)]
#[model(table = "books")]
pub struct Book {
    #[model(primary_key)]
    pub id: Option<i64>,
    pub title: String,
    pub slug: String,
}

pub fn book(title: &str) -> Book {
    Book {
        id: None,
        title: title.to_owned(),
        slug: String::new(),
    }
}

/// A fresh SQLite file with the `books` table; the directory lives as long as the guard.
pub async fn fresh_db(signals: Signals) -> (Db, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.db");
    let db = Db::open(format!("sqlite://{}", path.display()))
        .signals(signals)
        .connect()
        .await
        .unwrap();
    db.create_table::<Book>().await.unwrap();
    (db, dir)
}

/// A fast `pre_save` receiver that fills the slug.
pub fn connect_fill_slug(signals: &Signals) {
    signals
        .pre_save::<Book>()
        .receiver(|e: &mut PreSave<'_, Book>| {
            if e.instance.slug.is_empty() {
                e.instance.slug = e.instance.title.to_lowercase().replace(' ', "-");
            }
            Ok(())
        })
        .name("shop::fill_slug")
        .connect()
        .keep();
}

/// An `in_transaction` `post_save` receiver slower than `at_least` by construction: it sleeps that
/// long on the connection (the behaviour under test is how a slow receiver is reported, and that
/// the store job's time includes it).
pub fn connect_slow(signals: &Signals, at_least: Duration) {
    signals
        .post_save::<Book>()
        .in_transaction()
        .receiver(move |_e: &PostSave<'_, Book>| {
            std::thread::sleep(at_least);
            Ok(())
        })
        .name("shop::recompute_bestsellers")
        .connect()
        .keep();
}

/// A fast `on_commit` receiver.
pub fn connect_on_commit(signals: &Signals) {
    signals
        .post_save::<Book>()
        .on_commit()
        .receiver(|_e: &PostSave<'_, Book>| Ok(()))
        .name("shop::invalidate_cache")
        .connect()
        .keep();
}

/// An answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Call `app` once.
pub async fn call(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

pub fn request(method: Method, uri: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap()
}

pub async fn get(app: &Router, uri: &str) -> Answer {
    call(app, request(Method::GET, uri)).await
}

/// Wait for `f`, at most 20 s.
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Wait until `check` holds, re-checking every 5 ms, at most 20 s.
pub async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within(what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Server-Timing, parsed strictly (W3C Server Timing; tokens and quoted-strings of RFC 9110).

/// One metric of a `Server-Timing` header.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    pub name: String,
    pub dur: Option<f64>,
    pub desc: Option<String>,
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

struct Cursor<'a> {
    s: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn ows(&mut self) {
        while self.at < self.s.len() && (self.s[self.at] == b' ' || self.s[self.at] == b'\t') {
            self.at += 1;
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }
    fn token(&mut self) -> Result<String, String> {
        let start = self.at;
        while self.at < self.s.len() && is_tchar(self.s[self.at] as char) {
            self.at += 1;
        }
        if start == self.at {
            return Err(format!("expected a token at byte {start}"));
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.at]).into_owned())
    }
    fn quoted(&mut self) -> Result<String, String> {
        let mut out = String::new();
        self.at += 1; // the opening quote
        loop {
            let Some(c) = self.peek() else {
                return Err("unterminated quoted-string".to_owned());
            };
            self.at += 1;
            match c {
                b'"' => return Ok(out),
                b'\\' => {
                    let Some(q) = self.peek() else {
                        return Err("a quoted-pair at the end".to_owned());
                    };
                    if !(q == b'\t' || (0x20..=0x7e).contains(&q)) {
                        return Err(format!("bad quoted-pair \\{q:#x}"));
                    }
                    out.push(q as char);
                    self.at += 1;
                }
                b'\t' | 0x20..=0x7e => out.push(c as char),
                other => return Err(format!("byte {other:#x} in a quoted-string")),
            }
        }
    }
}

/// Parse a `Server-Timing` value; every `dur` must be a non-negative decimal number of ms with a
/// fractional part, each parameter at most once per metric, and metric names unique.
pub fn parse_server_timing(value: &str) -> Result<Vec<Metric>, String> {
    let mut c = Cursor {
        s: value.as_bytes(),
        at: 0,
    };
    let mut metrics: Vec<Metric> = Vec::new();
    loop {
        c.ows();
        let name = c.token()?;
        let mut metric = Metric {
            name,
            dur: None,
            desc: None,
        };
        let mut seen: Vec<String> = Vec::new();
        loop {
            c.ows();
            if c.peek() != Some(b';') {
                break;
            }
            c.at += 1;
            c.ows();
            let param = c.token()?.to_ascii_lowercase();
            c.ows();
            if c.peek() != Some(b'=') {
                return Err(format!(
                    "parameter `{param}` of `{}` has no value",
                    metric.name
                ));
            }
            c.at += 1;
            c.ows();
            let value = if c.peek() == Some(b'"') {
                c.quoted()?
            } else {
                c.token()?
            };
            if seen.contains(&param) {
                return Err(format!("`{param}` twice in `{}`", metric.name));
            }
            seen.push(param.clone());
            match param.as_str() {
                "dur" => {
                    let ok = value.contains('.')
                        && value.chars().all(|c| c.is_ascii_digit() || c == '.');
                    let ms: f64 = value.parse().map_err(|_| format!("dur `{value}`"))?;
                    if !ok || ms < 0.0 {
                        return Err(format!("dur `{value}` is not a decimal number of ms"));
                    }
                    metric.dur = Some(ms);
                }
                "desc" => metric.desc = Some(value),
                other => return Err(format!("unexpected parameter `{other}`")),
            }
        }
        if metrics.iter().any(|m| m.name == metric.name) {
            return Err(format!("metric `{}` twice", metric.name));
        }
        metrics.push(metric);
        c.ows();
        match c.peek() {
            None => return Ok(metrics),
            Some(b',') => c.at += 1,
            Some(other) => {
                return Err(format!("unexpected `{}` at byte {}", other as char, c.at));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus text format 0.0.4, parsed strictly. (The `prometheus-parse` crate skips lines it
// does not understand and splits labels on commas without unescaping, so it cannot check this.)

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct PromSample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One family: its type, help and samples.
#[derive(Clone, Debug, Default)]
pub struct Family {
    pub kind: String,
    pub help: String,
    pub samples: Vec<PromSample>,
}

fn metric_name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn label_name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

fn go_float(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) && !s.is_empty() => {
            s.parse().map_err(|_| format!("bad number `{s}`"))
        }
        _ => Err(format!("bad number `{s}`")),
    }
}

/// Which family a sample name belongs to, given the declared families.
fn family_of<'a>(name: &str, families: &'a BTreeMap<String, Family>) -> Option<&'a str> {
    if let Some((declared, _)) = families.get_key_value(name) {
        return Some(declared.as_str());
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && let Some((declared, family)) = families.get_key_value(base)
            && (family.kind == "histogram" || (family.kind == "summary" && suffix != "_bucket"))
        {
            return Some(declared.as_str());
        }
    }
    None
}

fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i] != b'=' {
            i += 1;
        }
        let name = &s[start..i];
        if !label_name_ok(name) {
            return Err(format!("bad label name `{name}`"));
        }
        if b.get(i + 1) != Some(&b'"') {
            return Err(format!("label `{name}` has no quoted value"));
        }
        i += 2;
        let mut value = String::new();
        loop {
            let Some(&c) = b.get(i) else {
                return Err(format!("label `{name}`: unterminated value"));
            };
            match c {
                b'"' => {
                    i += 1;
                    break;
                }
                b'\\' => {
                    match b.get(i + 1) {
                        Some(b'\\') => value.push('\\'),
                        Some(b'"') => value.push('"'),
                        Some(b'n') => value.push('\n'),
                        other => {
                            return Err(format!("label `{name}`: bad escape {other:?}"));
                        }
                    }
                    i += 2;
                }
                b'\n' => return Err(format!("label `{name}`: raw line feed")),
                _ => {
                    let ch = s[i..].chars().next().unwrap();
                    value.push(ch);
                    i += ch.len_utf8();
                }
            }
        }
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label `{name}` twice"));
        }
        match b.get(i) {
            None => {}
            Some(b',') => i += 1,
            Some(other) => return Err(format!("unexpected `{}` after a label", *other as char)),
        }
    }
    Ok(labels)
}

/// Parse an exposition and check it: HELP and TYPE once per family and before its samples; a
/// family's samples together; valid names, escapes and numbers; no duplicate series; histograms
/// with increasing `le`, non-decreasing counts, `+Inf` equal to `_count`, and `_sum`.
pub fn parse_prometheus(text: &str) -> Result<BTreeMap<String, Family>, String> {
    if !text.ends_with('\n') {
        return Err("the exposition must end with a line feed".to_owned());
    }
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut finished: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut seen_series: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line}", n + 1);
        if line.is_empty() {
            continue;
        }
        if line.contains('\r') {
            return Err(at("carriage return".to_owned()));
        }
        if let Some(rest) = line.strip_prefix('#') {
            let rest = rest
                .strip_prefix(' ')
                .ok_or_else(|| at("comment".to_owned()))?;
            let mut parts = rest.splitn(3, ' ');
            let keyword = parts.next().unwrap_or("");
            if keyword != "HELP" && keyword != "TYPE" {
                continue; // a plain comment
            }
            let name = parts
                .next()
                .ok_or_else(|| at("no metric name".to_owned()))?;
            let value = parts.next().ok_or_else(|| at("no value".to_owned()))?;
            if !metric_name_ok(name) {
                return Err(at(format!("bad metric name `{name}`")));
            }
            if finished.iter().any(|f| f == name) {
                return Err(at(format!("`{name}` declared after its samples ended")));
            }
            let family = families.entry(name.to_owned()).or_default();
            if !family.samples.is_empty() {
                return Err(at(format!("{keyword} after samples of `{name}`")));
            }
            if keyword == "HELP" {
                if !family.help.is_empty() {
                    return Err(at("HELP twice".to_owned()));
                }
                let mut chars = value.chars();
                while let Some(c) = chars.next() {
                    if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
                        return Err(at("bad escape in HELP".to_owned()));
                    }
                }
                family.help = value.to_owned();
            } else {
                if !family.kind.is_empty() {
                    return Err(at("TYPE twice".to_owned()));
                }
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&value) {
                    return Err(at(format!("unknown type `{value}`")));
                }
                family.kind = value.to_owned();
            }
            continue;
        }
        let (series, rest) = match line.find('{') {
            Some(open) => {
                let close = line.rfind('}').ok_or_else(|| at("no `}`".to_owned()))?;
                (
                    (&line[..open], Some(&line[open + 1..close])),
                    &line[close + 1..],
                )
            }
            None => {
                let space = line.find(' ').ok_or_else(|| at("no value".to_owned()))?;
                ((&line[..space], None), &line[space..])
            }
        };
        let (name, labels) = series;
        if !metric_name_ok(name) {
            return Err(at(format!("bad metric name `{name}`")));
        }
        let labels = match labels {
            Some(l) => parse_labels(l).map_err(&at)?,
            None => BTreeMap::new(),
        };
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| at("no space before the value".to_owned()))?;
        let mut fields = rest.split(' ');
        let value = go_float(fields.next().unwrap_or("")).map_err(&at)?;
        if let Some(ts) = fields.next()
            && ts.parse::<i64>().is_err()
        {
            return Err(at(format!("bad timestamp `{ts}`")));
        }
        if fields.next().is_some() {
            return Err(at("trailing fields".to_owned()));
        }
        let family_name = family_of(name, &families)
            .ok_or_else(|| at(format!("`{name}` has no TYPE")))?
            .to_owned();
        if current.as_deref() != Some(&family_name) {
            if let Some(previous) = current.take() {
                finished.push(previous);
            }
            if finished.contains(&family_name) {
                return Err(at(format!("samples of `{family_name}` are not together")));
            }
            current = Some(family_name.clone());
        }
        let family = families.get_mut(&family_name).unwrap();
        if family.help.is_empty() {
            return Err(at(format!("`{family_name}` has no HELP")));
        }
        if family.kind == "counter" && (value.is_nan() || value < 0.0) {
            return Err(at("a negative counter".to_owned()));
        }
        let key = (name.to_owned(), labels.clone());
        if seen_series.contains(&key) {
            return Err(at("the same series twice".to_owned()));
        }
        seen_series.push(key);
        family.samples.push(PromSample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    for (name, family) in &families {
        if family.kind == "histogram" {
            check_histogram(name, family)?;
        }
    }
    Ok(families)
}

fn check_histogram(name: &str, family: &Family) -> Result<(), String> {
    let mut series: BTreeMap<BTreeMap<String, String>, Vec<&PromSample>> = BTreeMap::new();
    for s in &family.samples {
        let mut labels = s.labels.clone();
        labels.remove("le");
        series.entry(labels).or_default().push(s);
    }
    for (labels, samples) in series {
        let buckets: Vec<&&PromSample> = samples
            .iter()
            .filter(|s| s.name == format!("{name}_bucket"))
            .collect();
        let mut previous = (f64::NEG_INFINITY, 0.0);
        for b in &buckets {
            let le = go_float(
                b.labels
                    .get("le")
                    .ok_or(format!("{name}: a bucket without le"))?,
            )?;
            if le <= previous.0 || b.value < previous.1 {
                return Err(format!(
                    "{name} {labels:?}: buckets out of order at le={le}"
                ));
            }
            previous = (le, b.value);
        }
        if previous.0 != f64::INFINITY {
            return Err(format!("{name} {labels:?}: no +Inf bucket"));
        }
        let count = samples
            .iter()
            .find(|s| s.name == format!("{name}_count"))
            .ok_or(format!("{name} {labels:?}: no _count"))?;
        if count.value != previous.1 {
            return Err(format!("{name} {labels:?}: +Inf bucket is not _count"));
        }
        if !samples.iter().any(|s| s.name == format!("{name}_sum")) {
            return Err(format!("{name} {labels:?}: no _sum"));
        }
    }
    Ok(())
}

/// The value of the one sample `name` whose labels include `labels`.
pub fn value(families: &BTreeMap<String, Family>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<&PromSample> = families
        .values()
        .flat_map(|f| &f.samples)
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "one sample {name} {labels:?}, found {matching:?}"
    );
    matching[0].value
}

// ---------------------------------------------------------------------------------------------
// Captured tracing events.

/// One event's fields, as (name, value).
pub type Event = Vec<(String, String)>;

/// Every event of a target, as `field=value` pairs.
#[derive(Clone, Default)]
pub struct Captured {
    target: &'static str,
    events: Arc<Mutex<Vec<Event>>>,
}

struct Fields(Vec<(String, String)>);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if event.metadata().target() == self.target {
            let mut fields = Fields(Vec::new());
            event.record(&mut fields);
            self.events.lock().unwrap().push(fields.0);
        }
    }
}

impl Captured {
    /// Capture `target`'s events on this thread while the guard lives.
    pub fn install(target: &'static str) -> (Self, tracing::subscriber::DefaultGuard) {
        use tracing_subscriber::layer::SubscriberExt;
        let captured = Self {
            target,
            events: Arc::default(),
        };
        let subscriber = tracing_subscriber::registry().with(captured.clone());
        let guard = tracing::subscriber::set_default(subscriber);
        (captured, guard)
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }
}

pub fn field<'a>(event: &'a [(String, String)], name: &str) -> &'a str {
    &event
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no field {name} in {event:?}"))
        .1
}

/// `html` with its character references decoded (`&#60;`, `&lt;`, `&amp;`, ...): the text a
/// browser shows for it, tags left in place.
pub fn decode_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let decoded = match entity {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix('#')
                .and_then(|n| n.parse::<u32>().ok())
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}
