//! Transactions that tell the truth, alike on SQLite and PostgreSQL: a failed statement fails the
//! transaction (or savepoint) it ran in, unless a savepoint around it was rolled back; transaction
//! control is refused outside `db.begin()`; a COMMIT whose outcome is unknown says so; a value the
//! database cannot store is refused before any statement.
// A build with one backend leaves out the other's tests, and what only they use.
#![cfg_attr(
    not(all(feature = "sqlite", feature = "postgres")),
    allow(dead_code, unused_imports)
)]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{Book, Log, book, titles};
use herald::dispatch::PostSave;
use herald::tasks::{Background, TaskOptions};
use herald::{DbErrorKind, Error, Store, Value};

/// A book whose slug another book already has: its INSERT fails on the unique index.
fn clashing(title: &str) -> Book {
    Book {
        slug: "taken".into(),
        ..book(title)
    }
}

backend_test!(
    committing_after_a_failed_statement_rolls_back_and_says_why,
    |db, backend| async move {
        db.save(&mut clashing("first")).await.unwrap();
        let log = Log::default();
        let _commit = log.on_commit(&db, |e| format!("on_commit {}", e.instance.title));
        let _index = db
            .signals()
            .post_save::<Book>()
            .background("index_book", TaskOptions::default())
            .connect();
        let tasks_before = db
            .tasks()
            .list(herald::tasks::TaskState::Available, 100)
            .await
            .unwrap()
            .len();

        let tx = db.begin().await.unwrap();
        tx.save(&mut book("kept?")).await.unwrap();
        let rolled_back = log.clone();
        tx.on_rollback("undo", move || {
            rolled_back.push("on_rollback");
            Ok(())
        })
        .await
        .unwrap();
        let clash = tx.save(&mut clashing("second")).await.unwrap_err();
        assert_eq!(
            clash.as_db().unwrap().kind(),
            DbErrorKind::Unique,
            "{backend}"
        );
        // PostgreSQL refuses every statement after it; SQLite would take this one. Either way:
        let _ = tx.save(&mut book("after the failure")).await;
        let error = tx.commit().await.unwrap_err();
        assert!(
            matches!(
                &error,
                Error::TransactionFailed {
                    savepoint: false,
                    ..
                }
            ),
            "{backend}: {error}"
        );
        let text = error.to_string();
        assert!(
            text.starts_with(
                "the transaction was rolled back instead of committed: a statement in it had failed"
            ),
            "{text}"
        );
        assert!(
            text.to_lowercase().contains("unique"),
            "names the failure: {text}"
        );
        assert_eq!(titles(&db).await, ["first"], "nothing of it was kept");
        assert_eq!(log.take(), ["on_rollback"], "no on_commit receiver ran");
        assert_eq!(
            db.tasks()
                .list(herald::tasks::TaskState::Available, 100)
                .await
                .unwrap()
                .len(),
            tasks_before,
            "no task"
        );
    }
);

backend_test!(
    a_rolled_back_savepoint_takes_its_failure_with_it,
    |db, backend| async move {
        db.save(&mut clashing("first")).await.unwrap();
        let mut tx = db.begin().await.unwrap();
        tx.save(&mut book("before")).await.unwrap();
        {
            let sp = tx.begin().await.unwrap();
            sp.save(&mut clashing("second")).await.unwrap_err();
            sp.rollback().await.unwrap();
        }
        tx.save(&mut book("after")).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(titles(&db).await, ["after", "before", "first"], "{backend}");

        // Releasing a savepoint that failed is that failure; the transaction around it goes on.
        let mut tx = db.begin().await.unwrap();
        {
            let sp = tx.begin().await.unwrap();
            sp.save(&mut book("in the failed savepoint")).await.unwrap();
            sp.save(&mut clashing("third")).await.unwrap_err();
            let error = sp.commit().await.unwrap_err();
            assert!(
                matches!(
                    &error,
                    Error::TransactionFailed {
                        savepoint: true,
                        ..
                    }
                ),
                "{backend}: {error}"
            );
        }
        tx.save(&mut book("outer")).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(titles(&db).await, ["after", "before", "first", "outer"]);
    }
);

backend_test!(
    transaction_control_through_execute_is_refused,
    |db, backend| async move {
        let log = Log::default();
        let _commit = log.on_commit(&db, |e| format!("on_commit {}", e.instance.title));
        for sql in [
            "BEGIN",
            "  commit",
            "SAVEPOINT x",
            "release savepoint x",
            "/* a comment */ ROLLBACK",
            "-- a comment\nSTART TRANSACTION",
            "SELECT 1; END",
        ] {
            let error = db.execute(sql, vec![]).await.unwrap_err();
            assert!(
                matches!(&error, Error::TransactionControl { .. }),
                "{backend}: {sql}: {error}"
            );
            assert!(error.to_string().contains("db.begin()"), "{error}");
        }
        let error = db
            .run(|conn| conn.batch("CREATE TABLE t (x INTEGER); BEGIN"))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, Error::TransactionControl { .. }),
            "{error}"
        );
        // The store's own transactions are not affected, and the refused BEGIN left none open.
        db.save(&mut book("Dune")).await.unwrap();
        assert_eq!(log.take(), ["on_commit Dune"]);
        assert_eq!(titles(&db).await, ["Dune"]);
    }
);

backend_test!(
    a_nul_character_is_refused_before_any_statement_on_postgres_and_kept_on_sqlite,
    |db, backend| async move {
        let mut bad = book("Du\0ne");
        let saved = db.save(&mut bad).await;
        if backend == "postgres" {
            let error = saved.unwrap_err();
            assert!(matches!(&error, Error::Invalid { .. }), "{error}");
            assert_eq!(
                error.to_string(),
                "saving Book (unsaved): field `title` holds a NUL character (\\0), which \
             PostgreSQL cannot store in text"
            );
            // Refused before any statement: the transaction around it is not failed.
            let tx = db.begin().await.unwrap();
            tx.save(&mut book("Dune")).await.unwrap();
            tx.save(&mut book("Emma\0")).await.unwrap_err();
            tx.commit().await.unwrap();
            assert_eq!(titles(&db).await, ["Dune"]);
        } else {
            saved.unwrap();
            assert_eq!(
                db.get::<Book>(bad.id.unwrap())
                    .await
                    .unwrap()
                    .unwrap()
                    .title,
                "Du\0ne"
            );
        }
    }
);

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs HERALD_TEST_POSTGRES_URL"]
async fn a_commit_whose_connection_goes_away_is_an_unknown_outcome() {
    let target = common::postgres("commit_unknown");
    let db = target.open().await;
    // A deferred trigger runs at COMMIT: it ends its own server process there.
    db.execute(
        "CREATE FUNCTION herald_end_session() RETURNS trigger AS $$ \
         BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$ LANGUAGE plpgsql",
        vec![],
    )
    .await
    .unwrap();
    db.execute(
        "CREATE CONSTRAINT TRIGGER end_at_commit AFTER INSERT ON audit \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION herald_end_session()",
        vec![],
    )
    .await
    .unwrap();
    let log = Log::default();
    let _commit = db
        .signals()
        .post_save::<common::Audit>()
        .on_commit()
        .connect({
            let log = log.clone();
            move |_e: &PostSave<'_, common::Audit>| {
                log.push("on_commit");
                Ok(())
            }
        });
    let tx = db.begin().await.unwrap();
    tx.save(&mut common::Audit {
        id: None,
        model: "Book".into(),
        key: "1".into(),
        action: "saved".into(),
    })
    .await
    .unwrap();
    let error = tx.commit().await.unwrap_err();
    assert!(matches!(&error, Error::CommitUnknown { .. }), "{error}");
    assert!(
        error.to_string().starts_with(
            "the connection was lost during COMMIT, so whether the write was kept is unknown"
        ),
        "{error}"
    );
    assert!(
        log.take().is_empty(),
        "no on_commit receiver for an unknown outcome"
    );
    // The pool replaces the lost connection.
    db.execute("DROP TRIGGER end_at_commit ON audit", vec![])
        .await
        .unwrap();
    db.save(&mut book("after")).await.unwrap();
    assert_eq!(
        db.execute("SELECT 1", Vec::<Value>::new()).await.unwrap(),
        1
    );
    target.cleanup(db).await;
}
