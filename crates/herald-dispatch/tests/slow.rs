//! What the dispatcher logs, checked through a captured `tracing` subscriber: the slow-receiver
//! warning, and the failures a robust send catches.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Book, book};
use herald_dispatch::{PostSave, Signals, Timing};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Every `herald::*` event, with its target and level, as `field=value` pairs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<(String, tracing::Level, Event)>>>);

/// One event's fields.
type Event = Vec<(String, String)>;

struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Captured {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let metadata = event.metadata();
        if metadata.target().starts_with("herald::") {
            let mut fields = Fields(Vec::new());
            event.record(&mut fields);
            self.0.lock().unwrap().push((
                metadata.target().to_owned(),
                *metadata.level(),
                fields.0,
            ));
        }
    }
}

impl Captured {
    /// The slow-receiver warnings.
    fn events(&self) -> Vec<Event> {
        self.on("herald::slow")
    }

    fn on(&self, target: &str) -> Vec<Event> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _, _)| t == target)
            .map(|(_, _, fields)| fields.clone())
            .collect()
    }
}

fn field<'a>(event: &'a [(String, String)], name: &str) -> &'a str {
    &event
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no field {name}"))
        .1
}

fn with_capture(f: impl FnOnce()) -> Captured {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry().with(captured.clone());
    tracing::subscriber::with_default(subscriber, f);
    captured
}

/// A receiver that is slow by construction: it takes at least `d`.
fn takes(d: Duration) -> impl Fn(&PostSave<'_, Book>) -> herald_dispatch::Result + Send + Sync {
    move |_e| {
        std::thread::sleep(d);
        Ok(())
    }
}

#[test]
fn a_slow_receiver_is_named_in_a_warning_and_a_fast_one_is_not() {
    let signals = Signals::builder()
        .slow_threshold(Duration::from_millis(20))
        .build();
    let _fast = signals
        .post_save::<Book>()
        .receiver(|_e: &PostSave<'_, Book>| Ok(()))
        .name("fast_one")
        .connect();
    let _slow = signals
        .post_save::<Book>()
        .receiver(takes(Duration::from_millis(25)))
        .name("reindex_everything")
        .connect();

    let captured = with_capture(|| {
        signals
            .post_save::<Book>()
            .send(&mut PostSave::new(&book(1, "Dune"), true))
            .unwrap();
    });
    let events = captured.events();
    assert_eq!(
        events.len(),
        1,
        "only the slow receiver is reported: {events:?}"
    );
    let event = &events[0];
    assert_eq!(field(event, "receiver"), "reindex_everything");
    assert_eq!(field(event, "signal"), "post_save");
    assert_eq!(field(event, "sender"), "Book");
    let elapsed: f64 = field(event, "elapsed_ms").parse().unwrap();
    assert!(
        elapsed >= 25.0,
        "the reported time is the receiver's: {elapsed}"
    );
    assert!(field(event, "message").contains("reindex_everything"));
}

#[test]
fn no_warning_when_timing_is_off() {
    let signals = Signals::builder()
        .slow_threshold(Duration::from_millis(1))
        .timing(Timing::Off)
        .build();
    let _slow = signals
        .post_save::<Book>()
        .connect(takes(Duration::from_millis(2)));
    let captured = with_capture(|| {
        signals
            .post_save::<Book>()
            .send(&mut PostSave::new(&book(1, "Dune"), true))
            .unwrap();
    });
    assert!(captured.events().is_empty());
}

#[test]
fn the_threshold_can_change_while_running() {
    let signals = Signals::builder()
        .slow_threshold(Duration::from_secs(60))
        .build();
    let _r = signals
        .post_save::<Book>()
        .receiver(takes(Duration::from_millis(2)))
        .name("r")
        .connect();
    let send = || {
        signals
            .post_save::<Book>()
            .send(&mut PostSave::new(&book(1, "Dune"), true))
            .unwrap()
    };
    assert!(with_capture(send).events().is_empty());
    signals.set_slow_threshold(Duration::from_millis(1));
    assert_eq!(with_capture(send).events().len(), 1);
}

#[test]
fn a_robust_send_logs_every_failure_at_error_naming_receiver_signal_sender_and_key() {
    let signals = Signals::new();
    let _fails = signals
        .post_save::<Book>()
        .receiver(|_e: &PostSave<'_, Book>| Err(herald_dispatch::Error::msg("mail server down")))
        .name("notify")
        .connect();
    let _panics = signals
        .post_save::<Book>()
        .receiver(|_e: &PostSave<'_, Book>| panic!("receiver bug"))
        .name("recount")
        .connect();
    let mut errors = Vec::new();
    let captured = with_capture(|| {
        errors = signals
            .post_save::<Book>()
            .send_robust(&mut PostSave::new(&book(7, "Dune"), true));
    });
    assert_eq!(errors.len(), 2);
    let logged: Vec<(tracing::Level, Event)> = captured
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, _, _)| t == "herald::dispatch")
        .map(|(_, level, fields)| (*level, fields.clone()))
        .collect();
    assert_eq!(logged.len(), 2, "one event per failure: {logged:?}");
    for ((level, event), (receiver, why)) in logged
        .iter()
        .zip([("notify", "mail server down"), ("recount", "receiver bug")])
    {
        assert_eq!(*level, tracing::Level::ERROR);
        assert_eq!(field(event, "receiver"), receiver);
        assert_eq!(field(event, "signal"), "post_save");
        assert_eq!(field(event, "sender"), "Book");
        assert_eq!(field(event, "key"), "7");
        assert!(field(event, "message").contains(why), "{event:?}");
    }

    // A plain send returns its failure to the caller and logs nothing.
    let captured = with_capture(|| {
        let _ = signals
            .post_save::<Book>()
            .send(&mut PostSave::new(&book(8, "Dune"), true));
    });
    assert!(captured.on("herald::dispatch").is_empty());
}
