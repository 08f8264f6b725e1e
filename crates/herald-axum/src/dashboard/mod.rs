//! The dashboard: a router the application mounts, serving a server-rendered page (receivers,
//! latency histograms, the task queue) that a few lines of JS refresh from JSON endpoints, and the
//! actions that change state (retry a task, cancel pending work, purge a finished state), guarded
//! by the origin rules and a token.

mod render;
mod views;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::map_response;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use herald::Db;
use herald::tasks::TaskState;
use serde::Serialize;
use serde_json::json;

use crate::same_origin::{Rules, shown};
use views::{DeadTask, DeadView, Sample, TasksView};

/// The header a state-changing request carries the token in.
pub const TOKEN_HEADER: HeaderName = HeaderName::from_static("x-herald-token");

/// The most tasks `GET /api/tasks/dead` lists at once; a larger `limit` is refused (400), not
/// clamped, so that a client never silently gets fewer than it asked for.
pub const MAX_LIMIT: usize = 1000;

/// The dead tasks listed when no `limit` is given.
pub const DEFAULT_LIMIT: usize = 50;

/// The fewest characters a dashboard token may have: a shorter one can be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why a dashboard token is refused; from [`validate_token`]. Its message never shows the token.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidToken {
    /// Empty, or only whitespace.
    Blank,
    /// A character that cannot travel in an HTTP header as it is: anything but visible ASCII
    /// (letters, digits, punctuation), such as a space or `é`.
    NotHeaderSafe {
        /// Which character, counting from 1.
        position: usize,
    },
    /// Fewer than [`MIN_TOKEN_LEN`] characters.
    TooShort {
        /// How many it has.
        len: usize,
    },
}

impl std::fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Blank => f.write_str(
                "the dashboard token is blank (empty or only whitespace): it would let anyone \
                 retry, cancel and purge tasks; leave it unset for a read-only dashboard",
            ),
            Self::NotHeaderSafe { position } => write!(
                f,
                "the dashboard token has a character that cannot go in an HTTP header \
                 (character {position}); use visible ASCII: letters, digits and punctuation"
            ),
            Self::TooShort { len } => write!(
                f,
                "the dashboard token has {len} characters; it needs at least {MIN_TOKEN_LEN}, \
                 so that it cannot be guessed"
            ),
        }
    }
}

impl std::error::Error for InvalidToken {}

/// Is `token` usable as [`DashboardOptions::token`]? It must have at least [`MIN_TOKEN_LEN`]
/// characters, all visible ASCII (it travels in the [`X-Herald-Token`](TOKEN_HEADER) header,
/// which the page's JS sets from what was typed). [`dashboard`] panics on a token this refuses;
/// an application that reads the token from its configuration calls this first, to report a
/// bad one as a configuration error instead.
pub fn validate_token(token: &str) -> Result<(), InvalidToken> {
    if token.trim().is_empty() {
        return Err(InvalidToken::Blank);
    }
    if let Some(at) = token.chars().position(|c| !c.is_ascii_graphic()) {
        return Err(InvalidToken::NotHeaderSafe { position: at + 1 });
    }
    if token.len() < MIN_TOKEN_LEN {
        return Err(InvalidToken::TooShort { len: token.len() });
    }
    Ok(())
}

/// How the dashboard behaves. Every option documents its default; build with
/// `DashboardOptions { token: Some(..), ..Default::default() }`.
#[derive(Clone)]
pub struct DashboardOptions {
    /// The token that state-changing requests (retry, cancel, purge) must carry in the
    /// [`X-Herald-Token`](TOKEN_HEADER) header. Default: `None`, and then the dashboard is
    /// read-only: every state-changing endpoint answers 403. Take it from configuration or the
    /// environment, long and random: a token [`validate_token`] refuses (blank, shorter than
    /// [`MIN_TOKEN_LEN`], or not visible ASCII) panics at startup.
    pub token: Option<String>,
    /// Origins (`scheme://host[:port]`, exactly as browsers send them, no path or trailing
    /// slash) allowed to make state-changing requests besides the dashboard's own (an `Origin`
    /// whose host and port are the request's `Host`); the rules are those of
    /// [`SameOriginLayer`](crate::SameOriginLayer). Default: none. A malformed one panics at
    /// startup.
    pub allowed_origins: Vec<String>,
    /// How often the page refreshes itself from the JSON endpoints. Default: 2 s. At least 100 ms.
    pub refresh: Duration,
    /// How many samples of the queue's counts the "over time" chart keeps. Default: 180 (six
    /// minutes at the default spacing). At least 2.
    pub history: usize,
    /// The least time between two samples of the queue's counts (samples are taken when the page
    /// or `GET /api/tasks` is read, so several open pages do not crowd the chart). Default: 2 s.
    pub sample_every: Duration,
    /// The page's title. Default: `"Herald"`.
    pub title: String,
}

impl Default for DashboardOptions {
    fn default() -> Self {
        Self {
            token: None,
            allowed_origins: Vec::new(),
            refresh: Duration::from_secs(2),
            history: 180,
            sample_every: Duration::from_secs(2),
            title: "Herald".to_owned(),
        }
    }
}

impl std::fmt::Debug for DashboardOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardOptions")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("allowed_origins", &self.allowed_origins)
            .field("refresh", &self.refresh)
            .field("history", &self.history)
            .field("sample_every", &self.sample_every)
            .field("title", &self.title)
            .finish()
    }
}

impl DashboardOptions {
    #[track_caller]
    fn validate(&self) {
        if let Some(token) = &self.token
            && let Err(why) = validate_token(token)
        {
            panic!("DashboardOptions::token is refused: {why}");
        }
        assert!(
            self.refresh >= Duration::from_millis(100),
            "DashboardOptions::refresh must be at least 100 ms, got {:?}",
            self.refresh
        );
        assert!(
            self.history >= 2,
            "DashboardOptions::history must keep at least 2 samples to draw a line, got {}",
            self.history
        );
    }
}

/// The dashboard's router: mount it where the application wants it, e.g.
/// `Router::new().nest("/_herald", herald_axum::dashboard(db, options))`. It opens no socket: it
/// is served wherever the application binds.
///
/// Panics at startup (pointing at the caller) on a token [`validate_token`] refuses, a malformed
/// allowed origin, a refresh under 100 ms or a history under 2 samples.
///
#[doc = include_str!("../../docs/dashboard-api.md")]
#[track_caller]
pub fn dashboard(db: Db, options: DashboardOptions) -> Router {
    options.validate();
    let origins = Rules::new(
        options.allowed_origins.clone(),
        "DashboardOptions::allowed_origins",
    );
    let state = Arc::new(Dashboard {
        db,
        options,
        origins,
        history: Mutex::new(History::default()),
    });
    // Each path's methods as a service of its own (`route_service`), so that the layer below
    // wraps the whole method router and sees the `Allow` header it puts on a 405; a layer on
    // `route`s would wrap each method's handler and the method fallback before that header is set.
    let paths: [(&str, MethodRouter<Arc<Dashboard>>); 10] = [
        ("/", get(page)),
        ("/assets/dashboard.js", get(script)),
        ("/assets/dashboard.css", get(style)),
        ("/api/receivers", get(api_receivers)),
        ("/api/tasks", get(api_tasks)),
        ("/api/tasks/dead", get(api_dead)),
        ("/api/tasks/purge", post(api_purge)),
        ("/api/tasks/cancel", post(api_cancel_kind)),
        ("/api/tasks/{id}/retry", post(api_retry)),
        ("/api/tasks/{id}/cancel", post(api_cancel)),
    ];
    paths
        .into_iter()
        .fold(Router::new(), |router, (path, methods)| {
            router.route_service(path, methods.with_state::<()>(state.clone()))
        })
        .fallback(not_found)
        .layer(map_response(explain_405))
}

type Shared = State<Arc<Dashboard>>;

struct Dashboard {
    db: Db,
    options: DashboardOptions,
    origins: Rules,
    history: Mutex<History>,
}

#[derive(Default)]
struct History {
    samples: VecDeque<Sample>,
    last: Option<Instant>,
}

impl Dashboard {
    /// Keep a sample of the totals, unless the last one is more recent than `sample_every`.
    fn sample(&self, totals: &std::collections::BTreeMap<String, u64>) -> Vec<Sample> {
        let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        let due = history
            .last
            .is_none_or(|at| at.elapsed() >= self.options.sample_every);
        if due {
            history.last = Some(Instant::now());
            if history.samples.len() >= self.options.history {
                history.samples.pop_front();
            }
            history.samples.push_back(Sample {
                at_ms: views::now_ms(),
                counts: totals.clone(),
            });
        }
        history.samples.iter().cloned().collect()
    }

    async fn tasks_view(&self) -> Result<TasksView, ApiError> {
        let counts = self
            .db
            .tasks()
            .counts()
            .await
            .map_err(|e| ApiError::store("reading the task queue's counts", &e))?;
        let (queues, totals) = views::counts(&counts);
        let history = self.sample(&totals);
        Ok(TasksView {
            states: &*views::STATES,
            queues,
            totals,
            kinds: views::kinds(self.db.task_stats()),
            history,
        })
    }

    async fn dead_view(&self, limit: usize) -> Result<DeadView, ApiError> {
        let tasks = self
            .db
            .tasks()
            .dead(limit)
            .await
            .map_err(|e| ApiError::store("reading the dead tasks", &e))?;
        Ok(DeadView {
            limit,
            tasks: tasks.into_iter().map(DeadTask::from).collect(),
        })
    }

    /// May this request change state? Checked before its inputs are looked at: first where it
    /// comes from (the rules [`SameOriginLayer`](crate::SameOriginLayer) applies), then the token.
    fn authorize(&self, headers: &HeaderMap, uri: &Uri) -> Result<(), ApiError> {
        self.origins
            .check(headers, uri)
            .map_err(ApiError::forbidden)?;
        let Some(expected) = &self.options.token else {
            return Err(ApiError::forbidden(
                "this dashboard is read-only: the application configured no token \
                 (DashboardOptions::token), so retry, cancel and purge are refused"
                    .to_owned(),
            ));
        };
        let Some(given) = headers.get(&TOKEN_HEADER) else {
            return Err(ApiError::forbidden(format!(
                "this action needs the dashboard's token in the {TOKEN_HEADER} header \
                 (enter it in the page's token field)"
            )));
        };
        if !same_bytes(given.as_bytes(), expected.as_bytes()) {
            return Err(ApiError::forbidden(format!(
                "the token in the {TOKEN_HEADER} header is not the dashboard's"
            )));
        }
        Ok(())
    }
}

/// Compare without stopping at the first difference, so that the time taken does not tell how
/// much of a guessed token was right.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An error answer: `{"error": "..."}` with a status.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn bad(message: String) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message,
        }
    }

    fn forbidden(message: String) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            message,
        }
    }

    fn store(doing: &str, error: &herald::Error) -> Self {
        tracing::error!(target: "herald::dashboard", %error, "{doing} failed");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("{doing} failed: {error}"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &json!({ "error": self.message }))
    }
}

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            status,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
            ],
            body,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(target: "herald::dashboard", %error, "a JSON answer could not be written");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// The query's parameters, each at most once, each one of `allowed`.
fn params(query: Params, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let Query(pairs) = query.map_err(|e| ApiError::bad(format!("unreadable query string: {e}")))?;
    for (i, (name, _)) in pairs.iter().enumerate() {
        if !allowed.contains(&name.as_str()) {
            let expected = if allowed.is_empty() {
                "this endpoint takes none".to_owned()
            } else {
                format!("expected: {}", allowed.join(", "))
            };
            return Err(ApiError::bad(format!(
                "unknown query parameter `{}` ({expected})",
                shown(name)
            )));
        }
        if pairs[..i].iter().any(|(n, _)| n == name) {
            return Err(ApiError::bad(format!(
                "query parameter `{name}` given twice"
            )));
        }
    }
    Ok(pairs)
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `limit`: a whole number from 1 to [`MAX_LIMIT`]; default [`DEFAULT_LIMIT`].
fn parse_limit(raw: Option<&str>) -> Result<usize, ApiError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_LIMIT);
    };
    let not_a_limit = || {
        ApiError::bad(format!(
            "limit must be a whole number from 1 to {MAX_LIMIT}, got `{}`",
            shown(raw)
        ))
    };
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_a_limit());
    }
    match raw.parse::<usize>() {
        Ok(0) => Err(not_a_limit()),
        Ok(n) if n <= MAX_LIMIT => Ok(n),
        _ => Err(ApiError::bad(format!(
            "limit `{}` is above the maximum of {MAX_LIMIT} (refused, not clamped)",
            shown(raw)
        ))),
    }
}

/// A task id: a positive whole number that fits in 64 bits.
fn parse_id(raw: &str) -> Result<i64, ApiError> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad(format!(
            "a task id is a positive whole number, got `{}`",
            shown(raw)
        )));
    }
    match raw.parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        Ok(_) => Err(ApiError::bad(format!(
            "a task id is a positive whole number, got `{}`",
            shown(raw)
        ))),
        Err(_) => Err(ApiError::bad(format!(
            "task id `{}` is too large (ids fit in 64 bits)",
            shown(raw)
        ))),
    }
}

/// `state` for `POST /api/tasks/purge`: a finished state, by the task queue's own rule
/// ([`herald::tasks::purgeable`]: pending work is cancelled, not purged).
fn parse_purge_state(raw: Option<&str>) -> Result<TaskState, ApiError> {
    let Some(raw) = raw else {
        return Err(ApiError::bad(
            "purge needs `state`, one of completed, dead, cancelled".to_owned(),
        ));
    };
    herald::tasks::purgeable(raw).map_err(|e| ApiError::bad(e.to_string()))
}

/// The longest task kind `POST /api/tasks/cancel` accepts.
const MAX_KIND: usize = 200;

/// `kind` for `POST /api/tasks/cancel`: present, not empty, at most [`MAX_KIND`] bytes.
fn parse_kind(raw: Option<&str>) -> Result<&str, ApiError> {
    match raw {
        None => Err(ApiError::bad(
            "cancel needs `kind`, the task kind whose pending tasks to cancel".to_owned(),
        )),
        Some("") => Err(ApiError::bad(
            "`kind` is empty: name a task kind".to_owned(),
        )),
        Some(kind) if kind.len() > MAX_KIND => Err(ApiError::bad(format!(
            "kind `{}` is longer than {MAX_KIND} bytes: no task kind is",
            shown(kind)
        ))),
        Some(kind) => Ok(kind),
    }
}

async fn api_receivers(State(d): Shared, query: Params) -> Result<Response, ApiError> {
    params(query, &[])?;
    Ok(json_response(StatusCode::OK, &views::receivers(&d.db)))
}

async fn api_tasks(State(d): Shared, query: Params) -> Result<Response, ApiError> {
    params(query, &[])?;
    Ok(json_response(StatusCode::OK, &d.tasks_view().await?))
}

async fn api_dead(State(d): Shared, query: Params) -> Result<Response, ApiError> {
    let pairs = params(query, &["limit"])?;
    let limit = parse_limit(param(&pairs, "limit"))?;
    Ok(json_response(StatusCode::OK, &d.dead_view(limit).await?))
}

async fn api_retry(
    State(d): Shared,
    headers: HeaderMap,
    uri: Uri,
    path: Result<Path<String>, PathRejection>,
    query: Params,
) -> Result<Response, ApiError> {
    d.authorize(&headers, &uri)?;
    let Path(raw) = path.map_err(|e| ApiError::bad(format!("unreadable task id: {e}")))?;
    params(query, &[])?;
    let id = parse_id(&raw)?;
    let tasks = d.db.tasks();
    let task = tasks
        .get(id)
        .await
        .map_err(|e| ApiError::store("reading the task", &e))?
        .ok_or_else(|| ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("no task with id {id}"),
        })?;
    let conflict = |state: &str| ApiError {
        status: StatusCode::CONFLICT,
        message: format!(
            "task {id} is {state}: only dead, cancelled or waiting (available) tasks can be retried"
        ),
    };
    if task.state == TaskState::Running || task.state == TaskState::Completed {
        return Err(conflict(task.state.as_str()));
    }
    let retried = tasks
        .retry(id)
        .await
        .map_err(|e| ApiError::store("retrying the task", &e))?;
    if !retried {
        // It changed state between the read and the update (a worker claimed it).
        return Err(conflict("no longer retryable"));
    }
    tracing::info!(target: "herald::dashboard", task = id, kind = %task.kind, "task retried from the dashboard");
    Ok(json_response(
        StatusCode::OK,
        &json!({ "retried": id, "state": "available" }),
    ))
}

async fn api_purge(
    State(d): Shared,
    headers: HeaderMap,
    uri: Uri,
    query: Params,
) -> Result<Response, ApiError> {
    d.authorize(&headers, &uri)?;
    let pairs = params(query, &["state"])?;
    let state = parse_purge_state(param(&pairs, "state"))?;
    let purged =
        d.db.tasks()
            .purge(state)
            .await
            .map_err(|e| ApiError::store("purging tasks", &e))?;
    tracing::info!(target: "herald::dashboard", %state, purged, "tasks purged from the dashboard");
    Ok(json_response(
        StatusCode::OK,
        &json!({ "purged": purged, "state": state.as_str() }),
    ))
}

async fn api_cancel(
    State(d): Shared,
    headers: HeaderMap,
    uri: Uri,
    path: Result<Path<String>, PathRejection>,
    query: Params,
) -> Result<Response, ApiError> {
    d.authorize(&headers, &uri)?;
    let Path(raw) = path.map_err(|e| ApiError::bad(format!("unreadable task id: {e}")))?;
    params(query, &[])?;
    let id = parse_id(&raw)?;
    let tasks = d.db.tasks();
    let cancelled = tasks
        .cancel(id)
        .await
        .map_err(|e| ApiError::store("cancelling the task", &e))?;
    if !cancelled {
        let task = tasks
            .get(id)
            .await
            .map_err(|e| ApiError::store("reading the task", &e))?;
        return Err(match task {
            None => ApiError {
                status: StatusCode::NOT_FOUND,
                message: format!("no task with id {id}"),
            },
            Some(task) => ApiError {
                status: StatusCode::CONFLICT,
                message: format!(
                    "task {id} is {}: only pending (available or running) tasks can be cancelled",
                    task.state
                ),
            },
        });
    }
    tracing::info!(target: "herald::dashboard", task = id, "task cancelled from the dashboard");
    Ok(json_response(
        StatusCode::OK,
        &json!({ "cancelled": id, "state": "cancelled" }),
    ))
}

async fn api_cancel_kind(
    State(d): Shared,
    headers: HeaderMap,
    uri: Uri,
    query: Params,
) -> Result<Response, ApiError> {
    d.authorize(&headers, &uri)?;
    let pairs = params(query, &["kind"])?;
    let kind = parse_kind(param(&pairs, "kind"))?;
    let cancelled =
        d.db.tasks()
            .cancel_kind(kind)
            .await
            .map_err(|e| ApiError::store("cancelling tasks", &e))?;
    tracing::info!(target: "herald::dashboard", kind, cancelled, "pending tasks cancelled from the dashboard");
    Ok(json_response(
        StatusCode::OK,
        &json!({ "cancelled": cancelled, "kind": kind }),
    ))
}

async fn not_found(method: Method, uri: Uri) -> Response {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("no such page or endpoint: {method} {}", shown(uri.path())),
    }
    .into_response()
}

/// A 405 from the router gets a JSON body naming the method and the allowed ones (its `Allow`
/// header stays).
async fn explain_405(method: Method, response: Response) -> Response {
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let allow = response
        .headers()
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    let (mut parts, _) = response.into_parts();
    let body = json!({
        "error": format!("method {} is not allowed here; allowed: {allow}", shown(method.as_str()))
    });
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body.to_string()))
}

/// The page's security headers: scripts and styles only from the dashboard itself, no framing.
fn page_headers() -> [(HeaderName, HeaderValue); 5] {
    [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                 img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    ]
}

async fn page(State(d): Shared, OriginalUri(original): OriginalUri, uri: Uri) -> Response {
    let full = original.path();
    let base = full
        .strip_suffix(uri.path())
        .unwrap_or(full)
        .trim_end_matches('/');
    let receivers = views::receivers(&d.db);
    let tasks = d.tasks_view().await.map_err(|e| e.message);
    let dead = d.dead_view(DEFAULT_LIMIT).await.map_err(|e| e.message);
    let html = render::page(&render::Page {
        base,
        title: &d.options.title,
        refresh: d.options.refresh,
        read_only: d.options.token.is_none(),
        receivers: &receivers,
        tasks: tasks.as_ref(),
        dead: dead.as_ref(),
        now_ms: views::now_ms(),
    });
    let mut response = (page_headers(), html).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

async fn script() -> Response {
    asset(render::SCRIPT, "text/javascript; charset=utf-8")
}

async fn style() -> Response {
    asset(render::STYLE, "text/css; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_ids_and_states_are_checked() {
        assert_eq!(parse_limit(None).ok(), Some(DEFAULT_LIMIT));
        assert_eq!(parse_limit(Some("7")).ok(), Some(7));
        for bad in [
            "0",
            "-1",
            "abc",
            "",
            "1.5",
            " 3",
            "1001",
            "99999999999999999999999",
        ] {
            let error = parse_limit(Some(bad)).expect_err(bad);
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{bad}");
        }
        assert!(
            parse_limit(Some("5000"))
                .expect_err("too many")
                .message
                .contains("not clamped")
        );
        assert_eq!(parse_id("42").ok(), Some(42));
        for bad in ["0", "-3", "x", "", "99999999999999999999", "1e3", "+4"] {
            let error = parse_id(bad).expect_err(bad);
            assert!(error.message.contains(bad), "{}", error.message);
        }
        assert_eq!(parse_purge_state(Some("dead")).ok(), Some(TaskState::Dead));
        for bad in [None, Some("running"), Some("available"), Some("zombie")] {
            assert!(parse_purge_state(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_kind(Some("reindex")).ok(), Some("reindex"));
        for bad in [None, Some("")] {
            assert!(parse_kind(bad).is_err(), "{bad:?}");
        }
        let long = "k".repeat(MAX_KIND + 1);
        assert!(parse_kind(Some(&long)).is_err());
    }

    #[test]
    fn tokens_are_long_visible_ascii() {
        assert_eq!(validate_token("0123456789abcdef"), Ok(()));
        assert_eq!(validate_token(""), Err(InvalidToken::Blank));
        assert_eq!(validate_token("   "), Err(InvalidToken::Blank));
        assert_eq!(
            validate_token("short"),
            Err(InvalidToken::TooShort { len: 5 })
        );
        assert_eq!(
            validate_token("0123456789abcdé"),
            Err(InvalidToken::NotHeaderSafe { position: 15 })
        );
        assert_eq!(
            validate_token("0123456789 abcdef"),
            Err(InvalidToken::NotHeaderSafe { position: 11 })
        );
        let message = validate_token("s3cret").unwrap_err().to_string();
        assert!(message.contains("at least 16"), "{message}");
        assert!(!message.contains("s3cret"), "never shown: {message}");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_bytes(b"secret", b"secret"));
        assert!(!same_bytes(b"secret", b"secreT"));
        assert!(!same_bytes(b"secret", b"secret2"));
    }
}
