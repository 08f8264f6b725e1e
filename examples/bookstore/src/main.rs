//! The bookstore: Herald's demo application.
//!
//! `cargo run --release -p bookstore` migrates a SQLite file (`bookstore.db`), adds a little
//! sample data, starts an embedded worker and serves the shop on 127.0.0.1, printing the URL.
//! It is `bookstore serve`; `bookstore --help` lists the other commands (`worker`, `migrate`,
//! `receivers`, `tasks`, `loaddata`), all from [`herald_cli`].
//!
//! The receivers a real shop would have, each declared with `#[receiver]` in [`shop`]:
//! a slug filled in `pre_save`; a negative price vetoed; an audit row written inside every save's
//! and delete's transaction, for every model; a cache invalidated on commit; a search index
//! rebuilt in the background (deliberately heavy, coalesced per book); an email to the author in
//! the background that fails now and then (`BOOKSTORE_EMAIL_FAIL_EVERY`) and is retried.
//!
//! The lab ([`lab`], `/lab`) has a model of its own, `LabBook`, whose receivers are the seed's
//! four patterns of work around a save, to try one by one in the browser or compare side by side.

mod lab;
mod shop;
mod web;

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

use herald_cli::App;
use lab::LabBook;
use shop::{AuditEntry, Author, Book, EmailSent, PriceChange, Review, SearchEntry};
use tracing_subscriber::filter::LevelFilter;

fn main() -> ExitCode {
    // Warnings (slow receivers, failed tasks) by default, so that a command's error stays one
    // line on stderr; `BOOKSTORE_LOG=info` (or debug, trace) shows more.
    let level = std::env::var("BOOKSTORE_LOG")
        .ok()
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::WARN);
    // Colour only on a terminal: a log written to a file or a pipe stays plain text.
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(true)
        .init();
    App::new("bookstore")
        .database("sqlite://bookstore.db")
        .signals(|| {
            herald::dispatch::Signals::builder()
                .autodiscover()
                .slow_threshold(Duration::from_millis(50))
                .build()
        })
        .model::<Author>()
        .model::<Book>()
        .model::<Review>()
        .model::<AuditEntry>()
        .model::<SearchEntry>()
        .model::<EmailSent>()
        .model::<PriceChange>()
        .model::<LabBook>()
        // Most of a reindex is waiting on the search service: many may wait at once. The lab's
        // background pattern has a queue of its own.
        .worker(|worker| {
            worker
                .queues(["default", "lab"])
                .concurrency(16)
                .retry_base(Duration::from_millis(100))
        })
        // Where web::router mounts them: `serve` prints their URLs, `receivers --from` finds the
        // dashboard from the shop's URL.
        .dashboard_path(web::DASHBOARD_PATH)
        .metrics_path(web::METRICS_PATH)
        // A bad HERALD_DASHBOARD_TOKEN is refused before the shop starts.
        .check_before_serve(|| web::dashboard_token().map(drop).map_err(Into::into))
        .serve(|db, listener| async move {
            let token = web::dashboard_token()?;
            shop::indexes(&db).await?;
            if std::env::var("BOOKSTORE_SAMPLE_DATA").as_deref() != Ok("0") {
                shop::sample_data(&db).await?;
            }
            axum::serve(listener, web::router(db, token)).await?;
            Ok(())
        })
        .run()
}
