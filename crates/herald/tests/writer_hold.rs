//! SQLite's one writer held by a slow job is reported (`herald::writer`), naming how long and how
//! many jobs waited, through a captured `tracing` subscriber (the writer is another thread, so the
//! subscriber is this test binary's global one).
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Book, book};
use herald::Store;
use herald::dispatch::PreSave;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// One event's fields, as `(field, value)` pairs.
type Event = Vec<(String, String)>;

/// Every `herald::writer` event.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<Event>>>);

struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Captured {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() == "herald::writer" {
            let mut fields = Fields(Vec::new());
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
    }
}

fn field(event: &[(String, String)], name: &str) -> String {
    event
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no field {name} in {event:?}"))
        .1
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_holds_the_writer_past_the_slow_threshold_is_reported() {
    let captured = Captured::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(captured.clone()))
        .unwrap();
    let target = common::sqlite("writer_hold");
    let db = target.open().await;
    // Margins wide enough that a light save on a loaded machine stays far below the threshold.
    db.signals().set_slow_threshold(Duration::from_millis(200));
    let _heavy =
        db.signals()
            .pre_save::<Book>()
            .in_transaction()
            .connect(|e: &mut PreSave<'_, Book>| {
                if e.instance.title == "heavy" {
                    // Heavy work inside the write's transaction, on the connection: it holds the
                    // writer (a caller-side receiver would delay only its own save).
                    std::thread::sleep(Duration::from_millis(300));
                }
                Ok(())
            });

    // The writer reports a job after answering it; the next job's answer comes after that report.
    // (Opening ran the migrations on the writer: not reported, since nothing could wait for them.)
    db.save(&mut book("light")).await.unwrap();
    db.save(&mut book("light again")).await.unwrap();
    let early = captured.0.lock().unwrap().clone();
    assert!(early.is_empty(), "a fast write is not reported: {early:?}");

    db.save(&mut book("heavy")).await.unwrap();
    db.save(&mut book("light, after")).await.unwrap();
    let events = captured.0.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    let held: f64 = field(&events[0], "held_ms").parse().unwrap();
    assert!(held >= 300.0, "held {held} ms");
    assert_eq!(field(&events[0], "long_holds"), "1");
    assert!(field(&events[0], "message").contains("background receivers"));
}
