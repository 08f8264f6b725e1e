//! The workers' SQL over the outbox's table, written once for both dialects: claim, complete,
//! fail, heartbeat, rescue, prune. (Appending rows is the store's: `store/outbox.rs`.)
//!
//! Times are integer microseconds since the Unix epoch in both databases, so comparisons need no
//! dialect-specific date functions. Every statement runs on a connection thread through [`Conn`].
//!
//! The SQL of [`claim`] and [`complete_many`] is copied in `herald-bench` (`src/tasks/floor.rs`,
//! the drain rows' floor): a change to either is made there too.

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
        let which = vec!["(id = ? AND attempt = ?)"; chunk.len()].join(" OR ");
        let sql = numbered(
            conn.dialect(),
            &format!("UPDATE herald_tasks SET {set} WHERE state = 'running' AND ({which})"),
        );
        let mut all = params.to_vec();
        for (id, attempt) in chunk {
            all.extend([Value::Int(*id), Value::Int(i64::from(*attempt))]);
        }
        changed += conn.execute(&sql, &all)?;
    }
    Ok(changed)
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
