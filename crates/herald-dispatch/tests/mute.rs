//! Muting is scoped to a task or a thread, never global.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::Arc;

use common::{Author, Book, Log, author, book};
use herald_dispatch::{Mute, PostSave, Signals, mute_thread, muted, muted_by};
use tokio::sync::Barrier;

fn connect_logger(signals: &Signals, log: &Log) -> herald_dispatch::Connection {
    let log = log.clone();
    signals
        .post_save::<Book>()
        .connect(move |e: &PostSave<'_, Book>| {
            log.push(format!("book {}", e.instance.id.unwrap()));
            Ok(())
        })
}

fn save_book_now(signals: &Signals, id: i64) {
    let b = book(id, "Dune");
    signals
        .post_save::<Book>()
        .send(&mut PostSave::new(&b, true))
        .unwrap();
}

async fn save_book(signals: &Signals, id: i64) {
    let b = book(id, "Dune");
    signals
        .post_save::<Book>()
        .send_async(&mut PostSave::new(&b, true))
        .await
        .unwrap();
}

#[test]
fn muting_in_one_task_leaves_another_task_on_the_same_thread_untouched() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (signals, log) = (Signals::new(), Log::default());
    let _g = connect_logger(&signals, &log);
    let both_inside = Arc::new(Barrier::new(2));
    let both_sent = Arc::new(Barrier::new(2));

    runtime.block_on(async {
        let quiet = {
            let (signals, inside, sent) = (signals.clone(), both_inside.clone(), both_sent.clone());
            muted(async move {
                inside.wait().await;
                save_book(&signals, 1).await;
                sent.wait().await;
                save_book(&signals, 2).await;
            })
        };
        let loud = {
            let (signals, inside, sent) = (signals.clone(), both_inside.clone(), both_sent.clone());
            async move {
                inside.wait().await;
                save_book(&signals, 10).await;
                sent.wait().await;
                save_book(&signals, 20).await;
            }
        };
        // One thread, two interleaved tasks: the mute follows the task, not the thread.
        tokio::join!(quiet, loud);
    });
    assert_eq!(log.take(), ["book 10", "book 20"]);
}

#[test]
fn muting_in_one_task_leaves_another_task_on_another_thread_untouched() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let (signals, log) = (Signals::new(), Log::default());
    let _g = connect_logger(&signals, &log);
    let both_inside = Arc::new(Barrier::new(2));

    runtime.block_on(async {
        let quiet = tokio::spawn({
            let (signals, inside) = (signals.clone(), both_inside.clone());
            muted(async move {
                inside.wait().await;
                save_book_now(&signals, 1);
            })
        });
        let loud = tokio::spawn({
            let (signals, inside) = (signals.clone(), both_inside.clone());
            async move {
                inside.wait().await;
                save_book_now(&signals, 2);
            }
        });
        quiet.await.unwrap();
        loud.await.unwrap();
    });
    assert_eq!(log.take(), ["book 2"]);
}

#[test]
fn a_mute_can_target_one_signal_and_sender() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (signals, log) = (Signals::new(), Log::default());
    let _g = connect_logger(&signals, &log);
    let seen = log.clone();
    let _a = signals
        .post_save::<Author>()
        .connect(move |e: &PostSave<'_, Author>| {
            seen.push(format!("author {}", e.instance.id.unwrap()));
            Ok(())
        });

    runtime.block_on(muted_by(Mute::signal_for("post_save", "Book"), async {
        save_book(&signals, 1).await;
        let a = author(2);
        signals
            .post_save::<Author>()
            .send_async(&mut PostSave::new(&a, true))
            .await
            .unwrap();
    }));
    assert_eq!(log.take(), ["author 2"]);

    runtime.block_on(muted_by(Mute::signal("post_save"), async {
        save_book(&signals, 3).await;
    }));
    assert!(log.take().is_empty());
}

#[test]
fn a_mute_can_target_one_receiver_by_id_or_name() {
    let (signals, log) = (Signals::new(), Log::default());
    let first = connect_logger(&signals, &log);
    let seen = log.clone();
    let _second = signals
        .post_save::<Book>()
        .receiver(move |_e: &PostSave<'_, Book>| {
            seen.push("reindex");
            Ok(())
        })
        .name("reindex")
        .connect();
    let send = |id| {
        signals
            .post_save::<Book>()
            .send(&mut PostSave::new(&book(id, "Dune"), true))
            .unwrap()
    };

    {
        let _mute = mute_thread(Mute::Receiver(first.id()));
        send(1);
    }
    assert_eq!(log.take(), ["reindex"]);
    {
        let _mute = mute_thread(Mute::receiver_named("reindex"));
        send(2);
    }
    assert_eq!(log.take(), ["book 2"]);
    send(3);
    assert_eq!(
        log.take(),
        ["book 3", "reindex"],
        "mutes end with their scope"
    );
}

#[test]
fn a_thread_mute_does_not_reach_other_threads() {
    let (signals, log) = (Signals::new(), Log::default());
    let _g = connect_logger(&signals, &log);
    let _mute = mute_thread(Mute::All);
    signals
        .post_save::<Book>()
        .send(&mut PostSave::new(&book(1, "Dune"), true))
        .unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            signals
                .post_save::<Book>()
                .send(&mut PostSave::new(&book(2, "Dune"), true))
                .unwrap()
        });
    });
    assert_eq!(log.take(), ["book 2"]);
}

#[test]
fn muted_receivers_are_not_counted_as_called() {
    let (signals, log) = (Signals::new(), Log::default());
    let guard = connect_logger(&signals, &log);
    {
        let _mute = mute_thread(Mute::All);
        signals
            .post_save::<Book>()
            .send(&mut PostSave::new(&book(1, "Dune"), true))
            .unwrap();
    }
    assert_eq!(signals.receiver(guard.id()).unwrap().stats().calls, 0);
}
