//! Queries over one model's table, built from the typed columns `#[derive(Model)]` writes.
//!
//! ```no_run
//! # use herald::prelude::*;
//! # #[derive(herald::Model, Clone, Debug)]
//! # #[model(table = "books")]
//! # struct Book { id: Option<i64>, title: String, price_cents: i64 }
//! # async fn demo(db: &Db) -> herald::Result<()> {
//! let cheap: Vec<Book> = Book::query()
//!     .filter(Book::PRICE_CENTS.lt(1000).or(Book::TITLE.like("Dune%")))
//!     .order_by(Book::TITLE.asc())
//!     .limit(20)
//!     .all(db)
//!     .await?;
//! let how_many: u64 = Book::query().filter(Book::PRICE_CENTS.ge(1000)).count(db).await?;
//!
//! // Bulk writes, with `pre_save` / `post_save` per row when receivers are connected:
//! let changed = db
//!     .update_where(Book::query().filter(Book::PRICE_CENTS.lt(100)), &[Book::PRICE_CENTS.set(100)])
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! - **Columns** are associated constants of the model (`Book::PRICE_CENTS`, a [`Col<Book, i64>`]),
//!   so a misspelt column does not compile and a value of the wrong type does not convert.
//! - **Every value is bound** as a parameter (`?1` on SQLite, `$1` on PostgreSQL), `LIKE`
//!   patterns included (`%` and `_` are wildcards, `\` escapes them: [`escape_like`]); table and
//!   column names are the derive's checked identifiers, quoted.
//! - **Reads** ([`all`](Query::all), [`first`](Query::first), [`count`](Query::count),
//!   [`exists`](Query::exists)) take any [`Store`]: a [`Db`](crate::Db) reads on a reader, a
//!   [`Tx`](crate::Tx) inside its transaction. They send no signal.
//! - **Order** is total: the key is appended as the last tie-break (ascending) unless the query
//!   orders by it already, so pages do not overlap or skip rows with equal values.
//! - **Keyset pagination**: [`after`](Query::after) / [`after_row`](Query::after_row).

mod expr;
mod sql;
pub(crate) mod write;

use std::fmt;
use std::marker::PhantomData;

pub use expr::{Assign, Col, Expr, Order, TextField, escape_like};

use crate::error::{DbError, DbErrorKind, Error, Result, Target};
use crate::model::Model;
use crate::store::conn::Conn;
use crate::store::lifecycle;
use crate::store::ops::Store;
use crate::store::rows::{column_types, decode};
use crate::value::{SqlType, Value};
use expr::Node;
use sql::{After, Select, select};

/// A query over `M`'s rows: conditions, order, limit and offset, then a terminal operation that
/// runs it on any [`Store`]. Made by [`Model::query`] (`Book::query()`) or
/// `Query::<Book>::new()`; it matches every row until filtered.
///
/// The builder methods take and return the query by value; a query is `Clone`, and its terminal
/// operations take `&self`, so one query can be counted and then listed.
#[must_use = "a query does nothing until a terminal operation (all, first, count, exists) runs it"]
pub struct Query<M> {
    pub(crate) filters: Vec<Node>,
    pub(crate) order: Vec<Order<M>>,
    pub(crate) limit: Option<u64>,
    pub(crate) offset: Option<u64>,
    pub(crate) after: Option<After>,
    _model: PhantomData<fn() -> M>,
}

impl<M> Clone for Query<M> {
    fn clone(&self) -> Self {
        Self {
            filters: self.filters.clone(),
            order: self.order.clone(),
            limit: self.limit,
            offset: self.offset,
            after: self.after.clone(),
            _model: PhantomData,
        }
    }
}

impl<M: Model> fmt::Debug for Query<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Query")
            .field("model", &M::NAME)
            .field("filters", &self.filters)
            .field("order", &self.order)
            .field("limit", &self.limit)
            .field("offset", &self.offset)
            .field("after", &self.after)
            .finish()
    }
}

impl<M: Model> Default for Query<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: Model> Query<M> {
    /// Every row of `M`, in key order.
    pub fn new() -> Self {
        Self {
            filters: Vec::new(),
            order: Vec::new(),
            limit: None,
            offset: None,
            after: None,
            _model: PhantomData,
        }
    }

    /// Keep the rows that match `condition`. Several calls combine with AND.
    pub fn filter(mut self, condition: Expr<M>) -> Self {
        self.filters.push(condition.node);
        self
    }

    /// Sort by `order` (`Book::TITLE.asc()`, `Book::PRICE_CENTS.desc()`); several calls sort by
    /// each in turn. The key is the last tie-break (ascending) unless it is ordered by already.
    /// Default: by the key, ascending.
    pub fn order_by(mut self, order: Order<M>) -> Self {
        self.order.push(order);
        self
    }

    /// At most `n` rows. Default: no limit.
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }

    /// Skip the first `n` rows of the order. Default: none. (For deep pages prefer
    /// [`after_row`](Self::after_row): the database still reads the skipped rows, and rows
    /// inserted meanwhile shift the pages.)
    pub fn offset(mut self, n: u64) -> Self {
        self.offset = Some(n);
        self
    }

    /// Keyset pagination by key: only the rows after the row whose key is `key` in the query's
    /// order, which must be on the key alone (the default order, or `order_by` on the key's column,
    /// ascending or descending). The row with that key need not exist any more. A query ordered by
    /// other columns fails with [`Error::InvalidQuery`] naming the model and the column: page it
    /// with [`after_row`](Self::after_row).
    ///
    /// Stable under writes: a row inserted before the cursor is not seen, one after it is, and no
    /// row is seen twice or skipped.
    pub fn after(mut self, key: impl Into<Value>) -> Self {
        self.after = Some(After::Key(key.into()));
        self
    }

    /// Keyset pagination in any order on non-null columns: only the rows after `last` (the last
    /// row of the previous page) in the query's order, compared on the order's columns and the
    /// key (`(a > x) OR (a = x AND key > k)`, with `<` for a descending column). The row's values
    /// are taken now; the order is the query's when it runs.
    ///
    /// Fails with [`Error::InvalidQuery`] when the order has a nullable column (NULLs do not
    /// compare) or when `last` has no key.
    pub fn after_row(mut self, last: &M) -> Self {
        self.after = Some(After::Row(
            (0..M::COLUMNS.len()).map(|i| last.value(i)).collect(),
        ));
        self
    }

    /// The matching rows, in the query's order. A row that does not decode is
    /// [`Error::Decode`] naming the model, the key and the column.
    pub async fn all(&self, store: &impl Store) -> Result<Vec<M>> {
        let query = self.clone();
        lifecycle::read(store.route(), move |conn| query.fetch(conn, false)).await
    }

    /// The first matching row in the query's order, or `None`.
    pub async fn first(&self, store: &impl Store) -> Result<Option<M>> {
        let mut query = self.clone();
        query.limit = Some(query.limit.map_or(1, |n| n.min(1)));
        let rows = lifecycle::read(store.route(), move |conn| query.fetch(conn, false)).await?;
        Ok(rows.into_iter().next())
    }

    /// How many rows match (within `limit` and `offset`, when set).
    pub async fn count(&self, store: &impl Store) -> Result<u64> {
        let query = self.clone();
        lifecycle::read(store.route(), move |conn| {
            let rows = query.run(conn, Select::Count, "counting")?;
            match rows.first().and_then(|row| row.first()) {
                Some(Value::Int(n)) => Ok(u64::try_from(*n).unwrap_or(0)),
                other => Err(Error::Query {
                    op: "counting",
                    model: M::NAME,
                    source: DbError::new(
                        DbErrorKind::Other,
                        format!("COUNT(*) returned {other:?}"),
                    ),
                }),
            }
        })
        .await
    }

    /// Whether any row matches.
    pub async fn exists(&self, store: &impl Store) -> Result<bool> {
        let query = self.clone();
        lifecycle::read(store.route(), move |conn| {
            Ok(!query.run(conn, Select::Exists, "querying")?.is_empty())
        })
        .await
    }

    /// The rows, decoded; `lock` takes row locks on PostgreSQL (`FOR UPDATE`), for rows about to
    /// be written in the same transaction.
    pub(crate) fn fetch(&self, conn: &Conn, lock: bool) -> Result<Vec<M>> {
        let sql = select(self, conn.dialect(), Select::Rows { lock })?;
        let rows = conn.statement(|b| b.query(&sql.text, &sql.params, column_types::<M>()));
        let rows = rows.map_err(|source| Error::Query {
            op: "querying",
            model: M::NAME,
            source,
        })?;
        let target = Target {
            model: M::NAME,
            key: None,
        };
        rows.into_iter()
            .map(|row| decode::<M>(row, &target))
            .collect()
    }

    fn run(&self, conn: &Conn, what: Select, op: &'static str) -> Result<Vec<Vec<Value>>> {
        let sql = select(self, conn.dialect(), what)?;
        let types = [SqlType::Int];
        let rows = conn.statement(|b| b.query(&sql.text, &sql.params, &types));
        rows.map_err(|source| Error::Query {
            op,
            model: M::NAME,
            source,
        })
    }
}
