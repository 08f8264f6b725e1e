//! Models: the `Model` trait `#[derive(Model)]` implements, and the SQL each model's writes use.

use std::sync::OnceLock;

use herald_dispatch::Sender;

use crate::query::Query;
use crate::value::{SqlType, Value};

/// One column of a model's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    /// The column's name (a checked identifier: `[a-z_][a-z0-9_]*`).
    pub name: &'static str,
    /// Its SQL type.
    pub sql_type: SqlType,
    /// Whether it accepts NULL.
    pub nullable: bool,
}

/// A model: a Rust struct stored as one row of one table, sent with the model signals.
///
/// Written by `#[derive(Model)]`, which checks the table and column names at compile time. The
/// primary key is either assigned by the database (an `Option<i64>` field, `None` until the first
/// save) or set by the caller; either way a save first tries an UPDATE when the instance has a key,
/// and inserts when that matched no row (`created` is then true), as Django does.
pub trait Model: Sender + Clone + Send + Sync + 'static {
    /// The table.
    const TABLE: &'static str;
    /// The columns, in declaration order.
    const COLUMNS: &'static [Column];
    /// The primary key's index in [`COLUMNS`](Self::COLUMNS).
    const PK: usize;
    /// True when the database assigns the key to an instance saved without one.
    const AUTO_PK: bool;

    /// The primary key, or `None` while the instance has none.
    fn pk_value(&self) -> Option<Value>;
    /// Set the primary key (after an insert assigned one).
    fn set_pk_value(&mut self, key: Value) -> Result<(), String>;
    /// The value of column `index` (in [`COLUMNS`](Self::COLUMNS) order).
    fn value(&self, index: usize) -> Value;
    /// Build an instance from one value per column; `Err((column index, reason))` when one does not fit.
    fn from_values(values: Vec<Value>) -> Result<Self, (usize, String)>;
    /// The statements this model's writes use, built once per process.
    #[doc(hidden)]
    fn statements() -> &'static Statements;

    /// The index of the column with this name.
    fn column_index(name: &str) -> Option<usize> {
        Self::COLUMNS.iter().position(|c| c.name == name)
    }

    /// A query over this model's rows, matching every row until filtered:
    /// `Book::query().filter(Book::PRICE_CENTS.lt(1000)).all(&db)`. See [`crate::query`].
    fn query() -> Query<Self> {
        Query::new()
    }
}

/// The SQL dialects Herald speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// One model's statements in one dialect. Parameters are numbered in [`Model::COLUMNS`] order, with
/// the key last for UPDATE.
#[derive(Debug)]
pub struct DialectSql {
    /// The INSERT of every column but the key, which the database assigns, `RETURNING` the key.
    pub(crate) insert_auto: String,
    /// The same INSERT without `RETURNING`, for a backend that learns the key otherwise (see
    /// `Backend::insert_auto`).
    pub(crate) insert_plain: String,
    pub(crate) insert: String,
    pub(crate) update: String,
    pub(crate) select: String,
    /// `select`, locking the row until the transaction ends where the dialect can (PostgreSQL's
    /// `FOR UPDATE`; SQLite's writer already excludes every other writer).
    pub(crate) select_locked: String,
    pub(crate) select_all: String,
    pub(crate) delete: String,
    pub(crate) create_table: String,
}

/// A model's statements, in every dialect.
#[derive(Debug)]
pub struct Statements {
    sqlite: DialectSql,
    postgres: DialectSql,
    /// Each column's SQL type, in [`Model::COLUMNS`] order: how a row of the model decodes.
    pub(crate) types: Vec<crate::value::SqlType>,
}

impl Statements {
    /// Build `M`'s statements (called once per model through a `OnceLock` the derive writes).
    pub fn build<M: Model>() -> Self {
        Self {
            sqlite: DialectSql::build::<M>(Dialect::Sqlite),
            postgres: DialectSql::build::<M>(Dialect::Postgres),
            types: M::COLUMNS.iter().map(|c| c.sql_type).collect(),
        }
    }

    /// A `OnceLock` the derive keeps per model.
    #[doc(hidden)]
    pub fn cached<M: Model>(cell: &'static OnceLock<Statements>) -> &'static Statements {
        cell.get_or_init(Self::build::<M>)
    }

    pub(crate) fn get(&self, dialect: Dialect) -> &DialectSql {
        match dialect {
            Dialect::Sqlite => &self.sqlite,
            Dialect::Postgres => &self.postgres,
        }
    }
}

/// `"name"`: identifiers are checked by the derive, and quoted anyway.
pub(crate) fn quote(ident: &str) -> String {
    format!("\"{ident}\"")
}

pub(crate) fn placeholder(dialect: Dialect, n: usize) -> String {
    match dialect {
        Dialect::Sqlite => format!("?{n}"),
        Dialect::Postgres => format!("${n}"),
    }
}

/// `sql` with each `?` replaced by the dialect's numbered placeholder, in order (`?1`.. or `$1`..).
/// For SQL text Herald writes itself, which never has `?` inside a literal.
pub(crate) fn numbered(dialect: Dialect, sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    for (n, part) in sql.split('?').enumerate() {
        if n > 0 {
            out.push_str(&placeholder(dialect, n));
        }
        out.push_str(part);
    }
    out
}

pub(crate) fn column_list(columns: &[Column]) -> String {
    columns
        .iter()
        .map(|c| quote(c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

impl DialectSql {
    fn build<M: Model>(dialect: Dialect) -> Self {
        let table = quote(M::TABLE);
        let pk = quote(M::COLUMNS[M::PK].name);
        let all = M::COLUMNS;
        let params = |n: usize, from: usize| {
            (from..from + n)
                .map(|i| placeholder(dialect, i))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let non_pk: Vec<Column> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != M::PK)
            .map(|(_, c)| *c)
            .collect();
        let insert_plain = format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            column_list(&non_pk),
            params(non_pk.len(), 1)
        );
        let insert_auto = format!("{insert_plain} RETURNING {pk}");
        let insert = format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            column_list(all),
            params(all.len(), 1)
        );
        let sets = non_pk
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{} = {}", quote(c.name), placeholder(dialect, i + 1)))
            .collect::<Vec<_>>()
            .join(", ");
        let update = format!(
            "UPDATE {table} SET {sets} WHERE {pk} = {}",
            placeholder(dialect, non_pk.len() + 1)
        );
        let select_all = format!("SELECT {} FROM {table}", column_list(all));
        let select = format!("{select_all} WHERE {pk} = {}", placeholder(dialect, 1));
        let select_locked = match dialect {
            Dialect::Sqlite => select.clone(),
            Dialect::Postgres => format!("{select} FOR UPDATE"),
        };
        let delete = format!(
            "DELETE FROM {table} WHERE {pk} = {}",
            placeholder(dialect, 1)
        );
        let create_table = create_table::<M>(dialect);
        Self {
            insert_auto,
            insert_plain,
            insert,
            update,
            select,
            select_locked,
            select_all,
            delete,
            create_table,
        }
    }
}

fn create_table<M: Model>(dialect: Dialect) -> String {
    let columns = M::COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let name = quote(c.name);
            if i == M::PK && M::AUTO_PK {
                return match dialect {
                    Dialect::Sqlite => format!("{name} INTEGER PRIMARY KEY AUTOINCREMENT"),
                    Dialect::Postgres => {
                        format!("{name} BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
                    }
                };
            }
            let ty = sql_type_name(dialect, c.sql_type);
            let null = if c.nullable { "" } else { " NOT NULL" };
            let key = if i == M::PK { " PRIMARY KEY" } else { "" };
            format!("{name} {ty}{null}{key}")
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!("CREATE TABLE IF NOT EXISTS {} ({columns})", quote(M::TABLE))
}

pub(crate) fn sql_type_name(dialect: Dialect, ty: SqlType) -> &'static str {
    match (dialect, ty) {
        (Dialect::Sqlite, SqlType::Int | SqlType::Bool) => "INTEGER",
        (Dialect::Sqlite, SqlType::Float) => "REAL",
        (Dialect::Sqlite, SqlType::Text | SqlType::Timestamp | SqlType::Json) => "TEXT",
        (Dialect::Sqlite, SqlType::Bytes) => "BLOB",
        (Dialect::Postgres, SqlType::Int) => "BIGINT",
        (Dialect::Postgres, SqlType::Float) => "DOUBLE PRECISION",
        (Dialect::Postgres, SqlType::Bool) => "BOOLEAN",
        (Dialect::Postgres, SqlType::Text) => "TEXT",
        (Dialect::Postgres, SqlType::Bytes) => "BYTEA",
        (Dialect::Postgres, SqlType::Timestamp) => "TIMESTAMPTZ",
        (Dialect::Postgres, SqlType::Json) => "JSONB",
    }
}

/// Build an `M` from a JSON object of its columns (fixtures, task payloads). Missing columns are
/// NULL, which only nullable fields accept.
pub fn from_json<M: Model>(json: &serde_json::Value) -> Result<M, String> {
    let object = json
        .as_object()
        .ok_or_else(|| format!("{} must be a JSON object", M::NAME))?;
    let mut values = Vec::with_capacity(M::COLUMNS.len());
    for column in M::COLUMNS {
        let value = match object.get(column.name) {
            Some(json) => Value::from_json(column.sql_type, json)
                .map_err(|e| format!("field `{}`: {e}", column.name))?,
            None => Value::Null,
        };
        values.push(value);
    }
    M::from_values(values).map_err(|(i, e)| format!("field `{}`: {e}", M::COLUMNS[i].name))
}
