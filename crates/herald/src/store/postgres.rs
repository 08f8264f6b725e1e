//! The PostgreSQL backend: one `tokio_postgres` connection behind the [`Backend`] trait, driven
//! by a single-threaded runtime of its own. (Over 1,100 lines with its tests, which use the
//! private backend directly; the code itself is about 710.)
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
//!   forever; statements belong to a session, and a connection that is lost is replaced by a new
//!   backend (the pool connects again), whose cache starts empty.
//! - Sends a transaction's `BEGIN` with its first statement, and the statements that
//!   [`Backend::execute_held`] hands it (a transaction's task rows, a pipelined transaction's
//!   INSERTs) with its next call: one round trip for all of them (see [`Pipeline`]). Held
//!   single-row INSERTs of one statement in a row go as multi-row INSERTs ([`ROW_CHUNKS`]).
//! - Reserves keys for new rows from the key column's sequence, in growing blocks that last
//!   until the transaction ends ([`Backend::reserve_key`]), so that a pipelined transaction's
//!   INSERT names its key.
//! - Optionally works inside a schema of its own: it creates the schema if needed and sets the
//!   session's `search_path` to it, on every connect.
//! - Classifies the driver's errors into [`DbErrorKind`]s from their SQLSTATE, with the server's
//!   message and detail as the error's message (see [`classify`]).
//!
//! # Threading contract
//!
//! A `PgBackend` is one connection, created and used by its connection thread only (see
//! `pool.rs`). Every call blocks that thread until the server answers. It must not be created or
//! used on a thread that runs an async executor: it blocks on a runtime of its own, which panics
//! inside another runtime.
//!
//! # Why a connection thread, and not the caller's runtime
//!
//! The store's lifecycle (receivers, the write, the commit hooks) runs synchronously on a
//! connection thread, and is written once for SQLite and PostgreSQL against [`Backend`]. The
//! driver is asynchronous underneath only so that statements can be pipelined; each call blocks
//! its thread on the connection's own runtime.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, Statement};

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

/// At most this many statements (a multi-row INSERT counting one per row) are held back (see
/// [`Pipeline`]); the next one sends them.
const MAX_HELD: usize = 256;

/// The sizes, largest first, of the multi-row INSERTs that a run of held single-row INSERTs of
/// one statement is sent as: 100 rows go as one INSERT of 64, two of 16 and one of 4. A few
/// fixed sizes keep the prepared statements few; one INSERT of many rows costs the server far
/// less than as many INSERTs of one. Row triggers fire as before; a statement trigger
/// (`FOR EACH STATEMENT`) fires once per INSERT sent.
const ROW_CHUNKS: [usize; 4] = [64, 16, 4, 1];

/// PostgreSQL's limit on a statement's parameters; a run of INSERTs is joined only when its
/// largest chunk stays within it.
const MAX_PARAMS: usize = u16::MAX as usize;

/// Keys reserved from a sequence at a time, at first in a transaction (see
/// [`Backend::reserve_key`]); each further block is twice the last, up to [`MAX_KEY_BLOCK`]. So a
/// transaction of `n` new rows makes about log2(n) reservations, and skips fewer than `n` keys.
const FIRST_KEY_BLOCK: i64 = 4;
const MAX_KEY_BLOCK: i64 = 1024;

/// How long closing a connection waits for the server to take its goodbye.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// One PostgreSQL connection (see the module docs for the threading contract).
pub(crate) struct PgBackend {
    session: Session,
    schema: Option<String>,
    statements: HashMap<String, Statement>,
    /// What waits to be sent with the next statement.
    pipeline: Pipeline,
    /// Per table: the sequence its key column draws from (`None`: none to draw from), and the
    /// keys the open transaction reserved from it and has not used yet.
    keys: HashMap<String, Reserved>,
    /// Set when a call failed because the connection is gone, so that [`Backend::is_alive`] says
    /// so even before the driver has noticed the closed socket.
    lost: bool,
}

/// What the backend holds back to send with the next statement, in one round trip with it.
///
/// - `begin`: a transaction's `BEGIN`, which cannot fail on a live connection, and whose
///   transaction has nothing to do before its first statement. A transaction that ends before
///   any statement was sent sends nothing at all.
/// - `held`: statements whose result nobody reads but their success, inside a transaction (see
///   [`Backend::execute_held`]); at most [`MAX_HELD`] (`rows` counts them), then they are sent
///   on their own. If one fails, the statements after it fail too (the transaction is aborted,
///   and the server turns a `COMMIT` into a rollback); the call that sent them returns the first
///   failure, naming its statement. A single-row INSERT held right after one of the same
///   statement joins it, and [`PgBackend::take_pipeline`] sends the run as multi-row INSERTs.
#[derive(Default)]
struct Pipeline {
    begin: bool,
    held: Vec<Deferred>,
    rows: usize,
}

/// A table's reserved keys (see [`PgBackend::keys`]). The keys are dropped when the transaction
/// ends: a sequence may be reset between transactions (`TRUNCATE .. RESTART IDENTITY`), and keys
/// reserved before would then be given out again.
struct Reserved {
    sequence: Option<String>,
    /// Last first.
    keys: Vec<i64>,
    /// How many keys the next reservation asks for.
    next_block: i64,
}

/// A statement held back, with what it needs to be sent and named: `rows` runs of it, of
/// `width` parameters each, in `params`. `statement` is prepared for all of them: for one row
/// while the run is held, for its chunk once [`PgBackend::take_pipeline`] split it.
struct Deferred {
    /// The single-row statement's text, which names it in errors.
    sql: String,
    statement: Statement,
    params: Vec<Value>,
    rows: usize,
    width: usize,
    /// Whether the next run of the same statement may join this one (see [`joins_rows`]).
    joins: bool,
}

/// A connection: its client, then the runtime that drives it. The fields drop in this order, so
/// that the runtime still runs when the client goes and the connection can say goodbye.
struct Session {
    client: Client,
    runner: Runner,
}

/// The single-threaded runtime a connection's I/O runs on, and the connection's task.
struct Runner {
    runtime: tokio::runtime::Runtime,
    connection: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Runner {
    fn drop(&mut self) {
        // The client is gone: the connection sends its Terminate and ends.
        if let Some(connection) = self.connection.take() {
            let _ = self
                .runtime
                .block_on(async { tokio::time::timeout(CLOSE_TIMEOUT, connection).await });
        }
    }
}

impl Session {
    /// Run `work` on the connection's runtime until it is done.
    fn block_on<T>(&self, work: impl Future<Output = T>) -> T {
        self.runner.runtime.block_on(work)
    }
}

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
        let session = open(config, schema)?;
        Ok(PgBackend {
            session,
            schema: schema.map(str::to_owned),
            statements: HashMap::new(),
            pipeline: Pipeline::default(),
            keys: HashMap::new(),
            lost: false,
        })
    }

    /// The prepared statement for `sql`, preparing and caching it on first use.
    fn statement(&mut self, sql: &str) -> Result<Statement, DbError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let pipeline = self.take_pipeline()?;
        let sent = pipelined(&self.session, &pipeline, self.session.client.prepare(sql));
        let statement = self.settle(None, &pipeline, sent)?;
        if self.statements.len() >= MAX_CACHED_STATEMENTS {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Drop the keys the transaction reserved and did not use (see [`Reserved`]).
    fn forget_reserved_keys(&mut self) {
        for reserved in self.keys.values_mut() {
            reserved.keys.clear();
            reserved.next_block = FIRST_KEY_BLOCK;
        }
    }

    /// Take what the [`Pipeline`] holds back, to be sent with the next request, each run of
    /// held INSERTs split into multi-row INSERTs of the [`ROW_CHUNKS`] sizes.
    ///
    /// Errors: preparing a chunk's statement failed. What was held is dropped (its transaction
    /// fails, and the caller rolls it back); an unsent `BEGIN` stays, so that the rollback
    /// sends nothing.
    fn take_pipeline(&mut self) -> Result<Pipeline, DbError> {
        let mut pipeline = std::mem::take(&mut self.pipeline);
        if pipeline.held.iter().all(|deferred| deferred.rows == 1) {
            return Ok(pipeline);
        }
        match self.chunks(std::mem::take(&mut pipeline.held)) {
            Ok(held) => {
                pipeline.held = held;
                Ok(pipeline)
            }
            Err(error) => {
                self.pipeline.begin = pipeline.begin;
                Err(error)
            }
        }
    }

    /// `held` with each run of rows split into chunks of the [`ROW_CHUNKS`] sizes, largest
    /// first, each with its statement (prepared on first use).
    fn chunks(&mut self, held: Vec<Deferred>) -> Result<Vec<Deferred>, DbError> {
        let mut chunks = Vec::with_capacity(held.len());
        for deferred in held {
            if deferred.rows == 1 {
                chunks.push(deferred);
                continue;
            }
            let Deferred {
                sql,
                statement,
                params,
                mut rows,
                width,
                ..
            } = deferred;
            let mut params = params.into_iter();
            for size in ROW_CHUNKS {
                while rows >= size {
                    let statement = if size == 1 {
                        statement.clone()
                    } else {
                        self.statement(&rows_sql(&sql, width, size))?
                    };
                    chunks.push(Deferred {
                        sql: sql.clone(),
                        statement,
                        params: params.by_ref().take(size * width).collect(),
                        rows: size,
                        width,
                        joins: false,
                    });
                    rows -= size;
                }
            }
        }
        Ok(chunks)
    }

    /// The outcome of a request [`pipelined`] after `pipeline`: the first failure of what was
    /// held back, classified (a held statement's message names it), else the request's own,
    /// classified as a failure of `sql` when it ran one.
    fn settle<T>(
        &mut self,
        sql: Option<&str>,
        pipeline: &Pipeline,
        sent: Sent<T>,
    ) -> Result<T, DbError> {
        if let Err(err) = sent.began {
            return Err(self.fail(&err));
        }
        for (deferred, done) in pipeline.held.iter().zip(sent.held) {
            if let Err(err) = done {
                if deferred.rows > 1 {
                    self.fail_statement(
                        &rows_sql(&deferred.sql, deferred.width, deferred.rows),
                        &err,
                    );
                }
                let mut error = self.fail_statement(&deferred.sql, &err);
                let what: Vec<&str> = deferred.sql.split_whitespace().take(6).collect();
                error.message = format!(
                    "`{}` (sent with the statement after it): {}",
                    what.join(" "),
                    error.message
                );
                return Err(error);
            }
        }
        sent.result.map_err(|err| match sql {
            Some(sql) => self.fail_statement(sql, &err),
            None => self.fail(&err),
        })
    }

    /// Classify a failure of `sql`'s statement, and forget the statement unless the failure was a
    /// constraint refusing the row: a statement can go stale (the table was dropped or changed, the
    /// session is gone), and preparing it again is what recovers.
    fn fail_statement(&mut self, sql: &str, err: &tokio_postgres::Error) -> DbError {
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
    fn fail(&mut self, err: &tokio_postgres::Error) -> DbError {
        let error = classify(err, self.session.client.is_closed());
        if error.kind == DbErrorKind::ConnectionLost {
            self.lost = true;
        }
        error
    }
}

/// Whether held runs of `sql` may be sent together as one multi-row INSERT: it is
/// `INSERT INTO .. VALUES ($1, .., $width)` with nothing after its one row (no `RETURNING`, no
/// `ON CONFLICT`), and [`ROW_CHUNKS`]' largest chunk of it stays within [`MAX_PARAMS`].
fn joins_rows(sql: &str, width: usize) -> bool {
    let Some(row) = sql
        .strip_suffix(')')
        .and_then(|head| head.rsplit_once("VALUES ("))
        .map(|(_, row)| row)
    else {
        return false;
    };
    let mut placeholders = row.split(',').map(str::trim);
    width > 0
        && width * ROW_CHUNKS[0] <= MAX_PARAMS
        && sql.starts_with("INSERT INTO ")
        && (1..=width).all(|n| placeholders.next() == Some(format!("${n}").as_str()))
        && placeholders.next().is_none()
}

/// The text of `rows` runs of `sql` (one that [`joins_rows`]) in one INSERT: its `VALUES`
/// list repeated, numbered on.
fn rows_sql(sql: &str, width: usize, rows: usize) -> String {
    let head = sql.rfind("VALUES (").map_or(sql, |at| &sql[..at]);
    let mut text = String::with_capacity(head.len() + rows * width * 6 + 8);
    text.push_str(head);
    text.push_str("VALUES ");
    for row in 0..rows {
        text.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..width {
            if column > 0 {
                text.push_str(", ");
            }
            text.push('$');
            text.push_str(&(row * width + column + 1).to_string());
        }
        text.push(')');
    }
    text
}

/// What [`pipelined`] sent, and how each part went.
struct Sent<T> {
    began: Result<(), tokio_postgres::Error>,
    held: Vec<Result<u64, tokio_postgres::Error>>,
    result: Result<T, tokio_postgres::Error>,
}

/// Send what `pipeline` holds back, then `now` (a request of `session`'s client), in one round
/// trip, and wait for every answer.
fn pipelined<T>(
    session: &Session,
    pipeline: &Pipeline,
    now: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Sent<T> {
    if !pipeline.begin && pipeline.held.is_empty() {
        return Sent {
            began: Ok(()),
            held: Vec::new(),
            result: session.block_on(now),
        };
    }
    let client = &session.client;
    session.block_on(async {
        // Each request is sent when its future is first polled, and `join3` polls in order.
        let begin = async {
            if pipeline.begin {
                client.batch_execute("BEGIN").await
            } else {
                Ok(())
            }
        };
        let held = futures::future::join_all(pipeline.held.iter().map(|d| async move {
            let params: Vec<Param<'_>> = d.params.iter().map(Param).collect();
            client.execute(&d.statement, &param_refs(&params)).await
        }));
        let (began, held, result) = futures::future::join3(begin, held, now).await;
        Sent {
            began,
            held,
            result,
        }
    })
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

impl Backend for PgBackend {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let statement = self.statement(sql)?;
        let params: Vec<Param<'_>> = params.iter().map(Param).collect();
        let pipeline = self.take_pipeline()?;
        let refs = param_refs(&params);
        let now = self.session.client.execute(&statement, &refs);
        let sent = pipelined(&self.session, &pipeline, now);
        self.settle(Some(sql), &pipeline, sent)
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
        let pipeline = self.take_pipeline()?;
        let refs = param_refs(&params);
        let now = self.session.client.query(&statement, &refs);
        let sent = pipelined(&self.session, &pipeline, now);
        let rows = self.settle(Some(sql), &pipeline, sent)?;
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

    fn execute_held(&mut self, sql: &str, params: Vec<Value>) -> Result<(), DbError> {
        let statement = self.statement(sql)?;
        if self.pipeline.rows >= MAX_HELD {
            let pipeline = self.take_pipeline()?;
            let sent = pipelined(&self.session, &pipeline, async { Ok(()) });
            self.settle(None, &pipeline, sent)?;
        }
        self.pipeline.rows += 1;
        let width = params.len();
        if let Some(last) = self.pipeline.held.last_mut()
            && last.joins
            && last.width == width
            && last.sql == sql
        {
            last.params.extend(params);
            last.rows += 1;
            return Ok(());
        }
        self.pipeline.held.push(Deferred {
            joins: joins_rows(sql, width),
            sql: sql.to_owned(),
            statement,
            params,
            rows: 1,
            width,
        });
        Ok(())
    }

    fn reserve_key(&mut self, table: &str, key: &str) -> Result<Option<Value>, DbError> {
        if !self.keys.contains_key(table) {
            // A column drawing from a sequence it may be given values beside: a serial, or an
            // identity `BY DEFAULT` (one `ALWAYS` refuses an INSERT naming its value).
            let found = self.query(
                "SELECT pg_get_serial_sequence($1, $2) FROM pg_attribute \
                 WHERE attrelid = $1::text::regclass AND attname = $2::text::name \
                 AND attidentity <> 'a'",
                &[Value::Text(table.to_owned()), Value::Text(key.to_owned())],
                &[SqlType::Text],
            )?;
            let sequence = match found.into_iter().next().and_then(|r| r.into_iter().next()) {
                Some(Value::Text(sequence)) => Some(sequence),
                _ => None,
            };
            let reserved = Reserved {
                sequence,
                keys: Vec::new(),
                next_block: FIRST_KEY_BLOCK,
            };
            self.keys.insert(table.to_owned(), reserved);
        }
        let reserved = &self.keys[table];
        let Some(sequence) = reserved.sequence.clone() else {
            return Ok(None);
        };
        if reserved.keys.is_empty() {
            let block = reserved.next_block;
            let rows = self.query(
                "SELECT nextval($1::text::regclass) FROM generate_series(1, $2::bigint)",
                &[Value::Text(sequence), Value::Int(block)],
                &[SqlType::Int],
            );
            let rows = match rows {
                Ok(rows) => rows,
                Err(error) => {
                    // The table or its sequence may have changed: look again next time.
                    self.keys.remove(table);
                    return Err(error);
                }
            };
            let mut keys: Vec<i64> = rows
                .into_iter()
                .filter_map(|row| match row.into_iter().next() {
                    Some(Value::Int(key)) => Some(key),
                    _ => None,
                })
                .collect();
            keys.reverse();
            if let Some(reserved) = self.keys.get_mut(table) {
                reserved.keys = keys;
                reserved.next_block = (block * 2).min(MAX_KEY_BLOCK);
            }
        }
        Ok(self
            .keys
            .get_mut(table)
            .and_then(|reserved| reserved.keys.pop())
            .map(Value::Int))
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        let pipeline = self.take_pipeline()?;
        let sent = pipelined(
            &self.session,
            &pipeline,
            self.session.client.batch_execute(sql),
        );
        self.settle(None, &pipeline, sent)
    }

    /// Transaction control, with what the [`Pipeline`] holds back: `BEGIN` waits for the
    /// transaction's first statement; a `ROLLBACK` (of the transaction, or to a savepoint) drops
    /// what was held, which belongs to the work it undoes (a `SAVEPOINT` sent what came before
    /// it); a `COMMIT` or `ROLLBACK` of a transaction that sent nothing sends nothing.
    fn control(&mut self, sql: &str) -> Result<(), DbError> {
        if sql == "BEGIN" {
            self.pipeline.begin = true;
            return Ok(());
        }
        let ends = sql == "COMMIT" || sql == "ROLLBACK";
        if ends {
            self.forget_reserved_keys();
        }
        if sql.starts_with("ROLLBACK") {
            self.pipeline.held.clear();
            self.pipeline.rows = 0;
        }
        if ends && self.pipeline.begin && self.pipeline.held.is_empty() {
            self.pipeline.begin = false;
            return Ok(());
        }
        self.batch(sql)
    }

    fn begin_sql(&self) -> &'static str {
        "BEGIN"
    }

    /// `false` once a call failed because the connection is gone, or the driver saw it close.
    /// This sends nothing to the server: a connection the server dropped while idle is noticed by
    /// the next call, which fails with `ConnectionLost`.
    fn is_alive(&mut self) -> bool {
        !self.lost && !self.session.client.is_closed()
    }
}

/// Connect a synchronous client with `config`'s TLS mode (for the sessions of a worker's own:
/// `LISTEN`, presence locks): in plain text for `disable` (and `prefer` without the
/// `postgres-tls` feature), through rustls otherwise.
pub(crate) fn client(config: &PgConfig) -> Result<postgres::Client, DbError> {
    let sync = postgres::Config::from(config.config.clone());
    // No client exists yet, so an error without a server message means the server was not reached.
    let connected = match &config.tls {
        Tls::Disable => sync.connect(NoTls),
        #[cfg(not(feature = "postgres-tls"))]
        Tls::Prefer => sync.connect(NoTls),
        #[cfg(feature = "postgres-tls")]
        tls => sync.connect(crate::store::pg_tls::connector(tls)?),
        #[cfg(not(feature = "postgres-tls"))]
        _ => return Err(tls_feature_missing()),
    };
    connected.map_err(|err| classify(&err, true))
}

#[cfg(not(feature = "postgres-tls"))]
fn tls_feature_missing() -> DbError {
    DbError::new(
        DbErrorKind::Other,
        "this sslmode needs TLS, and herald was built without its `postgres-tls` feature",
    )
}

/// Connect the backend's client, on a runtime of its own, with `config`'s TLS mode (as
/// [`client`]).
fn session(config: &PgConfig) -> Result<Session, DbError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| {
            DbError::new(
                DbErrorKind::Other,
                format!("starting a PostgreSQL connection's runtime: {e}"),
            )
        })?;
    let connected = match &config.tls {
        Tls::Disable => connect(&runtime, &config.config, NoTls),
        #[cfg(not(feature = "postgres-tls"))]
        Tls::Prefer => connect(&runtime, &config.config, NoTls),
        #[cfg(feature = "postgres-tls")]
        tls => connect(
            &runtime,
            &config.config,
            crate::store::pg_tls::connector(tls)?,
        ),
        #[cfg(not(feature = "postgres-tls"))]
        _ => return Err(tls_feature_missing()),
    };
    // No client exists yet, so an error without a server message means the server was not reached.
    let (client, connection) = connected.map_err(|err| classify(&err, true))?;
    Ok(Session {
        client,
        runner: Runner {
            runtime,
            connection: Some(connection),
        },
    })
}

/// Connect on `runtime` through `tls`, and spawn the connection's task there: it runs while a
/// call blocks on the runtime. Its error, if any, is the next call's, which fails as
/// `ConnectionLost`.
fn connect<T>(
    runtime: &tokio::runtime::Runtime,
    config: &tokio_postgres::Config,
    tls: T,
) -> Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    runtime.block_on(async {
        let (client, connection) = config.connect(tls).await?;
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok((client, task))
    })
}

/// Open a connection and, with a schema, create it and make it the `search_path`.
fn open(config: &PgConfig, schema: Option<&str>) -> Result<Session, DbError> {
    let session = session(config)?;
    if let Some(schema) = schema {
        let run = |sql: &str| {
            session
                .block_on(session.client.batch_execute(sql))
                .map_err(|err| classify(&err, session.client.is_closed()))
        };
        if let Err(error) = run(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"")) {
            // Connections opened at the same time race on the catalog, and the loser of
            // `IF NOT EXISTS` gets a unique violation; the schema exists either way.
            if error.kind != DbErrorKind::Unique {
                return Err(DbError::new(
                    error.kind,
                    format!("creating schema `{schema}`: {}", error.message),
                ));
            }
        }
        run(&format!("SET search_path TO \"{schema}\"")).map_err(|error| {
            DbError::new(
                error.kind,
                format!("setting search_path to `{schema}`: {}", error.message),
            )
        })?;
    }
    Ok(session)
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
fn classify(err: &tokio_postgres::Error, client_closed: bool) -> DbError {
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
            match postgres::Client::connect(&self.url, NoTls) {
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
        let mut admin = postgres::Client::connect(&url, NoTls).expect("connect to the test server");
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

    /// A connection in a schema of its own holding table `held` (`id BIGINT PRIMARY KEY`), and
    /// the INSERT of one id into it.
    fn with_held_table(test: &str) -> (TestSchema, PgBackend, &'static str) {
        let (schema, mut db) = setup(test);
        db.batch("CREATE TABLE held (id BIGINT PRIMARY KEY)")
            .expect("create table");
        (schema, db, "INSERT INTO held (id) VALUES ($1)")
    }

    /// The ids in table `held`, in order, read through `db`.
    fn held_ids(db: &mut PgBackend) -> Vec<Vec<Value>> {
        db.query("SELECT id FROM held ORDER BY id", &[], &[SqlType::Int])
            .expect("read the ids")
    }

    #[test]
    #[ignore = "needs HERALD_TEST_POSTGRES_URL"]
    fn a_transactions_begin_goes_with_its_first_statement_and_an_empty_one_sends_nothing() {
        let (_schema, mut db, insert) = with_held_table("begin_held");
        let in_transaction = "SELECT txid_current_if_assigned() IS NOT NULL";

        // Were the BEGIN lost, the insert would commit on its own and survive the rollback.
        db.control("BEGIN").expect("begin");
        db.execute(insert, &[Value::Int(1)]).expect("insert");
        assert_eq!(
            db.query(in_transaction, &[], &[SqlType::Bool])
                .expect("ask"),
            vec![vec![Value::Bool(true)]],
            "the insert ran inside the transaction"
        );
        db.control("ROLLBACK").expect("rollback");
        assert_eq!(held_ids(&mut db), Vec::<Vec<Value>>::new());

        // Nothing between BEGIN and its end: nothing is sent, and no transaction is left open.
        db.control("BEGIN").expect("begin");
        db.control("COMMIT").expect("commit an empty transaction");
        db.control("BEGIN").expect("begin");
        db.control("ROLLBACK")
            .expect("roll back an empty transaction");
        db.execute(insert, &[Value::Int(2)])
            .expect("insert on its own");
        assert_eq!(
            db.query(in_transaction, &[], &[SqlType::Bool])
                .expect("ask"),
            vec![vec![Value::Bool(false)]],
            "the insert committed on its own"
        );
        assert_eq!(held_ids(&mut db), vec![vec![Value::Int(2)]]);
    }

    #[test]
    #[ignore = "needs HERALD_TEST_POSTGRES_URL"]
    fn a_statement_held_for_the_commit_goes_with_it_and_its_failure_keeps_nothing() {
        let (_schema, mut db, insert) = with_held_table("commit_held");

        // Held statements alone, BEGIN still unsent: all three go at the COMMIT.
        db.control("BEGIN").expect("begin");
        db.execute_held(insert, vec![Value::Int(1)]).expect("hold");
        db.execute_held(insert, vec![Value::Int(2)]).expect("hold");
        db.control("COMMIT").expect("commit");
        assert_eq!(
            held_ids(&mut db),
            vec![vec![Value::Int(1)], vec![Value::Int(2)]]
        );

        // A held statement that fails: the COMMIT says which, and the transaction is undone.
        db.control("BEGIN").expect("begin");
        db.execute(insert, &[Value::Int(3)]).expect("insert");
        db.execute_held(insert, vec![Value::Int(1)])
            .expect("hold a duplicate");
        let message = expect_err(db.control("COMMIT"), DbErrorKind::Unique);
        assert!(
            message.starts_with("`INSERT INTO held (id) VALUES ($1)` (sent with the statement after it): duplicate key"),
            "{message}"
        );
        assert!(db.is_alive());
        assert_eq!(
            held_ids(&mut db),
            vec![vec![Value::Int(1)], vec![Value::Int(2)]],
            "the row inserted before the refused one was rolled back with it"
        );

        // A ROLLBACK drops what was held, unsent.
        db.control("BEGIN").expect("begin");
        db.execute(insert, &[Value::Int(4)]).expect("insert");
        db.execute_held(insert, vec![Value::Int(1)])
            .expect("hold a duplicate");
        db.control("ROLLBACK").expect("rollback");
        db.execute(insert, &[Value::Int(5)])
            .expect("insert on its own");
        assert_eq!(
            held_ids(&mut db),
            vec![
                vec![Value::Int(1)],
                vec![Value::Int(2)],
                vec![Value::Int(5)]
            ]
        );
    }

    #[test]
    fn a_run_of_single_row_inserts_is_rewritten_as_one_insert_of_many_rows() {
        let one = "INSERT INTO \"books\" (\"id\", \"title\") VALUES ($1, $2)";
        assert!(joins_rows(one, 2));
        assert_eq!(
            rows_sql(one, 2, 3),
            "INSERT INTO \"books\" (\"id\", \"title\") VALUES ($1, $2), ($3, $4), ($5, $6)"
        );
        assert!(
            !joins_rows(one, 3),
            "the parameters are not the statement's"
        );
        for other in [
            "INSERT INTO books (id) VALUES ($1) RETURNING id",
            "INSERT INTO books (id) VALUES ($1) ON CONFLICT DO NOTHING",
            "INSERT INTO books (id) VALUES ($2)",
            "INSERT INTO books (id) VALUES ($1), ($2)",
            "INSERT INTO books (id) SELECT $1",
            "UPDATE books SET id = $1 WHERE (id = $1)",
            "SELECT pg_notify($1, $2)",
        ] {
            assert!(!joins_rows(other, 1) && !joins_rows(other, 2), "{other}");
        }
    }

    #[test]
    #[ignore = "needs HERALD_TEST_POSTGRES_URL"]
    fn held_inserts_of_one_statement_go_as_multi_row_inserts_in_their_order() {
        let (_schema, mut db) = setup("held_rows");
        // A statement trigger counts the INSERT statements the server ran on `held`.
        db.batch(
            "CREATE TABLE held (id BIGINT PRIMARY KEY, title TEXT NOT NULL);
             CREATE TABLE other (id BIGINT PRIMARY KEY);
             CREATE TABLE ran (n BIGINT);
             INSERT INTO ran VALUES (0);
             CREATE FUNCTION count_statement() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN UPDATE ran SET n = n + 1; RETURN NULL; END $$;
             CREATE TRIGGER counted AFTER INSERT ON held
               FOR EACH STATEMENT EXECUTE FUNCTION count_statement();",
        )
        .expect("create tables");
        let insert = "INSERT INTO held (id, title) VALUES ($1, $2)";
        let hold = |db: &mut PgBackend, id: i64| {
            db.execute_held(insert, vec![Value::Int(id), Value::Text(format!("t{id}"))])
                .expect("hold");
        };
        let statements = |db: &mut PgBackend| {
            db.query("SELECT n FROM ran", &[], &[SqlType::Int])
                .expect("count statements")
        };

        // 70 rows: one INSERT of 64, one of 4, two of 1.
        db.control("BEGIN").expect("begin");
        for id in 1..=70 {
            hold(&mut db, id);
        }
        db.control("COMMIT").expect("commit");
        assert_eq!(statements(&mut db), vec![vec![Value::Int(4)]]);
        let rows = db
            .query(
                "SELECT id, title FROM held ORDER BY id",
                &[],
                &[SqlType::Int, SqlType::Text],
            )
            .expect("read the rows");
        let expected: Vec<Vec<Value>> = (1..=70)
            .map(|id| vec![Value::Int(id), Value::Text(format!("t{id}"))])
            .collect();
        assert_eq!(rows, expected, "every row with its own values");

        // Another statement between two runs keeps them apart, and the order of all three.
        db.batch("TRUNCATE held; UPDATE ran SET n = 0")
            .expect("reset");
        db.control("BEGIN").expect("begin");
        hold(&mut db, 1);
        hold(&mut db, 2);
        db.execute_held(
            "INSERT INTO other (id) SELECT count(*) FROM held",
            Vec::new(),
        )
        .expect("hold the count");
        hold(&mut db, 3);
        db.control("COMMIT").expect("commit");
        let other = db
            .query("SELECT id FROM other", &[], &[SqlType::Int])
            .expect("read the count");
        assert_eq!(
            other,
            vec![vec![Value::Int(2)]],
            "it ran after the first run"
        );
        assert_eq!(statements(&mut db), vec![vec![Value::Int(3)]]);

        // A refused row inside a chunk fails the commit naming the statement; nothing is kept.
        db.control("BEGIN").expect("begin");
        for id in [10, 11, 12, 3, 13] {
            hold(&mut db, id);
        }
        let message = expect_err(db.control("COMMIT"), DbErrorKind::Unique);
        assert!(
            message.starts_with("`INSERT INTO held (id, title) VALUES` (sent with the statement after it): duplicate key"),
            "{message}"
        );
        assert!(message.contains("(id)=(3)"), "{message}");
        assert_eq!(held_ids(&mut db).len(), 3, "none of the five was kept");
        assert!(db.is_alive());
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

        let mut admin =
            postgres::Client::connect(&schema.url, NoTls).expect("connect the admin client");
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

        // What the pool does with a lost connection: connect again, as `setup` did.
        let config = crate::store::pg_config::parse(&schema.url, None).expect("a valid URL");
        let mut db = PgBackend::connect(&config, Some(&schema.name)).expect("connect again");
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
