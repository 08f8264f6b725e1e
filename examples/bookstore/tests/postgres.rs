//! The bookstore on PostgreSQL as separate processes: `bookstore serve --no-worker` and two
//! `bookstore worker` processes, all in a schema of the test's own (`--schema`), dropped at the
//! end. Ignored unless run with `--include-ignored`, with `HERALD_TEST_POSTGRES_URL` set.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{BIN, BOUND, Proc, free_port, poll, request};
use herald::Store;
use herald::{Db, SqlType, Value};
use serde_json::json;

const WORKERS: [&str; 2] = ["worker-a", "worker-b"];

/// The PostgreSQL URL to test against; a test run without it fails, saying so.
fn postgres_url(test: &str) -> String {
    match std::env::var("HERALD_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!("{test}: HERALD_TEST_POSTGRES_URL is not set; this test needs PostgreSQL"),
    }
}

static NEXT_SCHEMA: AtomicUsize = AtomicUsize::new(0);

/// The test's own schema, read through a `herald::Db`, and dropped with everything in it when the
/// test ends, failing or not. Declare it before the processes, so that they are killed first.
struct Schema {
    name: String,
    db: Db,
    runtime: tokio::runtime::Runtime,
}

impl Schema {
    fn new(url: &str) -> Schema {
        let name = format!(
            "bookstore_test_{}_{}",
            std::process::id(),
            NEXT_SCHEMA.fetch_add(1, Ordering::Relaxed)
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let db = runtime
            .block_on(Db::open(url).schema(name.clone()).connect())
            .unwrap_or_else(|e| panic!("opening {url} in schema {name}: {e}"));
        Schema { name, db, runtime }
    }

    /// The rows of `sql`, decoded as `types`.
    fn rows(&self, sql: &'static str, types: &'static [SqlType]) -> Vec<Vec<Value>> {
        self.runtime
            .block_on(self.db.read(move |conn| conn.query(sql, &[], types)))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let drop = format!(r#"DROP SCHEMA IF EXISTS "{}" CASCADE"#, self.name);
        if let Err(e) = self.runtime.block_on(self.db.execute(drop, vec![])) {
            eprintln!("could not drop schema {}: {e}", self.name);
        }
    }
}

/// One task row, as the test reads it.
#[derive(Debug)]
struct TaskRow {
    kind: String,
    state: String,
    attempt: i64,
    worker: String,
    error: String,
}

/// Every task: the tasks table's rows in id order, then the rows still in the outbox (appended,
/// not yet moved by a worker), which are `available` tasks without a final id.
fn tasks(schema: &Schema) -> Vec<TaskRow> {
    let rows = schema.rows(
        "SELECT kind, state, attempt, COALESCE(worker, ''), COALESCE(last_error, '') FROM (\
             SELECT 0 AS appended, id, kind, state, attempt, worker, last_error FROM herald_tasks \
             UNION ALL SELECT 1, id, kind, 'available', 0, NULL, NULL FROM herald_outbox\
         ) AS tasks ORDER BY appended, id",
        &[
            SqlType::Text,
            SqlType::Text,
            SqlType::Int,
            SqlType::Text,
            SqlType::Text,
        ],
    );
    rows.into_iter().map(task_row).collect()
}

fn task_row(row: Vec<Value>) -> TaskRow {
    let text = |v: &Value| match v {
        Value::Text(s) => s.clone(),
        other => panic!("not text: {other:?}"),
    };
    let Value::Int(attempt) = row[2] else {
        panic!("attempt is not an integer: {row:?}")
    };
    TaskRow {
        kind: text(&row[0]),
        state: text(&row[1]),
        attempt,
        worker: text(&row[3]),
        error: text(&row[4]),
    }
}

/// `bookstore ARGS --database URL --schema NAME`, with `env` set (and plain-text logs).
fn bookstore(args: &[&str], url: &str, schema: &Schema, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .args(["--database", url, "--schema", &schema.name])
        .env("NO_COLOR", "1")
        .envs(env.iter().copied());
    command
}

/// Create a book over the JSON API; its id.
fn create_book(addr: &str, title: &str) -> i64 {
    let body = json!({ "title": title, "price_cents": 1000 }).to_string();
    let response = request(addr, "POST", "/api/books", Some(body));
    assert_eq!(response.status, 201, "creating {title}: {}", response.body);
    response.json()["id"].as_i64().expect("an id")
}

/// Every book's search entry, as the API serves it, once all of them exist.
fn wait_for_search_entries(addr: &str, ids: &[i64]) -> Vec<String> {
    poll(BOUND, || {
        ids.iter()
            .map(|id| {
                let response = request(addr, "GET", &format!("/api/books/{id}/search"), None);
                let entry = (response.status == 200).then(|| response.json())?;
                entry["terms"].as_str().map(str::to_owned)
            })
            .collect::<Option<Vec<String>>>()
    })
    .unwrap_or_else(|| panic!("the search entries of books {ids:?} did not all appear"))
}

/// The task rows once every task has settled (`completed` or `dead`).
fn wait_until_settled(schema: &Schema, expected: usize) -> Vec<TaskRow> {
    poll(BOUND, || {
        let rows = tasks(schema);
        let settled = rows.len() == expected
            && rows
                .iter()
                .all(|t| t.state == "completed" || t.state == "dead");
        settled.then_some(rows)
    })
    .unwrap_or_else(|| panic!("the tasks did not settle: {:#?}", tasks(schema)))
}

#[test]
#[ignore = "needs HERALD_TEST_POSTGRES_URL"]
fn two_worker_processes_run_the_tasks_of_a_server_without_a_worker() {
    let url = postgres_url("two_worker_processes_run_the_tasks");
    let schema = Schema::new(&url);
    let logs = tempfile::tempdir().expect("a directory for the logs");
    // Every email attempt fails, in every process: each email task ends dead after 3 attempts.
    let env = [
        ("BOOKSTORE_SAMPLE_DATA", "0"),
        ("BOOKSTORE_EMAIL_FAIL_EVERY", "1"),
    ];

    let migrated = bookstore(&["migrate"], &url, &schema, &env)
        .output()
        .expect("bookstore migrate runs");
    assert!(migrated.status.success(), "{migrated:?}");

    let port = free_port().to_string();
    let serve_args = ["serve", "--no-worker", "--port", &port];
    let mut serve = Proc::spawn(
        "serve",
        bookstore(&serve_args, &url, &schema, &env),
        logs.path(),
    );
    let line = serve.line_with("http://", BOUND);
    assert!(line.contains(", no worker"), "{line}");
    assert!(
        line.contains(&format!("(schema {})", schema.name)),
        "{line}"
    );
    let addr = common::addr_in(&line);
    assert_eq!(addr, format!("127.0.0.1:{port}"));

    // A title PostgreSQL cannot store is the client's to fix, named, before any statement.
    let refused = request(
        &addr,
        "POST",
        "/api/books",
        Some(r#"{"title": "Du\u0000ne", "price_cents": 900}"#.to_owned()),
    );
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.json()["field"], "title", "{}", refused.body);

    // Books saved while no worker runs anywhere: their tasks wait.
    let mut ids: Vec<i64> = (1..=3)
        .map(|n| create_book(&addr, &format!("Early Book {n}")))
        .collect();
    let waiting = tasks(&schema);
    assert_eq!(waiting.len(), 6, "a reindex and an email per book");
    assert!(
        waiting.iter().all(|t| t.state == "available"),
        "{waiting:#?}"
    );

    let mut workers: Vec<Proc> = WORKERS
        .iter()
        .map(|name| {
            let args = ["worker", "--name", name];
            Proc::spawn(name, bookstore(&args, &url, &schema, &env), logs.path())
        })
        .collect();
    for (worker, name) in workers.iter_mut().zip(WORKERS) {
        worker.line_with(&format!("worker {name}: serving tasks"), BOUND);
    }
    ids.extend((4..=6).map(|n| create_book(&addr, &format!("Late Book {n}"))));

    let terms = wait_for_search_entries(&addr, &ids);
    assert_eq!(terms[0], "1 book early");
    assert_eq!(terms[5], "6 book late");

    let rows = wait_until_settled(&schema, 2 * ids.len());
    for task in &rows {
        assert!(WORKERS.contains(&task.worker.as_str()), "{task:?}");
        match task.kind.as_str() {
            "reindex_book" => assert_eq!(task.state, "completed", "{task:?}"),
            "email_author" => {
                assert_eq!((task.state.as_str(), task.attempt), ("dead", 3), "{task:?}");
                assert!(
                    task.error.contains("deliberate, simulated mail failure"),
                    "{task:?}"
                );
            }
            other => panic!("unexpected task kind {other}: {task:?}"),
        }
    }
    for name in WORKERS {
        let ran = rows.iter().filter(|t| t.worker == name).count();
        println!("{name} holds the last attempt of {ran} tasks");
    }
    let emails = request(&addr, "GET", "/api/emails", None).json();
    assert_eq!(emails, json!([]), "no email went out");

    let counts = bookstore(&["tasks", "counts"], &url, &schema, &[])
        .output()
        .expect("bookstore tasks runs");
    let text = String::from_utf8_lossy(&counts.stdout);
    for state in ["completed", "dead"] {
        let line = text.lines().find(|l| l.contains(state));
        let count = line.and_then(|l| l.split_whitespace().last());
        assert_eq!(count, Some("6"), "6 {state} tasks in:\n{text}");
    }
}
