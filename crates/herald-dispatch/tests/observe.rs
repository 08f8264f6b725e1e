//! Observers hear about receiver calls in their own scope only.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Book, book};
use herald_dispatch::observe::{self, Observer};
use herald_dispatch::{PostSave, ReceiverInfo, Signals, Timing};
use tokio::sync::Barrier;

#[derive(Default)]
struct Heard(Mutex<Vec<String>>);

impl Observer for Heard {
    fn receiver(
        &self,
        receiver: &ReceiverInfo,
        sender: &'static str,
        _elapsed: Duration,
        failed: bool,
        slow: bool,
    ) {
        self.0.lock().unwrap().push(format!(
            "{} {sender} failed={failed} slow={slow}",
            receiver.name()
        ));
    }
}

fn send(signals: &Signals, id: i64) {
    signals
        .post_save::<Book>()
        .send(&mut PostSave::new(&book(id, "Dune"), true))
        .unwrap();
}

#[test]
fn an_observer_hears_the_calls_of_its_own_task_only() {
    let signals = Signals::builder()
        .slow_threshold(Duration::from_secs(60))
        .build();
    let _r = signals
        .post_save::<Book>()
        .receiver(|_e: &PostSave<'_, Book>| Ok(()))
        .name("reindex")
        .connect();
    let heard = Arc::new(Heard::default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let barrier = Arc::new(Barrier::new(2));
    runtime.block_on(async {
        let watched = observe::observed(heard.clone(), {
            let (signals, barrier) = (signals.clone(), barrier.clone());
            async move {
                barrier.wait().await;
                send(&signals, 1);
                barrier.wait().await;
            }
        });
        let other = {
            let (signals, barrier) = (signals.clone(), barrier.clone());
            async move {
                barrier.wait().await;
                send(&signals, 2);
                barrier.wait().await;
            }
        };
        tokio::join!(watched, other);
    });
    assert_eq!(
        *heard.0.lock().unwrap(),
        ["reindex Book failed=false slow=false"]
    );
    assert!(observe::current().is_none(), "nothing stays installed");
}

#[test]
fn a_scope_installs_an_observer_for_a_closure_and_only_timed_calls_are_heard() {
    let signals = Signals::builder().slow_threshold(Duration::ZERO).build();
    let _r = signals
        .post_save::<Book>()
        .receiver(|_e: &PostSave<'_, Book>| Err(herald_dispatch::Error::msg("no")))
        .name("refuse")
        .connect();
    let heard = Arc::new(Heard::default());
    observe::scope(Some(heard.clone()), || {
        let _ = signals
            .post_save::<Book>()
            .send(&mut PostSave::new(&book(1, "Dune"), true));
        signals.set_timing(Timing::Off);
        let _ = signals
            .post_save::<Book>()
            .send(&mut PostSave::new(&book(2, "Dune"), true));
    });
    assert_eq!(
        *heard.0.lock().unwrap(),
        ["refuse Book failed=true slow=true"]
    );
}
