//! The connection as its thread sees it, and the signal lifecycle of every write, written once for
//! every backend.
//!
//! A [`Conn`] lives on its connection thread and is only ever used there: by the store's jobs, and
//! by receivers, which get it lent through their event (`event.conn()`). It keeps the transaction
//! depth and the hooks that run when the outermost transaction commits or rolls back.
//!
//! # One write
//!
//! ```text
//!   1. pre_save receivers (may change the instance; an error vetoes: nothing is written)
//!   2. INSERT or UPDATE (created = the UPDATE matched nothing, or the key was unset)
//!   3. post_save receivers, in the transaction (may write through `event.conn()`; an error rolls back)
//!   4. COMMIT (or RELEASE, inside an outer transaction)
//!   5. on_commit receivers and hooks, after the outermost COMMIT only, in order; a failure is
//!      logged and counted, never unwinds the write. On rollback, on_rollback hooks run instead.
//! ```
//!
//! A write with no receivers at all is one statement in autocommit mode.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use herald_dispatch::{PostDelete, PostSave, PreDelete, PreSave, ReceiverInfo, Signals, observe};

use crate::ReceiverResult;
use crate::error::{DbError, DbErrorKind, Error, Result, Target};
use crate::model::{Dialect, Model, placeholder, quote};
use crate::store::backend::Backend;
use crate::tasks::Task;
use crate::tasks::queue::{self, NewTask};
use crate::value::{SqlType, Value};

/// How deep saves may nest inside receivers before [`Error::Recursion`].
pub const DEFAULT_RECURSION_LIMIT: usize = 32;

/// What a hook is for.
enum HookKind {
    Commit,
    Rollback,
}

/// Work to run when the outermost transaction ends.
struct Hook {
    kind: HookKind,
    name: &'static str,
    run: Box<dyn FnOnce(&Conn) -> ReceiverResult + Send>,
    /// The observer of the write that registered it (the request it reports to), installed again
    /// when it runs: a group commit runs it after that write's job has returned.
    observer: Option<Arc<dyn observe::Observer>>,
}

#[derive(Default)]
struct TxState {
    /// 0: autocommit; 1: in a transaction; n > 1: in savepoint n - 1.
    depth: usize,
    hooks: Vec<Hook>,
    /// Task rows to insert, in one statement, just before the outermost COMMIT.
    tasks: Vec<NewTask>,
    /// `(hooks.len(), tasks.len())` when each open transaction or savepoint began.
    marks: Vec<(usize, usize)>,
}

/// Settings every connection of one `Db` shares.
pub(crate) struct Shared {
    pub(crate) signals: Signals,
    pub(crate) alias: Arc<str>,
    pub(crate) recursion_limit: usize,
    /// Woken when a commit adds tasks, so this process's workers start them at once.
    pub(crate) tasks_added: Arc<tokio::sync::Notify>,
}

/// The result of a save.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Saved {
    /// True when the save inserted a row.
    pub created: bool,
    /// False when nothing was written (`save_fields` with an empty list).
    pub written: bool,
}

/// How a save runs.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SaveOptions<'a> {
    /// Django's `update_fields`.
    pub(crate) fields: Option<&'a [&'a str]>,
    /// Fixture loading.
    pub(crate) raw: bool,
    /// Skip every signal (`without_signals()`).
    pub(crate) quiet: bool,
}

/// A database connection on its own thread, as the store's jobs and receivers use it.
///
/// Receivers get it through their event (`e.conn()?`) and may write with it: their writes join the
/// transaction of the save that sent the signal. Every method runs synchronously on the
/// connection's thread.
pub struct Conn {
    backend: RefCell<Box<dyn Backend>>,
    shared: Arc<Shared>,
    dialect: Dialect,
    begin_sql: &'static str,
    tx: RefCell<TxState>,
    save_depth: Cell<usize>,
    /// Multi-row INSERT texts by (model, rows, returning): built once per shape.
    insert_many: RefCell<std::collections::HashMap<(std::any::TypeId, usize, bool), Arc<str>>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("dialect", &self.dialect)
            .field("depth", &self.tx.borrow().depth)
            .finish_non_exhaustive()
    }
}

/// Decrements the save depth when a save ends, however it ends.
struct DepthGuard<'a>(&'a Cell<usize>);

impl Drop for DepthGuard<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

fn target<M: Model>(instance: &M) -> Target {
    Target {
        model: M::NAME,
        key: instance.pk_string(),
    }
}

impl Conn {
    pub(crate) fn new(backend: Box<dyn Backend>, shared: Arc<Shared>) -> Self {
        let dialect = backend.dialect();
        let begin_sql = backend.begin_sql();
        Self {
            backend: RefCell::new(backend),
            shared,
            dialect,
            begin_sql,
            tx: RefCell::new(TxState::default()),
            save_depth: Cell::new(0),
            insert_many: RefCell::new(std::collections::HashMap::new()),
        }
    }

    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// The registry whose receivers this connection's writes run.
    pub fn signals(&self) -> &Signals {
        &self.shared.signals
    }

    /// Whether a transaction is open on this connection.
    pub fn in_transaction(&self) -> bool {
        self.tx.borrow().depth > 0
    }

    pub(crate) fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Add a task: written in the open transaction, in one statement with the transaction's other
    /// tasks, just before it commits (so a rollback leaves none and a commit guarantees it); at once
    /// when no transaction is open.
    pub fn enqueue(&self, task: Task) -> Result<()> {
        let task = task.into_new();
        if self.in_transaction() {
            self.tx.borrow_mut().tasks.push(task);
            Ok(())
        } else {
            queue::insert(self, vec![task])?;
            self.shared.tasks_added.notify_one();
            Ok(())
        }
    }

    pub(crate) fn backend_alive(&self) -> bool {
        self.backend.borrow_mut().is_alive()
    }

    // ---- statements -------------------------------------------------------------------------

    /// Run one statement with bound parameters; returns the number of rows changed.
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        self.backend
            .borrow_mut()
            .execute(sql, params)
            .map_err(|source| statement_error(sql, source))
    }

    /// Run one query with bound parameters, decoding column `i` of every row as `types[i]`.
    pub fn query(&self, sql: &str, params: &[Value], types: &[SqlType]) -> Result<Vec<Vec<Value>>> {
        self.backend
            .borrow_mut()
            .query(sql, params, types)
            .map_err(|source| statement_error(sql, source))
    }

    /// Run statements without parameters (DDL, `;`-separated).
    pub fn batch(&self, sql: &str) -> Result<()> {
        self.backend
            .borrow_mut()
            .batch(sql)
            .map_err(|source| statement_error(sql, source))
    }

    // ---- transactions -----------------------------------------------------------------------

    /// Open a transaction, or a savepoint inside the one that is open.
    pub(crate) fn begin(&self) -> Result<()> {
        let mut tx = self.tx.borrow_mut();
        let sql = if tx.depth == 0 {
            self.begin_sql.to_owned()
        } else {
            format!("SAVEPOINT herald_{}", tx.depth)
        };
        self.backend
            .borrow_mut()
            .control(&sql)
            .map_err(|source| statement_error(&sql, source))?;
        tx.depth += 1;
        let mark = (tx.hooks.len(), tx.tasks.len());
        tx.marks.push(mark);
        Ok(())
    }

    /// Commit the innermost transaction or savepoint. Committing the outermost runs the commit hooks.
    pub(crate) fn commit(&self) -> Result<()> {
        let depth = self.tx.borrow().depth;
        if depth == 0 {
            return Ok(());
        }
        let sql = if depth == 1 {
            "COMMIT".to_owned()
        } else {
            format!("RELEASE SAVEPOINT herald_{}", depth - 1)
        };
        let tasks = if depth == 1 {
            std::mem::take(&mut self.tx.borrow_mut().tasks)
        } else {
            Vec::new()
        };
        let added_tasks = !tasks.is_empty();
        if let Err(error) = queue::insert(self, tasks) {
            self.rollback();
            return Err(error);
        }
        let ended = self.backend.borrow_mut().control(&sql);
        if let Err(source) = ended {
            // The transaction cannot be kept: undo it, so the connection is left clean.
            let error = statement_error(&sql, source);
            self.rollback();
            return Err(error);
        }
        let hooks = {
            let mut tx = self.tx.borrow_mut();
            tx.depth -= 1;
            tx.marks.pop();
            if tx.depth == 0 {
                std::mem::take(&mut tx.hooks)
            } else {
                Vec::new()
            }
        };
        if added_tasks {
            self.shared.tasks_added.notify_one();
        }
        self.run_hooks(hooks, HookKind::Commit);
        Ok(())
    }

    /// Roll back the innermost transaction or savepoint: its commit hooks are dropped and its
    /// rollback hooks run. Never fails: a rollback that the database refuses (a lost connection)
    /// leaves nothing to keep either.
    pub(crate) fn rollback(&self) {
        let depth = self.tx.borrow().depth;
        if depth == 0 {
            return;
        }
        let sql = if depth == 1 {
            "ROLLBACK".to_owned()
        } else {
            format!(
                "ROLLBACK TO SAVEPOINT herald_{0}; RELEASE SAVEPOINT herald_{0}",
                depth - 1
            )
        };
        if let Err(error) = self.backend.borrow_mut().batch(&sql) {
            tracing::warn!(target: "herald::store", %error, "rollback failed");
        }
        let hooks = {
            let mut tx = self.tx.borrow_mut();
            tx.depth -= 1;
            let (hooks_mark, tasks_mark) = tx.marks.pop().unwrap_or((0, 0));
            tx.tasks.truncate(tasks_mark);
            tx.hooks.split_off(hooks_mark)
        };
        self.run_hooks(hooks, HookKind::Rollback);
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

    /// Run `hook` after the outermost transaction commits (at once when none is open). Dropped if
    /// the transaction, or the savepoint it was registered in, rolls back. A failure is logged and
    /// counted; it never unwinds the commit.
    pub fn on_commit(
        &self,
        name: &'static str,
        hook: impl FnOnce(&Conn) -> ReceiverResult + Send + 'static,
    ) {
        self.push_hook(HookKind::Commit, name, Box::new(hook));
    }

    /// Run `hook` if the transaction (or the savepoint it was registered in) rolls back; never when
    /// no transaction is open.
    pub fn on_rollback(
        &self,
        name: &'static str,
        hook: impl FnOnce(&Conn) -> ReceiverResult + Send + 'static,
    ) {
        if self.in_transaction() {
            self.push_hook(HookKind::Rollback, name, Box::new(hook));
        }
    }

    fn push_hook(
        &self,
        kind: HookKind,
        name: &'static str,
        run: Box<dyn FnOnce(&Conn) -> ReceiverResult + Send>,
    ) {
        let hook = Hook {
            kind,
            name,
            run,
            observer: observe::current(),
        };
        if self.in_transaction() {
            self.tx.borrow_mut().hooks.push(hook);
        } else if matches!(hook.kind, HookKind::Commit) {
            self.run_hooks(vec![hook], HookKind::Commit);
        }
    }

    fn run_hooks(&self, hooks: Vec<Hook>, ending: HookKind) {
        for hook in hooks {
            if std::mem::discriminant(&hook.kind) != std::mem::discriminant(&ending) {
                continue;
            }
            let name = hook.name;
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                observe::scope(hook.observer, || (hook.run)(self))
            }));
            let failure = match outcome {
                Ok(Ok(())) => continue,
                Ok(Err(error)) => error.to_string(),
                Err(panic) => panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panicked".to_owned()),
            };
            let phase = match ending {
                HookKind::Commit => "on_commit",
                HookKind::Rollback => "on_rollback",
            };
            metrics::counter!("herald_hook_failures_total", "hook" => name, "phase" => phase)
                .increment(1);
            tracing::warn!(target: "herald::hooks", hook = name, phase, error = %failure, "{phase} hook `{name}` failed: {failure}");
        }
    }

    // ---- the write lifecycle ----------------------------------------------------------------

    fn enter<M: Model>(&self, instance: &M) -> Result<DepthGuard<'_>> {
        let depth = self.save_depth.get();
        if depth >= self.shared.recursion_limit {
            return Err(Error::Recursion {
                target: target(instance),
                depth,
            });
        }
        self.save_depth.set(depth + 1);
        Ok(DepthGuard(&self.save_depth))
    }

    /// Save `instance` with its signals: insert it when it has no key or its key matched no row
    /// (`created`), update it otherwise. Inside the transaction that is open, if any.
    pub fn save<M: Model>(&self, instance: &mut M) -> Result<Saved> {
        self.save_with(instance, SaveOptions::default())
    }

    /// Save only `fields` (Django's `update_fields`): an empty list writes and sends nothing; an
    /// unknown name is an error before any receiver runs; a row that no longer exists is
    /// [`Error::NotFound`].
    pub fn save_fields<M: Model>(&self, instance: &mut M, fields: &[&str]) -> Result<Saved> {
        self.save_with(
            instance,
            SaveOptions {
                fields: Some(fields),
                ..SaveOptions::default()
            },
        )
    }

    pub(crate) fn save_with<M: Model>(
        &self,
        instance: &mut M,
        options: SaveOptions<'_>,
    ) -> Result<Saved> {
        if let Some(fields) = options.fields {
            if fields.is_empty() {
                return Ok(Saved {
                    created: false,
                    written: false,
                });
            }
            check_fields::<M>(fields)?;
        }
        let _depth = self.enter(instance)?;
        let signals = &self.shared.signals;
        let needs_tx = !options.quiet
            && (signals.pre_save::<M>().has_receivers()
                || signals.post_save::<M>().has_receivers()
                || signals.post_save::<M>().on_commit().has_receivers());
        let mut write = |conn: &Conn| -> Result<bool> {
            if !options.quiet {
                let mut event = PreSave::new(&mut *instance)
                    .raw(options.raw)
                    .using(&conn.shared.alias)
                    .update_fields(options.fields)
                    .with_store(conn);
                signals.pre_save::<M>().send(&mut event)?;
            }
            let created = conn.write_row(instance, options.fields)?;
            if !options.quiet {
                conn.after_save(instance, created, options)?;
            }
            Ok(created)
        };
        let created = if needs_tx {
            self.atomic(write)?
        } else {
            write(self)?
        };
        Ok(Saved {
            created,
            written: true,
        })
    }

    fn after_save<M: Model>(
        &self,
        instance: &M,
        created: bool,
        options: SaveOptions<'_>,
    ) -> Result<()> {
        let signals = &self.shared.signals;
        let mut event = PostSave::new(instance, created)
            .raw(options.raw)
            .using(&self.shared.alias)
            .update_fields(options.fields)
            .with_store(self);
        signals.post_save::<M>().send(&mut event)?;
        if signals.post_save::<M>().on_commit().has_receivers() {
            let copy = instance.clone();
            let fields: Option<Vec<String>> = options
                .fields
                .map(|f| f.iter().map(|s| (*s).to_owned()).collect());
            let raw = options.raw;
            self.on_commit("post_save on_commit receivers", move |conn| {
                let names: Option<Vec<&str>> = fields
                    .as_ref()
                    .map(|f| f.iter().map(String::as_str).collect());
                let mut event = PostSave::new(&copy, created)
                    .raw(raw)
                    .using(&conn.shared.alias)
                    .update_fields(names.as_deref())
                    .with_store(conn);
                log_hook_failures(
                    conn.signals()
                        .post_save::<M>()
                        .on_commit()
                        .send_robust(&mut event),
                );
                Ok(())
            });
        }
        Ok(())
    }

    /// INSERT or UPDATE one row; true when it inserted.
    fn write_row<M: Model>(&self, instance: &mut M, fields: Option<&[&str]>) -> Result<bool> {
        let sql = M::statements().get(self.dialect);
        let fail = |source: DbError, instance: &M| Error::write("saving", target(instance), source);
        let Some(key) = instance.pk_value() else {
            if !M::AUTO_PK {
                return Err(Error::Database {
                    op: "saving",
                    target: target(instance),
                    source: DbError::new(
                        DbErrorKind::Other,
                        "the primary key is not set, and the database does not assign this model's keys",
                    ),
                });
            }
            let params: Vec<Value> = non_pk_values(instance);
            let rows = self
                .backend
                .borrow_mut()
                .query(&sql.insert_auto, &params, &[SqlType::Int])
                .map_err(|e| fail(e, instance))?;
            let key = rows
                .into_iter()
                .next()
                .and_then(|r| r.into_iter().next())
                .ok_or_else(|| {
                    fail(
                        DbError::new(DbErrorKind::Other, "INSERT returned no key"),
                        instance,
                    )
                })?;
            instance.set_pk_value(key).map_err(|reason| {
                fail(
                    DbError::new(
                        DbErrorKind::Other,
                        format!("the returned key does not fit: {reason}"),
                    ),
                    instance,
                )
            })?;
            return Ok(true);
        };
        let changed = match fields {
            Some(fields) => {
                let mut params: Vec<Value> = fields
                    .iter()
                    .map(|f| instance.value(M::column_index(f).expect("fields were checked")))
                    .collect();
                params.push(key);
                let update = update_fields_sql::<M>(self.dialect, fields);
                self.backend.borrow_mut().execute(&update, &params)
            }
            None => {
                let mut params = non_pk_values(instance);
                params.push(key);
                self.backend.borrow_mut().execute(&sql.update, &params)
            }
        }
        .map_err(|e| fail(e, instance))?;
        if changed > 0 {
            return Ok(false);
        }
        if fields.is_some() {
            return Err(Error::NotFound {
                target: target(instance),
            });
        }
        let params: Vec<Value> = (0..M::COLUMNS.len()).map(|i| instance.value(i)).collect();
        self.backend
            .borrow_mut()
            .execute(&sql.insert, &params)
            .map_err(|e| fail(e, instance))?;
        Ok(true)
    }

    /// Delete `instance`'s row with its signals; true if a row was deleted. `post_delete` is sent
    /// only when one was; the instance keeps its key.
    pub fn delete<M: Model>(&self, instance: &M) -> Result<bool> {
        self.delete_with(instance, false)
    }

    pub(crate) fn delete_with<M: Model>(&self, instance: &M, quiet: bool) -> Result<bool> {
        let Some(key) = instance.pk_value() else {
            return Err(Error::NotFound {
                target: target(instance),
            });
        };
        let signals = &self.shared.signals;
        let needs_tx = !quiet
            && (signals.pre_delete::<M>().has_receivers()
                || signals.post_delete::<M>().has_receivers()
                || signals.post_delete::<M>().on_commit().has_receivers());
        let delete = |conn: &Conn| -> Result<bool> {
            if !quiet {
                let mut event = PreDelete::new(instance)
                    .using(&conn.shared.alias)
                    .with_store(conn);
                signals.pre_delete::<M>().send(&mut event)?;
            }
            let sql = &M::statements().get(conn.dialect).delete;
            let deleted = conn
                .backend
                .borrow_mut()
                .execute(sql, std::slice::from_ref(&key))
                .map_err(|e| Error::write("deleting", target(instance), e))?
                > 0;
            if deleted && !quiet {
                conn.after_delete(instance)?;
            }
            Ok(deleted)
        };
        if needs_tx {
            self.atomic(delete)
        } else {
            delete(self)
        }
    }

    fn after_delete<M: Model>(&self, instance: &M) -> Result<()> {
        let signals = &self.shared.signals;
        let mut event = PostDelete::new(instance)
            .using(&self.shared.alias)
            .with_store(self);
        signals.post_delete::<M>().send(&mut event)?;
        if signals.post_delete::<M>().on_commit().has_receivers() {
            let copy = instance.clone();
            self.on_commit("post_delete on_commit receivers", move |conn| {
                let mut event = PostDelete::new(&copy)
                    .using(&conn.shared.alias)
                    .with_store(conn);
                log_hook_failures(
                    conn.signals()
                        .post_delete::<M>()
                        .on_commit()
                        .send_robust(&mut event),
                );
                Ok(())
            });
        }
        Ok(())
    }

    /// The row with this key, or `None`.
    pub fn get<M: Model>(&self, key: impl Into<Value>) -> Result<Option<M>> {
        let key = key.into();
        let sql = &M::statements().get(self.dialect).select;
        let target = Target {
            model: M::NAME,
            key: Some(key.to_string()),
        };
        let rows = self
            .backend
            .borrow_mut()
            .query(sql, std::slice::from_ref(&key), &column_types::<M>())
            .map_err(|e| Error::write("reading", target.clone(), e))?;
        rows.into_iter()
            .next()
            .map(|row| decode::<M>(row, &target))
            .transpose()
    }

    /// Every row of `M`'s table, in key order.
    pub fn all<M: Model>(&self) -> Result<Vec<M>> {
        let sql = format!(
            "{} ORDER BY {}",
            M::statements().get(self.dialect).select_all,
            quote(M::COLUMNS[M::PK].name)
        );
        let target = Target {
            model: M::NAME,
            key: None,
        };
        let rows = self
            .backend
            .borrow_mut()
            .query(&sql, &[], &column_types::<M>())
            .map_err(|e| Error::write("reading", target.clone(), e))?;
        rows.into_iter()
            .map(|row| decode::<M>(row, &target))
            .collect()
    }

    /// Create `M`'s table if it does not exist (for quick starts and tests; applications keep their
    /// own migrations).
    pub fn create_table<M: Model>(&self) -> Result<()> {
        self.batch(&M::statements().get(self.dialect).create_table)
    }

    // ---- bulk writes --------------------------------------------------------------------------

    /// Insert every instance in one transaction, with as few statements as the database allows,
    /// sending `pre_save` and `post_save` (`created` true) for each. Keys are assigned in order.
    pub fn bulk_create<M: Model>(&self, instances: &mut [M]) -> Result<()> {
        self.bulk_create_with(instances, false)
    }

    pub(crate) fn bulk_create_with<M: Model>(
        &self,
        instances: &mut [M],
        quiet: bool,
    ) -> Result<()> {
        if instances.is_empty() {
            return Ok(());
        }
        let signals = &self.shared.signals;
        self.atomic(|conn| {
            if !quiet && signals.pre_save::<M>().has_receivers() {
                for instance in instances.iter_mut() {
                    let _depth = conn.enter(instance)?;
                    let mut event = PreSave::new(&mut *instance)
                        .using(&conn.shared.alias)
                        .with_store(conn);
                    signals.pre_save::<M>().send(&mut event)?;
                }
            }
            conn.insert_many(instances)?;
            if !quiet {
                for instance in instances.iter() {
                    conn.after_save(instance, true, SaveOptions::default())?;
                }
            }
            Ok(())
        })
    }

    fn insert_many<M: Model>(&self, instances: &mut [M]) -> Result<()> {
        let auto: Vec<usize> = (0..instances.len())
            .filter(|i| M::AUTO_PK && instances[*i].pk_value().is_none())
            .collect();
        let keyed: Vec<usize> = (0..instances.len())
            .filter(|i| !(M::AUTO_PK && instances[*i].pk_value().is_none()))
            .collect();
        let columns_auto: Vec<usize> = (0..M::COLUMNS.len()).filter(|c| *c != M::PK).collect();
        let columns_all: Vec<usize> = (0..M::COLUMNS.len()).collect();
        let limit = match self.dialect {
            Dialect::Sqlite => 32_766,
            Dialect::Postgres => 65_535,
        };
        for (rows, columns, returning) in
            [(&auto, &columns_auto, true), (&keyed, &columns_all, false)]
        {
            let per_statement = (limit / columns.len().max(1)).clamp(1, 1000);
            for chunk in rows.chunks(per_statement) {
                let sql = self
                    .insert_many
                    .borrow_mut()
                    .entry((std::any::TypeId::of::<M>(), chunk.len(), returning))
                    .or_insert_with(|| {
                        insert_many_sql::<M>(self.dialect, columns, chunk.len(), returning).into()
                    })
                    .clone();
                let params: Vec<Value> = chunk
                    .iter()
                    .flat_map(|i| columns.iter().map(|c| instances[*i].value(*c)))
                    .collect();
                let first = &instances[chunk[0]];
                let fail = |e| Error::write("bulk-creating", target(first), e);
                if returning {
                    let keys = self
                        .backend
                        .borrow_mut()
                        .query(&sql, &params, &[SqlType::Int])
                        .map_err(fail)?;
                    if keys.len() != chunk.len() {
                        return Err(fail(DbError::new(
                            DbErrorKind::Other,
                            "INSERT returned a different number of keys",
                        )));
                    }
                    for (i, key) in chunk.iter().zip(keys) {
                        let key = key.into_iter().next().unwrap_or(Value::Null);
                        instances[*i].set_pk_value(key).map_err(|reason| {
                            Error::write(
                                "bulk-creating",
                                target(&instances[*i]),
                                DbError::new(DbErrorKind::Other, reason),
                            )
                        })?;
                    }
                } else {
                    self.backend
                        .borrow_mut()
                        .execute(&sql, &params)
                        .map_err(fail)?;
                }
            }
        }
        Ok(())
    }

    /// Update `fields` of every instance in one transaction, sending `pre_save` and `post_save`
    /// (`created` false, `update_fields` = `fields`) for each.
    pub fn bulk_update<M: Model>(&self, instances: &mut [M], fields: &[&str]) -> Result<()> {
        self.bulk_update_with(instances, fields, false)
    }

    pub(crate) fn bulk_update_with<M: Model>(
        &self,
        instances: &mut [M],
        fields: &[&str],
        quiet: bool,
    ) -> Result<()> {
        if instances.is_empty() || fields.is_empty() {
            return Ok(());
        }
        check_fields::<M>(fields)?;
        let signals = &self.shared.signals;
        self.atomic(|conn| {
            let sql = update_fields_sql::<M>(conn.dialect, fields);
            for instance in instances.iter_mut() {
                let _depth = conn.enter(instance)?;
                if !quiet {
                    let mut event = PreSave::new(&mut *instance)
                        .using(&conn.shared.alias)
                        .update_fields(Some(fields))
                        .with_store(conn);
                    signals.pre_save::<M>().send(&mut event)?;
                }
                let Some(key) = instance.pk_value() else {
                    return Err(Error::NotFound {
                        target: target(instance),
                    });
                };
                let mut params: Vec<Value> = fields
                    .iter()
                    .map(|f| instance.value(M::column_index(f).expect("fields were checked")))
                    .collect();
                params.push(key);
                let changed = conn
                    .backend
                    .borrow_mut()
                    .execute(&sql, &params)
                    .map_err(|e| Error::write("bulk-updating", target(instance), e))?;
                if changed == 0 {
                    return Err(Error::NotFound {
                        target: target(instance),
                    });
                }
                if !quiet {
                    conn.after_save(
                        instance,
                        false,
                        SaveOptions {
                            fields: Some(fields),
                            ..SaveOptions::default()
                        },
                    )?;
                }
            }
            Ok(())
        })
    }

    /// Delete every instance in one transaction with as few statements as the database allows,
    /// sending `pre_delete` and `post_delete` for each; returns how many rows were deleted.
    pub fn delete_many<M: Model>(&self, instances: &[M]) -> Result<u64> {
        self.delete_many_with(instances, false)
    }

    pub(crate) fn delete_many_with<M: Model>(&self, instances: &[M], quiet: bool) -> Result<u64> {
        if instances.is_empty() {
            return Ok(0);
        }
        let signals = &self.shared.signals;
        self.atomic(|conn| {
            let mut keys = Vec::with_capacity(instances.len());
            for instance in instances {
                let Some(key) = instance.pk_value() else {
                    return Err(Error::NotFound {
                        target: target(instance),
                    });
                };
                if !quiet {
                    let mut event = PreDelete::new(instance)
                        .using(&conn.shared.alias)
                        .with_store(conn);
                    signals.pre_delete::<M>().send(&mut event)?;
                }
                keys.push(key);
            }
            let mut deleted = 0;
            for chunk in keys.chunks(1000) {
                let list = (1..=chunk.len())
                    .map(|i| placeholder(conn.dialect, i))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = format!(
                    "DELETE FROM {} WHERE {} IN ({list})",
                    quote(M::TABLE),
                    quote(M::COLUMNS[M::PK].name)
                );
                deleted += conn
                    .backend
                    .borrow_mut()
                    .execute(&sql, chunk)
                    .map_err(|e| Error::write("deleting", target(&instances[0]), e))?;
            }
            if !quiet {
                for instance in instances {
                    conn.after_delete(instance)?;
                }
            }
            Ok(deleted)
        })
    }

    // ---- fixtures -------------------------------------------------------------------------------

    /// Save one fixture row (`fields` as JSON, Django's format) with `raw = true`.
    pub fn load_json<M: Model>(
        &self,
        pk: Option<&serde_json::Value>,
        fields: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Saved> {
        let what = format!(
            "{} {}",
            M::NAME,
            pk.map_or_else(|| "(no pk)".to_owned(), |p| p.to_string())
        );
        if let Some(unknown) = fields.keys().find(|k| M::column_index(k).is_none()) {
            return Err(Error::Fixture {
                what,
                reason: format!("{} has no field `{unknown}`", M::NAME),
            });
        }
        let mut values = Vec::with_capacity(M::COLUMNS.len());
        for (i, column) in M::COLUMNS.iter().enumerate() {
            let json = if i == M::PK {
                pk.or_else(|| fields.get(column.name))
            } else {
                fields.get(column.name)
            };
            let value = match json {
                Some(json) => {
                    Value::from_json(column.sql_type, json).map_err(|reason| Error::Fixture {
                        what: what.clone(),
                        reason: format!("field `{}`: {reason}", column.name),
                    })?
                }
                None => Value::Null,
            };
            values.push(value);
        }
        let mut instance = M::from_values(values).map_err(|(column, reason)| Error::Fixture {
            what: what.clone(),
            reason: format!("field `{}`: {reason}", M::COLUMNS[column].name),
        })?;
        self.save_with(
            &mut instance,
            SaveOptions {
                raw: true,
                ..SaveOptions::default()
            },
        )
    }
}

fn log_hook_failures(errors: Vec<herald_dispatch::DispatchError>) {
    for error in errors {
        let receiver: &ReceiverInfo = error.receiver();
        tracing::warn!(target: "herald::hooks", receiver = %receiver.name(), %error, "on_commit receiver failed: {error}");
    }
}

fn statement_error(sql: &str, source: DbError) -> Error {
    let what = sql.split_whitespace().take(6).collect::<Vec<_>>().join(" ");
    Error::Statement {
        what: format!("`{what}`"),
        source,
    }
}

fn check_fields<M: Model>(fields: &[&str]) -> Result<()> {
    for field in fields {
        if M::column_index(field).is_none() {
            return Err(Error::UnknownField {
                model: M::NAME,
                field: (*field).to_owned(),
                known: M::COLUMNS
                    .iter()
                    .map(|c| c.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    Ok(())
}

fn non_pk_values<M: Model>(instance: &M) -> Vec<Value> {
    (0..M::COLUMNS.len())
        .filter(|i| *i != M::PK)
        .map(|i| instance.value(i))
        .collect()
}

fn column_types<M: Model>() -> Vec<SqlType> {
    M::COLUMNS.iter().map(|c| c.sql_type).collect()
}

fn decode<M: Model>(row: Vec<Value>, target: &Target) -> Result<M> {
    let key = row.get(M::PK).map(ToString::to_string);
    M::from_values(row).map_err(|(column, reason)| Error::Decode {
        target: Target {
            model: target.model,
            key: key.or_else(|| target.key.clone()),
        },
        column: M::COLUMNS[column].name,
        reason,
    })
}

fn update_fields_sql<M: Model>(dialect: Dialect, fields: &[&str]) -> String {
    let sets = fields
        .iter()
        .enumerate()
        .map(|(i, f)| format!("{} = {}", quote(f), placeholder(dialect, i + 1)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "UPDATE {} SET {sets} WHERE {} = {}",
        quote(M::TABLE),
        quote(M::COLUMNS[M::PK].name),
        placeholder(dialect, fields.len() + 1)
    )
}

fn insert_many_sql<M: Model>(
    dialect: Dialect,
    columns: &[usize],
    rows: usize,
    returning: bool,
) -> String {
    let names = columns
        .iter()
        .map(|c| quote(M::COLUMNS[*c].name))
        .collect::<Vec<_>>()
        .join(", ");
    let mut n = 0;
    let tuples = (0..rows)
        .map(|_| {
            let row = columns
                .iter()
                .map(|_| {
                    n += 1;
                    placeholder(dialect, n)
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!("({row})")
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut sql = format!("INSERT INTO {} ({names}) VALUES {tuples}", quote(M::TABLE));
    if returning {
        sql.push_str(" RETURNING ");
        sql.push_str(&quote(M::COLUMNS[M::PK].name));
    }
    sql
}
