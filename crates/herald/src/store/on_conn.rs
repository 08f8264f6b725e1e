//! The connection's side of the write lifecycle (see `lifecycle.rs` for the whole of it): steps 2
//! to 5 of each write, run in its job (the `in_transaction` receivers, the statements, the
//! `on_commit` registration), and writes made on the connection itself, which run every phase
//! here, the caller-side ones inline.

use std::sync::atomic::Ordering::Relaxed;

use herald_dispatch::{DispatchError, PostDelete, PostSave, PreDelete, PreSave};

use crate::error::{Error, Result};
use crate::model::{Dialect, Model};
use crate::store::conn::{Conn, Saved};
use crate::store::hooks::{Hook, HookKind, HookRun};
use crate::store::lifecycle::{Bulk, How, Keep, Unit};
use crate::store::previous::{self, Previous};
use crate::store::rows::{self, check_fields, target};

/// The `on_commit` receivers of one write, as a hook that sends them on the caller.
fn on_commit_save<M: Model>(
    conn: &Conn,
    instance: &M,
    created: bool,
    how: &How,
    previous: Option<&Previous<M>>,
) -> Hook {
    let (signals, alias) = (conn.signals().clone(), conn.shared().alias.clone());
    let (copy, how, previous) = (instance.clone(), how.clone(), previous.cloned());
    Hook {
        kind: HookKind::Commit,
        name: "post_save on_commit receivers",
        run: HookRun::Receivers(Box::new(move || {
            Box::pin(async move {
                let names = how.names();
                let event = PostSave::new(&copy, created)
                    .raw(how.raw)
                    .using(&alias)
                    .update_fields(names.as_deref());
                let mut event = previous::with(event, previous.as_ref());
                signals
                    .post_save::<M>()
                    .on_commit()
                    .send_async_robust(&mut event)
                    .await
            })
        })),
    }
}

fn on_commit_delete<M: Model>(conn: &Conn, instance: &M) -> Hook {
    let (signals, alias, copy) = (
        conn.signals().clone(),
        conn.shared().alias.clone(),
        instance.clone(),
    );
    Hook {
        kind: HookKind::Commit,
        name: "post_delete on_commit receivers",
        run: HookRun::Receivers(Box::new(move || {
            Box::pin(async move {
                let mut event = PostDelete::new(&copy).using(&alias);
                signals
                    .post_delete::<M>()
                    .on_commit()
                    .send_async_robust(&mut event)
                    .await
            })
        })),
    }
}

/// Decrements the connection's nesting depth when a nested write ends, however it ends.
struct Nested<'a>(&'a Conn);

impl Drop for Nested<'_> {
    fn drop(&mut self) {
        self.0.save_depth.fetch_sub(1, Relaxed);
    }
}

impl Conn {
    fn enter<M: Model>(&self, instance: &M) -> Result<Nested<'_>> {
        let depth = self.save_depth.load(Relaxed);
        if depth >= self.shared().recursion_limit {
            return Err(Error::Recursion {
                target: target(instance),
                depth,
            });
        }
        self.save_depth.store(depth + 1, Relaxed);
        Ok(Nested(self))
    }

    /// Run the write `f` as one unit, as `unit` says (see [`Unit`]).
    fn write_unit<T>(&self, unit: Unit, f: impl FnOnce(&Conn) -> Result<T>) -> Result<T> {
        match unit {
            Unit::Own => self.atomic_write(f),
            Unit::CallersTx => f(self).inspect_err(|error| self.mark_failed(error)),
        }
    }

    /// Steps 2 to 5 of a save, on this connection: made all or nothing as `unit` says when an
    /// `in_transaction` receiver is connected or a receiver asked what an update changed (the row
    /// is then read first, in that transaction), else one statement. Registers the
    /// `on_commit` receivers. Answers whether it inserted, and what the update changed when that
    /// was asked for.
    pub(crate) fn save_in_job<M: Model>(
        &self,
        instance: &mut M,
        how: &How,
        quiet: bool,
        keep: Keep,
        unit: Unit,
    ) -> Result<(bool, Option<Previous<M>>)> {
        let signals = self.signals();
        let names = how.names();
        let pre = !quiet && signals.pre_save::<M>().in_transaction().has_receivers();
        let post = !quiet && signals.post_save::<M>().in_transaction().has_receivers();
        let changes =
            !quiet && instance.pk_value().is_some() && signals.post_save::<M>().wants_changes();
        let on_commit = keep == Keep::Register
            && !quiet
            && signals.post_save::<M>().on_commit().has_receivers();
        if changes && !pre && !post && self.dialect() == Dialect::Postgres {
            // One statement reads the row as it was and updates it; a key that matched no row
            // goes the way below (an INSERT for a whole save, NotFound for some fields).
            if let Some(row) = rows::update_returning_previous(self, instance, names.as_deref())? {
                let previous = Previous::compare(row, instance, names.as_deref());
                if on_commit {
                    let hook = on_commit_save(self, instance, false, how, Some(&previous));
                    self.push_hook(hook);
                }
                return Ok((false, Some(previous)));
            }
        }
        let mut write = |conn: &Conn| -> Result<(bool, Option<Previous<M>>)> {
            if pre {
                let mut event = PreSave::new(&mut *instance)
                    .raw(how.raw)
                    .using(conn.alias())
                    .update_fields(names.as_deref())
                    .with_store(conn);
                signals.pre_save::<M>().in_transaction().send(&mut event)?;
            }
            let before = previous::before(conn, instance, changes)?;
            let created = rows::write_row(conn, instance, names.as_deref())?;
            let previous = previous::after(before, created, instance, names.as_deref());
            if post {
                let event = PostSave::new(&*instance, created)
                    .raw(how.raw)
                    .using(conn.alias())
                    .update_fields(names.as_deref())
                    .with_store(conn);
                let mut event = previous::with(event, previous.as_ref());
                signals.post_save::<M>().in_transaction().send(&mut event)?;
            }
            if on_commit {
                conn.push_hook(on_commit_save(
                    conn,
                    instance,
                    created,
                    how,
                    previous.as_ref(),
                ));
            }
            Ok((created, previous))
        };
        if pre || post || changes {
            self.write_unit(unit, write)
        } else {
            write(self)
        }
    }

    /// Steps 2 to 5 of a delete, on this connection. True when a row was deleted.
    pub(crate) fn delete_in_job<M: Model>(
        &self,
        instance: &M,
        quiet: bool,
        keep: Keep,
        unit: Unit,
    ) -> Result<bool> {
        let signals = self.signals();
        let pre = !quiet && signals.pre_delete::<M>().in_transaction().has_receivers();
        let post = !quiet && signals.post_delete::<M>().in_transaction().has_receivers();
        let on_commit = keep == Keep::Register
            && !quiet
            && signals.post_delete::<M>().on_commit().has_receivers();
        let delete = |conn: &Conn| -> Result<bool> {
            if pre {
                let mut event = PreDelete::new(instance)
                    .using(conn.alias())
                    .with_store(conn);
                signals
                    .pre_delete::<M>()
                    .in_transaction()
                    .send(&mut event)?;
            }
            let deleted = rows::delete_row(conn, instance)?;
            if deleted && post {
                let mut event = PostDelete::new(instance)
                    .using(conn.alias())
                    .with_store(conn);
                signals
                    .post_delete::<M>()
                    .in_transaction()
                    .send(&mut event)?;
            }
            if deleted && on_commit {
                conn.push_hook(on_commit_delete(conn, instance));
            }
            Ok(deleted)
        };
        if pre || post {
            self.write_unit(unit, delete)
        } else {
            delete(self)
        }
    }

    /// Steps 2 to 5 of a bulk save, in one transaction. For a bulk update, answers what each
    /// instance's update changed when a receiver asked (in order; empty otherwise).
    pub(crate) fn bulk_in_job<M: Model>(
        &self,
        instances: &mut [M],
        bulk: &Bulk,
        quiet: bool,
        keep: Keep,
    ) -> Result<Vec<Option<Previous<M>>>> {
        let signals = self.signals();
        let (how, created) = match bulk {
            Bulk::Create => (How::default(), true),
            Bulk::Update(fields) => (
                How {
                    fields: Some(fields.clone()),
                    raw: false,
                },
                false,
            ),
        };
        let names = how.names();
        let pre = !quiet && signals.pre_save::<M>().in_transaction().has_receivers();
        let post = !quiet && signals.post_save::<M>().in_transaction().has_receivers();
        let changes = !quiet && !created && signals.post_save::<M>().wants_changes();
        let on_commit = keep == Keep::Register
            && !quiet
            && signals.post_save::<M>().on_commit().has_receivers();
        self.atomic_write(|conn| {
            if pre {
                for instance in instances.iter_mut() {
                    let mut event = PreSave::new(&mut *instance)
                        .using(conn.alias())
                        .update_fields(names.as_deref())
                        .with_store(conn);
                    signals.pre_save::<M>().in_transaction().send(&mut event)?;
                }
            }
            let mut before = Vec::new();
            if changes {
                for instance in instances.iter() {
                    before.push(previous::before(conn, instance, true)?);
                }
            }
            match &names {
                None => rows::insert_many(conn, instances)?,
                Some(fields) => rows::update_rows(conn, instances, fields)?,
            }
            let changed: Vec<Option<Previous<M>>> = before
                .into_iter()
                .zip(instances.iter())
                .map(|(row, instance)| previous::after(row, created, instance, names.as_deref()))
                .collect();
            for (i, instance) in instances.iter().enumerate() {
                let previous = changed.get(i).and_then(Option::as_ref);
                if post {
                    let event = PostSave::new(instance, created)
                        .using(conn.alias())
                        .update_fields(names.as_deref())
                        .with_store(conn);
                    let mut event = previous::with(event, previous);
                    signals.post_save::<M>().in_transaction().send(&mut event)?;
                }
                if on_commit {
                    conn.push_hook(on_commit_save(conn, instance, created, &how, previous));
                }
            }
            Ok(changed)
        })
    }

    /// Steps 2 to 5 of a bulk delete, in one transaction. Returns how many rows went.
    pub(crate) fn delete_many_in_job<M: Model>(
        &self,
        instances: &[M],
        quiet: bool,
        keep: Keep,
    ) -> Result<u64> {
        let signals = self.signals();
        let pre = !quiet && signals.pre_delete::<M>().in_transaction().has_receivers();
        let post = !quiet && signals.post_delete::<M>().in_transaction().has_receivers();
        let on_commit = keep == Keep::Register
            && !quiet
            && signals.post_delete::<M>().on_commit().has_receivers();
        self.atomic_write(|conn| {
            if pre {
                for instance in instances {
                    let mut event = PreDelete::new(instance)
                        .using(conn.alias())
                        .with_store(conn);
                    signals
                        .pre_delete::<M>()
                        .in_transaction()
                        .send(&mut event)?;
                }
            }
            let deleted = rows::delete_rows(conn, instances)?;
            for instance in instances {
                if post {
                    let mut event = PostDelete::new(instance)
                        .using(conn.alias())
                        .with_store(conn);
                    signals
                        .post_delete::<M>()
                        .in_transaction()
                        .send(&mut event)?;
                }
                if on_commit {
                    conn.push_hook(on_commit_delete(conn, instance));
                }
            }
            Ok(deleted)
        })
    }

    // ---- writes made on the connection: every phase inline ----------------------------------------

    /// The caller-phase receivers of a write made on the connection run here, inline; a failure of
    /// a `post_*` one after an autocommit write says the write is kept.
    fn after_write_here(&self, error: DispatchError) -> Error {
        if self.in_transaction() {
            Error::Receiver(error)
        } else {
            Error::AfterWrite {
                error,
                committed: true,
            }
        }
    }

    /// Save `instance` with its signals, on this connection (inside the transaction that is open,
    /// if any): insert it when it has no key or its key matched no row (`created`), update it
    /// otherwise. Every phase runs here, the caller-side ones inline; `on_commit` receivers run on
    /// the task that called the store, after the outermost commit.
    pub fn save<M: Model>(&self, instance: &mut M) -> Result<Saved> {
        self.save_here(instance, &How::default())
    }

    /// Save only `fields` (Django's `update_fields`): an empty list writes and sends nothing; an
    /// unknown name is an error before any receiver runs; a row that no longer exists is
    /// [`Error::NotFound`].
    pub fn save_fields<M: Model>(&self, instance: &mut M, fields: &[&str]) -> Result<Saved> {
        self.save_here(instance, &How::fields(fields))
    }

    fn save_here<M: Model>(&self, instance: &mut M, how: &How) -> Result<Saved> {
        let names = how.names();
        if let Some(fields) = &names {
            if fields.is_empty() {
                return Ok(Saved {
                    created: false,
                    written: false,
                });
            }
            check_fields::<M>(fields)?;
        }
        let _nested = self.enter(instance)?;
        let signals = self.signals().clone();
        let mut event = PreSave::new(&mut *instance)
            .raw(how.raw)
            .using(self.alias())
            .update_fields(names.as_deref());
        signals.pre_save::<M>().send(&mut event)?;
        let (created, previous) =
            self.save_in_job(instance, how, false, Keep::Register, Unit::Own)?;
        let event = PostSave::new(&*instance, created)
            .raw(how.raw)
            .using(self.alias())
            .update_fields(names.as_deref());
        let mut event = previous::with(event, previous.as_ref());
        signals
            .post_save::<M>()
            .send(&mut event)
            .map_err(|e| self.after_write_here(e))?;
        Ok(Saved {
            created,
            written: true,
        })
    }

    /// Delete `instance`'s row with its signals, on this connection; true if a row was deleted.
    /// `post_delete` is sent only when one was; the instance keeps its key.
    pub fn delete<M: Model>(&self, instance: &M) -> Result<bool> {
        if instance.pk_value().is_none() {
            return Err(Error::NotFound {
                target: target(instance),
            });
        }
        let _nested = self.enter(instance)?;
        let signals = self.signals().clone();
        signals
            .pre_delete::<M>()
            .send(&mut PreDelete::new(instance).using(self.alias()))?;
        let deleted = self.delete_in_job(instance, false, Keep::Register, Unit::Own)?;
        if deleted {
            signals
                .post_delete::<M>()
                .send(&mut PostDelete::new(instance).using(self.alias()))
                .map_err(|e| self.after_write_here(e))?;
        }
        Ok(deleted)
    }

    /// Insert every instance in one transaction with as few statements as the database allows,
    /// sending `pre_save` and `post_save` (`created` true) for each. Keys are assigned in order.
    pub fn bulk_create<M: Model>(&self, instances: &mut [M]) -> Result<()> {
        self.bulk_here(instances, Bulk::Create)
    }

    /// Update `fields` of every instance in one transaction, sending `pre_save` and `post_save`
    /// (`created` false, `update_fields` = `fields`) for each.
    pub fn bulk_update<M: Model>(&self, instances: &mut [M], fields: &[&str]) -> Result<()> {
        if fields.is_empty() {
            return Ok(());
        }
        check_fields::<M>(fields)?;
        self.bulk_here(
            instances,
            Bulk::Update(fields.iter().map(|f| (*f).to_owned()).collect()),
        )
    }

    fn bulk_here<M: Model>(&self, instances: &mut [M], bulk: Bulk) -> Result<()> {
        let Some(first) = instances.first() else {
            return Ok(());
        };
        let _nested = self.enter(first)?;
        let signals = self.signals().clone();
        let (names, created): (Option<Vec<&str>>, bool) = match &bulk {
            Bulk::Create => (None, true),
            Bulk::Update(fields) => (Some(fields.iter().map(String::as_str).collect()), false),
        };
        for instance in instances.iter_mut() {
            let mut event = PreSave::new(&mut *instance)
                .using(self.alias())
                .update_fields(names.as_deref());
            signals.pre_save::<M>().send(&mut event)?;
        }
        let changed = self.bulk_in_job(instances, &bulk, false, Keep::Register)?;
        for (i, instance) in instances.iter().enumerate() {
            let event = PostSave::new(instance, created)
                .using(self.alias())
                .update_fields(names.as_deref());
            let mut event = previous::with(event, changed.get(i).and_then(Option::as_ref));
            signals
                .post_save::<M>()
                .send(&mut event)
                .map_err(|e| self.after_write_here(e))?;
        }
        Ok(())
    }

    /// Delete every instance in one transaction with as few statements as the database allows,
    /// sending `pre_delete` and `post_delete` for each; returns how many rows were deleted.
    pub fn delete_many<M: Model>(&self, instances: &[M]) -> Result<u64> {
        let Some(first) = instances.first() else {
            return Ok(0);
        };
        let _nested = self.enter(first)?;
        let signals = self.signals().clone();
        for instance in instances {
            signals
                .pre_delete::<M>()
                .send(&mut PreDelete::new(instance).using(self.alias()))?;
        }
        let deleted = self.delete_many_in_job(instances, false, Keep::Register)?;
        for instance in instances {
            signals
                .post_delete::<M>()
                .send(&mut PostDelete::new(instance).using(self.alias()))
                .map_err(|e| self.after_write_here(e))?;
        }
        Ok(deleted)
    }
}
