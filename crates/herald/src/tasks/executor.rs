//! The executor: one attempt of one task, on the async runtime, with its timeout and its panic
//! caught; and how a worker function becomes a runner (its payload decoded first: one that no
//! longer decodes is dead at once, since retrying cannot help).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;

use crate::ReceiverResult;
use crate::tasks::queue::Claimed;
use crate::tasks::worker::{Changes, TaskContext};
use crate::tasks::{PAYLOAD_VERSION, RunError, Runner};

/// How an attempt ended.
pub(crate) enum Outcome {
    Done,
    Failed(String),
    Dead(String),
}

pub(crate) struct Finished {
    pub(crate) task: Claimed,
    pub(crate) outcome: Outcome,
    pub(crate) ran: Duration,
}

/// Run one attempt of `task` with `runner` (`None`: no worker knows its kind, which is dead at once):
/// the outcome, and how long it ran. A panic or the task's timeout is a failed attempt.
pub(crate) async fn attempt(task: Claimed, runner: Option<Runner>, ctx: TaskContext) -> Finished {
    let started = Instant::now();
    let outcome = match runner {
        None => Outcome::Dead(format!("no worker knows the task kind `{}`", task.kind)),
        Some(runner) => {
            let payload = serde_json::from_str(&task.payload)
                .unwrap_or_else(|e| serde_json::json!({ "undecodable": e.to_string() }));
            let mut ctx = ctx;
            ctx.changes = Changes::from_payload(&payload);
            let attempt = AssertUnwindSafe(runner(payload, ctx)).catch_unwind();
            match tokio::time::timeout(task.timeout, attempt).await {
                Err(_) => Outcome::Failed(format!("timed out after {:?}", task.timeout)),
                Ok(Err(panic)) => Outcome::Failed(format!("panicked: {}", panic_text(&*panic))),
                Ok(Ok(Err(RunError::Undecodable(e)))) => Outcome::Dead(e),
                Ok(Ok(Err(RunError::Failed(e)))) => Outcome::Failed(e),
                Ok(Ok(Ok(()))) => Outcome::Done,
            }
        }
    };
    Finished {
        task,
        outcome,
        ran: started.elapsed(),
    }
}

/// A runner: decode the payload into what `run` takes (an undecodable payload is dead at once),
/// then run it; its error fails the attempt.
pub(crate) fn runner<T, D, F, Fut>(decode: D, run: F) -> Runner
where
    T: Send + 'static,
    D: Fn(&serde_json::Value) -> std::result::Result<T, RunError> + Send + Sync + 'static,
    F: Fn(T, TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ReceiverResult> + Send + 'static,
{
    let (decode, run) = (Arc::new(decode), Arc::new(run));
    Arc::new(move |payload, ctx| {
        let (decode, run) = (decode.clone(), run.clone());
        async move {
            let input = decode(&payload)?;
            run(input, ctx)
                .await
                .map_err(|e| RunError::Failed(e.to_string()))
        }
        .boxed()
    })
}

pub(crate) fn decode_payload(
    payload: &serde_json::Value,
    model: Option<&str>,
) -> std::result::Result<serde_json::Value, RunError> {
    if let Some(e) = payload.get("undecodable") {
        return Err(RunError::Undecodable(format!(
            "the payload is not JSON: {e}"
        )));
    }
    let version = payload.get("v").and_then(serde_json::Value::as_i64);
    if version != Some(PAYLOAD_VERSION) {
        return Err(RunError::Undecodable(format!(
            "payload version {} is not one this worker reads ({PAYLOAD_VERSION})",
            version.map_or_else(|| "missing".to_owned(), |v| v.to_string())
        )));
    }
    match model {
        None => Ok(payload
            .get("data")
            .cloned()
            .unwrap_or(serde_json::Value::Null)),
        Some(expected) => {
            let found = payload
                .get("model")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("none");
            if found != expected {
                return Err(RunError::Undecodable(format!(
                    "the payload is for model `{found}`, not `{expected}`"
                )));
            }
            payload
                .get("instance")
                .cloned()
                .ok_or_else(|| RunError::Undecodable("the payload has no instance".to_owned()))
        }
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic".to_owned())
}
