//! Worker presence on PostgreSQL: a worker whose process died is found through the server, in
//! about a second, instead of after its lease.
//!
//! Each worker holds a session-level advisory lock keyed by its name (and schema) on a connection
//! of its own, from before its first claim until it stops. The server releases the lock when that
//! session ends, which it does when the process dies (`kill -9`) or its network goes. Every worker
//! looks, twice a second, for the workers named on running tasks; one whose lock it can take is
//! gone, and its running tasks are put back at once (or kept as dead when they had no attempt
//! left). The lease stays the rule for a worker that is alive but stuck, and on SQLite.
//!
//! A worker that cannot take its own lock (another live worker has the same name) runs without
//! presence, on the lease alone, and says so.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::Result;
use crate::model::numbered;
use crate::store::conn::Conn;
use crate::store::outbox::now_micros;
use crate::store::pg_config::PgConfig;
use crate::value::{SqlType, Value};

/// The advisory-lock class of worker presence (the first `int4` of the two-key form).
const CLASS: i32 = 0x6865_7261;

/// How often a worker looks for workers that are gone.
pub(crate) const LOOK_EVERY: Duration = Duration::from_millis(500);

/// The lock key of worker `name` in `schema`: FNV-1a, 32 bits (stable across processes and
/// versions).
pub(crate) fn key(schema: Option<&str>, name: &str) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in schema
        .unwrap_or("public")
        .bytes()
        .chain([0])
        .chain(name.bytes())
    {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash as i32
}

/// The presence lock of one worker, held by a thread of its own for as long as this lives.
#[derive(Debug)]
pub(crate) struct Presence {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Presence {
    /// Take the lock of `key` on a connection of its own; `None` when it is held already (another
    /// live worker has this name) or the server cannot be reached (then the lease is the rule).
    pub(crate) fn hold(config: PgConfig, key: i32, name: &str) -> Option<Presence> {
        let (held, taken) = std::sync::mpsc::channel::<bool>();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let label = name.to_owned();
        let thread = std::thread::Builder::new()
            .name("herald-presence".to_owned())
            .spawn(move || hold_until(&config, key, &label, &stopping, &held))
            .ok()?;
        match taken.recv_timeout(Duration::from_secs(30)) {
            Ok(true) => Some(Presence {
                stop,
                thread: Some(thread),
            }),
            _ => {
                stop.store(true, Ordering::Relaxed);
                None
            }
        }
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock(client: &mut postgres::Client, key: i32) -> std::result::Result<bool, postgres::Error> {
    let row = client.query_one("SELECT pg_try_advisory_lock($1, $2)", &[&CLASS, &key])?;
    row.try_get(0)
}

/// The presence thread: take the lock, say whether it was taken, then keep the session (and the
/// lock) until told to stop; a lost session is opened again and the lock taken again.
fn hold_until(
    config: &PgConfig,
    key: i32,
    name: &str,
    stop: &AtomicBool,
    held: &std::sync::mpsc::Sender<bool>,
) {
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        let session = crate::store::postgres::client(config)
            .map_err(|e| e.to_string())
            .and_then(|mut client| match lock(&mut client, key) {
                Ok(true) => Ok(client),
                Ok(false) => Err(format!(
                    "another live worker is named `{name}`: this one runs without presence (its \
                     tasks are rescued after their lease only); give workers distinct names"
                )),
                Err(e) => Err(e.to_string()),
            });
        let mut client = match session {
            Ok(client) => client,
            Err(reason) => {
                tracing::warn!(target: "herald::worker", worker = name, %reason, "cannot hold the worker's presence lock");
                if first {
                    let _ = held.send(false);
                    return;
                }
                std::thread::sleep(LOOK_EVERY);
                continue;
            }
        };
        if first {
            let _ = held.send(true);
            first = false;
        }
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            if client.is_closed() || client.simple_query("").is_err() {
                tracing::warn!(target: "herald::worker", worker = name, "the presence session was lost; taking the lock again");
                break;
            }
        }
    }
}

/// Put back the running tasks of workers whose presence lock nobody holds (their session ended
/// with their process); returns how many. `me` is the worker looking (its own tasks are not
/// looked at). Runs on one connection: the lock is taken and released in the same session.
pub(crate) fn rescue_gone(conn: &Conn, schema: Option<&str>, me: &str) -> Result<u64> {
    let d = conn.dialect();
    let workers = conn.query(
        &numbered(
            d,
            "SELECT DISTINCT worker FROM herald_tasks \
             WHERE state = 'running' AND worker IS NOT NULL AND worker <> ?",
        ),
        &[Value::Text(me.to_owned())],
        &[SqlType::Text],
    )?;
    let mut rescued = 0;
    for row in workers {
        let Some(Value::Text(worker)) = row.into_iter().next() else {
            continue;
        };
        let key = Value::Int(i64::from(key(schema, &worker)));
        let class = Value::Int(i64::from(CLASS));
        let probe = conn.query(
            "SELECT pg_try_advisory_lock(CAST($1 AS int4), CAST($2 AS int4))",
            &[class.clone(), key.clone()],
            &[SqlType::Bool],
        )?;
        if probe.first().and_then(|r| r.first()) != Some(&Value::Bool(true)) {
            continue; // alive
        }
        conn.query(
            "SELECT pg_advisory_unlock(CAST($1 AS int4), CAST($2 AS int4))",
            &[class, key],
            &[SqlType::Bool],
        )?;
        rescued += put_back(conn, &worker)?;
    }
    Ok(rescued)
}

/// The running tasks of `worker` back to `available`, or `dead` without an attempt left.
fn put_back(conn: &Conn, worker: &str) -> Result<u64> {
    let d = conn.dialect();
    let who = Value::Text(worker.to_owned());
    let now = Value::Int(now_micros());
    let retry = numbered(
        d,
        "UPDATE herald_tasks SET state = 'available', worker = NULL, lease_until = NULL, \
         last_error = 'the worker running it is gone (its database session ended)' \
         WHERE state = 'running' AND worker = ? AND attempt < max_attempts",
    );
    let dead = numbered(
        d,
        "UPDATE herald_tasks SET state = 'dead', worker = NULL, lease_until = NULL, finished_at = ?, \
         last_error = 'the worker running its last attempt is gone (its database session ended)' \
         WHERE state = 'running' AND worker = ? AND attempt >= max_attempts",
    );
    conn.atomic(|conn| {
        // A pending task of the same unique key carries the work already: close these instead.
        let retried = match conn.atomic(|conn| conn.execute(&retry, std::slice::from_ref(&who))) {
            Ok(n) => n,
            Err(e) if e.as_db().is_some_and(|db| db.kind() == crate::DbErrorKind::Unique) => {
                conn.execute(
                    &numbered(
                        d,
                        "UPDATE herald_tasks SET state = 'completed', worker = NULL, \
                         lease_until = NULL, finished_at = ? WHERE state = 'running' AND worker = ?",
                    ),
                    &[now.clone(), who.clone()],
                )?;
                0
            }
            Err(e) => return Err(e),
        };
        Ok(retried + conn.execute(&dead, &[now, who])?)
    })
}

#[cfg(test)]
mod tests {
    use super::key;

    #[test]
    fn keys_are_stable_and_tell_schemas_apart() {
        assert_eq!(key(None, "host:1"), key(Some("public"), "host:1"));
        assert_ne!(key(Some("a"), "host:1"), key(Some("b"), "host:1"));
        assert_ne!(key(None, "host:1"), key(None, "host:2"));
        // Pinned (FNV-1a of "s\0n"): workers of different versions must agree on a name's key.
        assert_eq!(key(Some("s"), "n"), -1_121_145_896);
    }
}
