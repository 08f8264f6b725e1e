//! A disconnected receiver is freed (its closure and what the closure captured are dropped) once
//! no send still uses it, so memory stays bounded under connect/disconnect churn.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
#![cfg(target_os = "linux")] // elsewhere replaced lists are kept until the registry drops

mod common;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Book, book};
use herald_dispatch::{PostSave, Signal, Signals};

/// A value each receiver captures: its strong count is 1 + the receivers still alive.
fn token() -> Arc<()> {
    Arc::new(())
}

fn capturing(
    token: &Arc<()>,
) -> impl Fn(&PostSave<'_, Book>) -> herald_dispatch::Result + Send + Sync + 'static {
    let token = token.clone();
    move |_e: &PostSave<'_, Book>| {
        let _held = &token;
        Ok(())
    }
}

/// Makes changes that replace nothing, one after another, until `token` is held by nobody else:
/// each change frees the replaced lists if no thread is reading then (the other tests of this file
/// send on their own threads meanwhile). Fails if that never happens.
fn settle(signals: &Signals, token: &Arc<()>) {
    for _ in 0..100_000 {
        if Arc::strong_count(token) == 1 {
            return;
        }
        drop(
            signals
                .post_save::<Book>()
                .connect(|_e: &PostSave<'_, Book>| Ok(())),
        );
        std::thread::yield_now();
    }
    panic!(
        "{} closures still alive after their receivers were disconnected",
        Arc::strong_count(token) - 1
    );
}

#[test]
fn a_thousand_connect_disconnect_cycles_keep_no_closure_alive() {
    let signals = Signals::new();
    let token = token();
    let instance = book(1, "Dune");
    for _ in 0..1_000 {
        let connection = signals.post_save::<Book>().connect(capturing(&token));
        signals
            .post_save::<Book>()
            .send(&mut PostSave::new(&instance, true))
            .unwrap();
        assert!(connection.disconnect());
    }
    settle(&signals, &token);
    assert_eq!(Arc::strong_count(&token), 1);
}

#[test]
fn churn_beside_a_thread_that_sends_without_pause_frees_every_closure() {
    let signals = Arc::new(Signals::new());
    let stop = Arc::new(AtomicBool::new(false));
    let _steady = signals
        .post_save::<Book>()
        .connect(|_e: &PostSave<'_, Book>| Ok(()));
    let sender = {
        let (signals, stop) = (signals.clone(), stop.clone());
        std::thread::spawn(move || {
            let instance = book(2, "Emma");
            let mut sends = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                signals
                    .post_save::<Book>()
                    .send(&mut PostSave::new(&instance, true))
                    .unwrap();
                sends += 1;
            }
            sends
        })
    };
    let token = token();
    for _ in 0..1_000 {
        drop(signals.post_save::<Book>().connect(capturing(&token)));
    }
    stop.store(true, Ordering::Relaxed);
    assert!(sender.join().unwrap() > 0);
    settle(&signals, &token);
}

#[test]
fn a_receiver_that_disconnects_itself_finishes_its_call_and_is_then_freed() {
    let signals = Signals::new();
    let token = token();
    let slot: Arc<std::sync::Mutex<Option<herald_dispatch::Connection>>> = Arc::default();
    let connection = {
        let (slot, token) = (slot.clone(), token.clone());
        signals
            .post_save::<Book>()
            .connect(move |_e: &PostSave<'_, Book>| {
                // Dropping its own guard disconnects it while the send still walks its list.
                drop(slot.lock().unwrap().take());
                assert!(
                    Arc::strong_count(&token) >= 2,
                    "still alive during its own call"
                );
                Ok(())
            })
    };
    *slot.lock().unwrap() = Some(connection);
    let instance = book(3, "Ulysses");
    signals
        .post_save::<Book>()
        .send(&mut PostSave::new(&instance, true))
        .unwrap();
    assert!(!signals.post_save::<Book>().has_receivers());
    settle(&signals, &token);
}

#[tokio::test]
async fn an_awaited_send_keeps_its_receivers_until_it_ends_then_they_are_freed() {
    let signals = Signals::new();
    let token = token();
    let gate = Arc::new(tokio::sync::Notify::new());
    let connection = {
        let (gate, token) = (gate.clone(), token.clone());
        signals
            .post_save::<Book>()
            .connect_boxed(move |_e: &PostSave<'_, Book>| {
                let (gate, token) = (gate.clone(), token.clone());
                Box::pin(async move {
                    gate.notified().await;
                    drop(token);
                    Ok(())
                })
            })
    };
    let instance = book(4, "Middlemarch");
    let mut event = PostSave::new(&instance, true);
    let signal = signals.post_save::<Book>();
    let mut send = std::pin::pin!(signal.send_async(&mut event));
    // Started, and waiting inside the receiver.
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(send.as_mut().poll(&mut context).is_pending());
    assert!(connection.disconnect());
    drop(
        signals
            .post_save::<Book>()
            .connect(|_e: &PostSave<'_, Book>| Ok(())),
    );
    assert!(
        Arc::strong_count(&token) >= 2,
        "the send in flight still holds it"
    );
    gate.notify_one();
    send.await.unwrap();
    settle(&signals, &token);
}

#[test]
fn a_custom_signal_frees_its_disconnected_receivers() {
    let signal: Signal<u32> = Signal::new("counted");
    let token = token();
    for n in 0..1_000 {
        let held = token.clone();
        let connection = signal.connect(move |_n: &u32| {
            let _held = &held;
            Ok(())
        });
        signal.send(&n).unwrap();
        drop(connection);
    }
    for _ in 0..100_000 {
        if Arc::strong_count(&token) == 1 {
            break;
        }
        drop(signal.connect(|_n: &u32| Ok(())));
        std::thread::yield_now();
    }
    assert_eq!(Arc::strong_count(&token), 1, "every closure dropped");
}
