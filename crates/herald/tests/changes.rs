//! What an update changed (`previous`, `changed_fields`, `changes`) and conditional receivers
//! (`on_create`, `on_update`, `when_changed`), in every phase, on both backends.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Book, book, within};
use herald::Value;
use herald::dispatch::Error as ReceiverError;
use herald::dispatch::{AnyModel, PostSave};
use herald::prelude::*;
use herald::tasks::{Background, TaskContext, TaskOptions, TaskState, Worker};
use tokio::sync::mpsc;

/// What receivers saw, shared with the test.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn push(&self, entry: String) {
        self.0.lock().unwrap().push(entry);
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// `"created"`, or `"Dune 900->1200 [price_cents]"`: the typed previous value and the changes.
fn describe(e: &PostSave<'_, Book>) -> String {
    match (e.previous(), e.changed_fields()) {
        (Some(previous), Some(changed)) => format!(
            "{} {}->{} [{}]",
            e.instance.title,
            previous.price_cents,
            e.instance.price_cents,
            changed.join(",")
        ),
        (None, None) => format!("{} created={} no previous", e.instance.title, e.created),
        _ => "previous and changed_fields disagree".to_owned(),
    }
}

/// A caller-side `post_save` receiver that asks for changes and records [`describe`] of each
/// event in `seen`.
fn watch(db: &herald::Db, seen: &Seen) -> herald::dispatch::Connection {
    let seen = seen.clone();
    db.signals()
        .post_save::<Book>()
        .receiver(move |e: &PostSave<'_, Book>| {
            seen.push(describe(e));
            Ok(())
        })
        .changes()
        .connect()
}

backend_test!(
    every_phase_sees_typed_old_and_new_values_on_update_and_none_on_create,
    |db, backend| async move {
        let seen = Seen::default();
        let signals = db.signals();
        let s = seen.clone();
        let _caller = signals
            .post_save::<Book>()
            .receiver(move |e: &PostSave<'_, Book>| {
                s.push(format!("caller {}", describe(e)));
                Ok(())
            })
            .changes()
            .connect();
        let s = seen.clone();
        let _in_tx =
            signals
                .post_save::<Book>()
                .in_transaction()
                .connect(move |e: &PostSave<'_, Book>| {
                    s.push(format!("in_transaction {}", describe(e)));
                    Ok(())
                });
        let s = seen.clone();
        let _on_commit =
            signals
                .post_save::<Book>()
                .on_commit()
                .connect(move |e: &PostSave<'_, Book>| {
                    s.push(format!("on_commit {}", describe(e)));
                    Ok(())
                });

        let mut dune = book("Dune");
        db.save(&mut dune).await.unwrap();
        assert_eq!(
            seen.take(),
            [
                "in_transaction Dune created=true no previous",
                "caller Dune created=true no previous",
                "on_commit Dune created=true no previous",
            ],
            "{backend}: a create has no previous row"
        );

        dune.price_cents = 1200;
        db.save(&mut dune).await.unwrap();
        assert_eq!(
            seen.take(),
            [
                "in_transaction Dune 900->1200 [price_cents]",
                "caller Dune 900->1200 [price_cents]",
                "on_commit Dune 900->1200 [price_cents]",
            ],
            "{backend}: an update shows what changed, in every phase"
        );

        // Inside a transaction too: on_commit receivers get it after the COMMIT.
        let tx = db.begin().await.unwrap();
        dune.title = "Dune Messiah".into();
        tx.save(&mut dune).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            seen.take(),
            [
                "in_transaction Dune Messiah 1200->1200 [title]",
                "caller Dune Messiah 1200->1200 [title]",
                "on_commit Dune Messiah 1200->1200 [title]",
            ],
            "{backend}"
        );
    }
);

backend_test!(
    the_previous_row_is_what_the_database_held_not_the_callers_copy,
    |db, backend| async move {
        let mut dune = book("Dune");
        db.save(&mut dune).await.unwrap();
        // Another client changes the price behind this instance's back.
        let sql = match backend {
            "postgres" => "UPDATE books SET price_cents = 1500 WHERE id = $1",
            _ => "UPDATE books SET price_cents = 1500 WHERE id = ?1",
        };
        db.execute(sql, vec![Value::Int(dune.id.unwrap())])
            .await
            .unwrap();

        let seen = Seen::default();
        let _r = watch(&db, &seen);
        // The caller still holds 900 and saves 900: the row held 1500, so the price changed.
        db.save(&mut dune).await.unwrap();
        assert_eq!(seen.take(), ["Dune 1500->900 [price_cents]"], "{backend}");

        // Saving the same values again changes nothing.
        db.save(&mut dune).await.unwrap();
        assert_eq!(seen.take(), ["Dune 900->900 []"], "{backend}");
    }
);

backend_test!(
    save_fields_counts_only_the_fields_it_writes,
    |db, backend| async move {
        let mut dune = book("Dune");
        db.save(&mut dune).await.unwrap();
        let seen = Seen::default();
        let _r = watch(&db, &seen);
        dune.title = "Dune (new edition)".into();
        dune.price_cents = 1900;
        db.save_fields(&mut dune, &["title"]).await.unwrap();
        // The price differs from the row's, but was not written: it did not change.
        assert_eq!(
            seen.take(),
            ["Dune (new edition) 900->1900 [title]"],
            "{backend}"
        );
    }
);

backend_test!(
    nothing_is_read_when_no_receiver_asks,
    |db, backend| async move {
        let seen = Seen::default();
        let s = seen.clone();
        let _r = db
            .signals()
            .post_save::<Book>()
            .connect(move |e: &PostSave<'_, Book>| {
                s.push(describe(e));
                Ok(())
            });
        let mut dune = book("Dune");
        db.save(&mut dune).await.unwrap();
        dune.price_cents = 1;
        db.save(&mut dune).await.unwrap();
        assert_eq!(
            seen.take(),
            [
                "Dune created=true no previous",
                "Dune created=false no previous"
            ],
            "{backend}: no receiver asked for changes, so none were read"
        );
    }
);

backend_test!(
    receivers_of_every_model_get_the_changes_as_json,
    |db, backend| async move {
        let seen = Seen::default();
        let s = seen.clone();
        let _r = db
            .signals()
            .post_save_any()
            .receiver(move |e: &PostSave<'_, dyn AnyModel>| {
                s.push(format!("{:?}", e.changes()));
                Ok(())
            })
            .changes()
            .connect();
        let mut dune = book("Dune");
        db.save(&mut dune).await.unwrap();
        dune.price_cents = 1200;
        db.save(&mut dune).await.unwrap();
        let expected = serde_json::json!({ "price_cents": { "old": 900, "new": 1200 } });
        assert_eq!(
            seen.take(),
            ["None".to_owned(), format!("{:?}", Some(expected))],
            "{backend}"
        );
    }
);

backend_test!(
    bulk_update_gives_each_instance_its_own_previous_row,
    |db, backend| async move {
        let mut books = vec![book("a"), book("b")];
        db.bulk_create(&mut books).await.unwrap();
        let seen = Seen::default();
        let _r = watch(&db, &seen);
        books[0].price_cents = 100;
        books[1].price_cents = 200;
        db.bulk_update(&mut books, &["price_cents"]).await.unwrap();
        assert_eq!(
            seen.take(),
            ["a 900->100 [price_cents]", "b 900->200 [price_cents]"],
            "{backend}"
        );
    }
);

backend_test!(
    conditions_decide_which_writes_call_a_receiver,
    |db, backend| async move {
        let seen = Seen::default();
        let signals = db.signals();
        let s = seen.clone();
        let _created = signals
            .post_save::<Book>()
            .receiver(move |e: &PostSave<'_, Book>| {
                s.push(format!("on create: {}", e.instance.title));
                Ok(())
            })
            .on_create()
            .connect();
        let s = seen.clone();
        let _updated = signals
            .post_save::<Book>()
            .receiver(move |e: &PostSave<'_, Book>| {
                s.push(format!("on update: {}", e.instance.title));
                Ok(())
            })
            .on_update()
            .connect();
        let s = seen.clone();
        let priced = signals
            .post_save::<Book>()
            .in_transaction()
            .receiver(move |e: &PostSave<'_, Book>| {
                s.push(format!("price changed: {}", describe(e)));
                Ok(())
            })
            .when_changed(["price_cents"])
            .connect();

        let mut dune = book("Dune");
        db.save(&mut dune).await.unwrap();
        assert_eq!(seen.take(), ["on create: Dune"], "{backend}");

        dune.title = "Dune!".into();
        db.save(&mut dune).await.unwrap();
        assert_eq!(
            seen.take(),
            ["on update: Dune!"],
            "{backend}: the price did not change"
        );

        dune.price_cents = 1000;
        db.save(&mut dune).await.unwrap();
        assert_eq!(
            seen.take(),
            [
                "price changed: Dune! 900->1000 [price_cents]",
                "on update: Dune!"
            ],
            "{backend}"
        );

        // A skipped call is not a call: the receiver's statistics count the one it had.
        let calls = db
            .signals()
            .receivers()
            .into_iter()
            .find(|r| r.info().id() == priced.id())
            .map(|r| r.stats().calls);
        assert_eq!(calls, Some(1), "{backend}");
        assert_eq!(
            db.signals()
                .receivers()
                .into_iter()
                .find(|r| r.info().id() == priced.id())
                .and_then(|r| r.info().condition().map(ToString::to_string)),
            Some("when price_cents changed".to_owned()),
            "{backend}: listings show the condition"
        );
    }
);

backend_test!(
    a_background_receivers_condition_decides_the_enqueue_and_its_task_knows_what_changed,
    |db, backend| async move {
        db.signals()
            .post_save::<Book>()
            .background("reprice", TaskOptions::default())
            .when_changed(["price_cents"])
            .connect()
            .keep();
        let mut dune = book("Dune");
        db.save(&mut dune).await.unwrap();
        dune.title = "Dune!".into();
        db.save(&mut dune).await.unwrap();
        let pending = db.tasks().list(TaskState::Available, 10).await.unwrap();
        assert!(
            pending.is_empty(),
            "{backend}: neither the create nor the title change enqueued: {pending:?}"
        );

        dune.price_cents = 1300;
        db.save(&mut dune).await.unwrap();
        let pending = db.tasks().list(TaskState::Available, 10).await.unwrap();
        assert_eq!(pending.len(), 1, "{backend}: the price change enqueued");

        let (seen_tx, mut seen) = mpsc::unbounded_channel::<String>();
        let worker = Worker::new(db.clone())
            .poll_interval(Duration::from_millis(20))
            .model_task::<Book, _, _>("reprice", move |book: Book, ctx: TaskContext| {
                let seen = seen_tx.clone();
                async move {
                    let previous = ctx.previous::<Book>()?.map(|b| b.price_cents);
                    let line = format!(
                        "{} {:?}->{} {:?} {}",
                        book.title,
                        previous,
                        book.price_cents,
                        ctx.changed_fields(),
                        ctx.has_changed("price_cents"),
                    );
                    seen.send(line)
                        .map_err(|_| ReceiverError::msg("test ended"))?;
                    Ok(())
                }
            });
        let (stop, handle) = common::spawn_worker(worker);
        assert_eq!(
            within("the task", seen.recv()).await.unwrap(),
            "Dune! Some(900)->1300 Some([\"price_cents\"]) true",
            "{backend}"
        );
        stop.send(()).unwrap();
        handle.await.unwrap();
    }
);

#[test]
fn a_condition_naming_a_field_the_model_lacks_is_refused_at_connect() {
    let signals = herald::dispatch::Signals::new();
    let error = signals
        .post_save::<Book>()
        .receiver(|_: &PostSave<'_, Book>| Ok(()))
        .name("audit_price")
        .when_changed(["pricecents"])
        .try_connect()
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "receiver `audit_price` cannot be connected to post_save for Book: when_changed names \
         `pricecents`, which Book does not have (its fields: id, title, slug, body, price_cents)"
    );
    assert!(signals.receivers().is_empty(), "nothing was connected");

    let error = signals
        .pre_save::<Book>()
        .receiver(|_: &mut herald::dispatch::PreSave<'_, Book>| Ok(()))
        .name("early")
        .on_update()
        .try_connect()
        .unwrap_err();
    assert!(
        error.reason().contains("post_save receivers only"),
        "{error}"
    );

    let error = signals
        .post_save::<Book>()
        .receiver(|_: &PostSave<'_, Book>| Ok(()))
        .on_create()
        .when_changed(["title"])
        .try_connect()
        .unwrap_err();
    assert!(error.reason().contains("exclude each other"), "{error}");
}

#[test]
#[should_panic(expected = "when_changed names `pricecents`, which Book does not have")]
fn connect_panics_at_startup_on_a_condition_that_does_not_fit() {
    let signals = herald::dispatch::Signals::new();
    signals
        .post_save::<Book>()
        .background("reprice", TaskOptions::default())
        .when_changed(["pricecents"])
        .connect()
        .keep();
}

backend_test!(
    a_model_with_a_caller_set_key_is_created_then_updated_with_its_changes,
    |db, backend| async move {
        let seen = Seen::default();
        let s = seen.clone();
        let _r = db
            .signals()
            .post_save::<common::Edition>()
            .receiver(move |e: &PostSave<'_, common::Edition>| {
                let previous = e.previous().map(|p| p.copies);
                s.push(format!(
                    "created={} {previous:?}->{} {:?}",
                    e.created,
                    e.instance.copies,
                    e.changed_fields()
                ));
                Ok(())
            })
            .changes()
            .connect();
        let mut edition = common::Edition {
            isbn: "978-0441172719".into(),
            title: "Dune".into(),
            copies: 3,
        };
        // The key is set but matches no row: the save inserts, and there is no previous row.
        db.save(&mut edition).await.unwrap();
        edition.copies = 5;
        db.save(&mut edition).await.unwrap();
        assert_eq!(
            seen.take(),
            [
                "created=true None->3 None",
                "created=false Some(3)->5 Some([\"copies\"])"
            ],
            "{backend}"
        );
    }
);
