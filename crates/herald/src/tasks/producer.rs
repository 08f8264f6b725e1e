//! The producer: claims tasks and settles finished attempts, each turn in one transaction (record
//! the outcomes since the last turn, claim as many tasks as there are free slots), and starts the
//! claimed ones on the executor.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::error::Result;
use crate::store::conn::Conn;
use crate::store::pool::{self, HeldBy};
use crate::tasks::executor::{self, Finished, Outcome};
use crate::tasks::queue::{self, Claimed, WhenMoving};
use crate::tasks::worker::{TaskContext, Worker, WorkerReport};

/// After a task finishes while others still run, how long the worker waits for more to finish
/// before it records them and claims again, in one transaction.
const LINGER: Duration = Duration::from_millis(1);

impl Worker {
    /// Start one attempt of `task` beside the running ones (see `executor.rs`).
    pub(super) fn start(&self, running: &mut JoinSet<Finished>, task: Claimed) {
        let runner = self.kinds.get(&task.kind).cloned();
        let ctx = TaskContext {
            id: task.id,
            kind: Arc::from(task.kind.as_str()),
            attempt: task.attempt,
            max_attempts: task.max_attempts,
            db: self.db.clone(),
            changes: None,
        };
        let wait = Duration::from_micros((task.started_at - task.created_at).max(0) as u64);
        self.stats.kind(&task.kind).started(wait);
        running.spawn(executor::attempt(task, runner, ctx));
    }

    /// Decide what a finished attempt means (complete, retry after a backoff, or dead), count it,
    /// and log failures.
    pub(super) fn judge(&self, finished: Finished, report: &mut WorkerReport) -> Settle {
        let Finished { task, outcome, ran } = finished;
        let stats = self.stats.kind(&task.kind);
        let (id, attempt, kind) = (task.id, task.attempt, task.kind);
        match outcome {
            Outcome::Done => {
                report.completed += 1;
                stats.finished(&kind, ran, false, false);
                Settle::Done { id, attempt }
            }
            Outcome::Failed(error) => {
                report.failed += 1;
                let retry = (attempt < task.max_attempts).then(|| self.backoff(attempt));
                stats.finished(&kind, ran, true, retry.is_some());
                tracing::warn!(target: "herald::worker", task = id, kind = %kind, attempt, error = %error, retry_in = ?retry, "task failed");
                Settle::Failed {
                    id,
                    attempt,
                    error,
                    retry,
                }
            }
            Outcome::Dead(error) => {
                report.failed += 1;
                stats.finished(&kind, ran, true, false);
                tracing::error!(target: "herald::worker", task = id, kind = %kind, error = %error, "task is dead");
                Settle::Failed {
                    id,
                    attempt,
                    error,
                    retry: None,
                }
            }
        }
    }

    /// Collect the attempts that finish within [`LINGER`], until a quarter of the slots are free:
    /// one turn then records them all, instead of a transaction for each finished task (which,
    /// under load, competes with the application's writes for SQLite's one writer). A new task's
    /// start does not wait for this: a free slot claims as soon as a commit wakes the worker.
    pub(super) async fn linger(
        &self,
        running: &mut JoinSet<Finished>,
        held: &mut HashMap<i64, u32>,
        finished: &mut Vec<Finished>,
    ) {
        let enough = self.concurrency.div_ceil(4);
        let until = tokio::time::Instant::now() + LINGER;
        while finished.len() < enough && !running.is_empty() {
            match tokio::time::timeout_at(until, running.join_next()).await {
                Ok(Some(done)) => collect(done, held, finished),
                Ok(None) | Err(_) => break,
            }
        }
    }
}

/// What to write for one finished attempt.
pub(crate) enum Settle {
    Done {
        id: i64,
        attempt: u32,
    },
    Failed {
        id: i64,
        attempt: u32,
        error: String,
        retry: Option<Duration>,
    },
}

pub(super) fn collect(
    done: std::result::Result<Finished, tokio::task::JoinError>,
    held: &mut HashMap<i64, u32>,
    finished: &mut Vec<Finished>,
) {
    match done {
        Ok(done) => {
            held.remove(&done.task.id);
            finished.push(done);
        }
        // A runner that was aborted (shutdown) or whose task panicked outside the catch: its
        // lease expires and the task runs again.
        Err(error) => tracing::error!(target: "herald::worker", %error, "a task runner stopped"),
    }
}

/// Write the outcomes: completions in one statement, failures one by one. An attempt whose lease
/// was taken over is not recorded (fenced by its attempt number), nor one of a task cancelled
/// while it ran (fenced by its state).
pub(super) fn record(conn: &Conn, outcomes: &[Settle]) -> Result<()> {
    let done: Vec<(i64, u32)> = outcomes
        .iter()
        .filter_map(|o| match o {
            Settle::Done { id, attempt } => Some((*id, *attempt)),
            Settle::Failed { .. } => None,
        })
        .collect();
    let completed = queue::complete_many(conn, &done)?;
    if completed < done.len() as u64 {
        tracing::warn!(target: "herald::worker", lost = done.len() as u64 - completed, "some tasks were cancelled while they ran, or their leases were taken over; their completions were not recorded");
    }
    for outcome in outcomes {
        if let Settle::Failed {
            id,
            attempt,
            error,
            retry,
        } = outcome
            && !queue::fail(conn, *id, *attempt, error, *retry)?
        {
            tracing::warn!(target: "herald::worker", task = id, attempt, "the task was cancelled while it ran, or its lease was taken over; this failure was not recorded");
        }
    }
    Ok(())
}

/// On PostgreSQL, let the worker's own transaction commit without waiting for its WAL flush. A
/// claim or an outcome lost to a server crash only means the task runs again, which at-least-once
/// delivery allows; the enqueueing transaction, which must not lose the task, keeps its durability.
fn relax_durability(conn: &Conn) -> Result<()> {
    if conn.dialect() == crate::model::Dialect::Postgres {
        conn.batch("SET LOCAL synchronous_commit = off")?;
    }
    Ok(())
}

/// What one turn did.
#[derive(Debug, Default)]
pub(super) struct Turn {
    /// The tasks it claimed, to start.
    pub(super) claimed: Vec<Claimed>,
    /// Whether it moved more appended tasks into `herald_tasks` than it claimed: other workers
    /// (of this process: the caller wakes one; of others: a `NOTIFY` at the commit) may find
    /// work there that no commit of theirs told them of.
    pub(super) left_work: bool,
}

/// One turn of the worker, in one transaction: record `outcomes`, and with `free` slots move the
/// appended tasks into `herald_tasks` ([`queue::move_appended`], skipped while another worker
/// moves) and claim up to `free` of them. A task committed before the turn began can be claimed
/// by it: the move adds one statement before the claim (two on SQLite when there was something
/// to move).
pub(super) fn settle(
    conn: &Conn,
    outcomes: &[Settle],
    queues: &[String],
    free: usize,
    name: &str,
    lease: Duration,
) -> Result<Turn> {
    conn.atomic(|conn| {
        relax_durability(conn)?;
        record(conn, outcomes)?;
        if free == 0 {
            held_by_turn(name, outcomes.len(), 0, 0);
            return Ok(Turn::default());
        }
        let moved = queue::move_appended(conn, WhenMoving::Skip)?;
        let claimed = queue::claim(conn, queues, free, name, lease)?;
        held_by_turn(name, outcomes.len(), moved.tasks, claimed.len());
        let left_work = moved.tasks > claimed.len();
        if left_work && conn.dialect() == crate::model::Dialect::Postgres {
            crate::store::outbox::notify(conn, moved.queues.iter().map(String::as_str))?;
        }
        Ok(Turn { claimed, left_work })
    })
}

/// Name the worker's turn in SQLite's writer-hold report, should it hold the writer long.
fn held_by_turn(name: &str, recorded: usize, moved: usize, claimed: usize) {
    pool::held_by(|| HeldBy::Described {
        what: format!(
            "the turn of task worker {name} ({recorded} finished tasks recorded, {moved} appended \
             tasks moved, {claimed} claimed, in one transaction)"
        ),
        advice: "a worker's turn records and claims up to as many tasks as it has slots \
                 (`Worker::concurrency`) and moves at most 1,000 appended ones: fewer slots make \
                 shorter turns",
    });
}
