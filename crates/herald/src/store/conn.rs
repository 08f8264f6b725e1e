//! The connection as its thread sees it: statements, transactions and savepoints, the hooks and
//! task rows each transaction keeps until it ends.
//!
//! A [`Conn`] lives on its connection thread and is only ever used there: by the store's jobs, and
//! by `in_transaction` receivers, which get it lent through their event (`event.conn()`). The write
//! lifecycle that runs on it is in `lifecycle.rs`; the statements of one model's rows in `rows.rs`.

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use herald_dispatch::Signals;

use crate::ReceiverResult;
use crate::error::{DbError, Error, Result};
use crate::model::{Dialect, Model};
use crate::store::backend::Backend;
use crate::store::hooks::{Hook, HookKind, HookRun};
use crate::store::outbox::{self as queue, NewTask, NotifyThrottle, Task};
use crate::value::{SqlType, Value};

/// How deep writes may nest inside receivers before [`Error::Recursion`].
pub const DEFAULT_RECURSION_LIMIT: usize = 32;

#[derive(Default)]
struct TxState {
    /// 0: autocommit; 1: in a transaction; n > 1: in savepoint n - 1.
    depth: usize,
    /// Hooks waiting for the transaction (or savepoint) they were registered in to end.
    hooks: Vec<Hook>,
    /// Task rows to insert, in one statement, just before the outermost COMMIT.
    tasks: Vec<NewTask>,
    /// `(hooks.len(), tasks.len())` when each open transaction or savepoint began.
    marks: Vec<(usize, usize)>,
    /// The first statement that failed in the open transaction, and the depth it failed at:
    /// the transaction (or savepoint) at that depth cannot commit, unless a savepoint around the
    /// failure is rolled back (Django's `needs_rollback`). PostgreSQL aborts a transaction at its
    /// first failed statement; SQLite does not, and this makes the two behave alike.
    failed: Option<Failed>,
    /// The open transaction pipelines its INSERTs of new rows (see `Db::begin_pipelined`).
    pipelined: bool,
}

/// A statement that failed inside a transaction.
#[derive(Clone, Debug)]
struct Failed {
    depth: usize,
    what: String,
}

/// Settings every connection of one `Db` shares.
pub(crate) struct Shared {
    pub(crate) signals: Signals,
    pub(crate) alias: Arc<str>,
    pub(crate) recursion_limit: usize,
    /// Woken when a commit adds tasks, so this process's workers start them at once.
    pub(crate) tasks_added: Arc<tokio::sync::Notify>,
    /// When each queue was last notified to other processes (PostgreSQL).
    pub(crate) notified: NotifyThrottle,
}

/// The result of a save.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Saved {
    /// True when the save inserted a row.
    pub created: bool,
    /// False when nothing was written (`save_fields` with an empty list).
    pub written: bool,
}

/// A database connection on its own thread, as the store's jobs and `in_transaction` receivers
/// use it.
///
/// An `in_transaction` receiver gets it through its event (`e.conn()?`) and may write with it: its
/// writes join the transaction of the write that sent the signal, and run their own model's
/// receivers right there (caller-side ones included: on the connection there is no other caller).
/// Every method runs synchronously on the connection's thread.
pub struct Conn {
    backend: Mutex<Box<dyn Backend>>,
    shared: Arc<Shared>,
    dialect: Dialect,
    begin_sql: &'static str,
    tx: Mutex<TxState>,
    /// Hooks whose transaction ended during the current job: handed back to the job's caller.
    fired: Mutex<Vec<Hook>>,
    /// How deep the write running now is nested in receivers (the job's caller says where it
    /// starts).
    pub(crate) save_depth: AtomicUsize,
    /// Set while a group commit runs writes in one shared transaction (see `pool.rs`).
    pub(crate) grouped: AtomicBool,
    /// Multi-row INSERT texts by (model, rows, returning): built once per shape.
    pub(crate) insert_many:
        Mutex<std::collections::HashMap<(std::any::TypeId, usize, bool), Arc<str>>>,
    /// Multi-row UPDATE texts (PostgreSQL) by (model, columns written, rows): built once per
    /// shape; emptied when it reaches [`UPDATE_SHAPES`], since callers choose the columns.
    pub(crate) update_many: Mutex<std::collections::HashMap<UpdateShape, Arc<str>>>,
}

/// The shape of a multi-row UPDATE: the model, the columns it writes, and its rows.
pub(crate) type UpdateShape = (std::any::TypeId, Vec<usize>, usize);

/// At most this many multi-row UPDATE texts are kept per connection.
pub(crate) const UPDATE_SHAPES: usize = 256;

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("dialect", &self.dialect)
            .field("depth", &self.tx().depth)
            .finish_non_exhaustive()
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked (every critical section
/// here is a single update).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Conn {
    pub(crate) fn new(backend: Box<dyn Backend>, shared: Arc<Shared>) -> Self {
        let dialect = backend.dialect();
        let begin_sql = backend.begin_sql();
        Self {
            backend: Mutex::new(backend),
            shared,
            dialect,
            begin_sql,
            tx: Mutex::new(TxState::default()),
            fired: Mutex::new(Vec::new()),
            save_depth: AtomicUsize::new(0),
            grouped: AtomicBool::new(false),
            insert_many: Mutex::new(std::collections::HashMap::new()),
            update_many: Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn tx(&self) -> MutexGuard<'_, TxState> {
        lock(&self.tx)
    }

    pub(crate) fn backend(&self) -> MutexGuard<'_, Box<dyn Backend>> {
        lock(&self.backend)
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The registry whose receivers this connection's writes run.
    pub fn signals(&self) -> &Signals {
        &self.shared.signals
    }

    /// The alias events carry in `using`.
    pub(crate) fn alias(&self) -> &str {
        &self.shared.alias
    }

    /// Whether a transaction is open on this connection.
    pub fn in_transaction(&self) -> bool {
        self.tx().depth > 0
    }

    pub(crate) fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Add a task: written in the open transaction, in one statement with the transaction's other
    /// tasks, just before it commits (so a rollback leaves none and a commit guarantees it); at once
    /// when no transaction is open.
    pub fn enqueue(&self, task: Task) -> Result<()> {
        let task = task.into_new();
        let mut tx = self.tx();
        if tx.depth > 0 {
            tx.tasks.push(task);
            Ok(())
        } else {
            drop(tx);
            queue::insert(self, vec![task])?;
            self.shared.tasks_added.notify_one();
            Ok(())
        }
    }

    pub(crate) fn backend_alive(&self) -> bool {
        self.backend().is_alive()
    }

    // ---- statements -------------------------------------------------------------------------

    /// Run one statement with bound parameters; returns the number of rows changed. Transaction
    /// control (`BEGIN`, `COMMIT`, ...) is refused: see [`Error::TransactionControl`].
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        refuse_transaction_control(sql)?;
        self.statement(|backend| backend.execute(sql, params))
            .map_err(|source| statement_error(sql, source))
    }

    /// Run one query with bound parameters, decoding column `i` of every row as `types[i]`.
    pub fn query(&self, sql: &str, params: &[Value], types: &[SqlType]) -> Result<Vec<Vec<Value>>> {
        refuse_transaction_control(sql)?;
        self.statement(|backend| backend.query(sql, params, types))
            .map_err(|source| statement_error(sql, source))
    }

    /// Run statements without parameters (DDL, `;`-separated). Transaction control is refused.
    pub fn batch(&self, sql: &str) -> Result<()> {
        refuse_transaction_control(sql)?;
        self.statement(|backend| backend.batch(sql))
            .map_err(|source| statement_error(sql, source))
    }

    /// Run one statement on the backend; a failure inside a transaction marks it failed (see
    /// `TxState::failed`). Every statement of the store goes through here, except transaction
    /// control.
    pub(crate) fn statement<T>(
        &self,
        run: impl FnOnce(&mut dyn Backend) -> std::result::Result<T, DbError>,
    ) -> std::result::Result<T, DbError> {
        let result = run(&mut **self.backend());
        if let Err(error) = &result {
            self.mark_failed(error);
        }
        result
    }

    /// Mark the open transaction (at its current level) failed by `error`, unless it already is:
    /// it can then only roll back, and its commit names `error`.
    pub(crate) fn mark_failed(&self, error: &dyn std::fmt::Display) {
        let mut tx = self.tx();
        if tx.depth > 0 && tx.failed.is_none() {
            tx.failed = Some(Failed {
                depth: tx.depth,
                what: error.to_string(),
            });
        }
    }

    /// Forget the failure of the one statement that just failed at the open transaction's level.
    /// Only for SQLite's group commit: there each write without `in_transaction` receivers is one
    /// statement, SQLite undoes a failed statement by itself, and the writes sharing the
    /// transaction must not fail with it.
    pub(crate) fn forgive_failed_statement(&self) {
        let mut tx = self.tx();
        if tx.failed.as_ref().is_some_and(|f| f.depth == tx.depth) {
            tx.failed = None;
        }
    }

    /// Create `M`'s table if it does not exist (for quick starts and tests; applications keep their
    /// own migrations).
    pub fn create_table<M: Model>(&self) -> Result<()> {
        self.batch(&M::statements().get(self.dialect).create_table)
    }

    // ---- transactions -----------------------------------------------------------------------

    /// Open a transaction, or a savepoint inside the one that is open.
    pub(crate) fn begin(&self) -> Result<()> {
        let depth = self.tx().depth;
        let sql = if depth == 0 {
            self.begin_sql.to_owned()
        } else {
            format!("SAVEPOINT herald_{depth}")
        };
        if let Err(source) = self.backend().control(&sql) {
            // A SAVEPOINT also sends what the transaction held back (PostgreSQL): a failure
            // there is the transaction's.
            if depth > 0 {
                self.mark_failed(&source);
            }
            return Err(statement_error(&sql, source));
        }
        let mut tx = self.tx();
        tx.depth += 1;
        let mark = (tx.hooks.len(), tx.tasks.len());
        tx.marks.push(mark);
        Ok(())
    }

    /// Pipeline the open transaction's INSERTs of new rows, until it ends (see
    /// `Db::begin_pipelined`).
    pub(crate) fn pipeline_inserts(&self) {
        let mut tx = self.tx();
        tx.pipelined = tx.depth > 0;
    }

    /// Whether an INSERT of a new row may be held back now (see `rows::write_row`). Only inside
    /// a transaction: ending the outermost one clears the mark.
    pub(crate) fn pipelines_inserts(&self) -> bool {
        self.tx().pipelined
    }

    /// Commit the innermost transaction or savepoint. Committing the outermost inserts the
    /// transaction's task rows, then fires its commit hooks (handed back to the caller).
    pub(crate) fn commit(&self) -> Result<()> {
        let (depth, failed) = {
            let tx = self.tx();
            (tx.depth, tx.failed.clone())
        };
        if depth == 0 {
            return Ok(());
        }
        if let Some(failed) = failed.filter(|f| f.depth >= depth) {
            // Nothing of a failed (sub)transaction is kept: roll it back, and say why.
            self.rollback();
            return Err(Error::TransactionFailed {
                savepoint: depth > 1,
                cause: failed.what,
            });
        }
        let sql = if depth == 1 {
            "COMMIT".to_owned()
        } else {
            format!("RELEASE SAVEPOINT herald_{}", depth - 1)
        };
        let tasks = if depth == 1 {
            std::mem::take(&mut self.tx().tasks)
        } else {
            Vec::new()
        };
        let added_tasks = !tasks.is_empty();
        if let Err(error) = queue::insert(self, tasks) {
            self.rollback();
            return Err(error);
        }
        let ended = self.backend().control(&sql);
        if let Err(source) = ended {
            if depth == 1 && source.kind() == crate::DbErrorKind::ConnectionLost {
                // The server may have committed before the connection went: neither the commit
                // hooks nor the rollback hooks can be run truthfully.
                self.abandon_unknown();
                return Err(Error::CommitUnknown { source });
            }
            // The transaction cannot be kept: undo it, so the connection is left clean.
            let error = statement_error(&sql, source);
            self.rollback();
            return Err(error);
        }
        let hooks = {
            let mut tx = self.tx();
            tx.depth -= 1;
            tx.marks.pop();
            if tx.depth == 0 {
                tx.failed = None;
                tx.pipelined = false;
                std::mem::take(&mut tx.hooks)
            } else {
                Vec::new()
            }
        };
        if added_tasks {
            self.shared.tasks_added.notify_one();
        }
        self.fire(hooks, HookKind::Commit);
        Ok(())
    }

    /// Roll back the innermost transaction or savepoint: its commit hooks are dropped and its
    /// rollback hooks fire. Never fails: a rollback that the database refuses (a lost connection)
    /// leaves nothing to keep either.
    pub(crate) fn rollback(&self) {
        let depth = self.tx().depth;
        if depth == 0 {
            return;
        }
        let rolled_back = if depth == 1 {
            self.backend().control("ROLLBACK")
        } else {
            let savepoint = depth - 1;
            let mut backend = self.backend();
            backend
                .control(&format!("ROLLBACK TO SAVEPOINT herald_{savepoint}"))
                .and_then(|()| backend.control(&format!("RELEASE SAVEPOINT herald_{savepoint}")))
        };
        if let Err(error) = rolled_back {
            tracing::warn!(target: "herald::store", %error, "rollback failed");
        }
        let hooks = {
            let mut tx = self.tx();
            // A failure inside what was rolled back no longer counts.
            if tx.failed.as_ref().is_some_and(|f| f.depth >= tx.depth) {
                tx.failed = None;
            }
            tx.depth -= 1;
            tx.pipelined &= tx.depth > 0;
            let (hooks_mark, tasks_mark) = tx.marks.pop().unwrap_or((0, 0));
            tx.tasks.truncate(tasks_mark);
            tx.hooks.split_off(hooks_mark)
        };
        self.fire(hooks, HookKind::Rollback);
    }

    /// Forget the open transaction without firing any hook: its outcome is unknown (the connection
    /// went during COMMIT). The connection is replaced before its next job.
    fn abandon_unknown(&self) {
        let mut tx = self.tx();
        if !tx.hooks.is_empty() || !tx.tasks.is_empty() {
            tracing::warn!(
                target: "herald::store",
                hooks = tx.hooks.len(),
                "the connection was lost during COMMIT: the transaction's hooks are dropped, since \
                 whether it was kept is unknown"
            );
        }
        *tx = TxState::default();
    }

    /// Run `f` in a transaction (a savepoint when one is open): committed when it returns `Ok`,
    /// rolled back when it returns `Err`.
    pub fn atomic<T>(&self, f: impl FnOnce(&Conn) -> Result<T>) -> Result<T> {
        self.begin()?;
        match f(self) {
            Ok(value) => {
                self.commit()?;
                Ok(value)
            }
            Err(error) => {
                self.rollback();
                Err(error)
            }
        }
    }

    /// [`atomic`](Self::atomic) for the store's own writes: the savepoint only undoes the write's
    /// partial work (its `in_transaction` receivers' writes). A database failure of the write
    /// still fails the transaction around it, as it would without the savepoint (Django's
    /// `save()` opens none): a write behaves the same whichever receivers it has.
    pub(crate) fn atomic_write<T>(&self, f: impl FnOnce(&Conn) -> Result<T>) -> Result<T> {
        let outer = self.tx().depth;
        self.atomic(f).inspect_err(|error| {
            if outer > 0 && error.as_db().is_some() {
                let mut tx = self.tx();
                if tx.failed.is_none() && tx.depth == outer {
                    tx.failed = Some(Failed {
                        depth: outer,
                        what: error.to_string(),
                    });
                }
            }
        })
    }

    /// Run `hook` after the outermost transaction commits (after the current job when none is
    /// open), on the task that called the store, not on this connection. Dropped if the
    /// transaction, or the savepoint it was registered in, rolls back. A failure is logged and
    /// counted; it never unwinds the commit.
    pub fn on_commit(
        &self,
        name: &'static str,
        hook: impl FnOnce() -> ReceiverResult + Send + 'static,
    ) {
        self.push_hook(Hook::call(HookKind::Commit, name, hook));
    }

    /// [`on_commit`](Self::on_commit) for async work: `hook` starts a future that the calling task
    /// awaits after the outermost commit (to write through a `Db` the hook captured, say).
    pub fn on_commit_async<F>(&self, name: &'static str, hook: impl FnOnce() -> F + Send + 'static)
    where
        F: std::future::Future<Output = ReceiverResult> + Send + 'static,
    {
        self.push_hook(Hook {
            kind: HookKind::Commit,
            name,
            run: HookRun::Future(Box::new(move || Box::pin(hook()))),
        });
    }

    /// Run `hook` if the transaction (or the savepoint it was registered in) rolls back, on the task
    /// that called the store; never when no transaction is open.
    pub fn on_rollback(
        &self,
        name: &'static str,
        hook: impl FnOnce() -> ReceiverResult + Send + 'static,
    ) {
        if self.in_transaction() {
            self.push_hook(Hook::call(HookKind::Rollback, name, hook));
        }
    }

    pub(crate) fn push_hook(&self, hook: Hook) {
        let mut tx = self.tx();
        if tx.depth > 0 {
            tx.hooks.push(hook);
        } else if hook.kind == HookKind::Commit {
            drop(tx);
            lock(&self.fired).push(hook);
        }
    }

    /// Hand the hooks of `ending` over to the caller; drop the others.
    fn fire(&self, hooks: Vec<Hook>, ending: HookKind) {
        let mut fired = lock(&self.fired);
        fired.extend(hooks.into_iter().filter(|h| h.kind == ending));
    }

    /// The hooks that fired during the current job, in order, for its caller to run.
    pub(crate) fn take_fired(&self) -> Vec<Hook> {
        std::mem::take(&mut *lock(&self.fired))
    }

    /// How many hooks are waiting in the open transaction.
    pub(crate) fn pending_hooks(&self) -> usize {
        self.tx().hooks.len()
    }

    /// The hooks registered in the open transaction since `mark` (a group commit answers each write
    /// with its own).
    pub(crate) fn take_pending_since(&self, mark: usize) -> Vec<Hook> {
        let mut tx = self.tx();
        let mark = mark.min(tx.hooks.len());
        tx.hooks.split_off(mark)
    }

    // ---- reads ----------------------------------------------------------------------------------

    /// The row with this key, or `None`.
    pub fn get<M: Model>(&self, key: impl Into<Value>) -> Result<Option<M>> {
        crate::store::rows::get(self, key.into())
    }

    /// Every row of `M`'s table, in key order.
    pub fn all<M: Model>(&self) -> Result<Vec<M>> {
        crate::store::rows::all(self)
    }
}

/// Transaction control through `execute`, `query` or `batch` is [`Error::TransactionControl`]:
/// the store would not know a transaction was open, and `on_commit` hooks would run at once for
/// work that is then rolled back.
fn refuse_transaction_control(sql: &str) -> Result<()> {
    const CONTROL: [&str; 8] = [
        "BEGIN",
        "START",
        "COMMIT",
        "END",
        "ROLLBACK",
        "ABORT",
        "SAVEPOINT",
        "RELEASE",
    ];
    let refuse = |statement: &str| {
        let first = leading_keyword(statement);
        match CONTROL.iter().find(|c| c.eq_ignore_ascii_case(first)) {
            Some(control) => Err(Error::TransactionControl {
                statement: (*control).to_owned(),
            }),
            None => Ok(()),
        }
    };
    // Most statements are one: only a `;` makes splitting them worth a scan.
    if !sql.contains(';') {
        return refuse(sql);
    }
    let mut in_trigger_body = false;
    for statement in statements(sql) {
        if in_trigger_body {
            // SQLite's `CREATE TRIGGER .. BEGIN ..; ..; END` is one statement: its body's `;`
            // do not end it, and its `END` is not a COMMIT.
            in_trigger_body = !leading_keyword(statement).eq_ignore_ascii_case("END");
            continue;
        }
        refuse(statement)?;
        in_trigger_body = opens_trigger_body(statement);
    }
    Ok(())
}

/// Whether `statement` (up to its first `;`) is the start of a `CREATE TRIGGER` with a
/// `BEGIN .. END` body.
fn opens_trigger_body(statement: &str) -> bool {
    if !leading_keyword(statement).eq_ignore_ascii_case("CREATE") {
        return false;
    }
    let mut words = statement
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty());
    words.any(|w| w.eq_ignore_ascii_case("TRIGGER"))
        && words.any(|w| w.eq_ignore_ascii_case("BEGIN"))
}

/// The statements of `sql`: split at the `;` that are outside quotes ('..', "..",
/// PostgreSQL's `$tag$..$tag$`) and comments.
fn statements(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let (mut out, mut start, mut i) = (Vec::new(), 0, 0);
    while i < bytes.len() {
        let rest = &sql[i..];
        let skip = if rest.starts_with("--") {
            rest.find('\n').unwrap_or(rest.len())
        } else if rest.starts_with("/*") {
            rest.find("*/").map_or(rest.len(), |e| e + 2)
        } else if bytes[i] == b'\'' || bytes[i] == b'"' {
            let quote = bytes[i] as char;
            rest[1..].find(quote).map_or(rest.len(), |e| e + 2)
        } else if let Some(tag) = dollar_tag(rest) {
            rest[tag.len()..]
                .find(tag)
                .map_or(rest.len(), |e| e + 2 * tag.len())
        } else if bytes[i] == b';' {
            out.push(&sql[start..i]);
            start = i + 1;
            1
        } else {
            rest.chars().next().map_or(1, char::len_utf8)
        };
        i += skip.max(1);
    }
    out.push(&sql[start..]);
    out
}

/// The `$tag$` a dollar-quoted string starts with, if `rest` starts one.
fn dollar_tag(rest: &str) -> Option<&str> {
    let body = rest.strip_prefix('$')?;
    let end = body.find('$')?;
    body[..end]
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        .then(|| &rest[..end + 2])
}

/// The first word of a statement, after whitespace and comments.
fn leading_keyword(statement: &str) -> &str {
    let mut rest = statement.trim_start();
    loop {
        if let Some(line) = rest.strip_prefix("--") {
            rest = line.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(block) = rest.strip_prefix("/*") {
            rest = block.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else {
            break;
        }
    }
    let end = rest
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    &rest[..end]
}

pub(crate) fn statement_error(sql: &str, source: DbError) -> Error {
    let what = sql.split_whitespace().take(6).collect::<Vec<_>>().join(" ");
    Error::Statement {
        what: format!("`{what}`"),
        source,
    }
}

/// `event.conn()` lends a `&Conn` through a `Send + Sync` event.
const _: () = {
    const fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<Conn>();
};

#[cfg(test)]
mod tests;
