//! The PostgreSQL backend: one [`postgres::Client`] behind the [`Backend`] trait. (Over 600 lines
//! with its tests, which use the private backend directly; the code itself is under 400.)
//!
//! # What it does
//!
//! - Binds every parameter as a [`Value`] (see [`Param`] for which PostgreSQL types each variant
//!   may be bound to) and decodes every column into the [`SqlType`] the caller asks for (see
//!   [`Decoder`]). A value or column that does not fit is an error naming both sides, never a
//!   silent conversion.
//! - Prepares each distinct SQL text once and keeps the prepared statement, so the model
//!   statements (a small, fixed set) cost one round trip per call after the first. The cache is
//!   bounded ([`MAX_CACHED_STATEMENTS`]) so that raw queries built with literals cannot grow it
//!   forever, and it is emptied on [`PgBackend::reconnect`], since statements belong to a session.
//! - Optionally works inside a schema of its own: it creates the schema if needed and sets the
//!   session's `search_path` to it, again after every reconnect.
//! - Classifies the driver's errors into [`DbErrorKind`]s from their SQLSTATE, with the server's
//!   message and detail as the error's message (see [`classify`]).
//!
//! # Threading contract
//!
//! A `PgBackend` is one connection, created and used by its connection thread only (see
//! `pool.rs`). Every call blocks that thread until the server answers. It must not be created or
//! used on a thread that runs an async executor: the `postgres` crate drives its connection on a
//! runtime of its own and blocks on it, which panics inside another runtime.
//!
//! # Why the synchronous `postgres` crate
//!
//! The store's lifecycle (receivers, savepoints, the write, the commit hooks) runs synchronously on
//! a connection thread, and is written once for SQLite and PostgreSQL against [`Backend`]. A
//! synchronous driver on that thread needs no hop to an executor and back for every statement, and
//! keeps the two backends alike; the async API is layered above the connection threads, not below.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;

use postgres::error::SqlState;
use postgres::{Client, NoTls, Statement};

use crate::store::pg_config::{PgConfig, Tls};
use crate::store::pg_values::{Param, decoders, param_refs};

use crate::error::{DbError, DbErrorKind};
use crate::model::Dialect;
use crate::store::backend::Backend;
use crate::value::{SqlType, Value};

/// At most this many prepared statements are kept per connection; when the cache is full it is
/// emptied and refilled by use. Models need a handful each, so only raw SQL that embeds literals
/// ever reaches it.
const MAX_CACHED_STATEMENTS: usize = 512;

/// PostgreSQL truncates identifiers to 63 bytes, which would silently merge two long schema names.
const MAX_IDENTIFIER_LEN: usize = 63;

/// One PostgreSQL connection (see the module docs for the threading contract).
pub(crate) struct PgBackend {
    client: Client,
    /// Kept to connect again after the connection is lost; may hold a password, so never printed.
    config: PgConfig,
    schema: Option<String>,
    statements: HashMap<String, Statement>,
    /// Set when a call failed because the connection is gone, so that [`Backend::is_alive`] says
    /// so even before the driver has noticed the closed socket.
    lost: bool,
}

// used by the pool (in progress)
#[allow(dead_code)]
impl PgBackend {
    /// Connect to `url` (a `postgres://` URL or a `key=value` string) without TLS.
    ///
    /// With `schema`, the connection creates that schema if it does not exist and puts it alone on
    /// its `search_path`, so unqualified table names live there. The name must match
    /// `[a-z_][a-z0-9_]*` and be at most 63 bytes; otherwise the error (kind `Other`) says so
    /// before anything is sent to the server.
    ///
    /// Errors: a server that cannot be reached is `ConnectionLost`; a server that refuses (bad
    /// password, unknown database) is `Other`, with the server's message.
    pub(crate) fn connect(config: &PgConfig, schema: Option<&str>) -> Result<PgBackend, DbError> {
        if let Some(schema) = schema {
            validate_schema(schema)?;
        }
        let client = open(config, schema)?;
        Ok(PgBackend {
            client,
            config: config.clone(),
            schema: schema.map(str::to_owned),
            statements: HashMap::new(),
            lost: false,
        })
    }

    /// Replace the connection with a new one to the same URL and schema, dropping the prepared
    /// statements of the old session. On error the old (dead) connection is kept, and the call may
    /// be retried.
    pub(crate) fn reconnect(&mut self) -> Result<(), DbError> {
        let client = open(&self.config, self.schema.as_deref())?;
        self.statements.clear();
        self.client = client;
        self.lost = false;
        Ok(())
    }

    /// The prepared statement for `sql`, preparing and caching it on first use.
    fn statement(&mut self, sql: &str) -> Result<Statement, DbError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = match self.client.prepare(sql) {
            Ok(statement) => statement,
            Err(err) => return Err(self.fail(&err)),
        };
        if self.statements.len() >= MAX_CACHED_STATEMENTS {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Classify a failure of `sql`'s statement, and forget the statement unless the failure was a
    /// constraint refusing the row: a statement can go stale (the table was dropped or changed, the
    /// session is gone), and preparing it again is what recovers.
    fn fail_statement(&mut self, sql: &str, err: &postgres::Error) -> DbError {
        let error = self.fail(err);
        if !matches!(
            error.kind,
            DbErrorKind::Unique
                | DbErrorKind::NotNull
                | DbErrorKind::ForeignKey
                | DbErrorKind::Check
        ) {
            self.statements.remove(sql);
        }
        error
    }

    /// Classify a driver error, remembering a lost connection.
    fn fail(&mut self, err: &postgres::Error) -> DbError {
        let error = classify(err, self.client.is_closed());
        if error.kind == DbErrorKind::ConnectionLost {
            self.lost = true;
        }
        error
    }
}

impl fmt::Debug for PgBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the URL: it may carry a password.
        f.debug_struct("PgBackend")
            .field("schema", &self.schema)
            .field("cached_statements", &self.statements.len())
            .field("lost", &self.lost)
            .finish_non_exhaustive()
    }
}

// used by the pool (in progress)
#[allow(dead_code)]
impl Backend for PgBackend {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let statement = self.statement(sql)?;
        let params: Vec<Param<'_>> = params.iter().map(Param).collect();
        match self.client.execute(&statement, &param_refs(&params)) {
            Ok(changed) => Ok(changed),
            Err(err) => Err(self.fail_statement(sql, &err)),
        }
    }

    fn query(
        &mut self,
        sql: &str,
        params: &[Value],
        types: &[SqlType],
    ) -> Result<Vec<Vec<Value>>, DbError> {
        let statement = self.statement(sql)?;
        // Checked before the query runs, so a mismatch is reported whether or not rows come back.
        let decoders = decoders(statement.columns(), types)?;
        let params: Vec<Param<'_>> = params.iter().map(Param).collect();
        let rows = match self.client.query(&statement, &param_refs(&params)) {
            Ok(rows) => rows,
            Err(err) => return Err(self.fail_statement(sql, &err)),
        };
        rows.iter()
            .map(|row| {
                decoders
                    .iter()
                    .enumerate()
                    .map(|(i, decoder)| decoder.decode(row, i))
                    .collect()
            })
            .collect()
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        match self.client.batch_execute(sql) {
            Ok(()) => Ok(()),
            Err(err) => Err(self.fail(&err)),
        }
    }

    fn begin_sql(&self) -> &'static str {
        "BEGIN"
    }

    /// `false` once a call failed because the connection is gone, or the driver saw it close.
    /// This sends nothing to the server: a connection the server dropped while idle is noticed by
    /// the next call, which fails with `ConnectionLost`.
    fn is_alive(&mut self) -> bool {
        !self.lost && !self.client.is_closed()
    }
}

/// Open a connection and, with a schema, create it and make it the `search_path`.
/// Connect with `config`'s TLS mode: in plain text for `disable` (and `prefer` without the
/// `postgres-tls` feature), through rustls otherwise.
pub(crate) fn client(config: &PgConfig) -> Result<Client, DbError> {
    // No client exists yet, so an error without a server message means the server was not reached.
    let connected = match &config.tls {
        Tls::Disable => config.config.connect(NoTls),
        #[cfg(not(feature = "postgres-tls"))]
        Tls::Prefer => config.config.connect(NoTls),
        #[cfg(feature = "postgres-tls")]
        tls => config.config.connect(crate::store::pg_tls::connector(tls)?),
        #[cfg(not(feature = "postgres-tls"))]
        _ => {
            return Err(DbError::new(
                DbErrorKind::Other,
                "this sslmode needs TLS, and herald was built without its `postgres-tls` feature",
            ));
        }
    };
    connected.map_err(|err| classify(&err, true))
}

fn open(config: &PgConfig, schema: Option<&str>) -> Result<Client, DbError> {
    let mut client = client(config)?;
    if let Some(schema) = schema {
        let create = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
        if let Err(err) = client.batch_execute(&create) {
            // Connections opened at the same time race on the catalog, and the loser of
            // `IF NOT EXISTS` gets a unique violation; the schema exists either way.
            let error = classify(&err, client.is_closed());
            if error.kind != DbErrorKind::Unique {
                return Err(DbError::new(
                    error.kind,
                    format!("creating schema `{schema}`: {}", error.message),
                ));
            }
        }
        client
            .batch_execute(&format!("SET search_path TO \"{schema}\""))
            .map_err(|err| {
                let error = classify(&err, client.is_closed());
                DbError::new(
                    error.kind,
                    format!("setting search_path to `{schema}`: {}", error.message),
                )
            })?;
    }
    Ok(client)
}

/// A schema name is interpolated into SQL (quoted), so only plain lowercase identifiers are taken.
fn validate_schema(schema: &str) -> Result<(), DbError> {
    let mut chars = schema.chars();
    let valid_start = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let valid_rest = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid_start || !valid_rest {
        return Err(DbError::new(
            DbErrorKind::Other,
            format!(
                "invalid PostgreSQL schema name `{schema}`: it must start with a lowercase ASCII \
                 letter or `_` and contain only lowercase ASCII letters, digits and `_`"
            ),
        ));
    }
    if schema.len() > MAX_IDENTIFIER_LEN {
        return Err(DbError::new(
            DbErrorKind::Other,
            format!(
                "invalid PostgreSQL schema name `{schema}`: it is {} bytes long, and PostgreSQL \
                 would cut it to {MAX_IDENTIFIER_LEN}",
                schema.len()
            ),
        ));
    }
    Ok(())
}

/// Classify a driver error. `client_closed` says whether the client had seen its connection close
/// when the error came back.
///
/// - SQLSTATE 23505 → `Unique`, 23502 → `NotNull`, 23503 → `ForeignKey`, 23514 → `Check`;
/// - 42P01 (undefined table) and 42703 (undefined column) → `MissingTable`;
/// - class 08 (connection exception), 57P01/57P02 (the server shut down or killed the backend),
///   a closed connection, or a client error without a server message once the client is closed
///   → `ConnectionLost`;
/// - anything else → `Other`.
///
/// The message is the server's message, then `: ` and its detail when there is one (which names
/// the offending key or column), or else the driver's message with its causes.
fn classify(err: &postgres::Error, client_closed: bool) -> DbError {
    let Some(db) = err.as_db_error() else {
        let kind = if err.is_closed() || client_closed {
            DbErrorKind::ConnectionLost
        } else {
            DbErrorKind::Other
        };
        return DbError::new(kind, error_chain(err)).with_source(Driver(err.to_string()));
    };
    let code = db.code();
    let kind = if *code == SqlState::UNIQUE_VIOLATION {
        DbErrorKind::Unique
    } else if *code == SqlState::NOT_NULL_VIOLATION {
        DbErrorKind::NotNull
    } else if *code == SqlState::FOREIGN_KEY_VIOLATION {
        DbErrorKind::ForeignKey
    } else if *code == SqlState::CHECK_VIOLATION {
        DbErrorKind::Check
    } else if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::UNDEFINED_COLUMN {
        DbErrorKind::MissingTable
    } else if code.code().starts_with("08")
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || err.is_closed()
    {
        DbErrorKind::ConnectionLost
    } else {
        DbErrorKind::Other
    };
    let message = match db.detail() {
        Some(detail) => format!("{}: {detail}", db.message()),
        None => db.message().to_owned(),
    };
    DbError::new(kind, message)
        .with_code(code.code())
        .with_source(db.clone())
}

/// A driver error without a server message, kept as text (the driver's own error type is not
/// `Clone`, and classification borrows it).
#[derive(Debug)]
struct Driver(String);

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Driver {}

/// An error's message followed by its causes', `: `-separated (the driver's own message is often
/// only "error serializing parameter 1", and the reason is in the cause).
pub(crate) fn error_chain(err: &dyn StdError) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use chrono::{TimeZone, Utc};
    use serde_json::json;

    use super::*;

    const URL_VAR: &str = "HERALD_TEST_POSTGRES_URL";

    /// A fresh schema for one test, dropped (with everything in it) when the test ends, also when
    /// it fails.
    struct TestSchema {
        url: String,
        name: String,
    }

    impl Drop for TestSchema {
        fn drop(&mut self) {
            // Through a client of its own: the test's connection may be the one that was killed.
            match Client::connect(&self.url, NoTls) {
                Ok(mut client) => {
                    let drop = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name);
                    if let Err(err) = client.batch_execute(&drop) {
                        eprintln!("could not drop test schema {}: {err}", self.name);
                    }
                }
                Err(err) => eprintln!("could not drop test schema {}: {err}", self.name),
            }
        }
    }

    /// A backend in a fresh schema `herald_t_<test>_<pid>` on the server of
    /// `HERALD_TEST_POSTGRES_URL`. The tests that call this are ignored unless run with
    /// `--include-ignored`; without the variable they fail here, saying so.
    fn setup(test: &str) -> (TestSchema, PgBackend) {
        let url = std::env::var(URL_VAR)
            .unwrap_or_else(|_| panic!("{URL_VAR} is not set; this test needs PostgreSQL"));
        let name = format!("herald_t_{test}_{}", std::process::id());
        // A previous run with the same pid may have left it behind.
        let mut admin = Client::connect(&url, NoTls).expect("connect to the test server");
        admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
            .expect("drop a stale test schema");
        let schema = TestSchema { url, name };
        let config = crate::store::pg_config::parse(&schema.url, None).expect("a valid URL");
        let backend = PgBackend::connect(&config, Some(&schema.name)).expect("connect");
        (schema, backend)
    }

    /// The error `result` must be, with its kind; returns its message.
    fn expect_err<T: fmt::Debug>(result: Result<T, DbError>, kind: DbErrorKind) -> String {
        let err = result.expect_err("the call should fail");
        assert_eq!(
            err.kind(),
            kind,
            "unexpected kind for error: {}",
            err.message()
        );
        err.message
    }

    #[test]
    fn schema_names_are_validated_before_connecting() {
        for bad in ["", "Books", "1abc", "a-b", "a\"b", "é", &"a".repeat(64)] {
            let message = expect_err(
                PgBackend::connect(
                    &crate::store::pg_config::parse("postgres://nobody@127.0.0.1:1/none", None)
                        .expect("a valid URL"),
                    Some(bad),
                ),
                DbErrorKind::Other,
            );
            assert!(
                message.contains("invalid PostgreSQL schema name"),
                "{message}"
            );
        }
        for good in ["a", "_", "herald_1", &"a".repeat(63)] {
            assert!(validate_schema(good).is_ok(), "{good}");
        }
    }

    #[test]
    #[ignore = "needs HERALD_TEST_POSTGRES_URL"]
    fn every_value_round_trips_through_every_column_type() {
        let (_schema, mut db) = setup("round_trip");
        assert_eq!(db.dialect(), Dialect::Postgres);
        assert_eq!(db.begin_sql(), "BEGIN");
        db.batch(
            "CREATE TABLE every (
                id BIGSERIAL PRIMARY KEY,
                i8 BIGINT, i4 INTEGER, i2 SMALLINT, f8 DOUBLE PRECISION, f4 REAL, b BOOLEAN,
                t TEXT, vc VARCHAR(20), bp CHAR(3), by BYTEA, tz TIMESTAMPTZ, ts TIMESTAMP,
                jb JSONB, js JSON
            )",
        )
        .expect("create table");
        let at = Utc
            .with_ymd_and_hms(2026, 11, 24, 7, 1, 51)
            .single()
            .expect("a valid date")
            + chrono::Duration::microseconds(123_456);
        let row = vec![
            Value::Int(i64::MAX),
            Value::Int(-2_000_000_000),
            Value::Int(-300),
            Value::Float(1.5e300),
            Value::Float(0.25),
            Value::Bool(true),
            Value::Text("héllo".into()),
            Value::Text("short".into()),
            Value::Text("abc".into()),
            Value::Bytes(vec![0, 1, 255]),
            Value::Timestamp(at),
            Value::Timestamp(at),
            Value::Json(json!({"a": [1, "b", null]})),
            Value::Json(json!([true, 2.5])),
        ];
        let types = [
            SqlType::Int,
            SqlType::Int,
            SqlType::Int,
            SqlType::Float,
            SqlType::Float,
            SqlType::Bool,
            SqlType::Text,
            SqlType::Text,
            SqlType::Text,
            SqlType::Bytes,
            SqlType::Timestamp,
            SqlType::Timestamp,
            SqlType::Json,
            SqlType::Json,
        ];
        let insert = "INSERT INTO every (i8, i4, i2, f8, f4, b, t, vc, bp, by, tz, ts, jb, js)
                      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";
        assert_eq!(db.execute(insert, &row).expect("insert values"), 1);
        let nulls = vec![Value::Null; row.len()];
        assert_eq!(db.execute(insert, &nulls).expect("insert NULLs"), 1);

        let select = "SELECT i8, i4, i2, f8, f4, b, t, vc, bp, by, tz, ts, jb, js
                      FROM every ORDER BY id";
        let rows = db.query(select, &[], &types).expect("select");
        assert_eq!(rows, vec![row, nulls]);

        // Integers bind to float columns and integer columns read as floats; parameters filter.
        db.execute(
            "UPDATE every SET f8 = $1 WHERE i4 = $2",
            &[Value::Int(7), Value::Int(-2_000_000_000)],
        )
        .expect("update");
        let rows = db
            .query(
                "SELECT f8, i4, i2 FROM every WHERE i4 = $1",
                &[Value::Int(-2_000_000_000)],
                &[SqlType::Float, SqlType::Float, SqlType::Float],
            )
            .expect("select as floats");
        assert_eq!(
            rows,
            vec![vec![
                Value::Float(7.0),
                Value::Float(-2e9),
                Value::Float(-300.0)
            ]]
        );
    }

    #[test]
    #[ignore = "needs HERALD_TEST_POSTGRES_URL"]
    fn constraint_violations_are_classified_with_the_servers_detail() {
        let (_schema, mut db) = setup("constraints");
        db.batch(
            "CREATE TABLE authors (id BIGINT PRIMARY KEY);
             CREATE TABLE books (
                 slug TEXT UNIQUE,
                 title TEXT NOT NULL,
                 pages INTEGER CHECK (pages > 0),
                 author BIGINT REFERENCES authors (id)
             )",
        )
        .expect("create tables");
        let insert = "INSERT INTO books (slug, title, pages, author) VALUES ($1, $2, $3, $4)";
        let book = |slug: &str, title: Value, pages: i64, author: Value| {
            vec![Value::Text(slug.into()), title, Value::Int(pages), author]
        };
        db.execute(insert, &book("x", Value::Text("X".into()), 1, Value::Null))
            .expect("first insert");

        let message = expect_err(
            db.execute(insert, &book("x", Value::Text("Y".into()), 1, Value::Null)),
            DbErrorKind::Unique,
        );
        assert_eq!(
            message,
            "duplicate key value violates unique constraint \"books_slug_key\": \
             Key (slug)=(x) already exists."
        );
        let message = expect_err(
            db.execute(insert, &book("y", Value::Null, 1, Value::Null)),
            DbErrorKind::NotNull,
        );
        assert!(message.contains("\"title\""), "{message}");
        expect_err(
            db.execute(insert, &book("z", Value::Text("Z".into()), 0, Value::Null)),
            DbErrorKind::Check,
        );
        let message = expect_err(
            db.execute(
                insert,
                &book("w", Value::Text("W".into()), 1, Value::Int(9)),
            ),
            DbErrorKind::ForeignKey,
        );
        assert!(message.contains("Key (author)=(9)"), "{message}");
        // The statement stays cached and usable after constraint failures.
        db.execute(insert, &book("v", Value::Text("V".into()), 1, Value::Null))
            .expect("insert after failures");
        assert!(db.is_alive());
    }

    #[test]
    #[ignore = "needs HERALD_TEST_POSTGRES_URL"]
    fn missing_tables_and_columns_are_missing_table() {
        let (_schema, mut db) = setup("missing");
        let message = expect_err(
            db.query("SELECT id FROM nowhere", &[], &[SqlType::Int]),
            DbErrorKind::MissingTable,
        );
        assert!(message.contains("\"nowhere\""), "{message}");
        expect_err(
            db.execute("INSERT INTO nowhere (id) VALUES ($1)", &[Value::Int(1)]),
            DbErrorKind::MissingTable,
        );
        expect_err(db.batch("DELETE FROM nowhere"), DbErrorKind::MissingTable);
        db.batch("CREATE TABLE somewhere (id BIGINT)")
            .expect("create table");
        expect_err(
            db.query("SELECT nothing FROM somewhere", &[], &[SqlType::Int]),
            DbErrorKind::MissingTable,
        );
        // Once the table exists, the same SQL works (a failed statement is not cached).
        db.batch("CREATE TABLE nowhere (id BIGINT)")
            .expect("create table");
        assert_eq!(
            db.query("SELECT id FROM nowhere", &[], &[SqlType::Int])
                .expect("select"),
            Vec::<Vec<Value>>::new()
        );
    }

    #[test]
    #[ignore = "needs HERALD_TEST_POSTGRES_URL"]
    fn a_killed_connection_is_lost_and_reconnects_into_its_schema() {
        let (schema, mut db) = setup("reconnect");
        db.batch("CREATE TABLE kept (id BIGINT); INSERT INTO kept VALUES (42)")
            .expect("create table");
        let select = "SELECT id FROM kept";
        let pid = match db
            .query("SELECT pg_backend_pid()", &[], &[SqlType::Int])
            .expect("backend pid")
            .as_slice()
        {
            [row] => match row.as_slice() {
                [Value::Int(pid)] => i32::try_from(*pid).expect("a pid fits in int4"),
                other => panic!("unexpected row {other:?}"),
            },
            other => panic!("unexpected rows {other:?}"),
        };
        assert!(db.is_alive());

        let mut admin = Client::connect(&schema.url, NoTls).expect("connect the admin client");
        let killed: bool = admin
            .query_one("SELECT pg_terminate_backend($1)", &[&pid])
            .expect("terminate the backend")
            .get(0);
        assert!(killed);
        // pg_terminate_backend only signals; wait (with a bound) until the backend is gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        while admin
            .query_opt("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .expect("look for the backend")
            .is_some()
        {
            assert!(Instant::now() < deadline, "backend {pid} did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }

        expect_err(
            db.query(select, &[], &[SqlType::Int]),
            DbErrorKind::ConnectionLost,
        );
        assert!(!db.is_alive());
        expect_err(db.batch("SELECT 1"), DbErrorKind::ConnectionLost);

        db.reconnect().expect("reconnect");
        assert!(db.is_alive());
        // The new session is in the schema again (unqualified `kept` resolves there).
        assert_eq!(
            db.query(select, &[], &[SqlType::Int]).expect("select"),
            vec![vec![Value::Int(42)]]
        );
    }

    #[test]
    #[ignore = "needs HERALD_TEST_POSTGRES_URL"]
    fn type_mismatches_name_the_column_or_the_value() {
        let (_schema, mut db) = setup("mismatch");
        db.batch("CREATE TABLE typed (title TEXT, n INTEGER, small SMALLINT); INSERT INTO typed VALUES ('t', 1, 2)")
            .expect("create table");

        let message = expect_err(
            db.query("SELECT title FROM typed", &[], &[SqlType::Int]),
            DbErrorKind::Other,
        );
        assert_eq!(
            message,
            "column `title` has PostgreSQL type text, which cannot be read as an integer"
        );
        let message = expect_err(
            db.query("SELECT n, title FROM typed", &[], &[SqlType::Int]),
            DbErrorKind::Other,
        );
        assert!(
            message.contains("returns 2 columns (n, title), but 1 types"),
            "{message}"
        );

        let message = expect_err(
            db.execute(
                "UPDATE typed SET n = $1",
                &[Value::Text("not a number".into())],
            ),
            DbErrorKind::Other,
        );
        assert!(
            message
                .contains("cannot bind text `not a number` to a parameter of PostgreSQL type int4"),
            "{message}"
        );
        let message = expect_err(
            db.execute("UPDATE typed SET small = $1", &[Value::Int(70_000)]),
            DbErrorKind::Other,
        );
        assert!(
            message.contains("70000 is out of range for PostgreSQL type int2"),
            "{message}"
        );
        assert!(db.is_alive());
    }
}
