//! Where each receiver runs: caller-side receivers on the task that called the write (a slow one
//! delays only its own write), `in_transaction` ones on the connection inside the transaction,
//! `on_commit` ones on the caller after the commit. Every wait is on an event, with a bound.
// A build with one backend leaves out the other's tests, and what only they use.
#![cfg_attr(
    not(all(feature = "sqlite", feature = "postgres")),
    allow(dead_code, unused_imports)
)]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Audit, Book, Log, book, titles, within};
use herald::dispatch::{Error as ReceiverError, PostDelete, PostSave, PreDelete, PreSave, muted};
use herald::tasks::{Background, TaskOptions};
use herald::{Error, EventConn, Store};
use tokio::sync::{mpsc, oneshot};

/// The name of the thread running now ("herald-..." for a connection thread).
fn thread_name() -> String {
    std::thread::current().name().unwrap_or("").to_owned()
}

backend_test!(
    a_receiver_waiting_in_one_save_does_not_stop_another_clients_save,
    |db, backend| async move {
        // The receiver of "slow" saves tells the test it started, then waits for the test.
        let (entered_tx, mut entered) = mpsc::unbounded_channel::<()>();
        let (release_tx, release) = tokio::sync::watch::channel(false);
        let _slow = db.signals().pre_save::<Book>().connect_boxed(move |e| {
            let (entered_tx, mut release) = (entered_tx.clone(), release.clone());
            Box::pin(async move {
                if e.instance.title == "slow" {
                    entered_tx.send(()).unwrap();
                    release.wait_for(|go| *go).await.unwrap();
                }
                Ok(())
            })
        });
        let slow = tokio::spawn({
            let db = db.clone();
            async move { db.save(&mut book("slow")).await }
        });
        within("the slow receiver to start", entered.recv()).await;

        // Another client's saves complete while the slow one waits in its receiver.
        for i in 0..3 {
            within(
                "another client's save",
                db.save(&mut book(&format!("fast {i}"))),
            )
            .await
            .unwrap();
        }
        assert!(!slow.is_finished(), "{backend}: the slow save still waits");
        assert_eq!(titles(&db).await, ["fast 0", "fast 1", "fast 2"]);

        release_tx.send(true).unwrap();
        within("the slow save", slow).await.unwrap().unwrap();
        assert_eq!(titles(&db).await, ["fast 0", "fast 1", "fast 2", "slow"]);
    }
);

/// One runtime worker: a receiver that blocked it without `block_in_place` would stop every other
/// task of the runtime, the test's own included.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_blocking_receiver_does_not_stall_the_runtimes_other_tasks() {
    let target = common::sqlite("blocking");
    let db = target.open().await;
    let (entered_tx, entered) = std::sync::mpsc::channel::<()>();
    let (release_tx, release) = std::sync::mpsc::channel::<()>();
    let release = std::sync::Mutex::new(release);
    let _blocking = db
        .signals()
        .post_save::<Book>()
        .receiver(move |e: &PostSave<'_, Book>| {
            if e.instance.title == "blocking" {
                entered_tx.send(())?;
                release.lock().unwrap().recv()?;
            }
            Ok(())
        })
        .blocking()
        .connect();
    let blocked = tokio::spawn({
        let db = db.clone();
        async move { db.save(&mut book("blocking")).await }
    });
    let entered = tokio::task::spawn_blocking(move || entered.recv()).await;
    entered.unwrap().unwrap();

    within(
        "a save beside the blocked receiver",
        db.save(&mut book("other")),
    )
    .await
    .unwrap();
    release_tx.send(()).unwrap();
    within("the blocked save", blocked).await.unwrap().unwrap();
    assert_eq!(titles(&db).await, ["blocking", "other"]);
    assert!(
        db.signals()
            .receivers()
            .iter()
            .any(|r| r.info().is_blocking())
    );
}

backend_test!(
    async_receivers_use_the_callers_timers_and_channels_in_every_phase,
    |db, backend| async move {
        let (seen_tx, mut seen) = mpsc::unbounded_channel::<String>();
        let tx = seen_tx.clone();
        let _pre = db.signals().pre_save::<Book>().connect_boxed(move |e| {
            let tx = tx.clone();
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                e.instance.slug = e.instance.title.to_lowercase();
                tx.send(format!("pre_save on {}", thread_name()))?;
                Ok(())
            })
        });
        let tx = seen_tx.clone();
        let _in_tx = db
            .signals()
            .post_save::<Book>()
            .in_transaction()
            .connect_boxed(move |e| {
                let tx = tx.clone();
                Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    tx.send(format!("in_transaction {}", e.instance.slug))?;
                    Ok(())
                })
            });
        let tx = seen_tx.clone();
        let _commit = db
            .signals()
            .post_save::<Book>()
            .on_commit()
            .connect_boxed(move |_e| {
                let tx = tx.clone();
                Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    tx.send(format!("on_commit on {}", thread_name()))?;
                    Ok(())
                })
            });
        let mut b = book("Dune");
        db.save(&mut b).await.unwrap();
        assert_eq!(
            b.slug, "dune",
            "{backend}: the async pre_save changed what was written"
        );
        assert_eq!(
            db.get::<Book>(b.id.unwrap()).await.unwrap().unwrap().slug,
            "dune"
        );
        // Every receiver ran before the save returned: what they sent is there already.
        let mut lines = Vec::new();
        while let Ok(line) = seen.try_recv() {
            lines.push(line);
        }
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            !lines[0].contains("herald-"),
            "the caller's task: {lines:?}"
        );
        assert_eq!(lines[1], "in_transaction dune");
        assert!(
            !lines[2].contains("herald-"),
            "the caller's task: {lines:?}"
        );
    }
);

backend_test!(
    a_muted_write_calls_no_receiver_of_any_phase,
    |db, backend| async move {
        let log = Log::default();
        let _pre = log.pre_save(&db, |e| format!("pre {}", e.instance.title));
        let _post = log.post_save(&db, |e| format!("post {}", e.instance.title));
        let _in_tx = log.in_transaction(&db, |e| format!("in_tx {}", e.instance.title));
        let _commit = log.on_commit(&db, |e| format!("commit {}", e.instance.title));
        let _index = db
            .signals()
            .post_save::<Book>()
            .background("index_book", TaskOptions::default())
            .connect();

        let mut b = book("quiet");
        muted(db.save(&mut b)).await.unwrap();
        let mut copies = vec![book("quiet 2"), book("quiet 3")];
        muted(db.bulk_create(&mut copies)).await.unwrap();
        muted(db.delete(&b)).await.unwrap();
        assert!(log.take().is_empty(), "{backend}");
        assert!(
            db.tasks()
                .list(herald::tasks::TaskState::Available, 10)
                .await
                .unwrap()
                .is_empty(),
            "a muted write enqueues no task"
        );

        db.save(&mut book("loud")).await.unwrap();
        assert_eq!(
            log.take(),
            ["pre loud", "in_tx loud", "post loud", "commit loud"]
        );
        assert_eq!(
            db.tasks()
                .list(herald::tasks::TaskState::Available, 10)
                .await
                .unwrap()
                .len(),
            1
        );
    }
);

backend_test!(
    e_conn_outside_in_transaction_is_an_error_naming_the_receiver_and_the_option,
    |db, backend| async move {
        let _veto = db
            .signals()
            .pre_save::<Book>()
            .receiver(|e: &mut PreSave<'_, Book>| {
                e.conn()?;
                Ok(())
            })
            .name("reads_in_pre_save")
            .connect();
        let error = db.save(&mut book("Dune")).await.unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("pre_save receiver `reads_in_pre_save` for Book failed: "),
            "{backend}: {text}"
        );
        assert!(
            text.contains("lent only to receivers declared `in_transaction`")
                && text.contains(".in_transaction()"),
            "{text}"
        );
        assert!(titles(&db).await.is_empty(), "a pre_save error vetoes");
    }
);

backend_test!(
    a_caller_side_post_save_failure_says_the_write_is_kept,
    |db, backend| async move {
        let _fails = db
            .signals()
            .post_save::<Book>()
            .receiver(|_e: &PostSave<'_, Book>| Err(ReceiverError::msg("mail server down")))
            .name("notify")
            .connect();
        let mut b = book("Dune");
        let error = db.save(&mut b).await.unwrap_err();
        assert!(
            matches!(
                &error,
                Error::AfterWrite {
                    committed: true,
                    ..
                }
            ),
            "{backend}: {error}"
        );
        assert_eq!(
            error.to_string(),
            "post_save receiver `notify` for Book (pk 1) failed: mail server down; the write \
         itself succeeded and was committed: it is kept (do not retry it)"
        );
        assert_eq!(error.as_receiver().unwrap().receiver().name(), "notify");
        assert_eq!(b.id, Some(1), "the instance got its key");
        assert_eq!(titles(&db).await, ["Dune"], "the write is kept");

        // Inside a transaction the caller decides: here, to roll back.
        let tx = db.begin().await.unwrap();
        let error = tx.save(&mut book("Emma")).await.unwrap_err();
        assert!(
            matches!(
                &error,
                Error::AfterWrite {
                    committed: false,
                    ..
                }
            ),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .ends_with("stands in the open transaction (roll the transaction back to undo it)")
        );
        tx.rollback().await.unwrap();
        assert_eq!(titles(&db).await, ["Dune"]);
    }
);

backend_test!(
    on_commit_receivers_run_on_the_caller_after_tx_commit_in_order,
    |db, backend| async move {
        let log = Log::default();
        let seen = log.clone();
        let _commit =
            db.signals()
                .post_save::<Book>()
                .on_commit()
                .connect(move |e: &PostSave<'_, Book>| {
                    seen.push(format!("{} on {}", e.instance.title, thread_name()));
                    Ok(())
                });
        let tx = db.begin().await.unwrap();
        for title in ["a", "b", "c"] {
            tx.save(&mut book(title)).await.unwrap();
        }
        assert!(
            log.take().is_empty(),
            "{backend}: nothing before the commit"
        );
        tx.commit().await.unwrap();
        let lines = log.take();
        assert_eq!(lines.len(), 3);
        for (line, title) in lines.iter().zip(["a", "b", "c"]) {
            assert!(line.starts_with(&format!("{title} on ")), "{lines:?}");
            assert!(!line.contains("herald-"), "on the caller's task: {lines:?}");
        }
    }
);

backend_test!(
    a_write_made_in_an_in_transaction_receiver_runs_its_receivers_there_and_its_on_commit_after,
    |db, backend| async move {
        let log = Log::default();
        // The audit row is written by an in_transaction receiver of Book, through the connection.
        let _audit =
            db.signals()
                .post_save::<Book>()
                .in_transaction()
                .connect(|e: &PostSave<'_, Book>| {
                    e.conn()?.save(&mut Audit {
                        id: None,
                        model: "Book".into(),
                        key: e.instance.id.unwrap().to_string(),
                        action: "saved".into(),
                    })?;
                    Ok(())
                });
        // Audit's own receivers: its caller-side ones run inline on the connection (there is no
        // other caller), its on_commit ones back on the original caller, after the commit.
        let seen = log.clone();
        let _audit_pre =
            db.signals()
                .pre_save::<Audit>()
                .connect(move |e: &mut PreSave<'_, Audit>| {
                    e.instance.action = format!("{} (checked)", e.instance.action);
                    seen.push(format!("audit pre_save on {}", thread_name()));
                    Ok(())
                });
        let seen = log.clone();
        let _audit_commit = db.signals().post_save::<Audit>().on_commit().connect(
            move |e: &PostSave<'_, Audit>| {
                seen.push(format!("audit on_commit {}", e.instance.action));
                Ok(())
            },
        );
        let _book_commit = log.on_commit(&db, |e| format!("book on_commit {}", e.instance.title));

        let tx = db.begin().await.unwrap();
        tx.save(&mut book("Dune")).await.unwrap();
        let before_commit = log.take();
        assert_eq!(before_commit.len(), 1, "{backend}: {before_commit:?}");
        assert!(
            before_commit[0].starts_with("audit pre_save on herald-"),
            "inline on the connection: {before_commit:?}"
        );
        tx.commit().await.unwrap();
        assert_eq!(
            log.take(),
            ["audit on_commit saved (checked)", "book on_commit Dune"],
            "the nested write's on_commit first: it was registered first"
        );
        let audit = db.all::<Audit>().await.unwrap();
        assert_eq!(audit.len(), 1);
        assert_eq!(audit[0].action, "saved (checked)");
    }
);

backend_test!(
    the_recursion_limit_guards_caller_side_saves_deletes_and_bulk_writes,
    |db, backend| async move {
        // A caller-side post_save that saves its instance again, and again.
        let again = db.clone();
        let saves = Arc::new(AtomicUsize::new(0));
        let counter = saves.clone();
        let guard = db.signals().post_save::<Book>().connect_boxed(move |e| {
            let (db, counter) = (again.clone(), counter.clone());
            let mut copy = e.instance.clone();
            Box::pin(async move {
                counter.fetch_add(1, Ordering::SeqCst);
                copy.price_cents += 1;
                db.save(&mut copy).await?;
                Ok(())
            })
        });
        let error = db.save(&mut book("Dune")).await.unwrap_err();
        assert!(
            error
                .to_string()
                .contains("nested 32 writes deep (the limit)"),
            "{backend}: {error}"
        );
        assert_eq!(saves.load(Ordering::SeqCst), 32);
        drop(guard);

        // A pre_delete that deletes its instance again.
        let again = db.clone();
        let guard = db.signals().pre_delete::<Book>().connect_boxed(move |e| {
            let (db, copy) = (again.clone(), e.instance.clone());
            Box::pin(async move {
                db.delete(&copy).await?;
                Ok(())
            })
        });
        let stored = db.all::<Book>().await.unwrap().remove(0);
        let error = db.delete(&stored).await.unwrap_err();
        assert!(
            error.to_string().contains("nested 32 writes deep"),
            "{error}"
        );
        assert_eq!(db.all::<Book>().await.unwrap().len(), 1, "nothing deleted");
        drop(guard);

        // A post_save of a bulk insert that bulk-inserts again.
        let again = db.clone();
        let _bulk = db.signals().post_save::<Book>().connect_boxed(move |e| {
            let (db, copy) = (again.clone(), e.instance.clone());
            Box::pin(async move {
                db.bulk_create(&mut [Book { id: None, ..copy }]).await?;
                Ok(())
            })
        });
        let error = db.bulk_create(&mut [book("bulk")]).await.unwrap_err();
        assert!(
            error.to_string().contains("nested 32 writes deep"),
            "{error}"
        );
    }
);

backend_test!(
    a_bulk_write_is_one_job_between_its_caller_side_receivers,
    |db, backend| async move {
        use herald::dispatch::ReceiverInfo;
        use herald::dispatch::observe::{self, Observer};
        use std::sync::Mutex;

        #[derive(Default)]
        struct Heard(Mutex<Vec<String>>, AtomicUsize);
        impl Observer for Heard {
            fn receiver(&self, r: &ReceiverInfo, _: &'static str, _: Duration, _: bool, _: bool) {
                self.0
                    .lock()
                    .unwrap()
                    .push(format!("{} {}", r.signal(), r.phase()));
            }
            fn store_job(&self, _elapsed: Duration) {
                self.1.fetch_add(1, Ordering::SeqCst);
            }
        }

        let log = Log::default();
        let _pre = log.pre_save(&db, |e| format!("pre {}", e.instance.title));
        let _in_tx = log.in_transaction(&db, |e| format!("in_tx {}", e.instance.title));
        let _post = log.post_save(&db, |e| format!("post {}", e.instance.title));
        let _pre_delete = db
            .signals()
            .pre_delete::<Book>()
            .connect(|_e: &PreDelete<'_, Book>| Ok(()));
        let _post_delete = db
            .signals()
            .post_delete::<Book>()
            .connect(|_e: &PostDelete<'_, Book>| Ok(()));
        let heard = Arc::new(Heard::default());
        let mut books = vec![book("a"), book("b")];
        observe::observed(heard.clone(), db.bulk_create(&mut books))
            .await
            .unwrap();
        assert_eq!(
            log.take(),
            ["pre a", "pre b", "in_tx a", "in_tx b", "post a", "post b"],
            "{backend}"
        );
        assert_eq!(heard.1.load(Ordering::SeqCst), 1, "one job");
        observe::observed(heard.clone(), db.delete_many(&books))
            .await
            .unwrap();
        assert_eq!(heard.1.load(Ordering::SeqCst), 2, "one job more");
        let phases = heard.0.lock().unwrap().clone();
        assert_eq!(
            phases,
            [
                "pre_save caller",
                "pre_save caller",
                "post_save in_transaction",
                "post_save in_transaction",
                "post_save caller",
                "post_save caller",
                "pre_delete caller",
                "pre_delete caller",
                "post_delete caller",
                "post_delete caller"
            ]
        );
    }
);

backend_test!(
    a_save_is_a_send_future_that_tokio_spawn_takes,
    |db, _backend| async move {
        let _slug =
            db.signals()
                .pre_save::<Book>()
                .connect_async(async |e: &mut PreSave<'_, Book>| {
                    tokio::task::yield_now().await;
                    e.instance.slug = "spawned".into();
                    Ok(())
                });
        let (done_tx, done) = oneshot::channel();
        let spawned = db.clone();
        tokio::spawn(async move {
            let mut b = book("Dune");
            spawned.save(&mut b).await.unwrap();
            done_tx.send(b).unwrap();
        });
        let b = within("the spawned save", done).await.unwrap();
        assert_eq!(b.slug, "spawned");
    }
);
