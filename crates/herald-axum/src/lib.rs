//! Herald in an axum application: see every receiver where a team looks.
//!
//! - [`ServerTimingLayer`]: a tower layer that adds a `Server-Timing` header to each response —
//!   the time the request spent in each signal phase, in its slowest receivers (named), and in
//!   store jobs — which the browser's DevTools show under the request's Timing tab. A receiver
//!   that was slow during the request is always named, and a `tracing` warning names it with the
//!   request's method and path.
//! - [`metrics_router`]: `GET /metrics` in the Prometheus text format — per receiver calls,
//!   errors and a latency histogram; per task kind runs, failures, retries, queue wait and run
//!   time; the queue's depth by queue and state. Read from the statistics the dispatcher and the
//!   workers already keep, never recorded twice.
//! - [`dashboard`]: a router with a server-rendered page (receivers with their latency
//!   histograms, the task queue over time, dead tasks; retry, cancel and purge buttons) refreshed
//!   by a few lines of JS from JSON endpoints, documented on [`dashboard`] and in
//!   `docs/dashboard-api.md`. Read-only unless the application configures a token.
//! - [`SameOriginLayer`]: a tower layer that refuses (403) state-changing requests another site
//!   makes in a user's browser (cross-site request forgery), by the rules the dashboard applies
//!   to its own actions: for an application's forms and JSON API.
//!
//! Nothing here opens a socket: the routers are served wherever the application binds (bind the
//! dashboard to 127.0.0.1 or behind an authenticating proxy; reading it needs no token).
//!
//! ```no_run
//! use axum::Router;
//! use herald_axum::{
//!     DashboardOptions, SameOriginLayer, ServerTimingLayer, dashboard, metrics_router,
//! };
//!
//! # async fn run(db: herald::Db) -> std::io::Result<()> {
//! let app: Router = Router::new()
//!     // .route("/books", post(create_book)) ... the application's own routes
//!     .layer(SameOriginLayer::new())
//!     .layer(ServerTimingLayer::new())
//!     .merge(metrics_router(db.clone()))
//!     .nest(
//!         "/_herald",
//!         dashboard(db, DashboardOptions {
//!             token: std::env::var("HERALD_DASHBOARD_TOKEN").ok(),
//!             ..Default::default()
//!         }),
//!     );
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! Layers point one way: this crate knows the store, the tasks and the dispatcher (through
//! `herald`); none of them knows it.

#![warn(missing_docs)]

mod dashboard;
mod metrics;
mod same_origin;
mod timing;

pub use dashboard::{
    DEFAULT_LIMIT, DashboardOptions, InvalidToken, MAX_LIMIT, MIN_TOKEN_LEN, TOKEN_HEADER,
    dashboard, validate_token,
};
pub use metrics::{CONTENT_TYPE, metrics_router, metrics_text};
pub use same_origin::{SameOrigin, SameOriginFuture, SameOriginLayer};
pub use timing::{DEFAULT_SLOWEST, ResponseFuture, SERVER_TIMING, ServerTiming, ServerTimingLayer};
