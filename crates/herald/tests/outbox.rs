//! The outbox: a write appends its tasks to `herald_outbox` (no index but the key), and workers
//! move them into `herald_tasks` before they claim. On SQLite and (when
//! `HERALD_TEST_POSTGRES_URL` is set) PostgreSQL.
//!
//! Each test reads the two tables directly where the split is what it pins (the save wrote the
//! outbox, the move emptied it); everything else goes through the task queue's API, which shows
//! appended tasks as `available`.
// A build with one backend leaves out the other's tests, and what only they use.
#![cfg_attr(
    not(all(feature = "sqlite", feature = "postgres")),
    allow(dead_code, unused_imports)
)]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Book, Target, book, spawn_worker, until, within};
use herald::Store;
use herald::dispatch::Error as ReceiverError;
use herald::tasks::{Background, Task, TaskContext, TaskOptions, TaskState, Worker};
use herald::{Db, SqlType, Value};
use serde_json::json;
use tokio::sync::mpsc;

/// One test per backend from one body that gets the [`Target`] too (to open its database again):
/// `outbox_test!(name, |target, db| async move { .. })`.
macro_rules! outbox_test {
    ($name:ident, $test:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[cfg(feature = "sqlite")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(common::sqlite(stringify!($name)), $test).await;
            }

            #[cfg(feature = "postgres")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "needs HERALD_TEST_POSTGRES_URL"]
            async fn postgres() {
                run(common::postgres(stringify!($name)), $test).await;
            }
        }
    };
}

async fn run<F, Fut>(target: Target, test: F)
where
    F: FnOnce(Target, Db) -> Fut,
    Fut: std::future::Future<Output = Target>,
{
    let db = target.open().await;
    let target = test(target, db).await;
    let db = target.open().await;
    target.cleanup(db).await;
}

/// One integer a query returns.
async fn int(db: &Db, sql: &'static str) -> i64 {
    let rows = db
        .read(move |c| c.query(sql, &[], &[SqlType::Int]))
        .await
        .unwrap();
    match rows.as_slice() {
        [row] => match row.as_slice() {
            [Value::Int(n)] => *n,
            other => panic!("`{sql}`: {other:?}"),
        },
        other => panic!("`{sql}`: {other:?}"),
    }
}

/// (rows in the outbox, rows in the tasks table).
async fn rows(db: &Db) -> (i64, i64) {
    (
        int(db, "SELECT COUNT(*) FROM herald_outbox").await,
        int(db, "SELECT COUNT(*) FROM herald_tasks").await,
    )
}

/// How many tasks the queue's counts put in `state`, over all queues.
async fn counted(db: &Db, state: TaskState) -> u64 {
    db.tasks()
        .counts()
        .await
        .unwrap()
        .iter()
        .filter(|c| c.state == state)
        .map(|c| c.count)
        .sum()
}

/// A worker running `reindex` tasks for books, reporting `(task id, title)` on `ran`.
fn reindexer(db: &Db, ran: mpsc::UnboundedSender<(i64, String)>) -> Worker {
    Worker::new(db.clone())
        .poll_interval(Duration::from_millis(20))
        .model_task::<Book, _, _>("reindex", move |book: Book, ctx: TaskContext| {
            let ran = ran.clone();
            async move {
                ran.send((ctx.id(), book.title))
                    .map_err(|_| ReceiverError::msg("test ended"))?;
                Ok(())
            }
        })
}

/// A worker running tasks of each of `kinds`, `concurrency` at a time, reporting each run's kind
/// and data on `ran`.
fn recorder(
    db: &Db,
    kinds: &[&str],
    concurrency: usize,
    ran: mpsc::UnboundedSender<(String, serde_json::Value)>,
) -> Worker {
    let mut worker = Worker::new(db.clone())
        .concurrency(concurrency)
        .poll_interval(Duration::from_millis(20));
    for kind in kinds {
        let ran = ran.clone();
        worker = worker.task(kind, move |data, ctx: TaskContext| {
            let sent = ran
                .send((ctx.kind().to_owned(), data))
                .map_err(|_| ReceiverError::msg("test ended"));
            async move { sent }
        });
    }
    worker
}

/// Wait until no task is pending, as the queue counts them (outbox included).
async fn drained(db: &Db) {
    until("the queue to drain", || {
        let db = db.clone();
        async move {
            counted(&db, TaskState::Available).await + counted(&db, TaskState::Running).await == 0
        }
    })
    .await;
}

outbox_test!(
    a_save_appends_to_the_outbox_and_a_rolled_back_one_appends_nothing,
    |target, db| async move {
        let backend = target.name;
        db.signals()
            .post_save::<Book>()
            .background("reindex", TaskOptions::default())
            .connect()
            .keep();
        let tx = db.begin().await.unwrap();
        tx.save(&mut book("rolled back 1")).await.unwrap();
        tx.save(&mut book("rolled back 2")).await.unwrap();
        tx.rollback().await.unwrap();
        assert_eq!(
            rows(&db).await,
            (0, 0),
            "{backend}: a rollback appends nothing"
        );

        db.save(&mut book("committed")).await.unwrap();
        let tx = db.begin().await.unwrap();
        tx.save(&mut book("committed in a transaction"))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            rows(&db).await,
            (2, 0),
            "{backend}: the saves appended to the outbox, not to the tasks table"
        );
        assert_eq!(counted(&db, TaskState::Available).await, 2, "{backend}");
        target
    }
);

outbox_test!(
    appended_tasks_outlive_the_database_handle_and_each_runs_once,
    |target, db| async move {
        let backend = target.name;
        db.signals()
            .post_save::<Book>()
            .background("reindex", TaskOptions::default())
            .connect()
            .keep();
        let mut ids = Vec::new();
        for i in 0..20 {
            let mut b = book(&format!("book {i}"));
            db.save(&mut b).await.unwrap();
            ids.push(b.id.unwrap());
        }
        assert_eq!(rows(&db).await, (20, 0), "{backend}: appended, not moved");
        drop(db);

        // Nothing moved them before the handle went: a new one finds them all.
        let db = target.open().await;
        assert_eq!(counted(&db, TaskState::Available).await, 20, "{backend}");
        let (ran_tx, mut ran) = mpsc::unbounded_channel();
        let (stop, worker) = spawn_worker(reindexer(&db, ran_tx));
        let mut titles = Vec::new();
        for _ in 0..20 {
            titles.push(within("a run", ran.recv()).await.unwrap().1);
        }
        drained(&db).await;
        stop.send(()).unwrap();
        assert_eq!(worker.await.unwrap().completed, 20, "{backend}");
        assert!(ran.try_recv().is_err(), "{backend}: nothing ran twice");
        titles.sort();
        let mut expected: Vec<String> = (0..20).map(|i| format!("book {i}")).collect();
        expected.sort();
        assert_eq!(titles, expected, "{backend}: each book's task ran once");
        assert_eq!(rows(&db).await, (0, 20), "{backend}: all moved");
        assert_eq!(counted(&db, TaskState::Completed).await, 20, "{backend}");
        target
    }
);

outbox_test!(
    a_task_row_refused_at_commit_fails_the_transaction_and_keeps_none_of_it,
    |target, db| async move {
        // The task rows are written last, just before COMMIT (on PostgreSQL, in one round trip
        // with it): a refused row must name the statement and undo the transaction's writes.
        let refuse = match target.name {
            "postgres" => {
                "ALTER TABLE herald_outbox ADD CONSTRAINT no_refused CHECK (kind <> 'refused')"
            }
            _ => {
                "CREATE TRIGGER no_refused BEFORE INSERT ON herald_outbox \
                 WHEN NEW.kind = 'refused' BEGIN SELECT RAISE(ABORT, 'no_refused'); END"
            }
        };
        db.execute(refuse, vec![]).await.unwrap();
        let tx = db.begin().await.unwrap();
        tx.save(&mut book("Dune")).await.unwrap();
        tx.enqueue(Task::new("refused", json!({}))).await.unwrap();
        let error = tx.commit().await.expect_err("the task row is refused");
        let message = error.to_string();
        assert!(
            message.contains("INSERT INTO herald_outbox") && message.contains("no_refused"),
            "{message}"
        );
        assert_eq!(
            int(&db, "SELECT COUNT(*) FROM books").await,
            0,
            "the save was undone"
        );
        assert_eq!(rows(&db).await, (0, 0), "no task row");

        // The connection is clean: the next transaction commits its save and its task.
        let tx = db.begin().await.unwrap();
        tx.save(&mut book("Emma")).await.unwrap();
        tx.enqueue(Task::new("count", json!({}))).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(int(&db, "SELECT COUNT(*) FROM books").await, 1);
        assert_eq!(int(&db, "SELECT COUNT(*) FROM herald_outbox").await, 1);
        target
    }
);

/// Make adding a `poison` task to the tasks table fail, so that a move fails part of the way
/// through its batch: a finished `poison` task, and a unique index on the kind of such tasks
/// (not the unique index a move's `ON CONFLICT` names, so the conflict is an error).
async fn poison_the_tasks_table(db: &Db) {
    db.execute(
        "INSERT INTO herald_tasks (kind, queue, state, payload, priority, max_attempts, \
         timeout_ms, created_at, run_at) VALUES ('poison', 'default', 'completed', '{}', 0, 5, \
         1000, 0, 0)",
        vec![],
    )
    .await
    .unwrap();
    db.execute(
        "CREATE UNIQUE INDEX one_poison ON herald_tasks (kind) WHERE kind = 'poison'",
        vec![],
    )
    .await
    .unwrap();
}

outbox_test!(
    a_move_that_fails_part_way_moves_nothing_and_the_next_moves_each_task_once,
    |target, db| async move {
        let backend = target.name;
        poison_the_tasks_table(&db).await;
        for n in 0..3 {
            db.enqueue(Task::new("count", json!({ "n": n })))
                .await
                .unwrap();
        }
        db.enqueue(Task::new("poison", json!({}))).await.unwrap();
        for n in 3..6 {
            db.enqueue(Task::new("count", json!({ "n": n })))
                .await
                .unwrap();
        }
        // Listing available tasks moves the outbox first: here the move fails on its fourth row.
        let refused = db.tasks().list(TaskState::Available, 100).await;
        let error = refused.expect_err("the move fails on the poison task");
        assert!(
            error
                .as_db()
                .is_some_and(|db| db.kind() == herald::DbErrorKind::Unique),
            "{backend}: {error}"
        );
        assert_eq!(
            rows(&db).await,
            (7, 1),
            "{backend}: the failed move left every row where it was"
        );

        db.execute("DROP INDEX one_poison", vec![]).await.unwrap();
        let listed = db.tasks().list(TaskState::Available, 100).await.unwrap();
        assert_eq!(listed.len(), 7, "{backend}: {listed:?}");
        assert_eq!(rows(&db).await, (0, 8), "{backend}: moved once");
        let mut ids: Vec<i64> = listed.iter().map(|t| t.id).collect();
        ids.dedup();
        assert_eq!(ids.len(), 7, "{backend}: seven tasks of their own");

        let (ran_tx, mut ran) = mpsc::unbounded_channel();
        let worker = recorder(&db, &["count", "poison"], 4, ran_tx);
        let (stop, handle) = spawn_worker(worker);
        let mut seen = BTreeMap::new();
        for _ in 0..7 {
            let (kind, data) = within("a run", ran.recv()).await.unwrap();
            *seen.entry((kind, data.to_string())).or_insert(0) += 1;
        }
        drained(&db).await;
        stop.send(()).unwrap();
        assert_eq!(handle.await.unwrap().completed, 7, "{backend}");
        assert!(ran.try_recv().is_err(), "{backend}: nothing ran twice");
        assert_eq!(seen.len(), 7, "{backend}: each task once: {seen:?}");
        target
    }
);

outbox_test!(
    unique_pk_coalesces_appended_rows_with_each_other_and_with_an_available_task,
    |target, db| async move {
        let backend = target.name;
        db.signals()
            .post_save::<Book>()
            .background("reindex", TaskOptions::default().unique_pk())
            .connect()
            .keep();
        let mut b = book("b0");
        db.save(&mut b).await.unwrap();
        // Listing moves it: an available task of b's key, in the tasks table.
        let moved = db.tasks().list(TaskState::Available, 10).await.unwrap();
        assert_eq!(moved.len(), 1, "{backend}: {moved:?}");
        let b_task = moved[0].id;
        assert_eq!(rows(&db).await, (0, 1), "{backend}");

        for i in 1..=3 {
            b.title = format!("b{i}");
            db.save(&mut b).await.unwrap();
        }
        let mut c = book("c0");
        db.save(&mut c).await.unwrap();
        for i in 1..=2 {
            c.title = format!("c{i}");
            db.save(&mut c).await.unwrap();
        }
        assert_eq!(rows(&db).await, (6, 1), "{backend}: six appends");
        assert_eq!(
            counted(&db, TaskState::Available).await,
            2,
            "{backend}: the counts coalesce as the move will: b's task, and one for c"
        );

        let (ran_tx, mut ran) = mpsc::unbounded_channel();
        let (stop, worker) = spawn_worker(reindexer(&db, ran_tx));
        let mut runs = [
            within("a run", ran.recv()).await.unwrap(),
            within("a run", ran.recv()).await.unwrap(),
        ];
        drained(&db).await;
        stop.send(()).unwrap();
        assert_eq!(worker.await.unwrap().completed, 2, "{backend}");
        assert!(ran.try_recv().is_err(), "{backend}: one run per row");
        runs.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(
            runs[0],
            (b_task, "b3".to_owned()),
            "{backend}: b's available task ran once, with the newest appended instance"
        );
        assert_eq!(runs[1].1, "c2", "{backend}: c's newest instance, once");
        assert_eq!(rows(&db).await, (0, 2), "{backend}: two tasks in all");
        target
    }
);

outbox_test!(
    a_batch_of_keyed_and_unkeyed_rows_moves_in_the_order_it_was_appended,
    |target, db| async move {
        let backend = target.name;
        let appends = [
            ("a", None),
            ("k1", Some("k")),
            ("b", None),
            ("k2", Some("k")),
            ("c", None),
        ];
        for (name, key) in appends {
            let task = Task::new("ordered", json!({ "name": name }));
            let task = match key {
                Some(key) => task.unique_key(key),
                None => task,
            };
            db.enqueue(task).await.unwrap();
        }
        assert_eq!(rows(&db).await, (5, 0), "{backend}");

        // Listing moves the five rows in one batch; the newest first.
        let mut moved = db.tasks().list(TaskState::Available, 10).await.unwrap();
        moved.reverse();
        let names: Vec<String> = moved
            .iter()
            .map(|task| {
                let payload: serde_json::Value = serde_json::from_str(&task.payload).unwrap();
                payload["data"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            names,
            ["a", "k2", "b", "c"],
            "{backend}: the keyed rows are one task at the first one's place, with the newest \
             payload, and every task keeps its place in the order of appending"
        );
        assert_eq!(rows(&db).await, (0, 4), "{backend}");
        target
    }
);

outbox_test!(
    priority_and_delay_are_kept_by_the_move,
    |target, db| async move {
        let backend = target.name;
        let options = TaskOptions::default();
        // Appended in this order; a move that lost the priority would run `low` first, one that
        // lost the delay `late` (the highest priority) first.
        db.enqueue(
            Task::new("late", json!({})).options(
                options
                    .clone()
                    .priority(20)
                    .delay(Duration::from_secs(3600)),
            ),
        )
        .await
        .unwrap();
        db.enqueue(Task::new("low", json!({})).options(options.clone()))
            .await
            .unwrap();
        db.enqueue(Task::new("high", json!({})).options(options.clone().priority(10)))
            .await
            .unwrap();
        assert_eq!(rows(&db).await, (3, 0), "{backend}");

        let (ran_tx, mut ran) = mpsc::unbounded_channel();
        let worker = recorder(&db, &["late", "low", "high"], 1, ran_tx);
        let (stop, handle) = spawn_worker(worker);
        let first = within("a run", ran.recv()).await.unwrap().0;
        let second = within("a run", ran.recv()).await.unwrap().0;
        assert_eq!(
            (first.as_str(), second.as_str()),
            ("high", "low"),
            "{backend}"
        );
        until("both completions to be recorded", || {
            let db = db.clone();
            async move { counted(&db, TaskState::Completed).await == 2 }
        })
        .await;
        stop.send(()).unwrap();
        assert_eq!(handle.await.unwrap().completed, 2, "{backend}");
        assert!(ran.try_recv().is_err(), "{backend}: `late` did not run");

        let waiting = db.tasks().list(TaskState::Available, 10).await.unwrap();
        assert_eq!(waiting.len(), 1, "{backend}: {waiting:?}");
        assert_eq!(waiting[0].kind, "late", "{backend}");
        assert_eq!(
            waiting[0].run_at - waiting[0].created_at,
            3_600_000_000,
            "{backend}: an hour after it was appended, as before the move"
        );
        let priorities = db
            .read(|c| {
                c.query(
                    "SELECT kind, priority FROM herald_tasks ORDER BY kind",
                    &[],
                    &[SqlType::Text, SqlType::Int],
                )
            })
            .await
            .unwrap();
        assert_eq!(
            priorities,
            [
                [Value::Text("high".into()), Value::Int(10)],
                [Value::Text("late".into()), Value::Int(20)],
                [Value::Text("low".into()), Value::Int(0)],
            ],
            "{backend}"
        );
        target
    }
);

outbox_test!(
    a_database_made_before_the_outbox_gets_it_and_keeps_its_waiting_tasks,
    |target, db| async move {
        let backend = target.name;
        // The database as the version before the outbox left it: no outbox, migration 1 only,
        // and a task waiting in the tasks table.
        db.execute("DROP TABLE herald_outbox", vec![])
            .await
            .unwrap();
        db.execute("DELETE FROM herald_migrations WHERE version = 2", vec![])
            .await
            .unwrap();
        db.execute(
            "INSERT INTO herald_tasks (kind, queue, state, payload, priority, max_attempts, \
             timeout_ms, created_at, run_at) VALUES ('count', 'default', 'available', \
             '{\"v\": 1, \"data\": {\"n\": 0}}', 0, 5, 1000, 0, 0)",
            vec![],
        )
        .await
        .unwrap();
        drop(db);

        let db = target.open().await;
        assert_eq!(
            int(&db, "SELECT MAX(version) FROM herald_migrations").await,
            2,
            "{backend}"
        );
        db.enqueue(Task::new("count", json!({ "n": 1 })))
            .await
            .unwrap();
        assert_eq!(rows(&db).await, (1, 1), "{backend}");
        assert_eq!(counted(&db, TaskState::Available).await, 2, "{backend}");
        let (ran_tx, mut ran) = mpsc::unbounded_channel();
        let (stop, handle) = spawn_worker(recorder(&db, &["count"], 4, ran_tx));
        let mut ns = vec![
            within("a run", ran.recv()).await.unwrap().1["n"].clone(),
            within("a run", ran.recv()).await.unwrap().1["n"].clone(),
        ];
        drained(&db).await;
        stop.send(()).unwrap();
        assert_eq!(handle.await.unwrap().completed, 2, "{backend}");
        ns.sort_by_key(|n| n.as_i64());
        assert_eq!(ns, [json!(0), json!(1)], "{backend}");
        target
    }
);

/// Many workers, each on a database handle of its own (as separate processes are), move and
/// claim while tasks are appended: every task runs once. On PostgreSQL, where movers take turns
/// on a lock and a worker that finds it taken claims without moving.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs HERALD_TEST_POSTGRES_URL"]
async fn many_workers_moving_at_once_run_each_task_once() {
    const TASKS: i64 = 3000;
    const WORKERS: usize = 6;
    let target = common::postgres("many_movers");
    let db = target.open().await;
    db.execute(
        "CREATE TABLE runs (n BIGINT NOT NULL, worker TEXT NOT NULL)",
        vec![],
    )
    .await
    .unwrap();
    let mut stops = Vec::new();
    for w in 0..WORKERS {
        let handle = target.open().await;
        let name = format!("mover-{w}");
        let worker = Worker::new(handle)
            .name(name.clone())
            .concurrency(4)
            .poll_interval(Duration::from_millis(50))
            .task("count", move |data, ctx: TaskContext| {
                let name = name.clone();
                async move {
                    let n = data["n"]
                        .as_i64()
                        .ok_or_else(|| ReceiverError::msg(format!("no n in {data}")))?;
                    ctx.db()
                        .execute(
                            "INSERT INTO runs (n, worker) VALUES ($1, $2)",
                            vec![Value::Int(n), Value::Text(name)],
                        )
                        .await?;
                    Ok(())
                }
            });
        stops.push(spawn_worker(worker));
    }
    // Appended while the workers run: in transactions of many tasks and one by one.
    for chunk in 0..10 {
        let tx = db.begin().await.unwrap();
        tx.run(move |conn| {
            for n in chunk * 250..(chunk + 1) * 250 {
                conn.enqueue(Task::new("count", json!({ "n": n })))?;
            }
            Ok(())
        })
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    for n in 2500..TASKS {
        db.enqueue(Task::new("count", json!({ "n": n })))
            .await
            .unwrap();
    }
    until("every task to complete", || {
        let db = db.clone();
        async move { counted(&db, TaskState::Completed).await == TASKS as u64 }
    })
    .await;
    let mut completed = 0;
    for (stop, handle) in stops {
        stop.send(()).unwrap();
        completed += handle.await.unwrap().completed;
    }
    assert_eq!(completed, TASKS as u64);
    let twice = db
        .read(|c| {
            c.query(
                "SELECT n, COUNT(*) FROM runs GROUP BY n HAVING COUNT(*) <> 1 ORDER BY n LIMIT 20",
                &[],
                &[SqlType::Int, SqlType::Int],
            )
        })
        .await
        .unwrap();
    assert!(twice.is_empty(), "tasks that did not run once: {twice:?}");
    assert_eq!(
        int(&db, "SELECT COUNT(DISTINCT n) FROM runs").await,
        TASKS,
        "every task ran"
    );
    assert_eq!(rows(&db).await, (0, TASKS), "every task moved once");
    assert!(
        int(&db, "SELECT COUNT(DISTINCT worker) FROM runs").await >= 2,
        "more than one worker ran tasks"
    );
    target.cleanup(db).await;
}
