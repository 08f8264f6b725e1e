//! Durable background receivers, on SQLite and (when `HERALD_TEST_POSTGRES_URL` is set) PostgreSQL.
// A build with one backend leaves out the other's tests, and what only they use.
#![cfg_attr(
    not(all(feature = "sqlite", feature = "postgres")),
    allow(dead_code, unused_imports)
)]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{Book, book, spawn_worker, until, within};
use herald::Store;
use herald::dispatch::Error as ReceiverError;
use herald::tasks::{Background, Task, TaskContext, TaskOptions, TaskState, Worker, purgeable};
use herald::{Db, Value};
use tokio::sync::mpsc;

async fn task_state(db: &Db, id: i64) -> String {
    db.tasks()
        .get(id)
        .await
        .unwrap()
        .map(|t| t.state.to_string())
        .unwrap_or_default()
}

/// A worker running `reindex` tasks for books, reporting each run's title on `ran`.
fn reindexer(db: &Db, ran: mpsc::UnboundedSender<String>) -> Worker {
    Worker::new(db.clone())
        .poll_interval(Duration::from_millis(20))
        .model_task::<Book, _, _>("reindex", move |book: Book, _ctx: TaskContext| {
            let ran = ran.clone();
            async move {
                ran.send(book.title)
                    .map_err(|_| ReceiverError::msg("test ended"))?;
                Ok(())
            }
        })
}

backend_test!(
    a_committed_save_runs_its_background_receiver_once_and_a_rolled_back_one_none,
    |db, backend| async move {
        db.signals()
            .post_save::<Book>()
            .background("reindex", TaskOptions::default())
            .connect()
            .keep();
        let (ran_tx, mut ran) = mpsc::unbounded_channel();
        let (stop, worker) = spawn_worker(reindexer(&db, ran_tx));

        let tx = db.begin().await.unwrap();
        tx.save(&mut book("rolled back")).await.unwrap();
        tx.rollback().await.unwrap();
        db.save(&mut book("committed")).await.unwrap();

        assert_eq!(
            within("the task", ran.recv()).await.unwrap(),
            "committed",
            "{backend}"
        );
        stop.send(()).unwrap();
        let report = worker.await.unwrap();
        assert_eq!(report.completed, 1);
        assert!(
            ran.try_recv().is_err(),
            "ran once, and nothing for the rolled-back save"
        );
        let counts = db.tasks().counts().await.unwrap();
        assert_eq!(
            counts.iter().map(|c| c.count).sum::<u64>(),
            1,
            "one task row: {counts:?}"
        );
        let receivers = db.signals().receivers();
        assert_eq!(
            receivers[0].info().phase(),
            herald::dispatch::Phase::Background
        );
    }
);

backend_test!(
    raw_saves_enqueue_unless_the_receiver_skips_them,
    |db, backend| async move {
        db.signals()
            .post_save::<Book>()
            .background("reindex", TaskOptions::default())
            .connect()
            .keep();
        db.signals()
            .post_save::<Book>()
            .background("email", TaskOptions::default().skip_raw())
            .connect()
            .keep();
        let fixture = r#"[{"model": "Book", "pk": 3, "fields": {"title": "Emma", "slug": "emma", "body": "", "price_cents": 500}}]"#;
        assert_eq!(db.load_fixture::<Book>(fixture).await.unwrap(), 1);
        db.save(&mut book("Persuasion")).await.unwrap();

        let mut kinds: Vec<(String, String)> = Vec::new();
        for task in db.tasks().list(TaskState::Available, 10).await.unwrap() {
            let title = ["Emma", "Persuasion"]
                .into_iter()
                .find(|t| task.payload.contains(t))
                .unwrap_or_default();
            kinds.push((task.kind, title.to_owned()));
        }
        kinds.sort();
        assert_eq!(
            kinds,
            [
                ("email".to_owned(), "Persuasion".to_owned()),
                ("reindex".to_owned(), "Emma".to_owned()),
                ("reindex".to_owned(), "Persuasion".to_owned()),
            ],
            "{backend}: the fixture's raw save enqueued no email"
        );
    }
);

backend_test!(
    the_background_receiver_sees_the_row_committed_from_another_connection,
    |db, backend| async move {
        db.signals()
            .post_save::<Book>()
            .background("check", TaskOptions::default())
            .connect()
            .keep();
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let worker = Worker::new(db.clone())
            .poll_interval(Duration::from_millis(20))
            .model_task::<Book, _, _>("check", move |book: Book, ctx: TaskContext| {
                let seen = seen_tx.clone();
                async move {
                    let stored = ctx.db().get::<Book>(book.id.unwrap()).await?;
                    seen.send(stored.map(|b| b.title))
                        .map_err(|_| ReceiverError::msg("test ended"))?;
                    Ok(())
                }
            });
        let (stop, handle) = spawn_worker(worker);
        db.save(&mut book("visible")).await.unwrap();
        assert_eq!(
            within("the task", seen.recv()).await.unwrap().as_deref(),
            Some("visible"),
            "{backend}"
        );
        stop.send(()).unwrap();
        handle.await.unwrap();
    }
);

backend_test!(
    a_failing_task_is_retried_with_growing_delays_then_dead_then_retried_by_hand,
    |db, backend| async move {
        let (tries_tx, mut tries) = mpsc::unbounded_channel::<u32>();
        let fail = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let failing = fail.clone();
        let worker = Worker::new(db.clone())
            .poll_interval(Duration::from_millis(10))
            .retry_base(Duration::from_millis(40))
            .task("flaky", move |_data, ctx: TaskContext| {
                let (tries, fail) = (tries_tx.clone(), failing.clone());
                async move {
                    tries
                        .send(ctx.attempt())
                        .map_err(|_| ReceiverError::msg("test ended"))?;
                    if fail.load(std::sync::atomic::Ordering::SeqCst) {
                        return Err(ReceiverError::msg("the mail server said no"));
                    }
                    Ok(())
                }
            });
        let (stop, handle) = spawn_worker(worker);
        db.enqueue(
            Task::new("flaky", serde_json::json!({"to": "author@example.org"}))
                .options(TaskOptions::default().max_attempts(4)),
        )
        .await
        .unwrap();
        let mut seen_at = Vec::new();
        for expected in 1..=4 {
            assert_eq!(
                within("an attempt", tries.recv()).await.unwrap(),
                expected,
                "{backend}"
            );
            seen_at.push(std::time::Instant::now());
        }
        let dead = within("the dead task", async {
            loop {
                let dead = db.tasks().dead(10).await.unwrap();
                if !dead.is_empty() {
                    break dead;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert_eq!(dead[0].attempt, 4);
        assert_eq!(
            dead[0].last_error.as_deref(),
            Some("the mail server said no")
        );
        // Backoff doubles (with ±25 % jitter): 40 ms, 80 ms, 160 ms at the least 30, 60, 120.
        let gaps: Vec<Duration> = seen_at.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            gaps[0] >= Duration::from_millis(30)
                && gaps[1] >= Duration::from_millis(60)
                && gaps[2] >= Duration::from_millis(120),
            "{gaps:?}"
        );

        fail.store(false, std::sync::atomic::Ordering::SeqCst);
        assert!(db.tasks().retry(dead[0].id).await.unwrap());
        assert_eq!(
            within("the retried attempt", tries.recv()).await.unwrap(),
            1,
            "a fresh set of attempts"
        );
        let id = dead[0].id;
        until("completion", || {
            let db = db.clone();
            async move { task_state(&db, id).await == "completed" }
        })
        .await;
        stop.send(()).unwrap();
        handle.await.unwrap();
    }
);

backend_test!(
    unique_pk_coalesces_pending_tasks_for_one_row_into_one_run,
    |db, backend| async move {
        db.signals()
            .post_save::<Book>()
            .background("reindex", TaskOptions::default().unique_pk())
            .connect()
            .keep();
        let mut b = book("v0");
        db.save(&mut b).await.unwrap();
        for i in 1..=100 {
            b.title = format!("v{i}");
            db.save(&mut b).await.unwrap();
        }
        let mut other = book("other");
        db.save(&mut other).await.unwrap();
        let pending = db.tasks().list(TaskState::Available, 1000).await.unwrap();
        assert_eq!(pending.len(), 2, "{backend}: one pending task per row");

        let (ran_tx, mut ran) = mpsc::unbounded_channel();
        let (stop, handle) = spawn_worker(reindexer(&db, ran_tx));
        let mut titles = vec![
            within("a run", ran.recv()).await.unwrap(),
            within("a run", ran.recv()).await.unwrap(),
        ];
        titles.sort();
        assert_eq!(titles, ["other", "v100"], "the newest instance, once");
        stop.send(()).unwrap();
        assert_eq!(handle.await.unwrap().completed, 2);
    }
);

backend_test!(
    a_panicking_or_timed_out_task_is_a_failed_attempt_not_a_dead_worker,
    |db, backend| async move {
        let (ok_tx, mut ok) = mpsc::unbounded_channel::<()>();
        let worker = Worker::new(db.clone())
            .poll_interval(Duration::from_millis(10))
            .task("explode", |_data, _ctx| async { panic!("task bug") })
            .task("hang", |_data, _ctx| async {
                std::future::pending::<()>().await;
                Ok(())
            })
            .task("fine", move |_data, _ctx| {
                let ok = ok_tx.clone();
                async move {
                    ok.send(()).map_err(|_| ReceiverError::msg("test ended"))?;
                    Ok(())
                }
            });
        let (stop, handle) = spawn_worker(worker);
        let once = TaskOptions::default().max_attempts(1);
        db.enqueue(Task::new("explode", serde_json::Value::Null).options(once.clone()))
            .await
            .unwrap();
        db.enqueue(
            Task::new("hang", serde_json::Value::Null)
                .options(once.clone().timeout(Duration::from_millis(50))),
        )
        .await
        .unwrap();
        db.enqueue(Task::new("fine", serde_json::Value::Null))
            .await
            .unwrap();
        within("the fine task", ok.recv()).await.unwrap();
        until("two dead tasks", || {
            let db = db.clone();
            async move { db.tasks().dead(10).await.unwrap().len() == 2 }
        })
        .await;
        let mut errors: Vec<String> = db
            .tasks()
            .dead(10)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|t| t.last_error)
            .collect();
        errors.sort();
        assert_eq!(
            errors,
            ["panicked: task bug", "timed out after 50ms"],
            "{backend}"
        );
        db.enqueue(Task::new("fine", serde_json::Value::Null))
            .await
            .unwrap();
        within("the worker still running", ok.recv()).await.unwrap();
        stop.send(()).unwrap();
        handle.await.unwrap();
    }
);

backend_test!(
    unknown_kinds_and_payloads_that_no_longer_decode_are_dead_with_a_clear_error,
    |db, backend| async move {
        let (ran_tx, _ran) = mpsc::unbounded_channel();
        let (stop, handle) = spawn_worker(reindexer(&db, ran_tx));
        db.enqueue(Task::new("nobody_knows", serde_json::Value::Null))
            .await
            .unwrap();
        // An old row after a deploy: the instance lacks a field the model now requires.
        let old =
            serde_json::json!({"v": 1, "model": "Book", "instance": {"id": 1, "title": "old"}})
                .to_string();
        let params = vec![Value::Text(old)];
        let sql = if db.is_postgres() {
            "INSERT INTO herald_tasks (kind, queue, state, payload, priority, max_attempts, timeout_ms, created_at, run_at) VALUES ('reindex', 'default', 'available', $1, 0, 5, 1000, 0, 0)"
        } else {
            "INSERT INTO herald_tasks (kind, queue, state, payload, priority, max_attempts, timeout_ms, created_at, run_at) VALUES ('reindex', 'default', 'available', ?1, 0, 5, 1000, 0, 0)"
        };
        db.execute(sql, params).await.unwrap();
        until("two dead tasks", || {
            let db = db.clone();
            async move { db.tasks().dead(10).await.unwrap().len() == 2 }
        })
        .await;
        let dead = db.tasks().dead(10).await.unwrap();
        let errors: Vec<&str> = dead
            .iter()
            .filter_map(|t| t.last_error.as_deref())
            .collect();
        assert!(
            errors.contains(&"no worker knows the task kind `nobody_knows`"),
            "{backend}: {errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("the Book in the payload no longer decodes: field `slug`")),
            "{errors:?}"
        );
        assert!(
            dead.iter().all(|t| t.attempt == 1),
            "dead at once, no retry loop"
        );
        stop.send(()).unwrap();
        handle.await.unwrap();
    }
);

backend_test!(
    graceful_shutdown_finishes_running_tasks_or_hands_them_back,
    |db, backend| async move {
        let (started_tx, mut started) = mpsc::unbounded_channel::<String>();
        let (release_tx, release_rx) = tokio::sync::watch::channel(false);
        let worker = Worker::new(db.clone())
            .poll_interval(Duration::from_millis(10))
            .shutdown_grace(Duration::from_millis(300))
            .task("quick", {
                let (started, release) = (started_tx.clone(), release_rx.clone());
                move |_d, _c| {
                    let (started, mut release) = (started.clone(), release.clone());
                    async move {
                        started
                            .send("quick".into())
                            .map_err(|_| ReceiverError::msg("ended"))?;
                        release
                            .wait_for(|go| *go)
                            .await
                            .map_err(|_| ReceiverError::msg("ended"))?;
                        Ok(())
                    }
                }
            })
            .task("endless", move |_d, _c| {
                let started = started_tx.clone();
                async move {
                    started
                        .send("endless".into())
                        .map_err(|_| ReceiverError::msg("ended"))?;
                    std::future::pending::<()>().await;
                    Ok(())
                }
            });
        let (stop, handle) = spawn_worker(worker);
        db.enqueue(Task::new("quick", serde_json::Value::Null))
            .await
            .unwrap();
        db.enqueue(Task::new("endless", serde_json::Value::Null))
            .await
            .unwrap();
        let mut begun = vec![
            within("start", started.recv()).await.unwrap(),
            within("start", started.recv()).await.unwrap(),
        ];
        begun.sort();
        assert_eq!(begun, ["endless", "quick"]);
        stop.send(()).unwrap();
        release_tx.send(true).unwrap();
        let report = within("shutdown", handle).await.unwrap();
        assert_eq!((report.completed, report.released), (1, 1), "{backend}");
        let available = db.tasks().list(TaskState::Available, 10).await.unwrap();
        assert_eq!(available.len(), 1, "the endless task was handed back");
        assert_eq!(
            (available[0].kind.as_str(), available[0].attempt),
            ("endless", 0),
            "without using an attempt"
        );
    }
);

backend_test!(
    a_task_whose_worker_dies_runs_again_on_another_worker,
    |db, backend| async move {
        let (first_tx, mut first) = mpsc::unbounded_channel::<u32>();
        let doomed = Worker::new(db.clone())
            .name("doomed")
            .lease(Duration::from_millis(300))
            .poll_interval(Duration::from_millis(10))
            .task("long", move |_d, ctx: TaskContext| {
                let first = first_tx.clone();
                async move {
                    first
                        .send(ctx.attempt())
                        .map_err(|_| ReceiverError::msg("ended"))?;
                    std::future::pending::<()>().await;
                    Ok(())
                }
            });
        let dying = tokio::spawn(doomed.run(std::future::pending::<()>()));
        db.enqueue(Task::new("long", serde_json::Value::Null))
            .await
            .unwrap();
        assert_eq!(within("the first attempt", first.recv()).await.unwrap(), 1);
        // The worker dies: its future (with its heartbeats and its task) stops, its lease stays.
        dying.abort();
        let _ = dying.await;

        let (second_tx, mut second) = mpsc::unbounded_channel::<u32>();
        let rescuer = Worker::new(db.clone())
            .name("rescuer")
            .lease(Duration::from_millis(300))
            .poll_interval(Duration::from_millis(10))
            .task("long", move |_d, ctx: TaskContext| {
                let second = second_tx.clone();
                async move {
                    second
                        .send(ctx.attempt())
                        .map_err(|_| ReceiverError::msg("ended"))?;
                    Ok(())
                }
            });
        let (stop, handle) = spawn_worker(rescuer);
        assert_eq!(
            within("the rescued attempt", second.recv()).await.unwrap(),
            2,
            "{backend}"
        );
        stop.send(()).unwrap();
        assert_eq!(handle.await.unwrap().completed, 1);
        let done = db.tasks().list(TaskState::Completed, 10).await.unwrap();
        assert_eq!(done.len(), 1);
    }
);

/// The ids of the tasks in `state`, oldest first.
async fn ids_in(db: &Db, state: &str) -> Vec<i64> {
    let mut ids: Vec<i64> = db
        .tasks()
        .list(state.parse().unwrap(), 100)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    ids.sort_unstable();
    ids
}

/// The operation and the message of a task-queue refusal.
#[track_caller]
fn refused(error: herald::Error) -> (&'static str, String) {
    let message = error.to_string();
    match error {
        herald::Error::TaskQueue { op, .. } => (op, message),
        other => panic!("a task queue error, not: {other:?}"),
    }
}

backend_test!(
    pending_work_is_cancelled_not_purged_and_purge_takes_finished_states_only,
    |db, backend| async move {
        for n in 0..3 {
            db.enqueue(Task::new("report", serde_json::json!({ "n": n })))
                .await
                .unwrap();
        }
        db.enqueue(Task::new("email", serde_json::json!({})))
            .await
            .unwrap();
        let pending = ids_in(&db, "available").await;
        assert_eq!(pending.len(), 4, "{backend}");

        for state in ["available", "running"] {
            let state: TaskState = state.parse().unwrap();
            let (op, message) = refused(db.tasks().purge(state).await.unwrap_err());
            assert_eq!(op, "purge");
            assert!(
                message.contains(&format!("{state} tasks cannot be purged"))
                    && message.contains("pending work")
                    && message.contains("cancel them instead"),
                "{backend}: {message}"
            );
        }
        let (op, message) = refused(purgeable("zombie").unwrap_err());
        assert_eq!(op, "purge");
        assert!(
            message.contains("`zombie` is not a task state"),
            "{message}"
        );
        let (op, message) = refused("zombie".parse::<TaskState>().unwrap_err());
        assert_eq!(op, "state");
        assert!(message.contains("`zombie`"), "{message}");
        assert_eq!(
            ids_in(&db, "available").await,
            pending,
            "nothing was purged"
        );

        assert!(db.tasks().cancel(pending[0]).await.unwrap());
        assert_eq!(task_state(&db, pending[0]).await, "cancelled");
        assert!(
            !db.tasks().cancel(pending[0]).await.unwrap(),
            "a finished task is not cancelled again"
        );
        assert!(!db.tasks().cancel(424_242).await.unwrap());
        assert_eq!(db.tasks().cancel_kind("report").await.unwrap(), 2);
        assert_eq!(ids_in(&db, "cancelled").await, pending[..3]);
        assert_eq!(
            ids_in(&db, "available").await,
            pending[3..],
            "the other kind waits"
        );
        let (op, _) = refused(db.tasks().cancel_kind("").await.unwrap_err());
        assert_eq!(op, "cancel");

        assert_eq!(db.tasks().purge(TaskState::Cancelled).await.unwrap(), 3);
        assert_eq!(ids_in(&db, "available").await, pending[3..]);
        assert!(ids_in(&db, "cancelled").await.is_empty());
    }
);

backend_test!(
    a_cancelled_task_does_not_run_and_a_running_one_is_not_recorded_or_retried,
    |db, backend| async move {
        // `slow` tells when it starts, then waits for the test to let it finish.
        let (started_tx, mut started) = mpsc::unbounded_channel::<i64>();
        let (ran_tx, mut ran) = mpsc::unbounded_channel::<String>();
        let gate = std::sync::Arc::new(tokio::sync::Notify::new());
        let opened = gate.clone();
        let worker = Worker::new(db.clone())
            .poll_interval(Duration::from_millis(10))
            .task("slow", move |_data, ctx: TaskContext| {
                let (started, gate) = (started_tx.clone(), opened.clone());
                async move {
                    started
                        .send(ctx.id())
                        .map_err(|_| ReceiverError::msg("test ended"))?;
                    gate.notified().await;
                    Err(ReceiverError::msg("failed after it was cancelled"))
                }
            })
            .task("quick", move |data, _ctx: TaskContext| {
                let ran = ran_tx.clone();
                async move {
                    ran.send(data["name"].as_str().unwrap_or("").to_owned())
                        .map_err(|_| ReceiverError::msg("test ended"))?;
                    Ok(())
                }
            });
        // Cancelled before any worker looks: it never runs. The one after it does.
        db.enqueue(Task::new(
            "quick",
            serde_json::json!({ "name": "cancelled" }),
        ))
        .await
        .unwrap();
        let cancelled = ids_in(&db, "available").await[0];
        assert!(db.tasks().cancel(cancelled).await.unwrap());
        db.enqueue(Task::new("quick", serde_json::json!({ "name": "kept" })))
            .await
            .unwrap();
        db.enqueue(
            Task::new("slow", serde_json::json!({}))
                .options(TaskOptions::default().max_attempts(3)),
        )
        .await
        .unwrap();
        let (stop, handle) = spawn_worker(worker);
        assert_eq!(within("the kept task", ran.recv()).await.unwrap(), "kept");

        let running = within("the slow task to start", started.recv())
            .await
            .unwrap();
        assert_eq!(task_state(&db, running).await, "running", "{backend}");
        assert!(db.tasks().cancel(running).await.unwrap());
        assert_eq!(task_state(&db, running).await, "cancelled");
        // Its attempt goes on to its end (a failure that would be retried); then the worker stops,
        // having recorded what it could.
        gate.notify_one();
        stop.send(()).unwrap();
        let report = handle.await.unwrap();
        assert_eq!((report.completed, report.failed), (1, 1), "{backend}");
        let row = db.tasks().get(running).await.unwrap().unwrap();
        assert_eq!(
            (row.state.as_str(), row.attempt, row.last_error),
            ("cancelled", 1, None),
            "{backend}: not recorded, not retried"
        );
        assert!(ran.try_recv().is_err(), "the cancelled task never ran");
        assert_eq!(task_state(&db, cancelled).await, "cancelled");
    }
);

backend_test!(
    a_task_row_that_does_not_decode_is_an_error_naming_the_row_and_column,
    |db, backend| async move {
        // A row written by hand, with a state that is not one.
        let sql = "INSERT INTO herald_tasks (kind, queue, state, payload, priority, max_attempts, timeout_ms, created_at, run_at) VALUES ('reindex', 'default', 'zombie', '{}', 0, 5, 1000, 0, 0)";
        db.execute(sql, vec![]).await.unwrap();
        let rows = db
            .read(|c| {
                c.query(
                    "SELECT MAX(id) FROM herald_tasks",
                    &[],
                    &[herald::SqlType::Int],
                )
            })
            .await
            .unwrap();
        let Value::Int(id) = rows[0][0] else {
            panic!("{backend}: {rows:?}")
        };

        let (op, message) = refused(db.tasks().get(id).await.unwrap_err());
        assert_eq!(op, "get");
        assert!(
            message.contains(&format!("task {id}"))
                && message.contains("column `state` holds `zombie`"),
            "{backend}: {message}"
        );
        let (op, message) = refused(db.tasks().counts().await.unwrap_err());
        assert_eq!(op, "counts");
        assert!(message.contains("`zombie`"), "{backend}: {message}");

        // A negative attempt count is not read as 0.
        db.execute(
            "UPDATE herald_tasks SET state = 'dead', attempt = -3",
            vec![],
        )
        .await
        .unwrap();
        let (op, message) = refused(db.tasks().dead(5).await.unwrap_err());
        assert_eq!(op, "list");
        assert!(
            message.contains(&format!("task {id}"))
                && message.contains("column `attempt` holds -3"),
            "{backend}: {message}"
        );
    }
);
