//! `update_where` and `delete_where`: one statement when nothing listens, the bulk lifecycle per
//! row when something does.
//!
//! With a receiver of the write's signals connected for the model (any phase: caller,
//! `in_transaction`, `on_commit`, background) and a store that is not quiet, the matching rows are
//! fetched, the assignments applied to each instance, and the rows written through
//! `lifecycle::bulk_save` (`Bulk::Update` of the assigned columns) or `lifecycle::delete_many`, so
//! that each row's signals fire, where they would for `bulk_update` / `delete_many`. Otherwise one
//! `UPDATE .. SET .. WHERE ..` / `DELETE .. WHERE ..` statement runs.
//!
//! Inside a `Tx` the fetch is part of the transaction (locked with `FOR UPDATE` on PostgreSQL). On
//! a `Db` the rows are fetched first, then written by key in one transaction of their own, as a
//! `bulk_update` is: no transaction is held open while the caller-side receivers run, so a
//! receiver that writes through the `Db` does not wait on a transaction its own caller holds (on
//! SQLite, the only writer). A row deleted between the fetch and the write makes the whole write
//! `Error::NotFound` naming it, and nothing is written.

use herald_dispatch::Signals;

use crate::error::{Error, Result};
use crate::model::{Model, quote};
use crate::query::sql::{Select, Sql, invalid, select_into, where_clause};
use crate::query::{Assign, Query};
use crate::store::conn::Conn;
use crate::store::lifecycle::{self, Bulk, Route};

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
    let lock = route.in_tx;
    let mut rows = lifecycle::read(route, move |conn| query.fetch(conn, lock)).await?;
    for row in &mut rows {
        *row = assigned(row, &set)?;
    }
    lifecycle::bulk_save(route, &mut rows, Bulk::Update(fields)).await?;
    Ok(rows.len() as u64)
}

/// Delete the rows `query` matches; how many went.
pub(crate) async fn delete_where<M: Model>(route: Route<'_>, query: Query<M>) -> Result<u64> {
    if route.quiet || !delete_receivers::<M>(&route.shared.signals) {
        return lifecycle::run(route, move |conn| delete_statement(conn, &query)).await;
    }
    let lock = route.in_tx;
    let rows = lifecycle::read(route, move |conn| query.fetch(conn, lock)).await?;
    lifecycle::delete_many(route, &rows).await
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
