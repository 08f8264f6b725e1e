//! SQLite backend, through rusqlite: SQLite's C code runs on the connection's own thread, with no
//! channel hop per statement.
//!
//! Every connection is opened with WAL, `synchronous=NORMAL`, a busy timeout and foreign keys on.
//! Statements are prepared once and cached per connection. Writes open `BEGIN IMMEDIATE`, so a
//! writer takes the lock before it reads instead of failing to upgrade mid-transaction.
//!
//! # Checkpoints off the writer's path
//!
//! SQLite copies its WAL back into the database file (a checkpoint, with an fsync of each) on the
//! connection whose commit made the WAL pass 1,000 pages, inside that commit: one save in a few
//! hundred paid for all of them. The writer of a database file instead hands the checkpoint to a
//! thread of its own ([`Checkpointer`]), with a connection of its own, which runs a `PASSIVE`
//! checkpoint (it never waits for, nor blocks, the writer or a reader) every
//! [`COMMITS_PER_CHECKPOINT`] commits. The writer's own automatic checkpoint stays on, at
//! [`FALLBACK_AUTOCHECKPOINT_PAGES`], as a bound on the WAL should the thread fall behind.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
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
    /// Checkpoint on a thread of its own (see the module docs): the writer of a database file.
    pub(crate) checkpointer: bool,
}

/// The writer asks for a checkpoint after this many commits. A save commits two or three WAL
/// pages, so this is about SQLite's own default of 1,000 pages between checkpoints.
const COMMITS_PER_CHECKPOINT: u32 = 384;

/// The writer's own automatic checkpoint (in WAL pages) while a [`Checkpointer`] does the work:
/// four times SQLite's default, reached only if the checkpointer falls behind.
const FALLBACK_AUTOCHECKPOINT_PAGES: u32 = 4_000;

/// The thread that checkpoints a writer's WAL, and the writer's count of commits since it last
/// asked. Dropping it stops the thread (after the checkpoint it is running, if any) and waits.
struct Checkpointer {
    commits: u32,
    /// Holds at most one request: a request made while one waits is the same request.
    requests: Option<flume::Sender<Checkpoint>>,
    /// Checkpoints run so far.
    #[cfg(test)]
    done: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

/// A request to the checkpointer: checkpoint, and say so on `reply` when there is one.
struct Checkpoint {
    reply: Option<flume::Sender<()>>,
}

impl Checkpointer {
    /// Open a connection of its own to `path` and start its thread.
    fn start(path: &Path, flags: OpenFlags) -> Result<Self, DbError> {
        let conn = Connection::open_with_flags(path, flags - OpenFlags::SQLITE_OPEN_CREATE)
            .map_err(classify)?;
        let (requests, received) = flume::bounded::<Checkpoint>(1);
        let done = Arc::new(AtomicU64::new(0));
        let counted = done.clone();
        #[cfg(not(test))]
        drop(done);
        let database = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("herald-checkpoint".to_owned())
            .spawn(move || {
                for request in received.iter() {
                    // PASSIVE: copies what no reader still needs, and never waits on a lock.
                    let ran = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    if let Err(error) = ran {
                        tracing::warn!(target: "herald::store", %error, %database,
                            "checkpointing the WAL of {database} failed; the writer's own \
                             automatic checkpoint remains");
                    }
                    counted.fetch_add(1, Ordering::Relaxed);
                    if let Some(reply) = request.reply {
                        let _ = reply.send(());
                    }
                }
            })
            .map_err(|e| {
                DbError::new(
                    DbErrorKind::Other,
                    format!("starting the checkpoint thread of {}: {e}", path.display()),
                )
            })?;
        Ok(Self {
            commits: 0,
            requests: Some(requests),
            #[cfg(test)]
            done,
            thread: Some(thread),
        })
    }

    /// Count one commit of the writer; every [`COMMITS_PER_CHECKPOINT`] commits, ask for a
    /// checkpoint without waiting for it.
    fn committed(&mut self) {
        self.commits += 1;
        if self.commits >= COMMITS_PER_CHECKPOINT {
            self.commits = 0;
            if let Some(requests) = &self.requests {
                // Full: a request is already waiting, and will see this commit too.
                let _ = requests.try_send(Checkpoint { reply: None });
            }
        }
    }

    /// Checkpoint now and wait until that checkpoint ran.
    #[cfg(test)]
    fn checkpoint_now(&self) {
        let (reply, answer) = flume::bounded(1);
        let requests = self.requests.as_ref().expect("the thread runs until drop");
        requests
            .send(Checkpoint { reply: Some(reply) })
            .expect("the checkpoint thread runs");
        answer.recv().expect("the checkpoint thread answers");
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub(crate) struct SqliteBackend {
    conn: Connection,
    /// Per table: whether the key column Herald inserts by is the table's rowid (an `INTEGER
    /// PRIMARY KEY`), so that the connection's last inserted rowid is the new row's key.
    rowid_keys: HashMap<String, bool>,
    /// The writer's checkpoint thread, when it has one (see the module docs).
    checkpointer: Option<Checkpointer>,
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
        let checkpointer =
            if options.checkpointer && !options.read_only && path != Path::new(":memory:") {
                let checkpointer = Checkpointer::start(path, flags)?;
                setup.push_str(&format!(
                    " PRAGMA wal_autocheckpoint = {FALLBACK_AUTOCHECKPOINT_PAGES};"
                ));
                Some(checkpointer)
            } else {
                None
            };
        conn.execute_batch(&setup).map_err(classify)?;
        Ok(Self {
            conn,
            rowid_keys: HashMap::new(),
            checkpointer,
        })
    }

    /// After a statement ran: count a commit for the checkpointer when the statement ended a
    /// transaction (or was one).
    fn ran(&mut self) {
        if let Some(checkpointer) = &mut self.checkpointer
            && self.conn.is_autocommit()
        {
            checkpointer.committed();
        }
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
        drop(statement);
        self.ran();
        Ok(changed as u64)
    }

    fn insert_auto(&mut self, insert: &InsertAuto<'_>, params: &[Value]) -> Result<Value, DbError> {
        if !self.key_is_rowid(insert.table, insert.key)? {
            let key = self.insert_returning(insert, params)?;
            self.ran();
            return Ok(key);
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
        self.conn.execute_batch(sql).map_err(classify)?;
        self.ran();
        Ok(())
    }

    fn control(&mut self, sql: &str) -> Result<(), DbError> {
        let mut statement = self.conn.prepare_cached(sql).map_err(classify)?;
        statement.raw_execute().map_err(classify)?;
        drop(statement);
        self.ran();
        Ok(())
    }

    fn begin_sql(&self) -> &'static str {
        "BEGIN IMMEDIATE"
    }

    fn is_alive(&mut self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(path: &Path) -> SqliteBackend {
        let options = SqliteOptions {
            busy_timeout: Duration::from_secs(5),
            read_only: false,
            create: true,
            checkpointer: true,
        };
        SqliteBackend::open(path, &options).expect("open the writer")
    }

    fn autocheckpoint(backend: &mut SqliteBackend) -> i64 {
        let rows = backend
            .query("PRAGMA wal_autocheckpoint", &[], &[SqlType::Int])
            .expect("read wal_autocheckpoint");
        match rows[0][0] {
            Value::Int(pages) => pages,
            ref other => panic!("wal_autocheckpoint is {other:?}"),
        }
    }

    #[test]
    fn the_writer_of_a_file_checkpoints_on_its_own_thread_after_a_few_hundred_commits() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("checkpoints.db");
        let mut backend = writer(&path);
        assert_eq!(
            autocheckpoint(&mut backend),
            i64::from(FALLBACK_AUTOCHECKPOINT_PAGES),
            "the writer's own checkpoint is only a bound"
        );
        backend
            .batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
            .expect("create the table");
        let body = Value::Text("x".repeat(500));
        let insert = |backend: &mut SqliteBackend| {
            let sql = "INSERT INTO notes (body) VALUES (?1)";
            backend
                .execute(sql, std::slice::from_ref(&body))
                .expect("insert");
        };
        fn checkpointer(backend: &SqliteBackend) -> &Checkpointer {
            backend
                .checkpointer
                .as_ref()
                .expect("a file's writer has one")
        }
        // The CREATE TABLE was one commit.
        for _ in 1..COMMITS_PER_CHECKPOINT {
            insert(&mut backend);
        }
        let done = checkpointer(&backend).done.load(Ordering::Relaxed);
        assert_eq!(done, 0, "no request yet");
        let before = std::fs::metadata(&path).expect("the database file").len();

        // The commit that completes the count asks; the test's own request queues behind it.
        insert(&mut backend);
        checkpointer(&backend).checkpoint_now();
        assert_eq!(
            checkpointer(&backend).done.load(Ordering::Relaxed),
            2,
            "the writer asked once"
        );
        let after = std::fs::metadata(&path).expect("the database file").len();
        let written = u64::from(COMMITS_PER_CHECKPOINT) * 500;
        assert!(
            before < written && after >= written,
            "the rows reached the database file: {before} -> {after} bytes"
        );
    }

    #[test]
    fn a_transaction_counts_as_one_commit_and_readers_and_memory_have_no_checkpointer() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("one_commit.db");
        let mut backend = writer(&path);
        backend
            .batch("CREATE TABLE notes (id INTEGER PRIMARY KEY)")
            .expect("create the table");
        backend.control("BEGIN IMMEDIATE").expect("begin");
        for _ in 0..COMMITS_PER_CHECKPOINT {
            backend
                .execute("INSERT INTO notes DEFAULT VALUES", &[])
                .expect("insert");
        }
        backend.control("COMMIT").expect("commit");
        let checkpointer = backend
            .checkpointer
            .as_ref()
            .expect("a file's writer has one");
        assert_eq!(checkpointer.commits, 2, "CREATE TABLE and the transaction");

        let reader = SqliteOptions {
            busy_timeout: Duration::from_secs(5),
            read_only: true,
            create: false,
            checkpointer: true,
        };
        let mut reader = SqliteBackend::open(&path, &reader).expect("open a reader");
        assert!(reader.checkpointer.is_none(), "a reader never writes");
        assert_eq!(autocheckpoint(&mut reader), 1000, "SQLite's default");
        let memory = SqliteOptions {
            busy_timeout: Duration::from_secs(5),
            read_only: false,
            create: true,
            checkpointer: true,
        };
        let memory = SqliteBackend::open(Path::new(":memory:"), &memory).expect("open memory");
        assert!(memory.checkpointer.is_none(), "memory has no WAL");
    }
}
