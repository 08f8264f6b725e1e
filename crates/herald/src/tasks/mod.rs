//! Durable background receivers: a transactional outbox and the workers that drain it.
//!
//! A background receiver does not run in the save. The save writes a task row in its own
//! transaction (so a rollback leaves no task and a commit guarantees one), and a [`Worker`] runs it
//! after the commit: at least once, retried with exponential backoff and jitter, kept as `dead`
//! with its error after the last attempt, and run again elsewhere when the worker holding it dies
//! (its lease expires). A thread started from a receiver does none of this.
//!
//! ```text
//!   save ─ pre_save ─ write ─ post_save ─ (background receivers: rows appended to herald_outbox)
//!        ─ COMMIT ─ wake workers
//!   worker ─ move appended rows into herald_tasks ─ claim (one statement per batch) ─ run
//!          ─ complete | retry later | dead
//! ```
//!
//! Task states ([`TaskState`]): `available` (waiting, possibly until a later `run_at`), `running`
//! (claimed, under a lease), `completed`, `dead`, `cancelled`. The first two are pending work:
//! [`TaskQueue::cancel`] stops it. The last three are finished: [`TaskQueue::purge`] deletes them,
//! and only them.
//!
//! A task appended by a write waits in the outbox (`herald_outbox`, no index but its key, so the
//! row is cheap for the write) until a worker moves it into the tasks table (`herald_tasks`),
//! just before claiming, in one transaction; `unique_pk` coalescing happens there. Until then it
//! is an `available` task whose id is not final yet: [`TaskQueue::counts`] counts it as
//! `available`; listing `available` tasks ([`TaskQueue::list`]), [`TaskQueue::cancel`],
//! [`TaskQueue::cancel_kind`] and [`TaskQueue::retry`] move the outbox first, so that every id
//! the queue's API shows or takes is final.

mod executor;
#[cfg(feature = "postgres")]
mod listen;
mod maintenance;
#[cfg(feature = "postgres")]
mod presence;
mod producer;
pub(crate) mod queue;
pub(crate) mod stats;
mod worker;

use std::sync::Arc;

use herald_dispatch::{
    Connection, ModelSignal, OnPostDelete, OnPostSave, PostDelete, PostSave, ReceiverBuilder,
};

use crate::error::{Error, Result};
use crate::model::{Dialect, Model, numbered};
use crate::store::db::Db;
use crate::store::event::EventConn;
use crate::store::ops::Store;
use crate::value::{SqlType, Value};

pub use crate::store::outbox::{PAYLOAD_VERSION, Task, TaskOptions};
pub use stats::TaskKindStats;
pub use worker::{TaskContext, Worker, WorkerReport};

/// A task runner declared with `#[receiver(.., background)]`, collected at link time;
/// [`Worker::autodiscover`] registers them all. Written by the macro, not by hand.
#[derive(Debug)]
pub struct StaticTask {
    register: fn(Worker) -> Worker,
}

impl StaticTask {
    /// A declared runner that `register` adds to a worker.
    pub const fn new(register: fn(Worker) -> Worker) -> Self {
        Self { register }
    }
}

inventory::collect!(StaticTask);

/// A background receiver about to be connected; from [`Background::background`].
#[must_use = "nothing is connected until `.connect()`"]
#[derive(Debug)]
pub struct BackgroundBuilder<'s> {
    receiver: ReceiverBuilder<'s>,
}

impl BackgroundBuilder<'_> {
    /// Where the background receiver was written (`#[receiver(.., background)]` sets it). Default:
    /// where `background(..)` was called.
    pub fn location(mut self, location: herald_dispatch::SourceLocation) -> Self {
        self.receiver = self.receiver.location(location);
        self
    }

    /// Higher priority receivers enqueue first (the tasks' own priority is [`TaskOptions::priority`]).
    pub fn receiver_priority(mut self, priority: i32) -> Self {
        self.receiver = self.receiver.priority(priority);
        self
    }

    /// Enqueue only for writes that inserted a row (`post_save` only; see
    /// [`Condition`](herald_dispatch::Condition)).
    pub fn on_create(mut self) -> Self {
        self.receiver = self.receiver.on_create();
        self
    }

    /// Enqueue only for writes that updated an existing row (`post_save` only).
    pub fn on_update(mut self) -> Self {
        self.receiver = self.receiver.on_update();
        self
    }

    /// Enqueue only for an update that changed one of these fields (`post_save` only); the task
    /// carries what changed ([`TaskContext::changed_fields`], [`TaskContext::previous`]). A name
    /// the model does not have is an error at connect.
    pub fn when_changed<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<std::borrow::Cow<'static, str>>,
    {
        self.receiver = self.receiver.when_changed(fields);
        self
    }

    /// Carry what each update changed to the task (`post_save` only): the store reads the row
    /// before each update of the model, and [`TaskContext::previous`] gives it back.
    pub fn changes(mut self) -> Self {
        self.receiver = self.receiver.changes();
        self
    }

    /// Connect: from now on every committed save (or delete) that its condition admits writes a
    /// task of this kind.
    ///
    /// # Panics
    /// When a condition does not fit (see [`try_connect`](Self::try_connect)).
    #[track_caller]
    pub fn connect(self) -> Connection {
        self.receiver.connect()
    }

    /// [`connect`](Self::connect), returning a condition that does not fit (a field the model
    /// does not have, a condition on `post_delete`) instead of panicking.
    pub fn try_connect(self) -> std::result::Result<Connection, herald_dispatch::ConnectError> {
        self.receiver.try_connect()
    }
}

/// Background receivers on the `post_save` and `post_delete` signals.
pub trait Background<'s, M: Model> {
    /// A background receiver: every write of `M` adds a `kind` task in its transaction; a
    /// [`Worker`] that knows `kind` runs it after the commit with the instance as it was written.
    #[track_caller]
    fn background(self, kind: &'static str, options: TaskOptions) -> BackgroundBuilder<'s>;
}

impl<'s, M: Model> Background<'s, M> for ModelSignal<'s, OnPostSave, M> {
    #[track_caller]
    fn background(self, kind: &'static str, options: TaskOptions) -> BackgroundBuilder<'s> {
        let receiver = self
            .background_phase()
            .receiver(move |e: &PostSave<'_, M>| {
                if e.raw && options.skip_raw {
                    return Ok(());
                }
                let mut task = Task::for_instance(kind, e.instance, &options);
                if let (Some(previous), Some(changed)) = (e.previous(), e.changed_fields()) {
                    task = task.with_changes(previous, changed);
                }
                e.conn()?.enqueue(task)?;
                Ok(())
            })
            .name(kind);
        BackgroundBuilder { receiver }
    }
}

impl<'s, M: Model> Background<'s, M> for ModelSignal<'s, OnPostDelete, M> {
    #[track_caller]
    fn background(self, kind: &'static str, options: TaskOptions) -> BackgroundBuilder<'s> {
        let receiver = self
            .background_phase()
            .receiver(move |e: &PostDelete<'_, M>| {
                e.conn()?
                    .enqueue(Task::for_instance(kind, e.instance, &options))?;
                Ok(())
            })
            .name(kind);
        BackgroundBuilder { receiver }
    }
}

/// One task row, as inspection shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRow {
    /// Its id.
    pub id: i64,
    /// Its kind.
    pub kind: String,
    /// Its queue.
    pub queue: String,
    /// Its state.
    pub state: TaskState,
    /// Attempts made so far.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// When it was added (µs since the epoch).
    pub created_at: i64,
    /// When it may run next (µs since the epoch).
    pub run_at: i64,
    /// The payload (JSON text).
    pub payload: String,
}

/// Counts of tasks by queue and state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskCount {
    /// The queue.
    pub queue: String,
    /// The state.
    pub state: TaskState,
    /// How many.
    pub count: u64,
}

/// Inspect and control the task queue; from [`Db::tasks`].
#[derive(Debug)]
pub struct TaskQueue<'a> {
    db: &'a Db,
}

const ROW_COLUMNS: &str =
    "id, kind, queue, state, attempt, max_attempts, last_error, created_at, run_at, payload";
const ROW_TYPES: &[SqlType] = &[
    SqlType::Int,
    SqlType::Text,
    SqlType::Text,
    SqlType::Text,
    SqlType::Int,
    SqlType::Int,
    SqlType::Text,
    SqlType::Int,
    SqlType::Int,
    SqlType::Text,
];

/// One row of [`ROW_COLUMNS`] as a [`TaskRow`]; a value that is not what the table holds (a NULL
/// where there is none, a state that is not one) is [`Error::TaskQueue`] for `op`, naming the
/// task and the column, never a default.
fn task_row(op: &'static str, row: Vec<Value>) -> Result<TaskRow> {
    let mut columns = Columns::new(op, row);
    let id = columns.int("id")?;
    columns.id = Some(id);
    Ok(TaskRow {
        id,
        kind: columns.text("kind")?,
        queue: columns.text("queue")?,
        state: columns.state()?,
        attempt: columns.count("attempt")?,
        max_attempts: columns.count("max_attempts")?,
        last_error: columns.optional_text("last_error")?,
        created_at: columns.int("created_at")?,
        run_at: columns.int("run_at")?,
        payload: columns.text("payload")?,
    })
}

/// The values of one row of the tasks table, read in order, each checked against the column's
/// type; errors name the operation, the task (once its id is read) and the column.
struct Columns {
    op: &'static str,
    id: Option<i64>,
    values: std::vec::IntoIter<Value>,
}

impl Columns {
    fn new(op: &'static str, row: Vec<Value>) -> Self {
        Columns {
            op,
            id: None,
            values: row.into_iter(),
        }
    }

    fn bad(&self, column: &str, found: &str) -> Error {
        let task = match self.id {
            Some(id) => format!("task {id}"),
            None => "a task row".to_owned(),
        };
        Error::TaskQueue {
            op: self.op,
            reason: format!("{task}: column `{column}` holds {found}, which herald cannot read"),
        }
    }

    fn next(&mut self, column: &str) -> Result<Value> {
        self.values
            .next()
            .ok_or_else(|| self.bad(column, "nothing (the row is short)"))
    }

    fn int(&mut self, column: &str) -> Result<i64> {
        match self.next(column)? {
            Value::Int(i) => Ok(i),
            other => Err(self.bad(column, &describe(&other))),
        }
    }

    fn count(&mut self, column: &str) -> Result<u32> {
        let n = self.int(column)?;
        u32::try_from(n).map_err(|_| self.bad(column, &n.to_string()))
    }

    fn optional_text(&mut self, column: &str) -> Result<Option<String>> {
        match self.next(column)? {
            Value::Text(s) => Ok(Some(s)),
            Value::Null => Ok(None),
            other => Err(self.bad(column, &describe(&other))),
        }
    }

    fn text(&mut self, column: &str) -> Result<String> {
        match self.optional_text(column)? {
            Some(s) => Ok(s),
            None => Err(self.bad(column, "NULL")),
        }
    }

    fn state(&mut self) -> Result<TaskState> {
        let raw = self.text("state")?;
        TaskState::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| self.bad("state", &format!("`{}`", shown(&raw))))
    }
}

/// A stored value as an error shows it.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "NULL".to_owned(),
        Value::Text(s) => format!("text `{}`", shown(s)),
        other => format!("{other:?}"),
    }
}

/// A task's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum TaskState {
    /// Waiting for a worker, possibly until a later `run_at` (a retry's backoff). Pending.
    Available,
    /// Claimed by a worker, under a lease. Pending.
    Running,
    /// Ran to completion. Finished.
    Completed,
    /// Failed its last attempt, or can never run (unknown kind, undecodable payload). Finished.
    Dead,
    /// Cancelled before it finished. Finished.
    Cancelled,
}

impl TaskState {
    /// Every state: pending first, then finished.
    pub const ALL: [TaskState; 5] = [
        TaskState::Available,
        TaskState::Running,
        TaskState::Completed,
        TaskState::Dead,
        TaskState::Cancelled,
    ];

    /// The state as it is stored: `"available"`, `"running"`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Available => "available",
            TaskState::Running => "running",
            TaskState::Completed => "completed",
            TaskState::Dead => "dead",
            TaskState::Cancelled => "cancelled",
        }
    }

    /// Work still to do (`available`, `running`): what [`TaskQueue::cancel`] stops.
    pub fn is_pending(self) -> bool {
        matches!(self, TaskState::Available | TaskState::Running)
    }

    /// Done with (`completed`, `dead`, `cancelled`): no worker runs it unless it is retried; what
    /// [`TaskQueue::purge`] deletes.
    pub fn is_finished(self) -> bool {
        !self.is_pending()
    }

    /// The state named `raw`, or [`Error::TaskQueue`] for operation `op` naming it.
    fn named(op: &'static str, raw: &str) -> Result<TaskState> {
        TaskState::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| Error::TaskQueue {
                op,
                reason: format!(
                    "`{}` is not a task state (one of {})",
                    shown(raw),
                    TaskState::ALL.map(TaskState::as_str).join(", ")
                ),
            })
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TaskState {
    type Err = Error;

    /// One of the states' names; anything else is [`Error::TaskQueue`] naming it.
    fn from_str(raw: &str) -> Result<TaskState> {
        TaskState::named("state", raw)
    }
}

/// The state [`TaskQueue::purge`] would delete tasks of, or the error it would return: only
/// finished states (`completed`, `dead`, `cancelled`) are purged. Pending work (`available`,
/// `running`) is cancelled instead ([`TaskQueue::cancel`], [`TaskQueue::cancel_kind`]), then
/// purged as `cancelled`; deleting it would lose it without a trace. For a caller that checks
/// its input before it reaches the database (the dashboard answers 400 with this message).
pub fn purgeable(state: &str) -> Result<TaskState> {
    let state = TaskState::named("purge", state)?;
    state.purgeable()?;
    Ok(state)
}

impl TaskState {
    /// `Ok` for a finished state; pending work is [`Error::TaskQueue`] saying to cancel it.
    fn purgeable(self) -> Result<()> {
        let state = self;
        if state.is_finished() {
            return Ok(());
        }
        let holder = if state == TaskState::Running {
            "that a worker holds"
        } else {
            "waiting for a worker"
        };
        Err(Error::TaskQueue {
            op: "purge",
            reason: format!(
                "{state} tasks cannot be purged: they are pending work {holder}; cancel them \
                 instead, then purge `cancelled` (purge takes completed, dead, cancelled)"
            ),
        })
    }
}

/// A value from the caller, cut to a length fit to echo in a message.
fn shown(value: &str) -> String {
    const MAX: usize = 40;
    if value.chars().count() <= MAX {
        value.to_owned()
    } else {
        let cut: String = value.chars().take(MAX).collect();
        format!("{cut}… ({} bytes)", value.len())
    }
}

impl TaskQueue<'_> {
    fn sql(&self, sql: &str) -> String {
        let dialect = if self.db.is_postgres() {
            Dialect::Postgres
        } else {
            Dialect::Sqlite
        };
        numbered(dialect, sql)
    }

    /// How many tasks are in each (queue, state). Tasks still in the outbox (appended, not yet
    /// moved by a worker) count as `available`, as the move will make them: each row without a
    /// unique key once, each unique key once per queue unless an available task of that key
    /// already counts. A read: it moves nothing.
    pub async fn counts(&self) -> Result<Vec<TaskCount>> {
        let sql = "SELECT queue, state, COUNT(*) FROM (\
             SELECT queue, state FROM herald_tasks \
             UNION ALL SELECT queue, 'available' FROM herald_outbox WHERE unique_key IS NULL \
             UNION ALL SELECT queue, 'available' FROM (SELECT DISTINCT queue, unique_key FROM herald_outbox o \
                 WHERE unique_key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM herald_tasks t \
                     WHERE t.unique_key = o.unique_key AND t.state = 'available')) AS keyed\
             ) AS tasks GROUP BY queue, state ORDER BY queue, state";
        let rows = self
            .db
            .read(move |c| c.query(sql, &[], &[SqlType::Text, SqlType::Text, SqlType::Int]))
            .await?;
        rows.into_iter()
            .map(|row| {
                let mut columns = Columns::new("counts", row);
                Ok(TaskCount {
                    queue: columns.text("queue")?,
                    state: columns.state()?,
                    count: columns.int("count").map(|n| n.max(0) as u64)?,
                })
            })
            .collect()
    }

    /// Tasks in `state`, newest first, at most `limit`.
    ///
    /// Listing `available` tasks first moves the tasks still in the outbox into the tasks table,
    /// as a worker would (waiting for a worker that is moving them), so that the list holds every
    /// committed task with its final id; that is a write, on SQLite through its one writer. The
    /// other states are reads.
    pub async fn list(&self, state: TaskState, limit: usize) -> Result<Vec<TaskRow>> {
        let sql = self.sql(&format!(
            "SELECT {ROW_COLUMNS} FROM herald_tasks WHERE state = ? ORDER BY id DESC LIMIT ?"
        ));
        let params = vec![
            Value::Text(state.as_str().to_owned()),
            Value::Int(limit.min(10_000) as i64),
        ];
        let rows = if state == TaskState::Available {
            let (moved, rows) = self
                .db
                .run(move |c| {
                    c.atomic(|c| {
                        let moved = move_all(c)?;
                        Ok((moved, c.query(&sql, &params, ROW_TYPES)?))
                    })
                })
                .await?;
            wake_if(self.db, moved);
            rows
        } else {
            self.db
                .read(move |c| c.query(&sql, &params, ROW_TYPES))
                .await?
        };
        rows.into_iter().map(|row| task_row("list", row)).collect()
    }

    /// Dead tasks with their errors, newest first.
    pub async fn dead(&self, limit: usize) -> Result<Vec<TaskRow>> {
        self.list(TaskState::Dead, limit).await
    }

    /// One task, by the id a listing showed. (A task still in the outbox has no id yet: see
    /// [`list`](Self::list).)
    pub async fn get(&self, id: i64) -> Result<Option<TaskRow>> {
        let sql = self.sql(&format!(
            "SELECT {ROW_COLUMNS} FROM herald_tasks WHERE id = ?"
        ));
        let rows = self
            .db
            .read(move |c| c.query(&sql, &[Value::Int(id)], ROW_TYPES))
            .await?;
        rows.into_iter()
            .next()
            .map(|row| task_row("get", row))
            .transpose()
    }

    async fn change(&self, sql: &str, params: Vec<Value>) -> Result<u64> {
        let sql = self.sql(sql);
        let changed = self.db.run(move |c| c.execute(&sql, &params)).await?;
        if changed > 0 {
            self.db.tasks_added().notify_one();
        }
        Ok(changed)
    }

    /// Run `sql` after moving the outbox (see [`move_all`]), in one transaction: for the
    /// operations that name tasks by id or by kind, which must find appended tasks too.
    async fn change_moved(&self, sql: &str, params: Vec<Value>) -> Result<u64> {
        let sql = self.sql(sql);
        let (moved, changed) = self
            .db
            .run(move |c| {
                c.atomic(|c| {
                    let moved = move_all(c)?;
                    Ok((moved, c.execute(&sql, &params)?))
                })
            })
            .await?;
        wake_if(self.db, moved);
        Ok(changed)
    }

    /// Run a dead, cancelled or failed-and-waiting task again now, with a fresh set of attempts;
    /// true if there was such a task. Tasks still in the outbox are moved first (in the same
    /// transaction), so that the id is the one a listing shows.
    pub async fn retry(&self, id: i64) -> Result<bool> {
        let retried = self
            .change_moved(
                "UPDATE herald_tasks SET state = 'available', attempt = 0, run_at = ?, finished_at = NULL \
                 WHERE id = ? AND state IN ('dead', 'cancelled', 'available')",
                vec![Value::Int(queue::now_micros()), Value::Int(id)],
            )
            .await?
            > 0;
        if retried {
            self.db.tasks_added().notify_one();
        }
        Ok(retried)
    }

    /// Retry every dead task; returns how many.
    pub async fn retry_dead(&self) -> Result<u64> {
        self.change(
            "UPDATE herald_tasks SET state = 'available', attempt = 0, run_at = ?, finished_at = NULL WHERE state = 'dead'",
            vec![Value::Int(queue::now_micros())],
        )
        .await
    }

    /// Cancel a pending task: an `available` one will not run; a `running` one's current attempt
    /// is not interrupted (a worker runs it to its end), but its outcome is not recorded and it
    /// is not retried. The task is then `cancelled` (purgeable, or [`retry`](Self::retry)able).
    /// True if the task was pending; false if there is no such task or it had already finished
    /// (read it with [`get`](Self::get) to tell which). Tasks still in the outbox are moved first
    /// (in the same transaction), so that the id is the one a listing shows.
    pub async fn cancel(&self, id: i64) -> Result<bool> {
        Ok(self
            .change_moved(
                "UPDATE herald_tasks SET state = 'cancelled', finished_at = ?, lease_until = NULL \
                 WHERE id = ? AND state IN ('available', 'running')",
                vec![Value::Int(queue::now_micros()), Value::Int(id)],
            )
            .await?
            > 0)
    }

    /// Cancel every pending (`available` or `running`) task of `kind`, as [`cancel`](Self::cancel)
    /// does one; returns how many. Tasks still in the outbox are moved first (in the same
    /// transaction), so they are cancelled too. An empty `kind` is [`Error::TaskQueue`].
    pub async fn cancel_kind(&self, kind: &str) -> Result<u64> {
        if kind.is_empty() {
            return Err(Error::TaskQueue {
                op: "cancel",
                reason: "no task kind given (an empty kind names no task)".to_owned(),
            });
        }
        self.change_moved(
            "UPDATE herald_tasks SET state = 'cancelled', finished_at = ?, lease_until = NULL \
             WHERE kind = ? AND state IN ('available', 'running')",
            vec![
                Value::Int(queue::now_micros()),
                Value::Text(kind.to_owned()),
            ],
        )
        .await
    }

    /// Delete every task in `state`, a finished state (`completed`, `dead` or `cancelled`);
    /// returns how many. Pending work is not deleted: `available` and `running` are
    /// [`Error::TaskQueue`] saying to cancel instead (see [`purgeable`]); nothing is deleted then.
    pub async fn purge(&self, state: TaskState) -> Result<u64> {
        state.purgeable()?;
        let sql = self.sql("DELETE FROM herald_tasks WHERE state = ?");
        let state = Value::Text(state.as_str().to_owned());
        self.db.run(move |c| c.execute(&sql, &[state])).await
    }
}

/// Move every task in the outbox into the tasks table, in the caller's transaction, waiting for a
/// worker that is moving (see [`queue::move_appended`]); true if it moved any. Bounded by the rows
/// there when it starts: tasks appended meanwhile may stay for a worker. Once the transaction
/// commits, the caller wakes a worker of this process if it moved any ([`wake_if`]).
fn move_all(conn: &crate::store::conn::Conn) -> Result<bool> {
    let appended = conn.query("SELECT COUNT(*) FROM herald_outbox", &[], &[SqlType::Int])?;
    let appended = match appended.first().and_then(|row| row.first()) {
        Some(Value::Int(n)) => (*n).max(0) as usize,
        _ => 0,
    };
    let mut moved = false;
    for _ in 0..appended.div_ceil(queue::MOVE_BATCH) {
        if queue::move_appended(conn, queue::WhenMoving::Wait)?.tasks == 0 {
            break;
        }
        moved = true;
    }
    Ok(moved)
}

/// Wake a worker of `db`'s process when an inspection moved tasks out of the outbox: a worker
/// that looked meanwhile found them neither there (being moved) nor in the tasks table (not yet
/// committed).
fn wake_if(db: &Db, moved: bool) {
    if moved {
        db.tasks_added().notify_one();
    }
}

impl Db {
    /// Inspect and control the task queue.
    pub fn tasks(&self) -> TaskQueue<'_> {
        TaskQueue { db: self }
    }

    /// Statistics per task kind, as this process's workers recorded them.
    pub fn task_stats(&self) -> Vec<TaskKindStats> {
        self.extension::<stats::TaskStats>().snapshot()
    }

    /// Add a task outside any transaction (inside one, use [`crate::Tx::enqueue`]).
    pub async fn enqueue(&self, task: Task) -> Result<()> {
        self.run(move |conn| conn.enqueue(task)).await
    }
}

/// The runner a worker keeps per task kind.
pub(crate) type Runner = Arc<
    dyn Fn(
            serde_json::Value,
            TaskContext,
        ) -> futures::future::BoxFuture<'static, std::result::Result<(), RunError>>
        + Send
        + Sync,
>;

/// Why an attempt did not complete.
#[derive(Debug)]
pub(crate) enum RunError {
    /// The payload cannot be turned into what the task takes: retrying cannot help.
    Undecodable(String),
    /// The task failed; it may be retried.
    Failed(String),
}
