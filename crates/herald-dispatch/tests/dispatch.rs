//! The dispatcher's behaviour, ported from Django's dispatcher tests into Herald's terms.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Author, Book, Log, author, book};
use herald_dispatch::{
    AnyModel, Cause, Error, Phase, PostDelete, PostSave, PostSaveAny, PreDelete, PreSave, Signal,
    Signals, Timing,
};

fn post_save(signals: &Signals, instance: &Book) -> Result<(), herald_dispatch::DispatchError> {
    signals
        .post_save::<Book>()
        .send(&mut PostSave::new(instance, true))
}

fn recorder(
    log: &Log,
    label: &'static str,
) -> impl Fn(&PostSave<'_, Book>) -> herald_dispatch::Result + Send + Sync + 'static {
    let log = log.clone();
    move |_e: &PostSave<'_, Book>| {
        log.push(label);
        Ok(())
    }
}

#[test]
fn filtered_connect_send_disconnect() {
    let signals = Signals::new();
    let log = Log::default();
    let guard = signals.post_save::<Book>().connect(recorder(&log, "book"));

    post_save(&signals, &book(1, "Dune")).unwrap();
    assert_eq!(log.take(), ["book"]);

    assert!(guard.disconnect());
    post_save(&signals, &book(1, "Dune")).unwrap();
    assert!(log.take().is_empty());
    assert!(signals.receivers().is_empty());
}

#[test]
fn nothing_connected_sends_nothing() {
    let signals = Signals::new();
    assert!(!signals.post_save::<Book>().has_receivers());
    post_save(&signals, &book(1, "Dune")).unwrap();
    assert!(
        signals
            .post_save::<Book>()
            .send_robust(&mut PostSave::new(&book(1, "Dune"), true))
            .is_empty()
    );
}

#[test]
fn a_receiver_for_every_sender_receives_every_sender() {
    let signals = Signals::new();
    let log = Log::default();
    let seen = log.clone();
    let _g = signals.post_save_any().connect(move |e: &PostSaveAny<'_>| {
        seen.push(format!(
            "{}:{}",
            e.instance.model_name(),
            e.instance.pk_string().unwrap()
        ));
        Ok(())
    });

    post_save(&signals, &book(1, "Dune")).unwrap();
    signals
        .post_save::<Author>()
        .send(&mut PostSave::new(&author(7), false))
        .unwrap();
    assert_eq!(log.take(), ["Book:1", "Author:7"]);
}

#[test]
fn a_receiver_for_one_model_does_not_receive_another() {
    let signals = Signals::new();
    let log = Log::default();
    let _g = signals.post_save::<Book>().connect(recorder(&log, "book"));

    signals
        .post_save::<Author>()
        .send(&mut PostSave::new(&author(1), true))
        .unwrap();
    signals
        .pre_save::<Book>()
        .send(&mut PreSave::new(&mut book(1, "Dune")))
        .unwrap();
    assert!(
        log.take().is_empty(),
        "neither another sender nor another signal reaches it"
    );
    assert!(!signals.post_save::<Author>().has_receivers());
    assert!(signals.post_save::<Book>().has_receivers());
}

static SIX_TIMES: AtomicUsize = AtomicUsize::new(0);
fn counted(_e: &PostSave<'_, Book>) -> herald_dispatch::Result {
    SIX_TIMES.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[test]
fn connecting_the_same_receiver_six_times_runs_it_once() {
    let signals = Signals::new();
    let mut guards: Vec<_> = (0..6)
        .map(|_| signals.post_save::<Book>().connect(counted))
        .collect();
    assert!(!guards[0].is_duplicate());
    assert!(
        guards[1..]
            .iter()
            .all(|g| g.is_duplicate() && g.id() == guards[0].id())
    );

    post_save(&signals, &book(1, "Dune")).unwrap();
    assert_eq!(SIX_TIMES.load(Ordering::SeqCst), 1);
    assert_eq!(signals.receivers().len(), 1);

    let duplicates = guards.split_off(1);
    drop(duplicates);
    assert_eq!(
        signals.receivers().len(),
        1,
        "dropping duplicates leaves the first connected"
    );
}

#[test]
fn capturing_closures_are_distinct_receivers() {
    let signals = Signals::new();
    let log = Log::default();
    let _a = signals.post_save::<Book>().connect(recorder(&log, "a"));
    let _b = signals.post_save::<Book>().connect(recorder(&log, "b"));
    post_save(&signals, &book(1, "Dune")).unwrap();
    assert_eq!(log.take(), ["a", "b"]);
}

#[test]
fn two_receivers_with_one_dispatch_uid_keep_the_first_and_disconnect_by_uid() {
    let signals = Signals::new();
    let log = Log::default();
    let first = signals
        .post_save::<Book>()
        .receiver(recorder(&log, "first"))
        .dispatch_uid("uid")
        .connect();
    let second = signals
        .post_save::<Book>()
        .receiver(recorder(&log, "second"))
        .dispatch_uid("uid")
        .connect();
    assert!(second.is_duplicate());
    assert_eq!(second.id(), first.id());

    post_save(&signals, &book(1, "Dune")).unwrap();
    assert_eq!(log.take(), ["first"]);

    assert!(signals.post_save::<Book>().disconnect_uid("uid"));
    assert!(!signals.post_save::<Book>().disconnect_uid("uid"));
    post_save(&signals, &book(1, "Dune")).unwrap();
    assert!(log.take().is_empty());
    assert!(!first.disconnect(), "already removed by uid");
}

#[test]
fn robust_send_returns_the_failing_receivers_error_and_runs_the_others() {
    let signals = Signals::new();
    let log = Log::default();
    let _a = signals
        .post_save::<Book>()
        .connect(recorder(&log, "before"));
    let _f = signals
        .post_save::<Book>()
        .receiver(|_e: &PostSave<'_, Book>| Err(Error::msg("index is down")))
        .name("reindex")
        .connect();
    let _p = signals
        .post_save::<Book>()
        .receiver(|_e: &PostSave<'_, Book>| panic!("boom"))
        .name("explode")
        .connect();
    let _b = signals.post_save::<Book>().connect(recorder(&log, "after"));

    let errors = signals
        .post_save::<Book>()
        .send_robust(&mut PostSave::new(&book(42, "Dune"), true));
    assert_eq!(log.take(), ["before", "after"]);
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0].receiver().name(), "reindex");
    assert_eq!(errors[0].key(), Some("42"));
    assert_eq!(
        errors[0].to_string(),
        "post_save receiver `reindex` for Book (pk 42) failed: index is down"
    );
    assert!(matches!(errors[0].cause(), Cause::Failed(_)));
    assert!(errors[1].panicked());
    assert_eq!(
        errors[1].to_string(),
        "post_save receiver `explode` for Book (pk 42) panicked: boom"
    );
}

#[test]
fn plain_send_stops_at_the_first_error() {
    let signals = Signals::new();
    let log = Log::default();
    let _f = signals
        .post_save::<Book>()
        .receiver(|_e: &PostSave<'_, Book>| Err(Error::msg("no")))
        .name("refuse")
        .connect();
    let _after = signals.post_save::<Book>().connect(recorder(&log, "after"));

    let error = post_save(&signals, &book(1, "Dune")).unwrap_err();
    assert_eq!(error.receiver().name(), "refuse");
    assert!(
        log.take().is_empty(),
        "the receiver after the failure did not run"
    );
    let stats = signals.receiver(error.receiver().id()).unwrap().stats();
    assert_eq!((stats.calls, stats.errors), (1, 1));
}

#[test]
fn a_panicking_receiver_is_an_error_naming_it_not_an_unwind() {
    let signals = Signals::new();
    let _p = signals
        .pre_save::<Book>()
        .receiver(|e: &mut PreSave<'_, Book>| {
            let parts: Vec<&str> = e.instance.title.split(':').collect();
            e.instance.slug = parts[1].to_owned();
            Ok(())
        })
        .name("fill_slug")
        .connect();
    let error = signals
        .pre_save::<Book>()
        .send(&mut PreSave::new(&mut Book::default()))
        .unwrap_err();
    assert!(error.panicked());
    assert_eq!(error.key(), None, "an unsaved instance has no key");
    assert_eq!(
        error.to_string(),
        "pre_save receiver `fill_slug` for Book panicked: index out of bounds: the len is 1 but the index is 1"
    );
    let stats = signals.receiver(error.receiver().id()).unwrap().stats();
    assert_eq!((stats.errors, stats.panics), (1, 1));
}

#[test]
fn disconnect_reports_true_then_false() {
    let signals = Signals::new();
    let log = Log::default();
    let guard = signals.post_save::<Book>().connect(recorder(&log, "x"));
    let id = guard.id();
    guard.keep();
    assert!(signals.disconnect(id));
    assert!(!signals.disconnect(id));

    let guard = signals.post_save::<Book>().connect(recorder(&log, "y"));
    assert!(guard.disconnect());
}

#[test]
fn dropping_the_guard_disconnects() {
    let signals = Signals::new();
    let log = Log::default();
    {
        let _guard = signals
            .post_save::<Book>()
            .connect(recorder(&log, "scoped"));
        post_save(&signals, &book(1, "Dune")).unwrap();
    }
    post_save(&signals, &book(1, "Dune")).unwrap();
    assert_eq!(log.take(), ["scoped"]);
    assert!(!signals.post_save::<Book>().has_receivers());
}

#[test]
fn a_guard_outliving_its_registry_disconnects_nothing() {
    let signals = Signals::new();
    let guard = signals
        .post_save::<Book>()
        .connect(recorder(&Log::default(), "x"));
    drop(signals);
    assert!(!guard.disconnect());
}

#[test]
fn a_receiver_that_disconnects_itself_does_not_disturb_the_dispatch_under_way() {
    let signals = Signals::new();
    let log = Log::default();
    let own_id = Arc::new(std::sync::OnceLock::new());
    let registry = signals.clone();
    let (id_cell, seen) = (own_id.clone(), log.clone());
    let once = signals
        .post_save::<Book>()
        .connect(move |_e: &PostSave<'_, Book>| {
            seen.push("once");
            let id = *id_cell.get().expect("set right after connect");
            assert!(registry.disconnect(id), "it removes itself while running");
            Ok(())
        });
    own_id.set(once.id()).unwrap();
    once.keep();
    let _after = signals.post_save::<Book>().connect(recorder(&log, "after"));

    post_save(&signals, &book(1, "Dune")).unwrap();
    assert_eq!(
        log.take(),
        ["once", "after"],
        "the receiver after it still ran"
    );
    post_save(&signals, &book(1, "Dune")).unwrap();
    assert_eq!(log.take(), ["after"]);
}

#[test]
fn a_receiver_that_disconnects_another_does_not_disturb_the_dispatch_under_way() {
    let signals = Signals::new();
    let log = Log::default();
    let victim = Arc::new(std::sync::OnceLock::new());
    let (registry, target, seen) = (signals.clone(), victim.clone(), log.clone());
    let _killer = signals
        .post_save::<Book>()
        .connect(move |_e: &PostSave<'_, Book>| {
            seen.push("killer");
            if let Some(id) = target.get() {
                registry.disconnect(*id);
            }
            Ok(())
        });
    let later = signals
        .post_save::<Book>()
        .connect(recorder(&log, "victim"));
    victim.set(later.id()).unwrap();
    later.keep();

    post_save(&signals, &book(1, "Dune")).unwrap();
    assert_eq!(
        log.take(),
        ["killer", "victim"],
        "this send had already begun"
    );
    post_save(&signals, &book(1, "Dune")).unwrap();
    assert_eq!(log.take(), ["killer"]);
}

#[test]
fn priority_then_registration_order_across_own_and_every_sender_receivers() {
    let signals = Signals::new();
    let log = Log::default();
    let any = |label: &'static str| {
        let log = log.clone();
        move |_e: &PostSaveAny<'_>| {
            log.push(label);
            Ok(())
        }
    };
    let _guard1 = signals
        .post_save::<Book>()
        .connect(recorder(&log, "book-0"));
    let _guard2 = signals.post_save_any().connect(any("any-0"));
    let _guard3 = signals
        .post_save::<Book>()
        .receiver(recorder(&log, "book-high"))
        .priority(10)
        .connect();
    let _guard4 = signals
        .post_save_any()
        .receiver(any("any-low"))
        .priority(-5)
        .connect();
    let _guard5 = signals
        .post_save::<Book>()
        .connect(recorder(&log, "book-0-later"));
    let _guard6 = signals
        .post_save_any()
        .receiver(any("any-high"))
        .priority(10)
        .connect();

    post_save(&signals, &book(1, "Dune")).unwrap();
    assert_eq!(
        log.take(),
        [
            "book-high",
            "any-high",
            "book-0",
            "any-0",
            "book-0-later",
            "any-low"
        ]
    );
}

#[test]
fn pre_save_receivers_change_the_instance_in_order() {
    let signals = Signals::new();
    let _slug = signals
        .pre_save::<Book>()
        .connect(|e: &mut PreSave<'_, Book>| {
            if e.instance.slug.is_empty() {
                e.instance.slug = e.instance.title.to_lowercase().replace(' ', "-");
            }
            Ok(())
        });
    let _any = signals
        .pre_save_any()
        .connect(|e: &mut PreSave<'_, dyn AnyModel>| {
            if let Some(book) = e.instance.downcast_mut::<Book>() {
                book.slug.push_str("-1");
            }
            Ok(())
        });
    let mut new = book(1, "The Left Hand of Darkness");
    signals
        .pre_save::<Book>()
        .send(&mut PreSave::new(&mut new))
        .unwrap();
    assert_eq!(new.slug, "the-left-hand-of-darkness-1");

    let mut kept = Book {
        slug: "given".into(),
        ..book(2, "Dune")
    };
    signals
        .pre_save::<Book>()
        .send(&mut PreSave::new(&mut kept))
        .unwrap();
    assert_eq!(kept.slug, "given-1");
}

#[test]
fn events_carry_created_raw_using_and_update_fields() {
    let signals = Signals::new();
    let log = Log::default();
    let seen = log.clone();
    let _g = signals
        .post_save::<Book>()
        .connect(move |e: &PostSave<'_, Book>| {
            seen.push(format!(
                "{} {} {} {:?}",
                e.created, e.raw, e.using, e.update_fields
            ));
            Ok(())
        });
    let fields = ["title"];
    let b = book(1, "Dune");
    signals
        .post_save::<Book>()
        .send(
            &mut PostSave::new(&b, false)
                .raw(true)
                .using("replica")
                .update_fields(Some(&fields)),
        )
        .unwrap();
    assert_eq!(log.take(), [r#"false true replica Some(["title"])"#]);
}

#[test]
fn delete_signals_see_the_key() {
    let signals = Signals::new();
    let log = Log::default();
    let (a, b) = (log.clone(), log.clone());
    let _pre = signals
        .pre_delete::<Book>()
        .connect(move |e: &PreDelete<'_, Book>| {
            a.push(format!("pre_delete {:?}", e.instance.id));
            Ok(())
        });
    let _post = signals
        .post_delete::<Book>()
        .connect(move |e: &PostDelete<'_, Book>| {
            b.push(format!("post_delete {:?}", e.instance.id));
            Ok(())
        });
    let doomed = book(5, "Dune");
    signals
        .pre_delete::<Book>()
        .send(&mut PreDelete::new(&doomed))
        .unwrap();
    signals
        .post_delete::<Book>()
        .send(&mut PostDelete::new(&doomed))
        .unwrap();
    assert_eq!(log.take(), ["pre_delete Some(5)", "post_delete Some(5)"]);
}

#[test]
fn on_commit_receivers_are_a_separate_phase() {
    let signals = Signals::new();
    let log = Log::default();
    let _now = signals
        .post_save::<Book>()
        .connect(recorder(&log, "in_transaction"));
    let later = signals
        .post_save::<Book>()
        .on_commit()
        .connect(recorder(&log, "on_commit"));
    assert_eq!(
        signals.receiver(later.id()).unwrap().info().phase(),
        Phase::OnCommit
    );

    post_save(&signals, &book(1, "Dune")).unwrap();
    assert_eq!(log.take(), ["in_transaction"]);
    signals
        .post_save::<Book>()
        .on_commit()
        .send(&mut PostSave::new(&book(1, "Dune"), true))
        .unwrap();
    assert_eq!(log.take(), ["on_commit"]);
}

#[test]
fn mixed_sync_and_async_receivers_run_in_one_order() {
    let signals = Signals::new();
    let log = Log::default();
    let _a = signals
        .post_save::<Book>()
        .connect(recorder(&log, "sync-1"));
    let seen = log.clone();
    let _b = signals.post_save::<Book>().connect_boxed(move |e| {
        let seen = seen.clone();
        Box::pin(async move {
            tokio::task::yield_now().await;
            seen.push(format!("async-{}", e.instance.id.unwrap()));
            Ok(())
        })
    });
    let _c = signals
        .post_save::<Book>()
        .connect(recorder(&log, "sync-2"));

    // From synchronous code: async receivers are driven to completion in their turn.
    post_save(&signals, &book(1, "Dune")).unwrap();
    assert_eq!(log.take(), ["sync-1", "async-1", "sync-2"]);

    // From async code: awaited in their turn.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let b = book(2, "Dune");
        signals
            .post_save::<Book>()
            .send_async(&mut PostSave::new(&b, true))
            .await
            .unwrap();
    });
    assert_eq!(log.take(), ["sync-1", "async-2", "sync-2"]);
}

#[tokio::test]
async fn an_async_receiver_error_names_it() {
    let signals = Signals::new();
    let _a = signals
        .post_save::<Book>()
        .receiver_async(async |_e: &PostSave<'_, Book>| Err(Error::msg("mail server refused")))
        .name("notify_author")
        .connect();
    let b = book(3, "Dune");
    let error = signals
        .post_save::<Book>()
        .send_async(&mut PostSave::new(&b, true))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "post_save receiver `notify_author` for Book (pk 3) failed: mail server refused"
    );
    assert!(
        signals
            .receiver(error.receiver().id())
            .unwrap()
            .info()
            .is_async()
    );
}

#[test]
fn receivers_are_listed_with_name_location_signal_sender_priority_and_phase() {
    let signals = Signals::new();
    let line = line!() + 1;
    let guard = signals.post_save::<Book>().connect(counted);
    let _named = signals
        .pre_save_any()
        .receiver(|_e: &mut PreSave<'_, dyn AnyModel>| Ok(()))
        .name("audit")
        .priority(3)
        .connect();

    let listed = signals.receivers();
    assert_eq!(listed.len(), 2);
    let first = listed[0].info();
    assert_eq!(first.id(), guard.id());
    assert_eq!(first.name(), "dispatch::counted");
    assert_eq!(first.short_name(), "counted");
    assert_eq!(
        (first.signal(), first.sender(), first.priority()),
        ("post_save", "Book", 0)
    );
    assert_eq!(first.phase(), Phase::Caller);
    assert!(
        first.location().file.ends_with("tests/dispatch.rs"),
        "{}",
        first.location()
    );
    assert_eq!(first.location().line, line);
    let second = listed[1].info();
    assert_eq!(
        (
            second.name(),
            second.signal(),
            second.sender(),
            second.priority()
        ),
        ("audit", "pre_save", "*", 3)
    );
    assert_eq!(second.phase(), Phase::Caller);
}

#[test]
fn each_phase_is_a_receiver_list_of_its_own() {
    let signals = Signals::new();
    let log = Log::default();
    let _caller = signals
        .post_save::<Book>()
        .connect(recorder(&log, "caller"));
    let _in_tx = signals
        .post_save::<Book>()
        .in_transaction()
        .connect(recorder(&log, "in_transaction"));
    let _pre_in_tx = signals
        .pre_save::<Book>()
        .in_transaction()
        .connect(|_e: &mut PreSave<'_, Book>| Ok(()));
    let b = book(1, "Dune");

    signals
        .post_save::<Book>()
        .in_transaction()
        .send(&mut PostSave::new(&b, true))
        .unwrap();
    assert_eq!(log.take(), ["in_transaction"]);
    post_save(&signals, &b).unwrap();
    assert_eq!(log.take(), ["caller"]);
    assert!(!signals.post_save::<Book>().on_commit().has_receivers());

    let phases: Vec<(&str, Phase)> = signals
        .receivers()
        .iter()
        .map(|r| (r.info().signal(), r.info().phase()))
        .collect();
    assert_eq!(
        phases,
        [
            ("post_save", Phase::Caller),
            ("post_save", Phase::InTransaction),
            ("pre_save", Phase::InTransaction)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_send_runs_blocking_receivers_through_the_blocking_runner() {
    static RAN_THROUGH_RUNNER: std::sync::atomic::AtomicUsize =
        std::sync::atomic::AtomicUsize::new(0);
    fn runner(f: &mut dyn FnMut()) {
        RAN_THROUGH_RUNNER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::task::block_in_place(f);
    }
    let signals = Signals::new();
    assert!(signals.set_blocking_runner(runner));
    let log = Log::default();
    let _plain = signals.post_save::<Book>().connect(recorder(&log, "plain"));
    let _blocking = signals
        .post_save::<Book>()
        .receiver(recorder(&log, "blocking"))
        .blocking()
        .connect();
    let b = book(1, "Dune");

    signals
        .post_save::<Book>()
        .send_async(&mut PostSave::new(&b, true))
        .await
        .unwrap();

    assert_eq!(log.take(), ["plain", "blocking"]);
    assert_eq!(
        RAN_THROUGH_RUNNER.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "only the receiver declared blocking goes through the runner"
    );
    assert!(signals.receivers().iter().any(|r| r.info().is_blocking()));
}

#[tokio::test]
async fn an_async_pre_save_receiver_changes_the_instance_and_the_send_is_a_send_future() {
    async fn fill_slug(e: &mut PreSave<'_, Book>) -> herald_dispatch::Result {
        tokio::task::yield_now().await;
        e.instance.slug = e.instance.title.to_lowercase();
        Ok(())
    }
    fn send_future<F: std::future::Future + Send>(f: F) -> F {
        f
    }
    let signals = Signals::new();
    let _slug = signals.pre_save::<Book>().connect_async(fill_slug);
    let mut b = book(1, "Dune");
    send_future(
        signals
            .pre_save::<Book>()
            .send_async(&mut PreSave::new(&mut b)),
    )
    .await
    .unwrap();
    assert_eq!(b.slug, "dune");
}

#[test]
fn statistics_record_calls_while_timing_is_on_and_nothing_while_off() {
    let signals = Signals::new();
    let guard = signals
        .post_save::<Book>()
        .connect(recorder(&Log::default(), "x"));
    for id in 0..5 {
        post_save(&signals, &book(id, "Dune")).unwrap();
    }
    let stats = signals.receiver(guard.id()).unwrap().stats();
    assert_eq!((stats.calls, stats.errors), (5, 0));
    assert!(stats.max >= stats.p50() && stats.p99() <= stats.max);
    assert_eq!(stats.buckets().map(|(_, n)| n).sum::<u64>(), 5);

    signals.set_timing(Timing::Off);
    post_save(&signals, &book(9, "Dune")).unwrap();
    let stats = signals.receiver(guard.id()).unwrap().stats();
    assert_eq!(
        stats.calls, 5,
        "nothing recorded per call while timing is off"
    );
}

#[test]
fn custom_signals_send_to_their_receivers() {
    #[derive(Debug)]
    struct OrderPlaced {
        total_cents: i64,
    }
    let placed: Signal<OrderPlaced> = Signal::new("order_placed");
    let log = Log::default();
    let seen = log.clone();
    let _a = placed.connect(move |e: &OrderPlaced| {
        seen.push(format!("total {}", e.total_cents));
        Ok(())
    });
    let _b = placed
        .receiver(|e: &OrderPlaced| {
            if e.total_cents < 0 {
                Err(Error::msg("negative"))
            } else {
                Ok(())
            }
        })
        .name("check_total")
        .connect();

    placed.send(&OrderPlaced { total_cents: 900 }).unwrap();
    let errors = placed.send_robust(&OrderPlaced { total_cents: -1 });
    assert_eq!(log.take(), ["total 900", "total -1"]);
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].to_string(),
        "order_placed receiver `check_total` for - failed: negative"
    );
    let info = placed.receivers()[1].info().clone();
    assert_eq!((info.signal(), info.sender()), ("order_placed", "-"));
}

#[test]
fn metrics_are_exported_through_the_metrics_facade() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let signals = Signals::new();
        let _ok = signals
            .post_save::<Book>()
            .receiver(|_e: &PostSave<'_, Book>| Ok(()))
            .name("ok")
            .connect();
        let _bad = signals
            .post_save::<Book>()
            .receiver(|_e: &PostSave<'_, Book>| Err(Error::msg("x")))
            .name("bad")
            .connect();
        for id in 0..3 {
            let _ = signals
                .post_save::<Book>()
                .send_robust(&mut PostSave::new(&book(id, "Dune"), true));
        }
    });
    let snapshot = snapshotter.snapshot().into_vec();
    let value = |metric: &str, receiver: &str| {
        snapshot
            .iter()
            .find(|(key, _, _, _)| {
                key.key().name() == metric
                    && key
                        .key()
                        .labels()
                        .any(|l| l.key() == "receiver" && l.value() == receiver)
            })
            .map(|(_, _, _, value)| value)
    };
    assert_eq!(
        value("herald_receiver_calls_total", "ok"),
        Some(&DebugValue::Counter(3))
    );
    assert_eq!(
        value("herald_receiver_errors_total", "bad"),
        Some(&DebugValue::Counter(3))
    );
    match value("herald_receiver_duration_seconds", "ok") {
        Some(DebugValue::Histogram(samples)) => assert_eq!(samples.len(), 3),
        other => panic!("expected a histogram, got {other:?}"),
    }
}
