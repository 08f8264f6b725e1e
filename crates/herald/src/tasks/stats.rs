//! Statistics per task kind, kept in memory by the workers of this process: runs, failures,
//! retries, queue wait (commit to start) and run time. The same figures go to the `metrics` facade.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use herald_dispatch::{Latency, StatsSnapshot};

/// One kind's live counters.
#[derive(Debug, Default)]
pub(crate) struct KindStats {
    runs: AtomicU64,
    failures: AtomicU64,
    retries: AtomicU64,
    wait: Latency,
    run: Latency,
}

/// Every kind's counters; shared by the workers of one `Db`.
#[derive(Debug, Default)]
pub(crate) struct TaskStats {
    kinds: RwLock<HashMap<String, Arc<KindStats>>>,
}

impl TaskStats {
    pub(crate) fn kind(&self, kind: &str) -> Arc<KindStats> {
        if let Some(found) = self
            .kinds
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(kind)
        {
            return found.clone();
        }
        let mut kinds = self
            .kinds
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        kinds.entry(kind.to_owned()).or_default().clone()
    }

    /// Every kind's statistics now, by kind name.
    pub(crate) fn snapshot(&self) -> Vec<TaskKindStats> {
        let kinds = self
            .kinds
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut all: Vec<TaskKindStats> = kinds
            .iter()
            .map(|(kind, s)| TaskKindStats {
                kind: kind.clone(),
                runs: s.runs.load(Relaxed),
                failures: s.failures.load(Relaxed),
                retries: s.retries.load(Relaxed),
                queue_wait: s.wait.snapshot(),
                run_time: s.run.snapshot(),
            })
            .collect();
        all.sort_by(|a, b| a.kind.cmp(&b.kind));
        all
    }
}

impl KindStats {
    pub(crate) fn started(&self, wait: Duration) {
        self.wait.record(wait);
        metrics::histogram!("herald_task_queue_wait_seconds").record(wait.as_secs_f64());
    }

    pub(crate) fn finished(&self, kind: &str, ran: Duration, failed: bool, retried: bool) {
        self.runs.fetch_add(1, Relaxed);
        self.run.record(ran);
        metrics::counter!("herald_task_runs_total", "kind" => kind.to_owned()).increment(1);
        metrics::histogram!("herald_task_run_seconds", "kind" => kind.to_owned())
            .record(ran.as_secs_f64());
        if failed {
            self.failures.fetch_add(1, Relaxed);
            metrics::counter!("herald_task_failures_total", "kind" => kind.to_owned()).increment(1);
        }
        if retried {
            self.retries.fetch_add(1, Relaxed);
            metrics::counter!("herald_task_retries_total", "kind" => kind.to_owned()).increment(1);
        }
    }
}

/// One task kind's statistics, as this process's workers recorded them.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TaskKindStats {
    /// The kind.
    pub kind: String,
    /// Attempts run (completed or failed).
    pub runs: u64,
    /// Attempts that failed.
    pub failures: u64,
    /// Failed attempts that will be retried.
    pub retries: u64,
    /// From the task row's creation (its transaction) to the start of each attempt.
    pub queue_wait: StatsSnapshot,
    /// How long each attempt ran.
    pub run_time: StatsSnapshot,
}
