//! The commands that only read or manage what is there: `receivers --from` (a running
//! application's statistics, through its dashboard) and `tasks`.

use herald::Db;
use herald::report::ReceiversReport;

use crate::BoxError;
use crate::args::TaskAction;

/// `receivers --from URL`: the running application's receivers with their statistics, read from
/// its dashboard's `GET /api/receivers` (a [`ReceiversReport`]; `HERALD_DASHBOARD_TOKEN`, when set,
/// is sent along).
pub(crate) fn running_receivers(dashboard: &str) -> Result<(), BoxError> {
    let url = format!("{dashboard}/api/receivers");
    let mut request = ureq::get(&url);
    if let Ok(token) = std::env::var("HERALD_DASHBOARD_TOKEN") {
        request = request.header("X-Herald-Token", token);
    }
    let mut response = request.call().map_err(|e| format!("GET {url}: {e}"))?;
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let report: ReceiversReport = serde_json::from_str(&text)
        .map_err(|e| format!("GET {url}: not the dashboard's receivers report: {e}"))?;
    let width = report
        .receivers
        .iter()
        .map(|r| r.short_name.len())
        .max()
        .unwrap_or(0)
        .max("receiver".len());
    println!(
        "{:<width$}  {:<12} {:<8} {:<15} {:>8} {:>9} {:>7} {:>9} {:>9} {:>9}  location  (condition)",
        "receiver",
        "signal",
        "sender",
        "phase",
        "priority",
        "calls",
        "errors",
        "p50 µs",
        "p99 µs",
        "max µs"
    );
    for r in &report.receivers {
        println!(
            "{:<width$}  {:<12} {:<8} {:<15} {:>8} {:>9} {:>7} {:>9.1} {:>9.1} {:>9.1}  {}{}",
            r.short_name,
            r.signal,
            r.sender,
            r.phase,
            r.priority,
            r.calls,
            r.errors,
            r.p50_us,
            r.p99_us,
            r.max_us,
            r.location,
            condition_text(r.condition.as_deref()),
        );
    }
    println!(
        "({} receivers, as {dashboard} reports them; timing {}, slow threshold {} µs)",
        report.receivers.len(),
        report.timing,
        report.slow_threshold_us
    );
    Ok(())
}

/// A mount path as axum's `nest` takes it: one leading `/`, no trailing one.
pub(crate) fn mount_path(path: String) -> String {
    format!("/{}", path.trim_matches('/'))
}

pub(crate) async fn cmd_tasks(db: &Db, action: TaskAction) -> Result<(), BoxError> {
    let tasks = db.tasks();
    match action {
        TaskAction::Counts => {
            for c in tasks.counts().await? {
                println!("{:<16} {:<10} {:>8}", c.queue, c.state, c.count);
            }
        }
        TaskAction::Dead { limit } => {
            for t in tasks.dead(limit).await? {
                println!(
                    "{:>8} {:<24} attempt {}/{}  {}",
                    t.id,
                    t.kind,
                    t.attempt,
                    t.max_attempts,
                    t.last_error.unwrap_or_default()
                );
            }
        }
        TaskAction::Retry { id } => {
            if !tasks.retry(id).await? {
                return Err(format!("task {id} is not dead or does not exist").into());
            }
            println!("task {id} will run again");
        }
        TaskAction::RetryDead => {
            println!("{} dead tasks will run again", tasks.retry_dead().await?)
        }
        TaskAction::Cancel { id: Some(id), .. } => {
            if !tasks.cancel(id).await? {
                return Err(match tasks.get(id).await? {
                    None => format!("no task with id {id}"),
                    Some(task) => format!(
                        "task {id} is {}: only pending (available or running) tasks can be cancelled",
                        task.state
                    ),
                }
                .into());
            }
            println!("task {id} cancelled");
        }
        TaskAction::Cancel {
            kind: Some(kind), ..
        } => {
            let n = tasks.cancel_kind(&kind).await?;
            println!("cancelled {n} pending {kind} tasks");
        }
        TaskAction::Cancel { .. } => {
            return Err("tasks cancel needs a task id or --kind KIND".into());
        }
        TaskAction::Purge { state } => {
            println!("purged {} {state} tasks", tasks.purge(state).await?)
        }
    }
    Ok(())
}

/// `"  (when price_cents changed)"` after a listing's line, or nothing for a receiver called on
/// every write.
pub(crate) fn condition_text(condition: Option<&str>) -> String {
    condition.map_or_else(String::new, |c| format!("  ({c})"))
}
