//! The outbox: the task rows background receivers (and `conn.enqueue(..)`) append in the
//! transaction of the write that caused them, so that a rollback leaves none and a commit
//! guarantees one.
//!
//! What is here belongs to the store, which knows nothing of workers: what a task is ([`Task`],
//! [`TaskOptions`]), its row ([`NewTask`]), appending a transaction's rows in one statement just
//! before its COMMIT ([`insert`]), the `NOTIFY` that tells other processes (throttled per `Db`),
//! and the tables' migrations. The workers that drain it (`crate::tasks`) sit on top.
//!
//! **Two tables.** A write appends to `herald_outbox`, which has no index but its integer primary
//! key: a plain `INSERT`, the cheapest row the database can write, so that a save with a
//! background receiver costs little more than one without. Workers move the appended rows into
//! `herald_tasks` (claim order, unique keys, states) in batches, in one transaction with deleting
//! them from the outbox (`tasks/queue.rs`, `move_appended`), just before they claim. Coalescing by
//! unique key therefore happens at the move, not at the append: an appended row is an `available`
//! task whose id is not final yet (it gets one in `herald_tasks` when it is moved, and a row that
//! coalesces with another of its key gets none of its own).
//!
//! Times are integer microseconds since the Unix epoch in both databases, so comparisons need no
//! dialect-specific date functions.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::error::Result;
use crate::model::{Dialect, Model, placeholder};
use crate::store::conn::{Conn, lock, statement_error};
use crate::value::Value;

/// The payload format version written into every task row.
pub const PAYLOAD_VERSION: i64 = 1;

/// How a task runs: queue, priority, attempts, timeout, delay, and coalescing. Every option
/// documents its default.
#[derive(Clone, Debug)]
pub struct TaskOptions {
    queue: Cow<'static, str>,
    priority: i32,
    max_attempts: u32,
    timeout: Duration,
    delay: Duration,
    unique_pk: bool,
    pub(crate) skip_raw: bool,
}

impl Default for TaskOptions {
    fn default() -> Self {
        Self {
            queue: Cow::Borrowed("default"),
            priority: 0,
            max_attempts: 5,
            timeout: Duration::from_secs(60),
            delay: Duration::ZERO,
            unique_pk: false,
            skip_raw: false,
        }
    }
}

impl TaskOptions {
    /// The queue (workers choose which queues they serve). Default: `"default"`.
    pub fn queue(mut self, queue: impl Into<Cow<'static, str>>) -> Self {
        self.queue = queue.into();
        self
    }
    /// Higher runs first. Default: 0.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }
    /// Attempts before the task is kept as dead. Default: 5.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }
    /// An attempt that runs longer fails. Default: 60 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Run no sooner than this after the commit. Default: at once.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
    /// Coalesce pending tasks for one row into one run (`unique = "pk"`): saving a row a hundred
    /// times between two polls runs the task once, with the newest instance. Default: off.
    pub fn unique_pk(mut self) -> Self {
        self.unique_pk = true;
        self
    }
    /// Enqueue nothing for raw saves (`loaddata`, `raw = true`), as a Django receiver that returns
    /// early when `raw` is set: fixtures do not send emails. Deletes are never raw. Default: off,
    /// so a raw save enqueues like any other, as Django sends its signals for raw saves.
    pub fn skip_raw(mut self) -> Self {
        self.skip_raw = true;
        self
    }
}

/// A task to add to the queue: a kind (which worker function runs it), a JSON payload, options.
#[derive(Clone, Debug)]
pub struct Task {
    kind: Cow<'static, str>,
    payload: Payload,
    options: TaskOptions,
    unique_key: Option<String>,
}

/// A task's payload until it is written.
#[derive(Clone, Debug)]
enum Payload {
    /// Built as JSON: `{"v": .., "data": ..}` ([`Task::new`]).
    Json(serde_json::Value),
    /// `{"v": .., "model": .., "instance": ..}`, and `"previous"` and `"changed"` once added: a
    /// task for one instance, each instance already written as the JSON object that
    /// `model::from_json` reads back (a background receiver's task is written once, not built as
    /// a tree and then written).
    Instance {
        model: &'static str,
        instance: String,
        /// The row before the write and the changed fields, as JSON.
        changes: Option<(String, String)>,
    },
}

impl Payload {
    fn into_text(self) -> String {
        match self {
            Payload::Json(json) => json.to_string(),
            Payload::Instance {
                model,
                instance,
                changes,
            } => {
                let model = serde_json::Value::from(model);
                let mut text =
                    format!("{{\"v\":{PAYLOAD_VERSION},\"model\":{model},\"instance\":{instance}");
                if let Some((previous, changed)) = changes {
                    text.push_str(&format!(",\"previous\":{previous},\"changed\":{changed}"));
                }
                text.push('}');
                text
            }
        }
    }
}

/// `instance` as the JSON object `model::from_json` reads back: one member per column.
fn columns_json<M: Model>(instance: &M) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(32 * M::COLUMNS.len());
    text.push('{');
    for (i, column) in M::COLUMNS.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        let name = serde_json::Value::from(column.name);
        // Writing to a String cannot fail.
        let _ = write!(text, "{name}:{}", instance.value(i).into_json());
    }
    text.push('}');
    text
}

impl Task {
    /// A task of `kind` carrying `data` (a worker registered with [`Worker::task`](crate::tasks::Worker::task) gets it back).
    pub fn new(kind: impl Into<Cow<'static, str>>, data: serde_json::Value) -> Self {
        Self {
            kind: kind.into(),
            payload: Payload::Json(json!({ "v": PAYLOAD_VERSION, "data": data })),
            options: TaskOptions::default(),
            unique_key: None,
        }
    }

    /// A task of `kind` for one instance of a model (as a background receiver enqueues it).
    pub fn for_instance<M: Model>(
        kind: impl Into<Cow<'static, str>>,
        instance: &M,
        options: &TaskOptions,
    ) -> Self {
        let kind = kind.into();
        let unique_key = options.unique_pk.then(|| {
            format!(
                "{kind}:{}:{}",
                M::NAME,
                instance.pk_string().unwrap_or_default()
            )
        });
        Self {
            payload: Payload::Instance {
                model: M::NAME,
                instance: columns_json(instance),
                changes: None,
            },
            kind,
            options: options.clone(),
            unique_key,
        }
    }

    /// Carry what the update changed to the task (`"previous"`: the row before the write,
    /// `"changed"`: the fields that differ), which [`TaskContext`](crate::tasks::TaskContext)
    /// gives back. A background receiver adds them when a receiver of the write asked for them.
    /// With [`TaskOptions::unique_pk`] the newest write's task wins, with its own changes.
    pub fn with_changes<M: Model>(mut self, previous: &M, changed: &[&str]) -> Self {
        match &mut self.payload {
            Payload::Json(json) => {
                if let Some(payload) = json.as_object_mut() {
                    payload.insert("previous".to_owned(), previous.to_json());
                    payload.insert("changed".to_owned(), json!(changed));
                }
            }
            Payload::Instance { changes, .. } => {
                *changes = Some((columns_json(previous), json!(changed).to_string()));
            }
        }
        self
    }

    /// Set the options.
    pub fn options(mut self, options: TaskOptions) -> Self {
        self.options = options;
        self
    }

    /// Coalesce with a pending task of the same key.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    pub(crate) fn into_new(self) -> NewTask {
        NewTask {
            kind: self.kind.into_owned(),
            queue: self.options.queue.into_owned(),
            payload: self.payload.into_text(),
            priority: self.options.priority,
            max_attempts: self.options.max_attempts,
            timeout: self.options.timeout,
            unique_key: self.unique_key,
            delay: self.options.delay,
        }
    }
}

/// The migration that creates the tasks table (version 1), in `dialect`. Times are integer
/// microseconds since the epoch (64-bit in both databases).
pub(crate) fn tasks_migration(dialect: Dialect) -> String {
    let (id, big) = match dialect {
        Dialect::Sqlite => ("INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER"),
        Dialect::Postgres => (
            "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
            "BIGINT",
        ),
    };
    format!(
        "CREATE TABLE herald_tasks (
    id {id},
    kind TEXT NOT NULL,
    queue TEXT NOT NULL,
    state TEXT NOT NULL,
    payload TEXT NOT NULL,
    priority INTEGER NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    timeout_ms {big} NOT NULL,
    unique_key TEXT,
    created_at {big} NOT NULL,
    run_at {big} NOT NULL,
    started_at {big},
    finished_at {big},
    lease_until {big},
    worker TEXT,
    last_error TEXT,
    progress TEXT
);
CREATE INDEX herald_tasks_claim ON herald_tasks (state, queue, priority DESC, run_at, id);
CREATE UNIQUE INDEX herald_tasks_unique ON herald_tasks (unique_key) WHERE state = 'available' AND unique_key IS NOT NULL;
"
    )
}

/// The migration that creates the outbox (version 2), in `dialect`: the columns of a new task and
/// nothing else, no index but the primary key, so that appending a row writes one B-tree page.
///
/// On SQLite the key is a plain `INTEGER PRIMARY KEY` (the row id, one more than the largest
/// present), not `AUTOINCREMENT`, which would update `sqlite_sequence` on every append: an id
/// may then be used again once the outbox has drained, which is harmless because ids only order
/// the rows present (the newest of a unique key wins) and are never kept. On PostgreSQL an
/// identity column.
pub(crate) fn outbox_migration(dialect: Dialect) -> String {
    let (id, big) = match dialect {
        Dialect::Sqlite => ("INTEGER PRIMARY KEY", "INTEGER"),
        Dialect::Postgres => (
            "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
            "BIGINT",
        ),
    };
    format!(
        "CREATE TABLE herald_outbox (
    id {id},
    kind TEXT NOT NULL,
    queue TEXT NOT NULL,
    payload TEXT NOT NULL,
    priority INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    timeout_ms {big} NOT NULL,
    unique_key TEXT,
    created_at {big} NOT NULL,
    run_at {big} NOT NULL
);
"
    )
}

/// Now, in microseconds since the epoch.
pub(crate) fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros().min(i64::MAX as u128) as i64)
}

pub(crate) fn micros(d: Duration) -> i64 {
    d.as_micros().min(i64::MAX as u128) as i64
}

/// A task row about to be inserted.
#[derive(Clone, Debug)]
pub(crate) struct NewTask {
    pub(crate) kind: String,
    pub(crate) queue: String,
    pub(crate) payload: String,
    pub(crate) priority: i32,
    pub(crate) max_attempts: u32,
    pub(crate) timeout: Duration,
    pub(crate) unique_key: Option<String>,
    pub(crate) delay: Duration,
}

/// Append `tasks` to the outbox in one statement (a plain `INSERT`: the outbox has no unique
/// index to conflict with). Tasks with a `unique_key` coalesce with pending tasks of the same key
/// when a worker moves them (the newest payload wins); within one call only the last of each key
/// is written at all.
pub(crate) fn insert(conn: &Conn, tasks: Vec<NewTask>) -> Result<()> {
    let rows = last_of_each_key(tasks);
    if rows.is_empty() {
        return Ok(());
    }
    let dialect = conn.dialect();
    // Which queues to wake, taken before the rows move into the statements' parameters.
    let queues: Vec<String> = match dialect {
        Dialect::Postgres => rows.iter().map(|t| t.queue.clone()).collect(),
        Dialect::Sqlite => Vec::new(),
    };
    let now = now_micros();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<NewTask> = rows.by_ref().take(INSERT_CHUNK).collect();
        let sql = insert_sql(dialect, chunk.len());
        let mut params = Vec::with_capacity(chunk.len() * 9);
        for task in chunk {
            params.extend([
                Value::Text(task.kind),
                Value::Text(task.queue),
                Value::Text(task.payload),
                Value::Int(i64::from(task.priority)),
                Value::Int(i64::from(task.max_attempts)),
                Value::Int(task.timeout.as_millis().min(i64::MAX as u128) as i64),
                task.unique_key.map_or(Value::Null, Value::Text),
                Value::Int(now),
                Value::Int(now + micros(task.delay)),
            ]);
        }
        write(conn, &sql, params)?;
    }
    if dialect == Dialect::Postgres {
        notify(conn, queues.iter().map(String::as_str))?;
    }
    Ok(())
}

/// At most this many tasks are appended by one statement.
const INSERT_CHUNK: usize = 500;

/// `tasks` with only the last of each `unique_key` kept, in order: only it would survive the move.
fn last_of_each_key(tasks: Vec<NewTask>) -> Vec<NewTask> {
    if tasks
        .iter()
        .filter(|t| t.unique_key.is_some())
        .nth(1)
        .is_none()
    {
        return tasks;
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut rows: Vec<Option<NewTask>> = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Some(key) = &task.unique_key {
            if let Some(&earlier) = seen.get(key) {
                rows[earlier] = None;
            }
            seen.insert(key.clone(), rows.len());
        }
        rows.push(Some(task));
    }
    rows.into_iter().flatten().collect()
}

/// The INSERT of `rows` outbox rows, nine parameters each; the one-row statement (a write's task,
/// the usual case) is built once per dialect.
fn insert_sql(dialect: Dialect, rows: usize) -> Cow<'static, str> {
    static ONE: [OnceLock<String>; 2] = [OnceLock::new(), OnceLock::new()];
    let build = |rows: usize| {
        let mut sql = String::from(
            "INSERT INTO herald_outbox (kind, queue, payload, priority, max_attempts, timeout_ms, unique_key, created_at, run_at) VALUES ",
        );
        for row in 0..rows {
            if row > 0 {
                sql.push_str(", ");
            }
            let placeholders: Vec<String> =
                (1..=9).map(|i| placeholder(dialect, row * 9 + i)).collect();
            sql.push('(');
            sql.push_str(&placeholders.join(", "));
            sql.push(')');
        }
        sql
    };
    if rows == 1 {
        let index = usize::from(dialect == Dialect::Postgres);
        Cow::Borrowed(ONE[index].get_or_init(|| build(1)).as_str())
    } else {
        Cow::Owned(build(rows))
    }
}

/// The most often one process sends a `NOTIFY` for one queue: each costs the enqueueing transaction
/// a round trip's worth of work on the server. A notification skipped here is not lost work: a
/// worker that was busy within the last [`BUSY_POLL_WINDOW`] polls every `NOTIFY_EVERY`, and every
/// worker polls anyway.
pub(crate) const NOTIFY_EVERY: Duration = Duration::from_millis(5);

/// How long after its last activity a worker keeps polling every [`NOTIFY_EVERY`].
pub(crate) const BUSY_POLL_WINDOW: Duration = Duration::from_millis(50);

/// When each queue of one `Db` was last notified (µs since the epoch): per `Db`, so that two
/// databases in one process do not share a throttle.
#[derive(Debug, Default)]
pub(crate) struct NotifyThrottle(Mutex<HashMap<String, i64>>);

/// `NOTIFY` the workers of other processes (PostgreSQL) that `queues` have tasks, at most once per
/// queue per [`NOTIFY_EVERY`] from this `Db`; delivered when the transaction commits.
pub(crate) fn notify<'a>(conn: &Conn, queues: impl Iterator<Item = &'a str>) -> Result<()> {
    let now = now_micros();
    let mut due: Vec<String> = Vec::new();
    {
        let mut last = lock(&conn.shared().notified.0);
        for queue in queues {
            if due.iter().any(|q| q == queue) {
                continue;
            }
            let recent = last
                .get(queue)
                .is_some_and(|t| now - t < micros(NOTIFY_EVERY));
            if !recent {
                last.insert(queue.to_owned(), now);
                due.push(queue.to_owned());
            }
        }
    }
    // The channel is `herald_tasks_<schema>` cut to 63 bytes, PostgreSQL's longest identifier, as
    // the server cuts the `LISTEN` side's (`tasks/listen.rs`): `pg_notify` refuses a longer one.
    // Schemas alike in their first 50 bytes share a channel, which only wakes workers for nothing.
    for queue in due {
        write(
            conn,
            "SELECT pg_notify(left('herald_tasks_' || current_schema(), 63), $1)",
            vec![Value::Text(queue)],
        )?;
    }
    Ok(())
}

/// Run one of the outbox's writes. Inside a transaction it may be held back and sent with the
/// transaction's next statement, its `COMMIT` (see `Backend::execute_held`): nothing
/// reads its result, and its failure fails the transaction either way.
fn write(conn: &Conn, sql: &str, params: Vec<Value>) -> Result<()> {
    let in_transaction = conn.in_transaction();
    conn.statement(|backend| {
        if in_transaction {
            backend.execute_held(sql, params)
        } else {
            backend.execute(sql, &params).map(drop)
        }
    })
    .map_err(|source| statement_error(sql, source))
}
