//! Lists in pages: at most [`MAX_PAGE`] rows each, in key order, the next page named by the key of
//! the page's last row (`?after=ID`): in a `Link: <..>; rel="next"` header on the JSON API, and as
//! a link on the HTML pages. Keyset pagination: a page costs the same however deep it is, and
//! rows added meanwhile are neither shown twice nor skipped.
//!
//! Query parameters are read by name, so that a bad one is a 400 naming it.

use std::collections::HashMap;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald::query::Query;
use herald::{Db, Model};
use serde::Serialize;
use serde_json::json;

/// The most rows a page holds, and how many it holds unless `limit` says fewer.
pub(crate) const MAX_PAGE: u64 = 100;

/// A request the shop cannot read: 400, naming the parameter and the value.
#[derive(Debug)]
pub(crate) struct BadRequest(pub(crate) String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, Json(json!({ "error": self.0 }))).into_response()
    }
}

/// A list's query string, read by name.
#[derive(Debug, Default)]
pub(crate) struct Params(pub(crate) HashMap<String, String>);

impl Params {
    /// The whole number `name`, if given and not blank (an HTML form sends empty fields).
    pub(crate) fn int(&self, name: &str) -> Result<Option<i64>, BadRequest> {
        match self.0.get(name).map(|v| v.trim()) {
            None | Some("") => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| BadRequest(format!("`{name}` must be a whole number, got {text:?}"))),
        }
    }

    /// Where the page starts (`after`, a key) and how many rows it holds (`limit`, 1 to
    /// [`MAX_PAGE`]).
    pub(crate) fn window(&self) -> Result<Window, BadRequest> {
        let after = self.int("after")?;
        let limit = match self.int("limit")? {
            None => None,
            Some(n) if (1..=MAX_PAGE as i64).contains(&n) => Some(n as u64),
            Some(n) => {
                return Err(BadRequest(format!(
                    "`limit` must be between 1 and {MAX_PAGE}, got {n}"
                )));
            }
        };
        Ok(Window { after, limit })
    }
}

/// Where a page starts and how many rows it holds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    after: Option<i64>,
    limit: Option<u64>,
}

/// One page of rows, and the URL of the next page when there is one.
#[derive(Debug)]
pub(crate) struct Page<M> {
    pub(crate) rows: Vec<M>,
    pub(crate) next: Option<String>,
}

/// One page of `query` (filtered already, in key order) from `window`; the next page's URL is
/// `path` with `filters` (the parameters that made `query`), `after` and `limit`. Reads one row
/// more than the page holds, to know whether there is a next page.
pub(crate) async fn page<M: Model>(
    db: &Db,
    query: Query<M>,
    window: Window,
    path: &str,
    filters: &[(&str, i64)],
) -> herald::Result<Page<M>> {
    let size = window.limit.unwrap_or(MAX_PAGE);
    let mut query = query.limit(size + 1);
    if let Some(after) = window.after {
        query = query.after(after);
    }
    let mut rows = query.all(db).await?;
    let mut next = None;
    if rows.len() as u64 > size {
        rows.truncate(size as usize);
        if let Some(key) = rows.last().and_then(Model::pk_value) {
            let mut params: Vec<String> = filters.iter().map(|(k, v)| format!("{k}={v}")).collect();
            params.push(format!("after={key}"));
            if let Some(limit) = window.limit {
                params.push(format!("limit={limit}"));
            }
            next = Some(format!("{path}?{}", params.join("&")));
        }
    }
    Ok(Page { rows, next })
}

impl<M: Serialize> IntoResponse for Page<M> {
    /// The rows as a JSON list, the next page in a `Link` header.
    fn into_response(self) -> Response {
        let mut response = Json(self.rows).into_response();
        if let Some(next) = self.next
            && let Ok(link) = HeaderValue::from_str(&format!("<{next}>; rel=\"next\""))
        {
            response.headers_mut().insert(header::LINK, link);
        }
        response
    }
}
