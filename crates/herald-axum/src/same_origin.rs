//! Refusing cross-site requests that change state: the rule the dashboard applies to its own
//! actions, and [`SameOriginLayer`], the same rule as a tower layer for an application's routes.
//!
//! A browser attaches the user's cookies (or other ambient credentials) to a form that another
//! site posts to this one; without a check, that site changes state in the user's name (CSRF).
//! Browsers say where a request comes from in two headers no page can forge: `Sec-Fetch-Site`
//! (every current browser) and `Origin` (every browser, on every request but a `GET` or `HEAD`
//! navigation). The rule reads both and refuses if either says the request came from another
//! origin; a request with neither is not a browser's (curl, a server-to-server client) and is
//! let through, as is every safe method.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use tower::{Layer, Service};

/// The header in which browsers say how the request's initiator relates to its target.
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Which origins besides the request's own may change state, and the option that lists them
/// (named in refusals, so that an operator knows where to add one).
#[derive(Clone, Debug)]
pub(crate) struct Rules {
    allowed: Vec<String>,
    option: &'static str,
}

impl Rules {
    /// `allowed` are origins as browsers send them (`scheme://host[:port]`); `option` is the name
    /// of the setting that lists them. Panics (pointing at the caller) on a malformed origin.
    #[track_caller]
    pub(crate) fn new(allowed: Vec<String>, option: &'static str) -> Self {
        for origin in &allowed {
            if let Err(why) = parse_origin(origin) {
                panic!("{option}: `{origin}` is not an origin ({why})");
            }
        }
        Self { allowed, option }
    }

    /// May a request with these headers and this URI change state? `Err` says why not, naming
    /// the origin it came from. Safe methods are not checked here: see [`is_safe`].
    ///
    /// - an `Origin` listed in the allowed origins: yes;
    /// - `Sec-Fetch-Site: cross-site` or `same-site` (another origin, maybe another port or
    ///   subdomain): no;
    /// - an `Origin` whose host and port are not the request's `Host` (or, without one, its URI's
    ///   authority): no. An opaque `Origin: null` is another origin, unless the browser says
    ///   `Sec-Fetch-Site: same-origin` (a page whose referrer policy hides its origin);
    /// - otherwise (no header says another origin, or neither header is present): yes.
    pub(crate) fn check(&self, headers: &HeaderMap, uri: &Uri) -> Result<(), String> {
        let origin = headers
            .get(header::ORIGIN)
            .map(|o| String::from_utf8_lossy(o.as_bytes()).into_owned());
        if let Some(origin) = &origin
            && self.allowed.iter().any(|allowed| allowed == origin)
        {
            return Ok(());
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| uri.authority().map(|a| a.as_str().to_owned()))
            .unwrap_or_default();
        let from = origin.as_deref().map_or_else(
            || "no Origin header".to_owned(),
            |o| format!("Origin `{}`", shown(o)),
        );
        let site = headers.get(SEC_FETCH_SITE).map(HeaderValue::as_bytes);
        if let Some(site @ (b"cross-site" | b"same-site")) = site {
            return Err(format!(
                "cross-site request refused (Sec-Fetch-Site: {}, {from}): only pages of this \
                 site (`{}`) and the origins in {} may change state",
                String::from_utf8_lossy(site),
                shown(&host),
                self.option
            ));
        }
        let Some(origin) = origin else {
            return Ok(());
        };
        if origin == "null" && site == Some(b"same-origin".as_slice()) {
            return Ok(());
        }
        if !same_authority(&origin, &host) {
            return Err(format!(
                "cross-origin request refused: {from} is not this site's (Host `{}`) nor one of \
                 {}",
                shown(&host),
                self.option
            ));
        }
        Ok(())
    }
}

/// GET, HEAD, OPTIONS and TRACE: the methods that must not change state (RFC 9110, 9.2.1).
/// Every other method, known or not, is checked.
pub(crate) fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// `scheme://host[:port]` split into its scheme and its authority, or why it is not one.
fn parse_origin(origin: &str) -> Result<(&str, &str), &'static str> {
    let (scheme, authority) = origin
        .split_once("://")
        .ok_or("expected scheme://host[:port]")?;
    if scheme != "http" && scheme != "https" {
        return Err("the scheme must be http or https");
    }
    if authority.is_empty() {
        return Err("no host");
    }
    if authority.contains(['/', '?', '#', '@', ' ']) {
        return Err("an origin has no path, query, user or spaces: scheme://host[:port] only");
    }
    Ok((scheme, authority))
}

/// Is `origin` (`scheme://host[:port]`) the site `host` (`host[:port]`) names? Hosts compare
/// without case, and a scheme's default port may be left out on either side.
fn same_authority(origin: &str, host: &str) -> bool {
    let Ok((scheme, authority)) = parse_origin(origin) else {
        return false;
    };
    if host.is_empty() {
        return false;
    }
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let normal = |a: &str| {
        let a = a.to_ascii_lowercase();
        match a.strip_suffix(default_port) {
            Some(bare) => bare.to_owned(),
            None => a,
        }
    };
    normal(authority) == normal(host)
}

/// A client's value, cut to a length fit to echo in a message.
pub(crate) fn shown(value: &str) -> String {
    const MAX: usize = 40;
    if value.chars().count() <= MAX {
        value.to_owned()
    } else {
        let cut: String = value.chars().take(MAX).collect();
        format!("{cut}… ({} bytes)", value.len())
    }
}

/// A tower layer that refuses, with **403**, state-changing requests that come from another
/// site: the defence against cross-site request forgery for an application's forms and JSON
/// API, by the rules the dashboard applies to its own actions.
///
/// A request is checked unless its method is safe (GET, HEAD, OPTIONS, TRACE; every other
/// method, POST, PUT, PATCH, DELETE or unknown, is checked). It is refused when:
///
/// - `Sec-Fetch-Site` is `cross-site`, or `same-site` (another origin of the same site: another
///   subdomain or port);
/// - or its `Origin` header is not this site: its host and port are not the request's `Host`
///   (compared without case; a default port may be left out). `Origin: null` (a sandboxed
///   frame, a `data:` page) is another origin, unless `Sec-Fetch-Site: same-origin` says the
///   browser sent it for a page of this site whose referrer policy hides its origin;
///
/// and its `Origin` is not one of the [`allow_origin`](Self::allow_origin)s. A request with
/// neither header is let through: it is not a browser's (curl, a server-to-server client, a
/// test), and browsers send at least one of them on every request such a form or script can
/// make. So the layer needs no token, no cookie and no change to the forms.
///
/// The refusal is `403 Forbidden` with `{"error": "cross-site request refused ..."}` naming the
/// origin the request came from and the site it reached; the inner service is not called. Each
/// refusal is logged at INFO on target `herald::same_origin`.
///
/// Put it on the routes that change state, or on the whole router (safe methods pass untouched).
/// Behind a proxy that rewrites `Host`, browsers that send no `Sec-Fetch-Site` are compared with
/// the rewritten host: list the public origin with `allow_origin`.
///
/// ```
/// use axum::{Router, routing::post};
/// use herald_axum::SameOriginLayer;
///
/// let app: Router = Router::new()
///     .route("/books", post(|| async { "created" }))
///     .layer(SameOriginLayer::new().allow_origin("https://admin.example.com"));
/// ```
#[derive(Clone, Debug)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct SameOriginLayer {
    rules: Arc<Rules>,
}

impl SameOriginLayer {
    /// A layer that lets state-changing requests through only from the request's own origin (or
    /// from no browser at all).
    pub fn new() -> Self {
        Self {
            rules: Arc::new(Rules::new(Vec::new(), "SameOriginLayer::allow_origin")),
        }
    }

    /// Also let state-changing requests through from `origin`, exactly as browsers send it in
    /// `Origin`: `scheme://host[:port]`, no path and no trailing slash (e.g.
    /// `https://admin.example.com`, `http://localhost:5173`). Default: none. Panics (pointing at
    /// the caller) when `origin` is not of that form, since it could never match.
    #[track_caller]
    pub fn allow_origin(self, origin: impl Into<String>) -> Self {
        let mut allowed = self.rules.allowed.clone();
        allowed.push(origin.into());
        Self {
            rules: Arc::new(Rules::new(allowed, "SameOriginLayer::allow_origin")),
        }
    }
}

impl Default for SameOriginLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for SameOriginLayer {
    type Service = SameOrigin<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SameOrigin {
            inner,
            rules: self.rules.clone(),
        }
    }
}

/// The service [`SameOriginLayer`] wraps around an inner service.
#[derive(Clone, Debug)]
pub struct SameOrigin<S> {
    inner: S,
    rules: Arc<Rules>,
}

impl<S, B, R> Service<Request<B>> for SameOrigin<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    R: From<String>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = SameOriginFuture<S::Future, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if is_safe(request.method()) {
            return SameOriginFuture::Inner {
                future: self.inner.call(request),
            };
        }
        match self.rules.check(request.headers(), request.uri()) {
            Ok(()) => SameOriginFuture::Inner {
                future: self.inner.call(request),
            },
            Err(message) => {
                tracing::info!(
                    target: "herald::same_origin",
                    method = %request.method(),
                    path = %request.uri().path(),
                    "{message}"
                );
                SameOriginFuture::Refused {
                    response: Some(refusal(message)),
                }
            }
        }
    }
}

/// `403 {"error": message}`.
fn refusal<R: From<String>>(message: String) -> Response<R> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut response = Response::new(R::from(body));
    *response.status_mut() = StatusCode::FORBIDDEN;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

pin_project_lite::pin_project! {
    /// The response future of [`SameOrigin`]: the inner service's, or the refusal.
    // pin-project-lite takes no docs on an enum's fields.
    #[allow(missing_docs)]
    #[project = Projected]
    pub enum SameOriginFuture<F, R> {
        /// The request was let through.
        Inner {
            #[pin]
            future: F,
        },
        /// The request was refused; the inner service was not called.
        Refused {
            response: Option<Response<R>>,
        },
    }
}

impl<F, R> std::fmt::Debug for SameOriginFuture<F, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self {
            Self::Inner { .. } => "Inner",
            Self::Refused { .. } => "Refused",
        };
        f.debug_tuple("SameOriginFuture").field(&state).finish()
    }
}

impl<F, R, E> Future for SameOriginFuture<F, R>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = Result<Response<R>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Projected::Inner { future } => future.poll(cx),
            Projected::Refused { response } => Poll::Ready(Ok(response
                .take()
                .expect("a SameOriginFuture is not polled after it completed"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn check(rules: &Rules, pairs: &[(&'static str, &'static str)]) -> Result<(), String> {
        rules.check(&headers(pairs), &Uri::from_static("/books"))
    }

    #[test]
    fn the_rules() {
        let rules = Rules::new(vec!["https://admin.example.com".to_owned()], "the option");
        let host = ("host", "shop.example:8080");
        // Neither header: not a browser.
        assert_eq!(check(&rules, &[host]), Ok(()));
        // The page's own origin, with or without Sec-Fetch-Site.
        assert_eq!(
            check(&rules, &[host, ("origin", "http://shop.example:8080")]),
            Ok(())
        );
        assert_eq!(
            check(
                &rules,
                &[
                    host,
                    ("origin", "http://SHOP.example:8080"),
                    ("sec-fetch-site", "same-origin")
                ]
            ),
            Ok(())
        );
        assert_eq!(check(&rules, &[host, ("sec-fetch-site", "none")]), Ok(()));
        // Another origin, however it shows.
        let error = check(&rules, &[host, ("origin", "http://evil.example")]).unwrap_err();
        assert!(error.contains("cross-origin") && error.contains("`http://evil.example`"));
        assert!(error.contains("the option"), "{error}");
        let error = check(
            &rules,
            &[
                host,
                ("origin", "http://evil.example"),
                ("sec-fetch-site", "cross-site"),
            ],
        )
        .unwrap_err();
        assert!(error.contains("Sec-Fetch-Site: cross-site") && error.contains("evil.example"));
        let error = check(&rules, &[host, ("sec-fetch-site", "same-site")]).unwrap_err();
        assert!(error.contains("same-site") && error.contains("no Origin header"));
        assert!(check(&rules, &[host, ("origin", "http://shop.example:9090")]).is_err());
        assert!(check(&rules, &[host, ("origin", "https://shop.example:8080")]).is_ok());
        assert!(check(&rules, &[host, ("origin", "null")]).is_err());
        assert!(check(&rules, &[("origin", "http://shop.example:8080")]).is_err());
        // What the browser vouches for: a page whose referrer policy hides its origin.
        assert!(
            check(
                &rules,
                &[host, ("origin", "null"), ("sec-fetch-site", "same-origin")]
            )
            .is_ok()
        );
        // A browser's two headers disagreeing is refused.
        assert!(
            check(
                &rules,
                &[
                    host,
                    ("origin", "http://evil.example"),
                    ("sec-fetch-site", "same-origin")
                ]
            )
            .is_err()
        );
        // An allowed origin, even cross-site.
        assert!(
            check(
                &rules,
                &[
                    host,
                    ("origin", "https://admin.example.com"),
                    ("sec-fetch-site", "cross-site")
                ]
            )
            .is_ok()
        );
    }

    #[test]
    fn default_ports_and_the_uri_authority() {
        assert!(same_authority("https://shop.example", "shop.example:443"));
        assert!(same_authority("http://shop.example:80", "shop.example"));
        assert!(!same_authority("https://shop.example", "shop.example:80"));
        assert!(!same_authority("http://shop.example", ""));
        assert!(!same_authority("shop.example", "shop.example"));
        let rules = Rules::new(Vec::new(), "the option");
        let uri = Uri::from_static("https://shop.example/books");
        let origin = headers(&[("origin", "https://shop.example")]);
        assert_eq!(rules.check(&origin, &uri), Ok(()), "HTTP/2: no Host header");
    }

    #[test]
    fn safe_methods() {
        for method in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
            assert!(is_safe(&method), "{method}");
        }
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(!is_safe(&method), "{method}");
        }
        assert!(!is_safe(&Method::from_bytes(b"PURGE").unwrap()));
    }

    #[test]
    #[should_panic(expected = "is not an origin")]
    fn an_allowed_origin_with_a_path_is_refused() {
        let _ = SameOriginLayer::new().allow_origin("https://admin.example.com/");
    }

    #[test]
    fn echoed_values_are_cut_short() {
        let long = "x".repeat(10_000);
        let shown = shown(&long);
        assert!(shown.len() < 80, "{shown}");
        assert!(shown.ends_with("(10000 bytes)"));
    }
}
