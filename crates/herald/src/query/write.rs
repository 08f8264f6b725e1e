//! `update_where` and `delete_where`: one statement when nothing listens, the bulk lifecycle per
//! row when something does.
//!
//! With a receiver of the write's signals connected for the model (any phase: caller,
//! `in_transaction`, `on_commit`, background) and a store that is not quiet, the matching rows are
//! fetched (locked with `FOR UPDATE` on PostgreSQL), the assignments applied to each instance, and
//! the rows written through `lifecycle::bulk_save` (`Bulk::Update` of the assigned columns) or
//! `lifecycle::delete_many`, so that each row's signals fire as for `bulk_update` / `delete_many`.
//! The fetch and the writes share one transaction: a `Tx`'s own, or one opened on a `Db` for the
//! call. Otherwise one `UPDATE .. SET .. WHERE ..` / `DELETE .. WHERE ..` statement runs.

use herald_dispatch::Signals;

use crate::error::{Error, Result};
use crate::model::{Model, quote};
use crate::query::sql::{Select, Sql, invalid, select_into, where_clause};
use crate::query::{Assign, Query};
use crate::store::conn::Conn;
use crate::store::lifecycle::{self, Bulk, Route};
use crate::store::ops::Sealed;
use crate::store::tx::Tx;

/// Whether any `pre_save` / `post_save` receiver of `M` would run, in any phase.
fn save_receivers<M: Model>(signals: &Signals) -> bool {
    let pre = || signals.pre_save::<M>();
    let post = || signals.post_save::<M>();
    pre().has_receivers()
        || pre().in_transaction().has_receivers()
        || post().has_receivers()
        || post().in_transaction().has_receivers()
        || post().on_commit().has_receivers()
        || post().background_phase().has_receivers()
}

/// Whether any `pre_delete` / `post_delete` receiver of `M` would run, in any phase.
fn delete_receivers<M: Model>(signals: &Signals) -> bool {
    let pre = || signals.pre_delete::<M>();
    let post = || signals.post_delete::<M>();
    pre().has_receivers()
        || pre().in_transaction().has_receivers()
        || post().has_receivers()
        || post().in_transaction().has_receivers()
        || post().on_commit().has_receivers()
        || post().background_phase().has_receivers()
}

/// Set `set` on the rows `query` matches; how many rows changed.
pub(crate) async fn update_where<M: Model>(
    route: Route<'_>,
    query: Query<M>,
    set: Vec<Assign<M>>,
) -> Result<u64> {
    if set.is_empty() {
        return Ok(0);
    }
    if set.iter().any(|a| a.column == M::PK) {
        return Err(invalid::<M>(format!(
            "update_where cannot set the key `{}`: save a copy under the new key and delete the old row",
            M::COLUMNS[M::PK].name
        )));
    }
    if route.quiet || !save_receivers::<M>(&route.shared.signals) {
        return lifecycle::run(route, move |conn| update_statement(conn, &query, &set)).await;
    }
    let mut fields: Vec<String> = Vec::with_capacity(set.len());
    for assign in &set {
        let name = M::COLUMNS[assign.column].name;
        if !fields.iter().any(|f| f == name) {
            fields.push(name.to_owned());
        }
    }
    let tx = begin(route).await?;
    let inside = tx.as_ref().map_or(route, Sealed::route);
    let outcome = async {
        let mut rows = lifecycle::read(inside, move |conn| query.fetch(conn, true)).await?;
        for row in &mut rows {
            *row = assigned(row, &set)?;
        }
        lifecycle::bulk_save(inside, &mut rows, Bulk::Update(fields)).await?;
        Ok(rows.len() as u64)
    }
    .await;
    finish(tx, outcome).await
}

/// Delete the rows `query` matches; how many went.
pub(crate) async fn delete_where<M: Model>(route: Route<'_>, query: Query<M>) -> Result<u64> {
    if route.quiet || !delete_receivers::<M>(&route.shared.signals) {
        return lifecycle::run(route, move |conn| delete_statement(conn, &query)).await;
    }
    let tx = begin(route).await?;
    let inside = tx.as_ref().map_or(route, Sealed::route);
    let outcome = async {
        let rows = lifecycle::read(inside, move |conn| query.fetch(conn, true)).await?;
        lifecycle::delete_many(inside, &rows).await
    }
    .await;
    finish(tx, outcome).await
}

/// The transaction the per-row path runs in: the route's own (`None`: a `Tx`), or one opened on a
/// `Db` for the call.
async fn begin(route: Route<'_>) -> Result<Option<Tx<'static>>> {
    if route.in_tx {
        return Ok(None);
    }
    Tx::begin_on(route).await.map(Some)
}

/// End the transaction `begin` opened: committed when the work succeeded, and also when only a
/// caller-side `post_*` receiver failed after the writes (the error then says that the writes were
/// committed, as for a `Db`'s own bulk writes); rolled back otherwise.
async fn finish<R>(tx: Option<Tx<'static>>, outcome: Result<R>) -> Result<R> {
    let Some(tx) = tx else {
        return outcome;
    };
    match outcome {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(Error::AfterWrite { error, .. }) => {
            tx.commit().await?;
            Err(Error::AfterWrite {
                error,
                committed: true,
            })
        }
        Err(error) => {
            tx.rollback().await?;
            Err(error)
        }
    }
}

/// `row` with the assignments applied, rebuilt through its values.
fn assigned<M: Model>(row: &M, set: &[Assign<M>]) -> Result<M> {
    let mut values: Vec<_> = (0..M::COLUMNS.len()).map(|i| row.value(i)).collect();
    for assign in set {
        values[assign.column] = assign.value.clone();
    }
    M::from_values(values).map_err(|(column, reason)| Error::Invalid {
        op: "updating",
        target: crate::store::rows::target(row),
        field: M::COLUMNS[column].name,
        reason,
    })
}

/// `WHERE ..` of an UPDATE or DELETE: the query's conditions, or, when it has a limit or an offset,
/// `key IN (SELECT key .. ORDER BY .. LIMIT ..)`.
fn write_where<M: Model>(query: &Query<M>, sql: &mut Sql) -> Result<()> {
    if query.limit.is_none() && query.offset.is_none() {
        return where_clause(query, sql);
    }
    sql.push(&format!(" WHERE {} IN (", quote(M::COLUMNS[M::PK].name)));
    select_into(query, sql, Select::Keys)?;
    sql.push(")");
    Ok(())
}

fn update_statement<M: Model>(conn: &Conn, query: &Query<M>, set: &[Assign<M>]) -> Result<u64> {
    let mut sql = Sql::new(conn.dialect());
    sql.push(&format!("UPDATE {} SET ", quote(M::TABLE)));
    for (i, assign) in set.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.push(&quote(M::COLUMNS[assign.column].name));
        sql.push(" = ");
        sql.bind(assign.value.clone());
    }
    write_where(query, &mut sql)?;
    let changed = conn.statement(|b| b.execute(&sql.text, &sql.params));
    changed.map_err(|source| Error::Query {
        op: "updating",
        model: M::NAME,
        source,
    })
}

fn delete_statement<M: Model>(conn: &Conn, query: &Query<M>) -> Result<u64> {
    let mut sql = Sql::new(conn.dialect());
    sql.push(&format!("DELETE FROM {}", quote(M::TABLE)));
    write_where(query, &mut sql)?;
    let deleted = conn.statement(|b| b.execute(&sql.text, &sql.params));
    deleted.map_err(|source| Error::Query {
        op: "deleting",
        model: M::NAME,
        source,
    })
}
