//! The floor under the drain rows: what draining the queue costs with nothing but the worker's
//! statements, sent through the bare driver (rusqlite, the `postgres` crate) from one thread.
//!
//! One transaction a turn, as the worker's `settle` (`herald/src/tasks/producer.rs`): mark the
//! previous turn's tasks completed in one statement, move the tasks appended to the outbox into
//! the tasks table, then claim up to [`DRAIN_CONCURRENCY`] tasks, reading every column the worker
//! reads; on PostgreSQL with `synchronous_commit` off for the transaction, as the worker's. The
//! tasks do nothing and run nowhere: a claimed task is completed by the next turn. The statements
//! are the SQL text of `herald/src/tasks/queue.rs` (`move_appended`, `claim`, `complete_many`),
//! copied: a change there must be made here too, or the floor measures something else.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{DRAIN_CONCURRENCY, Drained, now_us};

/// The worker's lease (its default), in µs.
const LEASE_US: i64 = 10_000_000;
/// What the floor writes in the `worker` column.
const WORKER: &str = "floor";
/// The queue the drain rows' tasks are in.
const QUEUE: &str = "default";

/// The columns a claim returns (`CLAIMED_COLUMNS` in `queue.rs`).
const CLAIMED_COLUMNS: &str =
    "id, kind, payload, attempt, max_attempts, timeout_ms, created_at, started_at";

/// `queue::MOVE_BATCH`: the most appended tasks one move takes.
const MOVE_BATCH: i64 = 1000;

/// `queue::MOVE_CLASS`: the advisory-lock class of the move on PostgreSQL.
const MOVE_CLASS: i32 = 0x6865_726d;

/// `queue::move_appended`'s statement (its INSERT is `MOVE_INSERT`, returning the moved tasks'
/// queues on PostgreSQL only); on SQLite followed by [`MOVE_DELETE_SQLITE`] when it changed a row.
fn move_sql(dialect: Dialect) -> String {
    const COLUMNS: &str = "id, kind, queue, payload, priority, max_attempts, timeout_ms, unique_key, created_at, run_at";
    let taken = match dialect {
        Dialect::Sqlite => format!("SELECT {COLUMNS} FROM herald_outbox ORDER BY id LIMIT ?1"),
        Dialect::Postgres => format!(
            "DELETE FROM herald_outbox WHERE id IN (SELECT id FROM herald_outbox \
             WHERE (SELECT pg_try_advisory_xact_lock({MOVE_CLASS}, 'herald_outbox'::regclass::oid::int4)) \
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING {COLUMNS}"
        ),
    };
    let returning = match dialect {
        Dialect::Sqlite => "",
        Dialect::Postgres => " RETURNING queue",
    };
    format!(
        "WITH taken AS ({taken}) INSERT INTO herald_tasks \
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
         DO UPDATE SET payload = excluded.payload{returning}"
    )
}

/// The second statement of `queue::move_appended` on SQLite.
const MOVE_DELETE_SQLITE: &str =
    "DELETE FROM herald_outbox WHERE id IN (SELECT id FROM herald_outbox ORDER BY id LIMIT ?1)";

/// `queue::claim`'s statement for one queue.
fn claim_sql(dialect: Dialect) -> String {
    let p = dialect.placeholder();
    let pick = format!(
        "SELECT id FROM herald_tasks WHERE state = 'available' AND run_at <= {now_p} AND queue IN ({list}) \
         ORDER BY priority DESC, run_at, id LIMIT {limit_p}",
        now_p = p(1),
        list = p(5),
        limit_p = p(2),
    );
    let set = format!(
        "state = 'running', attempt = attempt + 1, started_at = {now_p}, lease_until = {lease_p}, worker = {worker_p}",
        now_p = p(1),
        lease_p = p(3),
        worker_p = p(4),
    );
    match dialect {
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
    }
}

/// `queue::complete_many`'s statement for `tasks` tasks (one chunk: the worker's are of 200).
fn complete_sql(dialect: Dialect, tasks: usize) -> String {
    let p = dialect.placeholder();
    let which = (0..tasks)
        .map(|i| format!("(id = {} AND attempt = {})", p(2 + 2 * i), p(3 + 2 * i)))
        .collect::<Vec<_>>()
        .join(" OR ");
    // SQLite: `+state`, so that each task is looked up by its key (see `update_many_sql`).
    let state = match dialect {
        Dialect::Sqlite => "+state",
        Dialect::Postgres => "state",
    };
    format!(
        "UPDATE herald_tasks SET state = 'completed', finished_at = {}, lease_until = NULL, last_error = NULL \
         WHERE {state} = 'running' AND ({which})",
        p(1)
    )
}

/// Which SQL the statements are written in.
#[derive(Clone, Copy)]
enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The numbered placeholder `n` (`?1`, `$1`).
    fn placeholder(self) -> fn(usize) -> String {
        match self {
            Self::Sqlite => |n| format!("?{n}"),
            Self::Postgres => |n| format!("${n}"),
        }
    }
}

/// One claimed task, as the worker decodes it.
struct Claimed {
    id: i64,
    attempt: i64,
}

/// Drain the `tasks` tasks already in the SQLite database at `path`.
pub(super) fn sqlite(path: &Path, tasks: usize) -> anyhow::Result<Drained> {
    let mut conn =
        rusqlite::Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.execute_batch("PRAGMA synchronous = NORMAL;")?;
    let claim = claim_sql(Dialect::Sqlite);
    let move_appended = move_sql(Dialect::Sqlite);
    let started = Instant::now();
    let mut held: Vec<Claimed> = Vec::new();
    let mut completed = 0;
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if !held.is_empty() {
            let mut statement = tx.prepare_cached(&complete_sql(Dialect::Sqlite, held.len()))?;
            let mut params = vec![now_us()];
            params.extend(held.iter().flat_map(|c| [c.id, c.attempt]));
            completed += statement.execute(rusqlite::params_from_iter(params))?;
        }
        let moved = tx.prepare_cached(&move_appended)?.execute([MOVE_BATCH])?;
        if moved > 0 {
            tx.prepare_cached(MOVE_DELETE_SQLITE)?
                .execute([MOVE_BATCH])?;
        }
        let now = now_us();
        let claimed = {
            let mut statement = tx.prepare_cached(&claim)?;
            let rows = statement.query_map(
                rusqlite::params![now, DRAIN_CONCURRENCY as i64, now + LEASE_US, WORKER, QUEUE],
                |row| {
                    let claimed = Claimed {
                        id: row.get(0)?,
                        attempt: row.get(3)?,
                    };
                    std::hint::black_box((
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, i64>(4)?,
                        row.get::<_, i64>(5)?,
                        row.get::<_, i64>(6)?,
                        row.get::<_, i64>(7)?,
                    ));
                    Ok(claimed)
                },
            )?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        };
        tx.commit()?;
        let last = claimed.is_empty();
        held = claimed;
        if last {
            break;
        }
    }
    let elapsed = started.elapsed();
    if completed != tasks {
        bail!("the SQLite floor completed {completed} tasks, not {tasks}");
    }
    Ok(Drained { tasks, elapsed })
}

/// Drain the `tasks` tasks already in `schema` of the PostgreSQL database at `url`.
pub(super) fn postgres(url: &str, schema: &str, tasks: usize) -> anyhow::Result<Drained> {
    let mut client = postgres::Client::connect(url, postgres::NoTls)
        .with_context(|| format!("connecting to {url}"))?;
    client.batch_execute(&format!("SET search_path TO \"{schema}\""))?;
    let claim = client.prepare(&claim_sql(Dialect::Postgres))?;
    let move_appended = client.prepare(&move_sql(Dialect::Postgres))?;
    let mut completes: HashMap<usize, postgres::Statement> = HashMap::new();
    let started = Instant::now();
    let mut held: Vec<Claimed> = Vec::new();
    let mut completed = 0;
    loop {
        let mut tx = client.transaction()?;
        tx.batch_execute("SET LOCAL synchronous_commit = off")?;
        if !held.is_empty() {
            let statement = match completes.get(&held.len()) {
                Some(statement) => statement.clone(),
                None => {
                    let statement = tx.prepare(&complete_sql(Dialect::Postgres, held.len()))?;
                    completes.insert(held.len(), statement.clone());
                    statement
                }
            };
            let now = now_us();
            let attempts: Vec<i32> = held.iter().map(|c| c.attempt as i32).collect();
            let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![&now];
            for (c, attempt) in held.iter().zip(&attempts) {
                params.push(&c.id);
                params.push(attempt);
            }
            completed += tx.execute(&statement, &params)? as usize;
        }
        std::hint::black_box(tx.query(&move_appended, &[&MOVE_BATCH])?);
        let now = now_us();
        let rows = tx.query(
            &claim,
            &[
                &now,
                &(DRAIN_CONCURRENCY as i64),
                &(now + LEASE_US),
                &WORKER,
                &QUEUE,
            ],
        )?;
        let claimed = rows
            .iter()
            .map(|row| {
                let claimed = Claimed {
                    id: row.try_get(0)?,
                    attempt: i64::from(row.try_get::<_, i32>(3)?),
                };
                std::hint::black_box((
                    row.try_get::<_, String>(1)?,
                    row.try_get::<_, String>(2)?,
                    row.try_get::<_, i32>(4)?,
                    row.try_get::<_, i64>(5)?,
                    row.try_get::<_, i64>(6)?,
                    row.try_get::<_, i64>(7)?,
                ));
                Ok(claimed)
            })
            .collect::<Result<Vec<_>, postgres::Error>>()?;
        tx.commit()?;
        let last = claimed.is_empty();
        held = claimed;
        if last {
            break;
        }
    }
    let elapsed = started.elapsed();
    if completed != tasks {
        bail!("the PostgreSQL floor completed {completed} tasks, not {tasks}");
    }
    Ok(Drained { tasks, elapsed })
}
