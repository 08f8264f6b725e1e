//! The dashboard's JSON endpoints and their input checks: every value is validated (400 naming
//! it), state-changing ones are authorised first, and a wrong path or method is explained.

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use herald::tasks::TaskState;
use serde_json::json;

use super::*;
use crate::same_origin::shown;

pub(super) type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// The query's parameters, each at most once, each one of `allowed`.
pub(super) fn params(query: Params, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
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

pub(super) fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `limit`: a whole number from 1 to [`MAX_LIMIT`]; default [`DEFAULT_LIMIT`].
pub(super) fn parse_limit(raw: Option<&str>) -> Result<usize, ApiError> {
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
pub(super) fn parse_id(raw: &str) -> Result<i64, ApiError> {
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
pub(super) fn parse_purge_state(raw: Option<&str>) -> Result<TaskState, ApiError> {
    let Some(raw) = raw else {
        return Err(ApiError::bad(
            "purge needs `state`, one of completed, dead, cancelled".to_owned(),
        ));
    };
    herald::tasks::purgeable(raw).map_err(|e| ApiError::bad(e.to_string()))
}

/// The longest task kind `POST /api/tasks/cancel` accepts.
pub(super) const MAX_KIND: usize = 200;

/// `kind` for `POST /api/tasks/cancel`: present, not empty, at most [`MAX_KIND`] bytes.
pub(super) fn parse_kind(raw: Option<&str>) -> Result<&str, ApiError> {
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

pub(super) async fn api_receivers(State(d): Shared, query: Params) -> Result<Response, ApiError> {
    params(query, &[])?;
    Ok(json_response(StatusCode::OK, &views::receivers(&d.db)))
}

pub(super) async fn api_tasks(State(d): Shared, query: Params) -> Result<Response, ApiError> {
    params(query, &[])?;
    Ok(json_response(StatusCode::OK, &d.tasks_view().await?))
}

pub(super) async fn api_dead(State(d): Shared, query: Params) -> Result<Response, ApiError> {
    let pairs = params(query, &["limit"])?;
    let limit = parse_limit(param(&pairs, "limit"))?;
    Ok(json_response(StatusCode::OK, &d.dead_view(limit).await?))
}

/// The checks of an action on one task (`/api/tasks/{id}/..`): authorised, the id readable, no
/// query parameter.
fn task_action(
    d: &Dashboard,
    headers: &HeaderMap,
    uri: &Uri,
    path: Result<Path<String>, PathRejection>,
    query: Params,
) -> Result<i64, ApiError> {
    d.authorize(headers, uri)?;
    let Path(raw) = path.map_err(|e| ApiError::bad(format!("unreadable task id: {e}")))?;
    params(query, &[])?;
    parse_id(&raw)
}

pub(super) async fn api_retry(
    State(d): Shared,
    headers: HeaderMap,
    uri: Uri,
    path: Result<Path<String>, PathRejection>,
    query: Params,
) -> Result<Response, ApiError> {
    let id = task_action(&d, &headers, &uri, path, query)?;
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

pub(super) async fn api_purge(
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

pub(super) async fn api_cancel(
    State(d): Shared,
    headers: HeaderMap,
    uri: Uri,
    path: Result<Path<String>, PathRejection>,
    query: Params,
) -> Result<Response, ApiError> {
    let id = task_action(&d, &headers, &uri, path, query)?;
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

pub(super) async fn api_cancel_kind(
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

pub(super) async fn not_found(method: Method, uri: Uri) -> Response {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("no such page or endpoint: {method} {}", shown(uri.path())),
    }
    .into_response()
}

/// A 405 from the router gets a JSON body naming the method and the allowed ones (its `Allow`
/// header stays).
pub(super) async fn explain_405(method: Method, response: Response) -> Response {
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
