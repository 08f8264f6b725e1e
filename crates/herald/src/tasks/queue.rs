//! The workers' SQL over the outbox's tables, written once for both dialects: move appended
//! tasks, claim, complete, fail, heartbeat, rescue, prune. (Appending rows is the store's:
//! `store/outbox.rs`.)
//!
//! Times are integer microseconds since the Unix epoch in both databases, so comparisons need no
//! dialect-specific date functions. Every statement runs on a connection thread through [`Conn`].
//!
//! The SQL of [`move_appended`], [`claim`] and [`complete_many`] is copied in `herald-bench`
//! (`src/tasks/floor.rs`, the drain rows' floor): a change to any is made there too.

use std::time::Duration;

use crate::error::Result;
use crate::model::{Dialect, numbered, placeholder};
use crate::store::conn::Conn;
pub(crate) use crate::store::outbox::{BUSY_POLL_WINDOW, NOTIFY_EVERY, micros, now_micros};
use crate::tasks::TaskState;
use crate::value::{SqlType, Value};

/// A claimed task.
#[derive(Clone, Debug)]
pub(crate) struct Claimed {
    pub(crate) id: i64,
    pub(crate) kind: String,
    pub(crate) payload: String,
    pub(crate) attempt: u32,
    pub(crate) max_attempts: u32,
    pub(crate) timeout: Duration,
    pub(crate) created_at: i64,
    pub(crate) started_at: i64,
}

const CLAIMED_COLUMNS: &str =
    "id, kind, payload, attempt, max_attempts, timeout_ms, created_at, started_at";
const CLAIMED_TYPES: &[SqlType] = &[
    SqlType::Int,
    SqlType::Text,
    SqlType::Text,
    SqlType::Int,
    SqlType::Int,
    SqlType::Int,
    SqlType::Int,
    SqlType::Int,
];

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        _ => 0,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Text(s) => s.clone(),
        _ => String::new(),
    }
}

/// The most appended tasks one [`move_appended`] takes: a bound on how long one worker's turn
/// holds SQLite's writer (a backlog moves over several turns, each waking the other workers).
pub(crate) const MOVE_BATCH: usize = 1000;

/// The advisory-lock class of the move on PostgreSQL (the first `int4` of the two-key form; the
/// second is the outbox table's oid, so that each schema has its own lock).
const MOVE_CLASS: i32 = 0x6865_726d;

/// What [`move_appended`] does when another session is moving (PostgreSQL; SQLite has one writer,
/// so nobody else can be).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WhenMoving {
    /// Move nothing and go on: a worker then claims what is already in `herald_tasks`, and the
    /// mover wakes the workers when it commits (see [`Moved::queues`]). Never waits.
    Skip,
    /// Wait for the mover to commit, then move what is left: an inspection that must see every
    /// appended task with its final id.
    Wait,
}

/// What one [`move_appended`] moved.
#[derive(Debug, Default)]
pub(crate) struct Moved {
    /// The tasks it added to `herald_tasks` or coalesced into an available one there (one per
    /// task, not per appended row).
    pub(crate) tasks: usize,
    /// PostgreSQL: the queue of each of those tasks, for the `NOTIFY` that wakes other hosts'
    /// workers. SQLite: empty (its workers are all in the writer's process, and reading the
    /// queues back cost the move a fifth of its time).
    pub(crate) queues: Vec<String>,
}

/// The columns an appended row carries, in the outbox and in the rows a move takes.
const APPENDED_COLUMNS: &str =
    "id, kind, queue, payload, priority, max_attempts, timeout_ms, unique_key, created_at, run_at";

/// The move's INSERT, after the dialect's `WITH taken AS (..)`: the rows taken, coalesced by
/// unique key, into `herald_tasks`, in the order they were appended.
///
/// Rows of one key become one task: the oldest row's (its place in the queue, its `run_at`,
/// options), with the newest row's payload (the highest id), as if the newest appends had found
/// the oldest one already pending. A row whose key has an available task in `herald_tasks`
/// gives it its payload (`ON CONFLICT .. DO UPDATE`, as an append did before the outbox); a key
/// appears once in the batch, so that no row is updated twice in one statement (PostgreSQL
/// refuses that). Rows without a key are each a task of their own, and skip the window
/// functions: ranking the whole batch costs SQLite about three times what inserting it does.
const MOVE_INSERT: &str = "INSERT INTO herald_tasks \
     (kind, queue, state, payload, priority, max_attempts, timeout_ms, unique_key, created_at, run_at) \
     SELECT kind, queue, 'available', payload, priority, max_attempts, timeout_ms, unique_key, created_at, run_at \
     FROM (SELECT id, kind, queue, payload, priority, max_attempts, timeout_ms, unique_key, created_at, run_at \
           FROM taken WHERE unique_key IS NULL \
           UNION ALL \
           SELECT id, kind, queue, newest, priority, max_attempts, timeout_ms, unique_key, created_at, run_at \
           FROM (SELECT id, kind, queue, priority, max_attempts, timeout_ms, unique_key, created_at, run_at, \
                   first_value(payload) OVER (PARTITION BY unique_key ORDER BY id DESC) AS newest, \
                   row_number() OVER (PARTITION BY unique_key ORDER BY id) AS nth \
                 FROM taken WHERE unique_key IS NOT NULL) AS keyed \
           WHERE nth = 1) AS batch \
     ORDER BY id \
     ON CONFLICT (unique_key) WHERE state = 'available' AND unique_key IS NOT NULL \
     DO UPDATE SET payload = excluded.payload";

/// The move's statement, its one parameter the most rows to take: on SQLite the INSERT alone,
/// whose count of changes is the tasks it moved (an upsert counts the rows it inserted and those
/// its `DO UPDATE` changed); on PostgreSQL the DELETE from the outbox feeding it, returning each
/// moved task's queue.
fn move_sql(dialect: Dialect) -> String {
    match dialect {
        Dialect::Sqlite => format!(
            "WITH taken AS (SELECT {APPENDED_COLUMNS} FROM herald_outbox ORDER BY id LIMIT ?1) \
             {MOVE_INSERT}"
        ),
        Dialect::Postgres => format!(
            "WITH taken AS (DELETE FROM herald_outbox WHERE id IN (SELECT id FROM herald_outbox \
             WHERE (SELECT pg_try_advisory_xact_lock({MOVE_CLASS}, 'herald_outbox'::regclass::oid::int4)) \
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING {APPENDED_COLUMNS}) \
             {MOVE_INSERT} RETURNING queue"
        ),
    }
}

/// Move up to [`MOVE_BATCH`] appended tasks, the oldest first, from the outbox into
/// `herald_tasks`, in one transaction with deleting them from the outbox (the caller's, or one of
/// its own): a crash before its commit leaves them all in the outbox, after it all in
/// `herald_tasks`, so none is lost and none is added twice.
///
/// PostgreSQL: one statement (`DELETE .. RETURNING` in a CTE feeding the INSERT). Movers take
/// turns on a transaction-scoped advisory lock, held until the caller's transaction ends: with
/// one mover at a time, rows move in the order of their ids, so the newest payload of a key wins
/// over an older one moved by a concurrent mover, and two movers never wait on each other's
/// unique keys (which could deadlock). `when_moving` says what to do while another holds it; the
/// `FOR UPDATE SKIP LOCKED` also keeps a row from being taken twice. SQLite (one writer): the
/// INSERT reads the oldest rows, and a DELETE of the same rows follows, only when it moved any.
pub(crate) fn move_appended(conn: &Conn, when_moving: WhenMoving) -> Result<Moved> {
    let dialect = conn.dialect();
    let limit = [Value::Int(MOVE_BATCH as i64)];
    let sql = move_sql(dialect);
    let moved = |conn: &Conn| -> Result<Moved> {
        if dialect == Dialect::Postgres && when_moving == WhenMoving::Wait {
            conn.query(
                &format!(
                    "SELECT 1 FROM (SELECT pg_advisory_xact_lock({MOVE_CLASS}, 'herald_outbox'::regclass::oid::int4)) AS locked"
                ),
                &[],
                &[SqlType::Int],
            )?;
        }
        if dialect == Dialect::Postgres {
            let queues: Vec<String> = conn
                .query(&sql, &limit, &[SqlType::Text])?
                .iter()
                .map(|row| text(&row[0]))
                .collect();
            return Ok(Moved {
                tasks: queues.len(),
                queues,
            });
        }
        let tasks = conn.execute(&sql, &limit)? as usize;
        if tasks > 0 {
            conn.execute(
                "DELETE FROM herald_outbox WHERE id IN (SELECT id FROM herald_outbox ORDER BY id LIMIT ?1)",
                &limit,
            )?;
        }
        Ok(Moved {
            tasks,
            queues: Vec::new(),
        })
    };
    if conn.in_transaction() {
        moved(conn)
    } else {
        conn.atomic(moved)
    }
}

/// Claim up to `limit` available tasks of `queues` for `worker`, in one statement: mark them
/// running, count the attempt, and give them a lease until `now + lease`.
pub(crate) fn claim(
    conn: &Conn,
    queues: &[String],
    limit: usize,
    worker: &str,
    lease: Duration,
) -> Result<Vec<Claimed>> {
    let dialect = conn.dialect();
    let now = now_micros();
    let list = (0..queues.len())
        .map(|i| placeholder(dialect, i + 5))
        .collect::<Vec<_>>()
        .join(", ");
    let pick = format!(
        "SELECT id FROM herald_tasks WHERE state = 'available' AND run_at <= {now_p} AND queue IN ({list}) \
         ORDER BY priority DESC, run_at, id LIMIT {limit_p}",
        now_p = placeholder(dialect, 1),
        limit_p = placeholder(dialect, 2),
    );
    let set = format!(
        "state = 'running', attempt = attempt + 1, started_at = {now_p}, lease_until = {lease_p}, worker = {worker_p}",
        now_p = placeholder(dialect, 1),
        lease_p = placeholder(dialect, 3),
        worker_p = placeholder(dialect, 4),
    );
    let sql = match dialect {
        Dialect::Sqlite => format!(
            "UPDATE herald_tasks SET {set} WHERE id IN ({pick}) RETURNING {CLAIMED_COLUMNS}"
        ),
        Dialect::Postgres => format!(
            "WITH picked AS ({pick} FOR UPDATE SKIP LOCKED) UPDATE herald_tasks t SET {set} FROM picked \
             WHERE t.id = picked.id RETURNING {}",
            CLAIMED_COLUMNS
                .split(", ")
                .map(|c| format!("t.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut params = vec![
        Value::Int(now),
        Value::Int(limit as i64),
        Value::Int(now + micros(lease)),
        Value::Text(worker.to_owned()),
    ];
    params.extend(queues.iter().map(|q| Value::Text(q.clone())));
    // SQLite needs the claim in a write transaction (`BEGIN IMMEDIATE`) so that the pick and the
    // update see one snapshot; inside one already (the worker's settle job), no savepoint is needed.
    let rows = if conn.in_transaction() {
        conn.query(&sql, &params, CLAIMED_TYPES)?
    } else {
        conn.atomic(|conn| conn.query(&sql, &params, CLAIMED_TYPES))?
    };
    let mut claimed: Vec<Claimed> = rows
        .iter()
        .map(|r| Claimed {
            id: int(&r[0]),
            kind: text(&r[1]),
            payload: text(&r[2]),
            attempt: int(&r[3]) as u32,
            max_attempts: int(&r[4]) as u32,
            timeout: Duration::from_millis(int(&r[5]).max(0) as u64),
            created_at: int(&r[6]),
            started_at: int(&r[7]),
        })
        .collect();
    claimed.sort_by_key(|c| c.id);
    Ok(claimed)
}

/// Update a task this worker holds (`running`, at `attempt`): `set` is the SET clause with `?`
/// placeholders for `params`. False when the worker no longer holds it: its lease was taken over,
/// and the attempt number fences the stale worker out.
fn update_held(
    conn: &Conn,
    set: &str,
    mut params: Vec<Value>,
    id: i64,
    attempt: u32,
) -> Result<bool> {
    let sql = numbered(
        conn.dialect(),
        &format!(
            "UPDATE herald_tasks SET {set} WHERE id = ? AND attempt = ? AND state = 'running'"
        ),
    );
    params.extend([Value::Int(id), Value::Int(i64::from(attempt))]);
    // In a savepoint: on PostgreSQL a failed statement would otherwise abort the whole transaction.
    match conn.atomic(|conn| conn.execute(&sql, &params)) {
        Ok(changed) => Ok(changed > 0),
        // Going back to `available` can collide with a newer pending task of the same unique key:
        // the newer one carries the work, so this attempt's row is closed as completed.
        Err(e)
            if e.as_db()
                .is_some_and(|db| db.kind() == crate::DbErrorKind::Unique) =>
        {
            complete(conn, id, attempt)
        }
        Err(e) => Err(e),
    }
}

/// Mark a running task completed; false when this worker no longer holds it.
pub(crate) fn complete(conn: &Conn, id: i64, attempt: u32) -> Result<bool> {
    update_held(
        conn,
        "state = 'completed', finished_at = ?, lease_until = NULL, last_error = NULL",
        vec![Value::Int(now_micros())],
        id,
        attempt,
    )
}

/// Record a failed attempt: back to `available` after `retry_in`, or `dead` when it is `None`.
/// False when this worker no longer holds the task.
pub(crate) fn fail(
    conn: &Conn,
    id: i64,
    attempt: u32,
    error: &str,
    retry_in: Option<Duration>,
) -> Result<bool> {
    let now = now_micros();
    let (state, run_at, finished) = match retry_in {
        Some(delay) => (TaskState::Available, now + micros(delay), Value::Null),
        None => (TaskState::Dead, now, Value::Int(now)),
    };
    update_held(
        conn,
        "state = ?, run_at = ?, finished_at = ?, lease_until = NULL, last_error = ?",
        vec![
            Value::Text(state.as_str().to_owned()),
            Value::Int(run_at),
            finished,
            Value::Text(error.to_owned()),
        ],
        id,
        attempt,
    )
}

/// Update many held tasks at once (`set` with `?` placeholders for `params`), each fenced by its
/// attempt; returns how many rows changed (tasks no longer held are left alone).
fn update_many_held(conn: &Conn, set: &str, params: &[Value], held: &[(i64, u32)]) -> Result<u64> {
    let mut changed = 0;
    for chunk in held.chunks(200) {
        let sql = update_many_sql(conn.dialect(), set, chunk.len());
        let mut all = params.to_vec();
        for (id, attempt) in chunk {
            all.extend([Value::Int(*id), Value::Int(i64::from(*attempt))]);
        }
        changed += conn.execute(&sql, &all)?;
    }
    Ok(changed)
}

/// The UPDATE of `held` tasks for [`update_many_held`]: `set`, then one `(id = ? AND attempt =
/// ?)` term per task. On SQLite the state test is written `+state`, which keeps the planner from
/// walking the claim index's running tasks and testing every term on each; it then looks each
/// task up by its key (a union of rowid lookups): 2.5–3x faster for 8 to 200 of 256 running
/// tasks. PostgreSQL looks them up by key as it is (and has no unary `+` for text).
fn update_many_sql(dialect: Dialect, set: &str, held: usize) -> String {
    let which = vec!["(id = ? AND attempt = ?)"; held].join(" OR ");
    let state = match dialect {
        Dialect::Sqlite => "+state",
        Dialect::Postgres => "state",
    };
    numbered(
        dialect,
        &format!("UPDATE herald_tasks SET {set} WHERE {state} = 'running' AND ({which})"),
    )
}

/// Mark many held tasks completed in one statement; returns how many this worker still held.
pub(crate) fn complete_many(conn: &Conn, held: &[(i64, u32)]) -> Result<u64> {
    update_many_held(
        conn,
        "state = 'completed', finished_at = ?, lease_until = NULL, last_error = NULL",
        &[Value::Int(now_micros())],
        held,
    )
}

/// Extend the leases of the held tasks to `now + lease`, in one statement.
pub(crate) fn heartbeat(conn: &Conn, held: &[(i64, u32)], lease: Duration) -> Result<()> {
    update_many_held(
        conn,
        "lease_until = ?",
        &[Value::Int(now_micros() + micros(lease))],
        held,
    )?;
    Ok(())
}

/// Put running tasks whose lease expired back to `available` (their worker died), or `dead` when
/// they had no attempt left. Returns how many were rescued.
pub(crate) fn rescue(conn: &Conn) -> Result<u64> {
    let d = conn.dialect();
    let now = Value::Int(now_micros());
    let retry = format!(
        "UPDATE herald_tasks SET state = 'available', worker = NULL, lease_until = NULL, \
         last_error = 'the worker running it stopped (lease expired)' \
         WHERE state = 'running' AND lease_until < {} AND attempt < max_attempts",
        placeholder(d, 1)
    );
    let dead = format!(
        "UPDATE herald_tasks SET state = 'dead', worker = NULL, lease_until = NULL, finished_at = {0}, \
         last_error = 'the worker running its last attempt stopped (lease expired)' \
         WHERE state = 'running' AND lease_until < {0} AND attempt >= max_attempts",
        placeholder(d, 1)
    );
    conn.atomic(|conn| {
        // In a savepoint of its own: a failed statement would otherwise fail the transaction.
        let retried = match conn.atomic(|conn| conn.execute(&retry, std::slice::from_ref(&now))) {
            Ok(n) => n,
            // Another pending task of the same unique key exists: close the stale ones.
            Err(e)
                if e.as_db()
                    .is_some_and(|db| db.kind() == crate::DbErrorKind::Unique) =>
            {
                0
            }
            Err(e) => return Err(e),
        };
        Ok(retried + conn.execute(&dead, std::slice::from_ref(&now))?)
    })
}

/// Delete completed tasks that finished more than `retention` ago.
pub(crate) fn prune(conn: &Conn, retention: Duration) -> Result<u64> {
    let sql = format!(
        "DELETE FROM herald_tasks WHERE state = 'completed' AND finished_at < {}",
        placeholder(conn.dialect(), 1)
    );
    conn.execute(&sql, &[Value::Int(now_micros() - micros(retention))])
}

/// Give a running task back without counting the attempt (graceful shutdown past its deadline).
pub(crate) fn release(conn: &Conn, id: i64, attempt: u32) -> Result<bool> {
    update_held(
        conn,
        "state = 'available', attempt = attempt - 1, worker = NULL, lease_until = NULL",
        Vec::new(),
        id,
        attempt,
    )
}

/// Record progress reported by a running task.
pub(crate) fn progress(conn: &Conn, id: i64, attempt: u32, progress: &str) -> Result<bool> {
    update_held(
        conn,
        "progress = ?",
        vec![Value::Text(progress.to_owned())],
        id,
        attempt,
    )
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;

    #[test]
    fn completing_held_tasks_on_sqlite_finds_each_by_its_key() {
        let db = rusqlite::Connection::open_in_memory().expect("open");
        db.execute_batch(&crate::store::outbox::tasks_migration(Dialect::Sqlite))
            .expect("create the tasks table");
        // As many held tasks as a worker's turn completes (the planner's choice depends on it).
        let held = 64;
        let sql = update_many_sql(Dialect::Sqlite, "state = 'completed'", held);
        let mut plan = db
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("explain");
        let steps: Vec<String> = plan
            .query_map(rusqlite::params_from_iter(vec![1i64; 2 * held]), |row| {
                row.get(3)
            })
            .expect("plan")
            .collect::<std::result::Result<_, _>>()
            .expect("read the plan");
        let plan = steps.join("; ");
        assert!(plan.contains("MULTI-INDEX OR"), "{plan}");
        assert!(plan.contains("INTEGER PRIMARY KEY"), "{plan}");
        assert!(!plan.contains("herald_tasks_claim"), "{plan}");
    }

    #[test]
    fn the_sqlite_moves_count_of_changes_is_one_per_task_added_or_coalesced() {
        let db = rusqlite::Connection::open_in_memory().expect("open");
        db.execute_batch(&crate::store::outbox::tasks_migration(Dialect::Sqlite))
            .expect("create the tasks table");
        db.execute_batch(&crate::store::outbox::outbox_migration(Dialect::Sqlite))
            .expect("create the outbox");
        let append = |payload: &str, key: Option<&str>| {
            db.execute(
                "INSERT INTO herald_outbox (kind, queue, payload, priority, max_attempts, \
                 timeout_ms, unique_key, created_at, run_at) VALUES ('k', 'q', ?1, 0, 3, 0, ?2, 1, 1)",
                rusqlite::params![payload, key],
            )
            .expect("append");
        };
        // k2 already has an available task: its appended row coalesces into it.
        append("k2 first", Some("k2"));
        assert_eq!(
            db.execute(&move_sql(Dialect::Sqlite), [100]).expect("move"),
            1
        );
        db.execute("DELETE FROM herald_outbox", [])
            .expect("empty the outbox");
        // Five rows, four tasks: a, k1 (two rows, one task), b, and k2's newer payload.
        append("a", None);
        append("k1 old", Some("k1"));
        append("b", None);
        append("k1 new", Some("k1"));
        append("k2 newer", Some("k2"));

        let moved = db.execute(&move_sql(Dialect::Sqlite), [100]).expect("move");

        assert_eq!(moved, 4);
        let tasks: Vec<String> = db
            .prepare("SELECT payload FROM herald_tasks ORDER BY id")
            .expect("list")
            .query_map([], |row| row.get(0))
            .expect("list")
            .collect::<std::result::Result<_, _>>()
            .expect("read");
        assert_eq!(tasks, ["k2 newer", "a", "k1 new", "b"]);
    }
}
