//! A [`Query`] as SQL text and its bound values, in one dialect. Identifiers come from the derive
//! (checked) and are quoted; every value is a parameter, numbered in the order it is written.

use crate::error::{Error, Result};
use crate::model::{Dialect, Model, column_list, placeholder, quote};
use crate::query::Query;
use crate::query::expr::{CmpOp, Node};
use crate::value::Value;

/// SQL text being written, and its parameters.
#[derive(Debug)]
pub(crate) struct Sql {
    dialect: Dialect,
    pub(crate) text: String,
    pub(crate) params: Vec<Value>,
}

impl Sql {
    pub(crate) fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            text: String::with_capacity(128),
            params: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    /// Bind `value` and write its placeholder.
    pub(crate) fn bind(&mut self, value: Value) {
        self.params.push(value);
        let n = self.params.len();
        self.text.push_str(&placeholder(self.dialect, n));
    }

    fn column<M: Model>(&mut self, index: usize) {
        self.text.push_str(&quote(M::COLUMNS[index].name));
    }

    fn node<M: Model>(&mut self, node: &Node) {
        match node {
            Node::Cmp {
                column,
                op,
                value: Value::Null,
            } if matches!(op, CmpOp::Eq | CmpOp::Ne) => {
                self.column::<M>(*column);
                self.push(if *op == CmpOp::Eq {
                    " IS NULL"
                } else {
                    " IS NOT NULL"
                });
            }
            Node::Cmp { column, op, value } => {
                self.column::<M>(*column);
                self.push(" ");
                self.push(op.sql());
                self.push(" ");
                self.bind(value.clone());
            }
            Node::In { values, .. } if values.is_empty() => self.push("1 = 0"),
            Node::In { column, values } => {
                self.column::<M>(*column);
                self.push(" IN (");
                for (i, value) in values.iter().enumerate() {
                    if i > 0 {
                        self.push(", ");
                    }
                    self.bind(value.clone());
                }
                self.push(")");
            }
            Node::Like { column, pattern } => {
                self.column::<M>(*column);
                self.push(" LIKE ");
                self.bind(Value::Text(pattern.clone()));
                self.push(" ESCAPE '\\'");
            }
            Node::Null { column, null } => {
                self.column::<M>(*column);
                self.push(if *null { " IS NULL" } else { " IS NOT NULL" });
            }
            Node::And(all) => self.list::<M>(all, " AND ", "1 = 1"),
            Node::Or(any) => self.list::<M>(any, " OR ", "1 = 0"),
            Node::Not(inner) => {
                self.push("NOT (");
                self.node::<M>(inner);
                self.push(")");
            }
        }
    }

    fn list<M: Model>(&mut self, nodes: &[Node], joiner: &str, empty: &str) {
        if nodes.is_empty() {
            self.push(empty);
            return;
        }
        for (i, node) in nodes.iter().enumerate() {
            if i > 0 {
                self.push(joiner);
            }
            self.push("(");
            self.node::<M>(node);
            self.push(")");
        }
    }
}

/// The orders a query sorts by, with the key appended as the last tie-break (ascending) unless
/// the query already orders by it: the order is total, which keyset pagination needs.
pub(crate) fn orders<M: Model>(query: &Query<M>) -> Vec<(usize, bool)> {
    let mut orders: Vec<(usize, bool)> = query.order.iter().map(|o| (o.column, o.desc)).collect();
    if !orders.iter().any(|(column, _)| *column == M::PK) {
        orders.push((M::PK, false));
    }
    orders
}

/// What a query selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Select {
    /// Every column, ordered, limited.
    Rows {
        /// `FOR UPDATE` on PostgreSQL: rows fetched to be written in the same transaction.
        lock: bool,
    },
    /// `COUNT(*)` of the rows the query would return.
    Count,
    /// One row or none.
    Exists,
    /// The keys of the rows, for `WHERE key IN (..)` of an UPDATE or DELETE.
    Keys,
}

/// `WHERE ..` (with the keyset condition), or nothing when the query has no condition.
pub(crate) fn where_clause<M: Model>(query: &Query<M>, sql: &mut Sql) -> Result<()> {
    let mut conditions: Vec<&Node> = query.filters.iter().collect();
    let keyset = keyset::<M>(query)?;
    if let Some(keyset) = &keyset {
        conditions.push(keyset);
    }
    if conditions.is_empty() {
        return Ok(());
    }
    sql.push(" WHERE ");
    for (i, node) in conditions.iter().enumerate() {
        if i > 0 {
            sql.push(" AND ");
        }
        sql.push("(");
        sql.node::<M>(node);
        sql.push(")");
    }
    Ok(())
}

/// The `SELECT` for `query`.
pub(crate) fn select<M: Model>(query: &Query<M>, dialect: Dialect, what: Select) -> Result<Sql> {
    let mut sql = Sql::new(dialect);
    select_into(query, &mut sql, what)?;
    Ok(sql)
}

/// Write the `SELECT` for `query` into `sql` (after what is there: a subquery's parameters are
/// numbered after the statement's).
pub(crate) fn select_into<M: Model>(query: &Query<M>, sql: &mut Sql, what: Select) -> Result<()> {
    let dialect = sql.dialect;
    let table = quote(M::TABLE);
    let limited = query.limit.is_some() || query.offset.is_some();
    match what {
        Select::Count if limited => sql.push(&format!(
            "SELECT COUNT(*) FROM (SELECT {} FROM {table}",
            quote(M::COLUMNS[M::PK].name)
        )),
        Select::Count => sql.push(&format!("SELECT COUNT(*) FROM {table}")),
        Select::Exists => sql.push(&format!("SELECT 1 FROM {table}")),
        Select::Keys => sql.push(&format!(
            "SELECT {} FROM {table}",
            quote(M::COLUMNS[M::PK].name)
        )),
        Select::Rows { .. } => {
            sql.push(&format!("SELECT {} FROM {table}", column_list(M::COLUMNS)))
        }
    }
    where_clause(query, sql)?;
    if matches!(what, Select::Rows { .. } | Select::Keys) {
        sql.push(" ORDER BY ");
        for (i, (column, desc)) in orders::<M>(query).into_iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.column::<M>(column);
            match (desc, nullable::<M>(column)) {
                (false, false) => {}
                (true, false) => sql.push(" DESC"),
                (false, true) => sql.push(" ASC NULLS FIRST"),
                (true, true) => sql.push(" DESC NULLS LAST"),
            }
        }
    }
    if what != Select::Count || limited {
        let limit = match what {
            Select::Exists => Some(query.limit.map_or(1, |limit| limit.min(1))),
            _ => query.limit,
        };
        match limit {
            Some(limit) => {
                sql.push(" LIMIT ");
                sql.bind(Value::Int(clamp(limit)));
            }
            // SQLite has no OFFSET without LIMIT; -1 is its "no limit".
            None if query.offset.is_some() && dialect == Dialect::Sqlite => {
                sql.push(" LIMIT -1");
            }
            None => {}
        }
        if let Some(offset) = query.offset {
            sql.push(" OFFSET ");
            sql.bind(Value::Int(clamp(offset)));
        }
    }
    match what {
        Select::Count if limited => sql.push(") AS counted"),
        Select::Rows { lock: true } if dialect == Dialect::Postgres => sql.push(" FOR UPDATE"),
        _ => {}
    }
    Ok(())
}

/// Whether column `index` may hold NULL (the key never does, whatever its Rust type).
fn nullable<M: Model>(index: usize) -> bool {
    index != M::PK && M::COLUMNS[index].nullable
}

/// Limits and offsets are `u64` in the API and `BIGINT` in SQL.
fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The keyset condition of `after(..)` / `after_row(..)`: the rows that come after the cursor in
/// the query's (total) order, as an expanded OR over the order's columns:
/// `(a > x) OR (a = x AND b > y) OR (a = x AND b = y AND key > k)`, with `<` for a descending
/// column. Refused (an [`Error::InvalidQuery`]) for a nullable order column, whose NULLs compare
/// as unknown, and for `after(key)` with an order on other columns than the key.
fn keyset<M: Model>(query: &Query<M>) -> Result<Option<Node>> {
    let Some(after) = &query.after else {
        return Ok(None);
    };
    let orders = orders::<M>(query);
    let values: Vec<Value> = match after {
        After::Key(key) => {
            if let Some((column, _)) = orders.iter().find(|(column, _)| *column != M::PK) {
                return Err(invalid::<M>(format!(
                    "after(key) needs an order on the key `{}` alone, but the query is ordered by \
                     `{}`; use after_row(&last_row_of_the_page) to page in another order",
                    M::COLUMNS[M::PK].name,
                    M::COLUMNS[*column].name
                )));
            }
            if *key == Value::Null {
                return Err(invalid::<M>("after(key) with a NULL key".to_owned()));
            }
            let mut values = vec![Value::Null; M::COLUMNS.len()];
            values[M::PK] = key.clone();
            values
        }
        After::Row(values) => {
            if values[M::PK] == Value::Null {
                return Err(invalid::<M>(
                    "after_row(..) with a row that has no key (it was never saved)".to_owned(),
                ));
            }
            values.clone()
        }
    };
    if let Some((column, _)) = orders.iter().find(|(c, _)| nullable::<M>(*c)) {
        return Err(invalid::<M>(format!(
            "keyset pagination (after/after_row) cannot order by the nullable column `{}`: \
             NULLs do not compare; order by non-null columns",
            M::COLUMNS[*column].name
        )));
    }
    let mut any = Vec::with_capacity(orders.len());
    for (n, (column, desc)) in orders.iter().enumerate() {
        let mut all: Vec<Node> = orders[..n]
            .iter()
            .map(|(c, _)| Node::Cmp {
                column: *c,
                op: CmpOp::Eq,
                value: values[*c].clone(),
            })
            .collect();
        all.push(Node::Cmp {
            column: *column,
            op: if *desc { CmpOp::Lt } else { CmpOp::Gt },
            value: values[*column].clone(),
        });
        any.push(if all.len() == 1 {
            all.remove(0)
        } else {
            Node::And(all)
        });
    }
    Ok(Some(if any.len() == 1 {
        any.remove(0)
    } else {
        Node::Or(any)
    }))
}

/// Where keyset pagination starts from.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum After {
    /// `after(key)`: a key, for a query ordered by the key alone.
    Key(Value),
    /// `after_row(&row)`: every column of the last row of the previous page.
    Row(Vec<Value>),
}

/// A query that cannot run, naming the model and what is wrong.
pub(crate) fn invalid<M: Model>(reason: String) -> Error {
    Error::InvalidQuery {
        model: M::NAME,
        reason,
    }
}

#[cfg(test)]
mod tests;
