//! What runs when a transaction ends: `on_commit` and `on_rollback` hooks, and the `on_commit`
//! receivers of the writes made in it.
//!
//! They are registered on the connection while a job runs (a write with `on_commit` receivers, a
//! receiver calling `conn.on_commit(..)`, `tx.on_commit(..)`), kept there while their transaction
//! is open, and handed back to the caller with the answer of the job that ended it: they run on
//! the **caller's task**, never on the connection, so a slow one delays only its own caller.
//!
//! Contract:
//! - commit hooks run after the outermost COMMIT, in the order they were registered; a savepoint
//!   that rolls back drops the commit hooks registered in it and fires its rollback hooks;
//! - a failure (an error or a panic) is logged on `herald::hooks` and counted in
//!   `herald_hook_failures_total`; it never unwinds the committed write, and the hooks after it run.

use std::panic::{AssertUnwindSafe, catch_unwind};

use futures::FutureExt;
use futures::future::BoxFuture;
use herald_dispatch::DispatchError;

use crate::ReceiverResult;

/// When a hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HookKind {
    Commit,
    Rollback,
}

impl HookKind {
    fn as_str(self) -> &'static str {
        match self {
            HookKind::Commit => "on_commit",
            HookKind::Rollback => "on_rollback",
        }
    }
}

/// What a hook does.
pub(crate) enum HookRun {
    /// A closure given to `on_commit` / `on_rollback`.
    Call(Box<dyn FnOnce() -> ReceiverResult + Send>),
    /// An async closure given to `on_commit_async`.
    Future(Box<dyn FnOnce() -> BoxFuture<'static, ReceiverResult> + Send>),
    /// The `on_commit` receivers of one write, awaited in order; returns their failures.
    Receivers(Box<dyn FnOnce() -> BoxFuture<'static, Vec<DispatchError>> + Send>),
}

/// Work to run when a transaction ends.
pub(crate) struct Hook {
    pub(crate) kind: HookKind,
    pub(crate) name: &'static str,
    pub(crate) run: HookRun,
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Hook {
    pub(crate) fn call(
        kind: HookKind,
        name: &'static str,
        run: impl FnOnce() -> ReceiverResult + Send + 'static,
    ) -> Self {
        Self {
            kind,
            name,
            run: HookRun::Call(Box::new(run)),
        }
    }
}

/// Run fired hooks on the caller's task, in order.
pub(crate) async fn run(hooks: Vec<Hook>) {
    for hook in hooks {
        let name = hook.name;
        let phase = hook.kind.as_str();
        match hook.run {
            HookRun::Call(call) => match catch_unwind(AssertUnwindSafe(call)) {
                Ok(Ok(())) => {}
                Ok(Err(error)) => failed(name, phase, &error.to_string()),
                Err(panic) => failed(name, phase, &panic_text(&*panic)),
            },
            HookRun::Future(start) => match AssertUnwindSafe(start()).catch_unwind().await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => failed(name, phase, &error.to_string()),
                Err(panic) => failed(name, phase, &panic_text(&*panic)),
            },
            HookRun::Receivers(send) => match AssertUnwindSafe(send()).catch_unwind().await {
                Ok(errors) => {
                    for error in errors {
                        failed(error.receiver().name(), phase, &error.to_string());
                    }
                }
                Err(panic) => failed(name, phase, &panic_text(&*panic)),
            },
        }
    }
}

/// Run fired hooks where no async context can await them (a transaction dropped without
/// committing rolls back on its connection): only closures fire there (rollback hooks are
/// closures; receivers and async hooks only ever run on commit).
pub(crate) fn run_blocking(hooks: Vec<Hook>) {
    for hook in hooks {
        if let HookRun::Call(call) = hook.run {
            let phase = hook.kind.as_str();
            match catch_unwind(AssertUnwindSafe(call)) {
                Ok(Ok(())) => {}
                Ok(Err(error)) => failed(hook.name, phase, &error.to_string()),
                Err(panic) => failed(hook.name, phase, &panic_text(&*panic)),
            }
        }
    }
}

#[cold]
fn failed(name: &str, phase: &'static str, failure: &str) {
    metrics::counter!("herald_hook_failures_total", "hook" => name.to_owned(), "phase" => phase)
        .increment(1);
    tracing::warn!(target: "herald::hooks", hook = name, phase, error = %failure, "{phase} hook `{name}` failed: {failure}");
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| format!("panicked: {s}"))
        .or_else(|| {
            panic
                .downcast_ref::<String>()
                .map(|s| format!("panicked: {s}"))
        })
        .unwrap_or_else(|| "panicked".to_owned())
}
