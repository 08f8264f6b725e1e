//! SQLite backend, through rusqlite: SQLite's C code runs on the connection's own thread, with no
//! channel hop per statement.
//!
//! Every connection is opened with WAL, `synchronous=NORMAL`, a busy timeout and foreign keys on.
//! Statements are prepared once and cached per connection. Writes open `BEGIN IMMEDIATE`, so a
//! writer takes the lock before it reads instead of failing to upgrade mid-transaction.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags, ToSql, ffi};

use crate::error::{DbError, DbErrorKind};
use crate::model::Dialect;
use crate::store::backend::{Backend, InsertAuto};
use crate::value::{SqlType, Value, format_timestamp, parse_timestamp};

/// How a SQLite connection is opened.
#[derive(Clone, Debug)]
pub(crate) struct SqliteOptions {
    pub(crate) busy_timeout: Duration,
    pub(crate) read_only: bool,
    /// Create the file when it is missing (read-write connections only).
    pub(crate) create: bool,
}

pub(crate) struct SqliteBackend {
    conn: Connection,
    /// Per table: whether the key column Herald inserts by is the table's rowid (an `INTEGER
    /// PRIMARY KEY`), so that the connection's last inserted rowid is the new row's key.
    rowid_keys: HashMap<String, bool>,
}

impl SqliteBackend {
    /// Open (and create, when `create` and not read-only) the database at `path`; `":memory:"`
    /// for a private in-memory database.
    pub(crate) fn open(path: &Path, options: &SqliteOptions) -> Result<Self, DbError> {
        let mut flags = OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if options.read_only {
            flags |= OpenFlags::SQLITE_OPEN_READ_ONLY;
        } else {
            flags |= OpenFlags::SQLITE_OPEN_READ_WRITE;
            if options.create || path == Path::new(":memory:") {
                flags |= OpenFlags::SQLITE_OPEN_CREATE;
            }
        }
        let conn = Connection::open_with_flags(path, flags).map_err(classify)?;
        conn.busy_timeout(options.busy_timeout).map_err(classify)?;
        conn.set_prepared_statement_cache_capacity(256);
        let mut setup = String::from("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;");
        if !options.read_only {
            // journal_mode returns a row; query it rather than execute it.
            let mode: String = conn
                .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
                .map_err(classify)?;
            if mode != "wal" && path != Path::new(":memory:") {
                return Err(DbError::new(
                    DbErrorKind::Other,
                    format!(
                        "could not switch {} to WAL (journal_mode is {mode})",
                        path.display()
                    ),
                ));
            }
        } else {
            setup.push_str(" PRAGMA query_only = ON;");
        }
        conn.execute_batch(&setup).map_err(classify)?;
        Ok(Self {
            conn,
            rowid_keys: HashMap::new(),
        })
    }
}

impl SqliteBackend {
    /// Whether `key` is `table`'s rowid: its only primary-key column, declared `INTEGER`. Only
    /// then is `last_insert_rowid()` the key of the row an INSERT made (a `BIGINT PRIMARY KEY`, or
    /// a key with a default, is a column of its own beside the rowid). Asked once per table.
    fn key_is_rowid(&mut self, table: &str, key: &str) -> Result<bool, DbError> {
        if let Some(&known) = self.rowid_keys.get(table) {
            return Ok(known);
        }
        let (keys, integer_key): (i64, i64) = self
            .conn
            .query_row(
                "SELECT count(*), coalesce(sum(name = ?2 AND upper(type) = 'INTEGER'), 0) \
                 FROM pragma_table_info(?1) WHERE pk > 0",
                [table, key],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(classify)?;
        let rowid = keys == 1 && integer_key == 1;
        // No key column at all: the table may not exist yet; ask again next time.
        if keys > 0 {
            self.rowid_keys.insert(table.to_owned(), rowid);
        }
        Ok(rowid)
    }

    /// Run the query `sql` with `params` (its statement prepared once per connection) and hand
    /// its rows to `read`.
    fn with_rows<T>(
        &mut self,
        sql: &str,
        params: &[Value],
        read: impl FnOnce(&mut rusqlite::Rows<'_>) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let mut statement = self.conn.prepare_cached(sql).map_err(classify)?;
        let mut rows = statement
            .query(rusqlite::params_from_iter(params.iter().map(Bind)))
            .map_err(classify)?;
        read(&mut rows)
    }
}

/// Binds a `Value` without copying text or bytes.
struct Bind<'a>(&'a Value);

impl ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Float(f) => ToSqlOutput::Borrowed(ValueRef::Real(*f)),
            Value::Bool(b) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(*b))),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Value::Timestamp(t) => ToSqlOutput::from(format_timestamp(t)),
            Value::Json(j) => ToSqlOutput::from(j.to_string()),
        })
    }
}

/// Decode one column as `ty`; `column` names it, for the error only.
fn decode(value: ValueRef<'_>, ty: SqlType, column: impl Fn() -> String) -> Result<Value, DbError> {
    let wrong = |found: &str| {
        DbError::new(
            DbErrorKind::Other,
            format!("column `{}` holds {found}, expected {ty}", column()),
        )
    };
    let text = |bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| wrong("text that is not UTF-8"))
    };
    Ok(match (ty, value) {
        (_, ValueRef::Null) => Value::Null,
        (SqlType::Int, ValueRef::Integer(i)) => Value::Int(i),
        (SqlType::Float, ValueRef::Real(f)) => Value::Float(f),
        (SqlType::Float, ValueRef::Integer(i)) => Value::Float(i as f64),
        (SqlType::Bool, ValueRef::Integer(i)) => Value::Bool(i != 0),
        (SqlType::Text, ValueRef::Text(t)) => Value::Text(text(t)?),
        (SqlType::Bytes, ValueRef::Blob(b)) => Value::Bytes(b.to_vec()),
        (SqlType::Timestamp, ValueRef::Text(t)) => {
            Value::Timestamp(parse_timestamp(&text(t)?).map_err(|e| wrong(&e))?)
        }
        (SqlType::Json, ValueRef::Text(t)) => Value::Json(
            serde_json::from_slice(t).map_err(|e| wrong(&format!("invalid JSON ({e})")))?,
        ),
        (_, ValueRef::Integer(i)) => return Err(wrong(&format!("the integer {i}"))),
        (_, ValueRef::Real(f)) => return Err(wrong(&format!("the real {f}"))),
        (_, ValueRef::Text(_)) => return Err(wrong("text")),
        (_, ValueRef::Blob(_)) => return Err(wrong("a blob")),
    })
}

/// Decode one row, column `i` as `types[i]`.
fn decode_row(row: &rusqlite::Row<'_>, types: &[SqlType]) -> Result<Vec<Value>, DbError> {
    let mut values = Vec::with_capacity(types.len());
    for (i, ty) in types.iter().enumerate() {
        let raw = row.get_ref(i).map_err(classify)?;
        let decoded = decode(raw, *ty, || {
            row.as_ref()
                .column_name(i)
                .map_or_else(|_| format!("#{i}"), str::to_owned)
        })?;
        values.push(decoded);
    }
    Ok(values)
}

/// Classify a rusqlite error.
fn classify(error: rusqlite::Error) -> DbError {
    let message = error.to_string();
    let code = match &error {
        rusqlite::Error::SqliteFailure(failure, _) => Some(failure.extended_code.to_string()),
        _ => None,
    };
    let kind = match &error {
        rusqlite::Error::SqliteFailure(
            ffi::Error {
                code,
                extended_code,
            },
            msg,
        ) => match *extended_code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                DbErrorKind::Unique
            }
            ffi::SQLITE_CONSTRAINT_NOTNULL => DbErrorKind::NotNull,
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => DbErrorKind::ForeignKey,
            ffi::SQLITE_CONSTRAINT_CHECK => DbErrorKind::Check,
            _ => match code {
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => DbErrorKind::Busy,
                ErrorCode::CannotOpen | ErrorCode::NotADatabase | ErrorCode::SystemIoFailure => {
                    DbErrorKind::ConnectionLost
                }
                _ if msg.as_deref().is_some_and(|m| {
                    m.starts_with("no such table") || m.starts_with("no such column")
                }) =>
                {
                    DbErrorKind::MissingTable
                }
                _ => DbErrorKind::Other,
            },
        },
        _ => DbErrorKind::Other,
    };
    let classified = DbError::new(kind, message);
    let classified = match code {
        Some(code) => classified.with_code(code),
        None => classified,
    };
    classified.with_source(error)
}

impl Backend for SqliteBackend {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let mut statement = self.conn.prepare_cached(sql).map_err(classify)?;
        let changed = statement
            .execute(rusqlite::params_from_iter(params.iter().map(Bind)))
            .map_err(classify)?;
        Ok(changed as u64)
    }

    fn insert_auto(&mut self, insert: &InsertAuto<'_>, params: &[Value]) -> Result<Value, DbError> {
        if !self.key_is_rowid(insert.table, insert.key)? {
            return self.insert_returning(insert, params);
        }
        self.execute(insert.plain, params)?;
        Ok(Value::Int(self.conn.last_insert_rowid()))
    }

    fn query(
        &mut self,
        sql: &str,
        params: &[Value],
        types: &[SqlType],
    ) -> Result<Vec<Vec<Value>>, DbError> {
        self.with_rows(sql, params, |rows| {
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(classify)? {
                out.push(decode_row(row, types)?);
            }
            Ok(out)
        })
    }

    fn query_first(
        &mut self,
        sql: &str,
        params: &[Value],
        types: &[SqlType],
    ) -> Result<Option<Vec<Value>>, DbError> {
        // The statement is reset when its rows drop, which ends a read's transaction.
        self.with_rows(sql, params, |rows| {
            let row = rows.next().map_err(classify)?;
            row.map(|row| decode_row(row, types)).transpose()
        })
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.conn.execute_batch(sql).map_err(classify)
    }

    fn control(&mut self, sql: &str) -> Result<(), DbError> {
        let mut statement = self.conn.prepare_cached(sql).map_err(classify)?;
        statement.raw_execute().map_err(classify)?;
        Ok(())
    }

    fn begin_sql(&self) -> &'static str {
        "BEGIN IMMEDIATE"
    }

    fn is_alive(&mut self) -> bool {
        true
    }
}
