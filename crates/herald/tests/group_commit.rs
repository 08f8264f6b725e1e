//! Group commit on SQLite's writer (PostgreSQL writes run on a pool of connections, each with its
//! own commit): single writes queued behind one another share one COMMIT, and
//! each keeps its own outcome. The writes are queued deterministically: an open transaction pins
//! the writer, each save is polled once (which sends its job), and the commit releases them all.
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{Book, Log, book, queued, save, titles};
use herald::Store;
use herald::dispatch::{Error as ReceiverError, PreSave};
use herald::{Db, Model};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_writes_keep_their_own_outcome_and_hooks() {
    let target = common::sqlite("group_outcomes");
    let db = target.open().await;

    let log = Log::default();
    // In the transaction, so that the veto happens inside the group, in the write's savepoint.
    let _price =
        db.signals()
            .pre_save::<Book>()
            .in_transaction()
            .connect(|e: &mut PreSave<'_, Book>| {
                if e.instance.price_cents < 0 {
                    return Err(ReceiverError::msg("negative price"));
                }
                Ok(())
            });
    let _commit = log.on_commit(&db, |e| format!("committed {}", e.instance.title));
    let _in_tx = log.in_transaction(&db, |e| format!("in tx {}", e.instance.title));

    let tx = db.begin().await.unwrap();
    let mut pending = Vec::new();
    for title in ["a", "b", "vetoed", "c"] {
        let mut b = book(title);
        if title == "vetoed" {
            b.price_cents = -1;
        }
        pending.push(queued(save(&db, b)));
    }
    tx.commit().await.unwrap();
    let mut results = Vec::new();
    for future in pending {
        results.push(future.await);
    }

    let vetoed = results[2].as_ref().unwrap_err();
    assert!(
        vetoed.as_receiver().is_some(),
        "the veto is the receiver's error: {vetoed}"
    );
    let keys: Vec<i64> = [0, 1, 3]
        .iter()
        .map(|&i| results[i].as_ref().unwrap().id.unwrap())
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "keys in queue order: {keys:?}"
    );
    assert_eq!(titles(&db).await, ["a", "b", "c"]);
    // Every write ran before the one COMMIT they shared, and the on_commit receivers after it, in
    // queue order; the vetoed write ran no post_save and no on_commit.
    assert_eq!(
        log.take(),
        [
            "in tx a",
            "in tx b",
            "in tx c",
            "committed a",
            "committed b",
            "committed c"
        ]
    );
}

/// A table with a deferred foreign key: a bad row is refused at COMMIT, not at INSERT.
#[derive(Model, Clone, Debug)]
#[model(table = "placements")]
struct Placement {
    #[model(primary_key)]
    id: Option<i64>,
    shelf_id: i64,
}

async fn sqlite_with_deferred_foreign_key(dir: &tempfile::TempDir, group: bool) -> Db {
    let url = format!("sqlite://{}", dir.path().join("group.db").display());
    let db = Db::open(url)
        .signals(herald::dispatch::Signals::new())
        .group_commit(group)
        .connect()
        .await
        .unwrap();
    db.create_table::<Book>().await.unwrap();
    db.execute("CREATE TABLE shelves (id INTEGER PRIMARY KEY)", vec![])
        .await
        .unwrap();
    db.execute(
        "CREATE TABLE placements (id INTEGER PRIMARY KEY, \
         shelf_id INTEGER NOT NULL REFERENCES shelves (id) DEFERRABLE INITIALLY DEFERRED)",
        vec![],
    )
    .await
    .unwrap();
    db
}

/// Queue a book, a placement on a shelf that does not exist, and another book behind a pinned
/// writer; returns the three outcomes.
async fn book_bad_placement_book(db: &Db) -> [Result<(), herald::Error>; 3] {
    let tx = db.begin().await.unwrap();
    let first = queued(save(db, book("first")));
    let bad = queued({
        let db = db.clone();
        async move {
            db.save(&mut Placement {
                id: None,
                shelf_id: 404,
            })
            .await
        }
    });
    let last = queued(save(db, book("last")));
    tx.commit().await.unwrap();
    [
        first.await.map(drop),
        bad.await.map(drop),
        last.await.map(drop),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_writes_share_one_commit_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_with_deferred_foreign_key(&dir, true).await;
    let [first, bad, last] = book_bad_placement_book(&db).await;
    // The foreign key is checked at COMMIT, and the three writes shared that COMMIT: all three
    // fail, and nothing of them is kept.
    let bad = bad.unwrap_err().to_string();
    assert!(bad.contains("FOREIGN KEY"), "{bad}");
    for other in [first, last] {
        let error = other.unwrap_err().to_string();
        assert!(
            error.contains("shared with the writes queued beside this one")
                && error.contains("FOREIGN KEY"),
            "{error}"
        );
    }
    assert!(titles(&db).await.is_empty());
    assert!(db.all::<Placement>().await.unwrap().is_empty());
    // The writer is clean afterwards: a lone write commits.
    db.save(&mut book("after")).await.unwrap();
    assert_eq!(titles(&db).await, ["after"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_group_commit_each_queued_write_commits_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_with_deferred_foreign_key(&dir, false).await;
    let [first, bad, last] = book_bad_placement_book(&db).await;
    first.unwrap();
    last.unwrap();
    let bad = bad.unwrap_err().to_string();
    assert!(bad.contains("FOREIGN KEY"), "{bad}");
    assert_eq!(titles(&db).await, ["first", "last"]);
}

/// Records the names of the receivers it hears.
#[derive(Default)]
struct Heard(std::sync::Mutex<Vec<String>>);

impl herald::dispatch::observe::Observer for Heard {
    fn receiver(
        &self,
        receiver: &herald::dispatch::ReceiverInfo,
        _sender: &'static str,
        _elapsed: std::time::Duration,
        _failed: bool,
        _slow: bool,
    ) {
        self.0.lock().unwrap().push(receiver.name().to_owned());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_queued_write_reports_its_on_commit_receivers_to_its_own_observer() {
    use herald::dispatch::PostSave;
    use herald::dispatch::observe;
    use std::sync::Arc;

    let target = common::sqlite("group_observers");
    let db = target.open().await;
    let _on_commit = db
        .signals()
        .post_save::<Book>()
        .on_commit()
        .receiver(|_e: &PostSave<'_, Book>| Ok(()))
        .name("after_commit")
        .connect();
    let (first, second) = (Arc::new(Heard::default()), Arc::new(Heard::default()));
    let tx = db.begin().await.unwrap();
    let a = queued(observe::observed(first.clone(), save(&db, book("a"))));
    let b = queued(observe::observed(second.clone(), save(&db, book("b"))));
    tx.commit().await.unwrap();
    a.await.unwrap();
    b.await.unwrap();
    // The on_commit receivers ran after the shared COMMIT, once each job had returned; each was
    // still reported to the request (observer) whose write registered it.
    assert_eq!(*first.0.lock().unwrap(), ["after_commit"]);
    assert_eq!(*second.0.lock().unwrap(), ["after_commit"]);
}
