//! Transactions and hooks, failures, and concurrency, on SQLite and (when `HERALD_TEST_POSTGRES_URL`
//! is set) PostgreSQL.
// A build with one backend leaves out the other's tests, and what only they use.
#![cfg_attr(
    not(all(feature = "sqlite", feature = "postgres")),
    allow(dead_code, unused_imports)
)]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{Audit, Book, Log, book, titles};
use herald::Store;
use herald::dispatch::{Error as ReceiverError, PostSave};
use herald::{Db, DbErrorKind, Error, EventConn, Value};

/// A hook that records `label`.
fn hook(
    log: &Log,
    label: &'static str,
) -> impl FnOnce() -> herald::ReceiverResult + Send + 'static {
    let log = log.clone();
    move || {
        log.push(label);
        Ok(())
    }
}

backend_test!(
    on_commit_runs_at_once_without_an_outer_transaction,
    |db, _backend| async move {
        let log = Log::default();
        let _r = log.on_commit(&db, |e| format!("on_commit {}", e.instance.title));
        db.save(&mut book("Dune")).await.unwrap();
        assert_eq!(log.take(), ["on_commit Dune"], "ran before save returned");
        db.run({
            let log = log.clone();
            move |conn| {
                conn.on_commit("direct", hook(&log, "direct"));
                Ok(())
            }
        })
        .await
        .unwrap();
        assert_eq!(log.take(), ["direct"]);
    }
);

backend_test!(
    on_commit_waits_for_the_outermost_commit_in_order_and_is_dropped_on_rollback,
    |db, backend| async move {
        let log = Log::default();
        let _r = log.on_commit(&db, |e| format!("saved {}", e.instance.title));
        let mut tx = db.begin().await.unwrap();
        tx.save(&mut book("one")).await.unwrap();
        tx.on_commit("second", hook(&log, "second")).await.unwrap();
        {
            let inner = tx.begin().await.unwrap();
            inner.save(&mut book("two")).await.unwrap();
            inner.commit().await.unwrap();
        }
        assert!(
            log.take().is_empty(),
            "{backend}: nothing runs before the outermost commit"
        );
        tx.commit().await.unwrap();
        assert_eq!(log.take(), ["saved one", "second", "saved two"], "FIFO");

        let tx = db.begin().await.unwrap();
        tx.save(&mut book("three")).await.unwrap();
        tx.on_commit("never", hook(&log, "never")).await.unwrap();
        tx.on_rollback("undone", hook(&log, "rolled back"))
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        assert_eq!(log.take(), ["rolled back"]);
        assert!(
            db.all::<Book>()
                .await
                .unwrap()
                .iter()
                .all(|b| b.title != "three")
        );

        // Dropping an uncommitted transaction rolls it back too.
        {
            let tx = db.begin().await.unwrap();
            tx.save(&mut book("four")).await.unwrap();
            tx.on_commit("never", hook(&log, "never")).await.unwrap();
        }
        assert_eq!(db.all::<Book>().await.unwrap().len(), 2, "one and two only");
        assert!(log.take().is_empty());
    }
);

backend_test!(
    savepoints_ok_failed_ok_run_the_hooks_of_the_two_ok_ones_only,
    |db, backend| async move {
        let log = Log::default();
        let mut tx = db.begin().await.unwrap();
        {
            let sp = tx.begin().await.unwrap();
            sp.save(&mut book("first")).await.unwrap();
            sp.on_commit("first", hook(&log, "first")).await.unwrap();
            sp.commit().await.unwrap();
        }
        {
            let sp = tx.begin().await.unwrap();
            sp.save(&mut book("failed")).await.unwrap();
            sp.on_commit("failed", hook(&log, "failed")).await.unwrap();
            sp.rollback().await.unwrap();
        }
        {
            let sp = tx.begin().await.unwrap();
            sp.save(&mut book("third")).await.unwrap();
            sp.on_commit("third", hook(&log, "third")).await.unwrap();
            sp.commit().await.unwrap();
        }
        tx.commit().await.unwrap();
        assert_eq!(log.take(), ["first", "third"], "{backend}");
        assert_eq!(titles(&db).await, ["first", "third"]);
    }
);

backend_test!(
    a_failing_hook_does_not_stop_the_others_or_the_next_transactions_hooks,
    |db, _backend| async move {
        let log = Log::default();
        let tx = db.begin().await.unwrap();
        tx.on_commit("fails", || Err(ReceiverError::msg("mail server down")))
            .await
            .unwrap();
        tx.on_commit("panics", || panic!("hook bug")).await.unwrap();
        tx.on_commit("after", hook(&log, "after")).await.unwrap();
        tx.save(&mut book("kept")).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(log.take(), ["after"]);

        let tx = db.begin().await.unwrap();
        tx.on_commit("next", hook(&log, "next")).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(log.take(), ["next"]);
        assert_eq!(db.all::<Book>().await.unwrap().len(), 1, "the commit stood");
    }
);

backend_test!(
    an_async_hook_may_use_the_database_after_the_commit,
    |db, backend| async move {
        let tx = db.begin().await.unwrap();
        let mut b = book("Dune");
        tx.save(&mut b).await.unwrap();
        let id = b.id.unwrap();
        let after = db.clone();
        tx.on_commit_async("audit", move || async move {
            let stored: Book = after.get(id).await?.expect("committed");
            after
                .save(&mut Audit {
                    id: None,
                    model: "Book".into(),
                    key: id.to_string(),
                    action: format!("committed {}", stored.title),
                })
                .await?;
            Ok(())
        })
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let audit = db.all::<Audit>().await.unwrap();
        assert_eq!(audit.len(), 1, "{backend}");
        assert_eq!(audit[0].action, "committed Dune");
    }
);

backend_test!(
    a_receiver_that_saves_its_instance_again_and_again_stops_at_the_depth_limit,
    |db, backend| async move {
        let _again =
            db.signals()
                .post_save::<Book>()
                .in_transaction()
                .connect(|e: &PostSave<'_, Book>| {
                    let mut copy = e.instance.clone();
                    copy.price_cents += 1;
                    e.conn()?.save(&mut copy)?;
                    Ok(())
                });
        let error = db.save(&mut book("Dune")).await.unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("writing Book (pk 1) nested 32 writes deep (the limit)"),
            "{backend}: {text}"
        );
        assert_eq!(
            db.all::<Book>().await.unwrap().len(),
            0,
            "all of it rolled back"
        );
    }
);

backend_test!(
    a_unique_violation_is_a_clear_error_and_fires_no_post_save,
    |db, backend| async move {
        let log = Log::default();
        let _post = log.post_save(&db, |e| e.instance.title.clone());
        let _commit = db.signals().post_save::<Book>().on_commit().connect({
            let log = log.clone();
            move |e: &PostSave<'_, Book>| {
                log.push(format!("commit {}", e.instance.title));
                Ok(())
            }
        });
        let mut first = Book {
            slug: "dune".into(),
            ..book("Dune")
        };
        db.save(&mut first).await.unwrap();
        log.take();
        let mut second = Book {
            slug: "dune".into(),
            ..book("Dune again")
        };
        let error = db.save(&mut second).await.unwrap_err();
        assert!(
            matches!(&error, Error::Constraint { .. }),
            "{backend}: {error}"
        );
        assert_eq!(error.as_db().unwrap().kind(), DbErrorKind::Unique);
        // The driver's code and error are kept, as sqlx's DatabaseError keeps them.
        let expected_code = if backend == "postgres" {
            "23505"
        } else {
            "2067"
        };
        assert_eq!(
            error.as_db().unwrap().code(),
            Some(expected_code),
            "{backend}"
        );
        let driver = std::error::Error::source(error.as_db().unwrap()).expect("the driver's error");
        assert!(
            driver.to_string().to_lowercase().contains("unique"),
            "{backend}: {driver}"
        );
        assert!(
            error
                .to_string()
                .starts_with("saving Book (unsaved) violates a unique constraint: "),
            "{error}"
        );
        assert!(log.take().is_empty(), "no post_save, no on_commit");

        // The connection is clean: the next save works.
        let mut third = Book {
            slug: "dune-3".into(),
            ..book("Dune 3")
        };
        db.save(&mut third).await.unwrap();
        assert_eq!(log.take(), ["Dune 3", "commit Dune 3"]);
    }
);

backend_test!(
    many_concurrent_saves_from_many_tasks_lose_nothing_and_keep_the_order_per_save,
    |db, backend| async move {
        let log = Log::default();
        let _pre = log.pre_save(&db, |e| format!("pre {}", e.instance.title));
        let _post = log.post_save(&db, |e| format!("post {}", e.instance.title));
        let tasks: Vec<_> = (0..16)
            .map(|task| {
                let db = db.clone();
                tokio::spawn(async move {
                    for i in 0..25 {
                        let mut b = book(&format!("{task}-{i}"));
                        db.save(&mut b).await.unwrap();
                        assert!(b.id.is_some());
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(db.all::<Book>().await.unwrap().len(), 400, "{backend}");
        let entries = log.take();
        assert_eq!(entries.len(), 800);
        for task in 0..16 {
            for i in 0..25 {
                let title = format!("{task}-{i}");
                let pre = entries
                    .iter()
                    .position(|e| *e == format!("pre {title}"))
                    .unwrap();
                let post = entries
                    .iter()
                    .position(|e| *e == format!("post {title}"))
                    .unwrap();
                assert!(pre < post, "pre_save before post_save for {title}");
            }
        }
    }
);

use herald::dispatch::PreSave;

backend_test!(
    store_calls_from_a_receiver_are_refused_instead_of_deadlocking,
    |db, _backend| async move {
        // An in_transaction receiver runs on the connection: a store call from there would wait
        // for that same connection.
        let inner = db.clone();
        let _r = db.signals().post_save::<Book>().in_transaction().connect(
            move |_e: &PostSave<'_, Book>| {
                let attempt = futures::executor::block_on(inner.get::<Book>(1));
                match attempt {
                    Err(Error::WouldDeadlock(message)) => Err(ReceiverError::msg(message)),
                    other => panic!("expected WouldDeadlock, got {other:?}"),
                }
            },
        );
        let error = db.save(&mut book("Dune")).await.unwrap_err();
        assert!(
            error
                .to_string()
                .contains("write through the connection the event lends"),
            "{error}"
        );
    }
);

#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_server_that_refuses_is_a_connect_error_with_the_password_masked() {
    let error = Db::open("postgres://nobody:secret@127.0.0.1:1/x")
        .connect()
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with("cannot connect to `postgres://nobody:***@127.0.0.1:1/x`: "),
        "{text}"
    );
    assert!(!text.contains("secret"));
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn bad_urls_and_missing_tables_are_clear_errors() {
    let error = Db::open("mysql://localhost/x").connect().await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "bad database URL `mysql://localhost/x`: unsupported scheme `mysql`: use sqlite://PATH or postgres://USER@HOST/DB"
    );
    let error = Db::open("sqlite://").connect().await.unwrap_err();
    assert!(error.to_string().contains("no file path"), "{error}");
    let error = Db::open("sqlite:///no/such/dir/x.db")
        .connect()
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("the directory `/no/such/dir` does not exist"),
        "{error}"
    );

    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(format!("sqlite://{}", dir.path().join("x.db").display()))
        .connect()
        .await
        .unwrap();
    let error = db.save(&mut book("Dune")).await.unwrap_err();
    assert_eq!(
        error.as_db().unwrap().kind(),
        DbErrorKind::MissingTable,
        "{error}"
    );
    assert!(
        error
            .to_string()
            .starts_with("saving Book (unsaved) failed: no such table: books"),
        "{error}"
    );
    let error = db.all::<Book>().await.unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("listing Book failed: no such table: books"),
        "a list names no key: {error}"
    );
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn herald_migrations_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    for _ in 0..2 {
        let db = Db::open(&url).connect().await.unwrap();
        let rows = db
            .read(|conn| {
                conn.query(
                    "SELECT version, name FROM herald_migrations ORDER BY version",
                    &[],
                    &[herald::SqlType::Int, herald::SqlType::Text],
                )
            })
            .await
            .unwrap();
        assert_eq!(
            rows,
            vec![
                vec![Value::Int(1), Value::Text("herald_tasks".into())],
                vec![Value::Int(2), Value::Text("herald_outbox".into())],
            ]
        );
    }
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs HERALD_TEST_POSTGRES_URL"]
async fn a_postgres_connection_that_goes_away_mid_save_is_an_error_naming_model_and_key() {
    let target = common::postgres("gone");
    let db = target.open().await;
    let killer = target.open().await;
    let mut b = book("Dune");
    db.save(&mut b).await.unwrap();

    // The receiver tells the test which server process runs the save, then waits until the test
    // has terminated that process: the UPDATE after it finds the connection gone.
    let (pid_tx, pid_rx) = std::sync::mpsc::channel::<i64>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let go_rx = std::sync::Mutex::new(go_rx);
    let _doom = db.signals().pre_save::<Book>().in_transaction().connect(
        move |e: &mut PreSave<'_, Book>| {
            if e.instance.title == "doomed" {
                let rows =
                    e.conn()?
                        .query("SELECT pg_backend_pid()", &[], &[herald::SqlType::Int])?;
                if let Value::Int(pid) = rows[0][0] {
                    pid_tx.send(pid)?;
                }
                go_rx.lock().unwrap().recv()?;
            }
            Ok(())
        },
    );
    b.title = "doomed".into();
    let saving = tokio::spawn({
        let (db, mut b) = (db.clone(), b.clone());
        async move { db.save(&mut b).await }
    });
    let pid = tokio::task::spawn_blocking(move || pid_rx.recv().unwrap())
        .await
        .unwrap();
    killer
        .execute("SELECT pg_terminate_backend($1)", vec![Value::Int(pid)])
        .await
        .unwrap();
    go_tx.send(()).unwrap();
    let error = saving.await.unwrap().unwrap_err();
    assert_eq!(
        error.as_db().map(|e| e.kind()),
        Some(DbErrorKind::ConnectionLost),
        "{error}"
    );
    assert!(
        error.to_string().starts_with("saving Book (pk 1) failed: "),
        "{error}"
    );
    assert_eq!(
        db.get::<Book>(1).await.unwrap().unwrap().title,
        "Dune",
        "nothing of it was kept"
    );

    // The connection is replaced: every pooled connection saves again.
    for i in 0..8 {
        db.save(&mut book(&format!("after {i}"))).await.unwrap();
    }
    drop(killer);
    target.cleanup(db).await;
}

backend_test!(
    an_observer_around_a_save_hears_its_receivers_wherever_they_run,
    |db, backend| async move {
        use herald::dispatch::ReceiverInfo;
        use herald::dispatch::observe::{self, Observer};
        use std::sync::{Arc, Mutex};
        use std::time::Duration;

        #[derive(Default)]
        struct Heard(Mutex<Vec<String>>, Mutex<u32>);
        impl Observer for Heard {
            fn receiver(
                &self,
                receiver: &ReceiverInfo,
                sender: &'static str,
                _elapsed: Duration,
                _failed: bool,
                _slow: bool,
            ) {
                self.0.lock().unwrap().push(format!(
                    "{} {} {sender}",
                    receiver.signal(),
                    receiver.name()
                ));
            }
            fn store_job(&self, _elapsed: Duration) {
                *self.1.lock().unwrap() += 1;
            }
        }

        let _pre = db
            .signals()
            .pre_save::<Book>()
            .receiver(|_e: &mut PreSave<'_, Book>| Ok(()))
            .name("fill_slug")
            .connect();
        let _audit = db
            .signals()
            .post_save::<Book>()
            .in_transaction()
            .receiver(|_e: &PostSave<'_, Book>| Ok(()))
            .name("audit")
            .connect();
        let _post = db
            .signals()
            .post_save::<Book>()
            .receiver(|_e: &PostSave<'_, Book>| Ok(()))
            .name("notify")
            .connect();
        let _commit = db
            .signals()
            .post_save::<Book>()
            .on_commit()
            .receiver(|_e: &PostSave<'_, Book>| Ok(()))
            .name("invalidate")
            .connect();
        let heard = Arc::new(Heard::default());
        let saving = {
            let db = db.clone();
            async move { db.save(&mut book("Dune")).await.unwrap() }
        };
        observe::observed(heard.clone(), saving).await;
        db.save(&mut book("unobserved")).await.unwrap();
        assert_eq!(
            *heard.0.lock().unwrap(),
            [
                "pre_save fill_slug Book",
                "post_save audit Book",
                "post_save notify Book",
                "post_save invalidate Book"
            ],
            "{backend}"
        );
        assert_eq!(*heard.1.lock().unwrap(), 1, "one store job");
    }
);

/// An `in_transaction` post_save receiver that refuses the book titled "refused".
fn refuse_in_transaction(db: &Db) -> herald::dispatch::Connection {
    db.signals()
        .post_save::<Book>()
        .in_transaction()
        .receiver(|e: &PostSave<'_, Book>| {
            if e.instance.title == "refused" {
                return Err(ReceiverError::msg("this title is refused"));
            }
            Ok(())
        })
        .name("refuse_title")
        .connect()
}

backend_test!(
    a_failed_write_in_a_tx_fails_the_tx_so_its_commit_keeps_nothing_and_names_the_failure,
    |db, _backend| async move {
        let _refuse = refuse_in_transaction(&db);
        let tx = db.begin().await.unwrap();
        tx.save(&mut book("kept until the failure")).await.unwrap();
        let error = tx.save(&mut book("refused")).await.unwrap_err();
        assert!(error.to_string().contains("refuse_title"), "{error}");
        // The write has no savepoint of its own: the transaction is failed, not the write undone.
        match tx.commit().await.unwrap_err() {
            Error::TransactionFailed { savepoint, cause } => {
                assert!(!savepoint);
                assert!(cause.contains("refuse_title"), "{cause}");
                assert!(cause.contains("this title is refused"), "{cause}");
            }
            other => panic!("expected TransactionFailed, got {other:?}"),
        }
        assert!(
            titles(&db).await.is_empty(),
            "nothing of the failed transaction is kept"
        );
    }
);

backend_test!(
    a_failed_write_in_a_savepoint_fails_only_the_savepoint,
    |db, _backend| async move {
        let _refuse = refuse_in_transaction(&db);
        let mut tx = db.begin().await.unwrap();
        tx.save(&mut book("before")).await.unwrap();
        {
            let inner = tx.begin().await.unwrap();
            inner.save(&mut book("refused")).await.unwrap_err();
            inner.rollback().await.unwrap();
        }
        tx.save(&mut book("after")).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(titles(&db).await, ["after", "before"]);
    }
);

backend_test!(
    a_failed_delete_in_a_tx_fails_the_tx,
    |db, _backend| async move {
        let mut doomed = book("doomed");
        db.save(&mut doomed).await.unwrap();
        let _refuse = db
            .signals()
            .pre_delete::<Book>()
            .in_transaction()
            .receiver(|_: &herald::dispatch::PreDelete<'_, Book>| {
                Err(ReceiverError::msg("books are kept"))
            })
            .name("keep_books")
            .connect();
        let tx = db.begin().await.unwrap();
        tx.save(&mut book("new")).await.unwrap();
        tx.delete(&doomed).await.unwrap_err();
        let error = tx.commit().await.unwrap_err();
        assert!(
            matches!(&error, Error::TransactionFailed { cause, .. } if cause.contains("keep_books")),
            "{error:?}"
        );
        assert_eq!(titles(&db).await, ["doomed"]);
    }
);

/// The number of books, read outside any transaction.
async fn books(db: &Db) -> usize {
    db.all::<Book>().await.unwrap().len()
}

backend_test!(
    a_pipelined_transaction_gives_each_new_row_its_key_and_a_refused_one_fails_it,
    |db, backend| async move {
        // More saves than the connection holds back at once, and than one block of keys.
        let tx = db.begin_pipelined().await.unwrap();
        let mut saved = Vec::new();
        for i in 0..300 {
            let mut new = book(&format!("book {i}"));
            assert!(tx.save(&mut new).await.unwrap().created);
            saved.push(new);
        }
        tx.commit().await.unwrap();
        let mut keys: Vec<i64> = saved.iter().map(|b| b.id.unwrap()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), 300, "every save got a key of its own");
        for new in &saved {
            let stored = db.get::<Book>(new.id.unwrap()).await.unwrap();
            assert_eq!(stored.map(|b| b.title), Some(new.title.clone()));
        }

        db.execute("CREATE UNIQUE INDEX one_title ON books (title)", vec![])
            .await
            .unwrap();
        let tx = db.begin_pipelined().await.unwrap();
        tx.save(&mut book("fresh")).await.unwrap();
        let twice = tx.save(&mut book("book 7")).await;
        if backend == "postgres" {
            // The INSERT went with the COMMIT: the commit names it and the row, and keeps nothing.
            twice.unwrap();
            let error = tx.commit().await.expect_err("the INSERT is refused");
            let message = error.to_string();
            assert!(
                message.contains("INSERT INTO \"books\"") && message.contains("(book 7)"),
                "{message}"
            );
        } else {
            // Nothing to pipeline: the save itself fails, and so does the transaction.
            let refused = twice.expect_err("the INSERT is refused");
            assert!(matches!(refused, Error::Constraint { .. }), "{refused}");
            let failed = tx.commit().await.expect_err("the transaction failed");
            assert!(
                matches!(failed, Error::TransactionFailed { .. }),
                "{failed}"
            );
        }
        assert_eq!(
            books(&db).await,
            300,
            "nothing of the failed transaction is kept"
        );

        // A statement that waits for its answer reports a held INSERT's failure.
        let tx = db.begin_pipelined().await.unwrap();
        let saved = tx.save(&mut book("book 8")).await;
        if backend == "postgres" {
            saved.unwrap();
            let read = tx.get::<Book>(1).await.expect_err("the held INSERT failed");
            assert!(read.to_string().contains("book 8"), "{read}");
        }
        let failed = tx.commit().await.expect_err("the transaction failed");
        assert!(
            matches!(failed, Error::TransactionFailed { .. }),
            "{failed}"
        );

        // A rollback drops what was held; the connection serves the next transaction.
        let tx = db.begin_pipelined().await.unwrap();
        tx.save(&mut book("rolled back")).await.unwrap();
        tx.rollback().await.unwrap();
        let tx = db.begin_pipelined().await.unwrap();
        tx.save(&mut book("kept")).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(books(&db).await, 301);

        // Keys are reserved per transaction: a sequence restarted between two transactions, and
        // drawn from by other saves, gives no key twice.
        let restart = if backend == "postgres" {
            "TRUNCATE books RESTART IDENTITY"
        } else {
            "DELETE FROM books"
        };
        db.execute(restart, vec![]).await.unwrap();
        for i in 0..3 {
            db.save(&mut book(&format!("after {i}"))).await.unwrap();
        }
        let tx = db.begin_pipelined().await.unwrap();
        let mut last = book("last");
        tx.save(&mut last).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(books(&db).await, 4);
        if backend == "postgres" {
            assert_eq!(last.id, Some(4), "the key came from the restarted sequence");
        }
        assert_eq!(
            db.get::<Book>(last.id.unwrap())
                .await
                .unwrap()
                .map(|b| b.title),
            Some("last".to_owned())
        );
    }
);
