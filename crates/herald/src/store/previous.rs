//! What an update changed: the row as it was just before the write, read in the write's own
//! transaction (locked on PostgreSQL, behind the one writer on SQLite), and the fields whose
//! values differ between it and the instance written.
//!
//! Read only while a connected `post_save` receiver of the model asked for it
//! (`Signals::post_save::<M>().wants_changes()`); otherwise an update reads nothing more. On
//! PostgreSQL a save with no `in_transaction` receiver reads and updates in one statement
//! (`rows::update_returning_previous`); otherwise the read is a SELECT of its own, first in the
//! write's transaction.

use herald_dispatch::PostSave;

use crate::error::Result;
use crate::model::Model;
use crate::store::conn::Conn;
use crate::store::rows;

/// The row before an update, and what the update changed.
#[derive(Clone, Debug)]
pub(crate) struct Previous<M> {
    pub(crate) row: M,
    /// Column names, in declaration order; only fields written count.
    pub(crate) changed: Vec<&'static str>,
}

impl<M: Model> Previous<M> {
    /// Compare the row read before the write with the instance as written.
    pub(crate) fn compare(row: M, written: &M, fields: Option<&[&str]>) -> Self {
        let changed = M::COLUMNS
            .iter()
            .enumerate()
            .filter(|(i, column)| {
                *i != M::PK
                    && fields.is_none_or(|f| f.contains(&column.name))
                    && row.value(*i) != written.value(*i)
            })
            .map(|(_, column)| column.name)
            .collect();
        Self { row, changed }
    }
}

/// The row `instance`'s update is about to change, when `wanted` and the instance has a key:
/// read first in the write's transaction.
pub(crate) fn before<M: Model>(conn: &Conn, instance: &M, wanted: bool) -> Result<Option<M>> {
    match instance.pk_value() {
        Some(key) if wanted => rows::get_locked::<M>(conn, key),
        _ => Ok(None),
    }
}

/// What the write changed, once it is done: `None` for an insert (nothing was there before).
pub(crate) fn after<M: Model>(
    before: Option<M>,
    created: bool,
    written: &M,
    fields: Option<&[&str]>,
) -> Option<Previous<M>> {
    before
        .filter(|_| !created)
        .map(|row| Previous::compare(row, written, fields))
}

/// `event` with what the update changed, when it was read.
pub(crate) fn with<'e, M: Model>(
    event: PostSave<'e, M>,
    previous: Option<&'e Previous<M>>,
) -> PostSave<'e, M> {
    match previous {
        Some(p) => event.with_previous(&p.row, &p.changed),
        None => event,
    }
}
