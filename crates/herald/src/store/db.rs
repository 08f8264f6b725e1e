//! [`Db`]: opening a database (SQLite or PostgreSQL) and its connection threads; its operations
//! are the [`Store`] ones, autocommit, and [`Quiet`] is the same without signals.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use herald_dispatch::Signals;

use crate::error::{DbError, Error, Result};
use crate::model::Dialect;
use crate::store::backend::Backend;
use crate::store::conn::{Conn, DEFAULT_RECURSION_LIMIT, Shared};
use crate::store::lifecycle::{self, Route};
use crate::store::ops::{Sealed, Store};
use crate::store::pool::{self, Job, Jobs, Open, Serving};
#[cfg(feature = "postgres")]
use crate::store::postgres::PgBackend;
#[cfg(feature = "sqlite")]
use crate::store::sqlite::{SqliteBackend, SqliteOptions};
use crate::store::tx::Tx;

/// Where a database is.
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
#[derive(Clone, Debug, PartialEq, Eq)]
enum Location {
    SqliteFile { path: PathBuf, mode: SqliteMode },
    SqliteMemory,
    Postgres(String),
}

/// How a SQLite file is opened: the URL's `mode` (SQLite's own URI parameter and values).
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SqliteMode {
    /// `mode=ro`: read-only; every connection is, the file must exist, and Herald's migrations
    /// are not applied (a database that never had them has no task queue).
    ReadOnly,
    /// `mode=rw`: read-write; the file must exist (as with `create_if_missing(false)`).
    ReadWriteExisting,
    /// `mode=rwc`, the default: read-write, created when missing (unless
    /// `create_if_missing(false)`).
    Create,
}

/// Where `url` says the database is, or [`Error::Url`]; a URL of a backend this build does not
/// have is an error naming the feature that adds it.
fn parse_url(url: &str) -> Result<Location> {
    let bad = |reason: String| Error::Url {
        url: mask(url),
        reason,
    };
    let left_out = |backend: &str, feature: &str| {
        bad(format!(
            "this build of herald has no {backend} backend: enable herald's `{feature}` feature"
        ))
    };
    if url.starts_with("sqlite:") {
        #[cfg(feature = "sqlite")]
        return sqlite_location(url).map_err(bad);
        #[cfg(not(feature = "sqlite"))]
        return Err(left_out("SQLite", "sqlite"));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") || is_key_value(url) {
        if !cfg!(feature = "postgres") {
            return Err(left_out("PostgreSQL", "postgres"));
        }
        // Read by `postgres::Config` when the pool opens (`pg_config.rs`), where an unknown
        // option is an error naming it.
        return Ok(Location::Postgres(url.to_owned()));
    }
    let scheme = url.split_once(':').map_or(url, |(s, _)| s);
    Err(bad(format!(
        "unsupported scheme `{scheme}`: use sqlite://PATH or postgres://USER@HOST/DB"
    )))
}

/// A SQLite URL, read by the `url` crate: `sqlite://PATH` (relative to the current directory),
/// `sqlite:///ABSOLUTE/PATH`, `sqlite:PATH`, `sqlite::memory:` (or `sqlite://:memory:`), each
/// with an optional `?mode=ro|rw|rwc`. The path is percent-decoded (`%20` for a space, `%23` for
/// a `#`). Any other option is an error naming it.
#[cfg(feature = "sqlite")]
fn sqlite_location(text: &str) -> std::result::Result<Location, String> {
    const FORMS: &str = "use sqlite://PATH (e.g. sqlite://bookstore.db), sqlite:///ABSOLUTE/PATH or sqlite::memory:";
    // `//:memory:` would read as an empty host with a port; it names the in-memory database.
    let text = match text.strip_prefix("sqlite://:memory:") {
        Some(rest) => format!("sqlite::memory:{rest}"),
        None => text.to_owned(),
    };
    let parsed = url::Url::parse(&text).map_err(|e| format!("{e}: {FORMS}"))?;
    if parsed.fragment().is_some() {
        return Err("a `#` starts a URL's fragment: write it %23 in a file name".to_owned());
    }
    let mut mode = SqliteMode::Create;
    for (key, value) in parsed.query_pairs() {
        mode = match (&*key, &*value) {
            ("mode", "ro") => SqliteMode::ReadOnly,
            ("mode", "rw") => SqliteMode::ReadWriteExisting,
            ("mode", "rwc") => SqliteMode::Create,
            ("mode", other) => {
                return Err(format!(
                    "unknown mode `{other}`: use mode=ro, mode=rw or mode=rwc"
                ));
            }
            (other, _) => {
                return Err(format!(
                    "unknown option `{other}`: a SQLite URL takes mode=ro|rw|rwc"
                ));
            }
        };
    }
    // `sqlite://data/shop.db` reads `data` as the host: the path is the host and the path.
    let encoded = match parsed.host_str() {
        Some(host) => format!("{host}{}", parsed.path()),
        None => parsed.path().to_owned(),
    };
    let path = percent_encoding::percent_decode_str(&encoded)
        .decode_utf8()
        .map_err(|e| format!("the path is not UTF-8 once decoded ({e})"))?;
    match &*path {
        "" => Err(format!("no file path: {FORMS}")),
        ":memory:" => Ok(Location::SqliteMemory),
        path => {
            let path = PathBuf::from(path);
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
                && !parent.is_dir()
            {
                return Err(format!(
                    "the directory `{}` does not exist",
                    parent.display()
                ));
            }
            Ok(Location::SqliteFile { path, mode })
        }
    }
}

/// Whether `url` is a libpq `key=value` connection string (`host=.. dbname=..`).
fn is_key_value(url: &str) -> bool {
    !url.contains("://")
        && url.split_whitespace().next().is_some_and(|first| {
            first.split_once('=').is_some_and(|(key, _)| {
                !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            })
        })
}

/// The URL with any password replaced by `***`.
pub(crate) fn mask(url: &str) -> String {
    if is_key_value(url) {
        return url
            .split_whitespace()
            .map(|pair| match pair.split_once('=') {
                Some(("password", _)) => "password=***".to_owned(),
                _ => pair.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(" ");
    }
    match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => {
            let credentials = &url[start + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..start + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Opens a [`Db`]. Every option documents its default.
#[must_use = "nothing is opened until `.connect().await`"]
#[derive(Debug)]
pub struct DbBuilder {
    url: String,
    signals: Option<Signals>,
    readers: usize,
    pool_size: usize,
    busy_timeout: Duration,
    recursion_limit: usize,
    alias: String,
    schema: Option<String>,
    group_commit: bool,
    connect_timeout: Option<Duration>,
    create_if_missing: bool,
}

impl DbBuilder {
    /// The registry whose receivers every write runs. Default: an empty registry.
    pub fn signals(mut self, signals: Signals) -> Self {
        self.signals = Some(signals);
        self
    }

    /// SQLite: how many read-only connections serve `get`/`all`/`query` outside transactions, next
    /// to the one writer (SQLite allows one writer at a time; WAL lets readers run beside it).
    /// Default: 2. In-memory databases use the writer for everything.
    pub fn readers(mut self, readers: usize) -> Self {
        self.readers = readers;
        self
    }

    /// PostgreSQL: how many connections (threads). Default: 4.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// SQLite: how long a statement waits for a lock held by another process. Default: 5 s.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// How deep saves may nest inside receivers. Default: [`DEFAULT_RECURSION_LIMIT`] (32).
    pub fn recursion_limit(mut self, limit: usize) -> Self {
        self.recursion_limit = limit.max(1);
        self
    }

    /// The alias events carry in `using`. Default: `"default"`.
    pub fn alias(mut self, alias: impl Into<String>) -> Self {
        self.alias = alias.into();
        self
    }

    /// PostgreSQL: work in this schema (created if missing) instead of `public`; tests use one
    /// schema each. Default: none.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// SQLite: let single writes (`save`, `save_fields`, `delete`) that queue up behind one another
    /// share one commit (group commit), each in a savepoint of its own when it has receivers, each
    /// answered after that commit. It multiplies the writes per second under concurrency; the
    /// price: a write that fails only at COMMIT (a deferred foreign key) fails the writes it shared
    /// the commit with (they get an error saying so; nothing of them is kept). Default: on.
    pub fn group_commit(mut self, on: bool) -> Self {
        self.group_commit = on;
        self
    }

    /// PostgreSQL: how long to wait for a connection to the server (each connection of the pool,
    /// and again when one is replaced) before it is an error. A `connect_timeout=S` in the URL
    /// wins. Default: 10 s, so that a server that drops packets is an error, not a hang.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// SQLite: create the database file when it does not exist. Default: on, so that the first
    /// `connect` of an application (its `migrate`, its server) makes the file. Off, a missing
    /// file is [`Error::NoDatabase`] naming its path and nothing is created: for a program that
    /// only reads or manages an existing database (listing its task queue), where a mistyped path
    /// would otherwise leave an empty database behind and report an empty queue. PostgreSQL and
    /// in-memory databases ignore it.
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.create_if_missing = create;
        self
    }

    /// Open the connections and apply Herald's migrations.
    pub async fn connect(self) -> Result<Db> {
        let location = parse_url(&self.url)?;
        if let Location::SqliteFile { path, mode } = &location
            && (!self.create_if_missing || *mode != SqliteMode::Create)
            && !path.exists()
        {
            return Err(Error::NoDatabase { path: path.clone() });
        }
        let read_only = matches!(
            location,
            Location::SqliteFile {
                mode: SqliteMode::ReadOnly,
                ..
            }
        );
        let signals = self.signals.unwrap_or_default();
        // Receivers declared `blocking` run through `block_in_place` on the caller's runtime.
        signals.set_blocking_runner(lifecycle::block_in_place);
        let shared = Arc::new(Shared {
            signals,
            alias: self.alias.into(),
            recursion_limit: self.recursion_limit,
            tasks_added: Arc::new(tokio::sync::Notify::new()),
            notified: Default::default(),
        });
        let masked = mask(&self.url);
        let connect_error = |source: DbError| Error::Connect {
            url: masked.clone(),
            source,
        };
        let writer_queue = flume::unbounded::<Job>();
        let mut threads = Vec::new();
        #[cfg(feature = "postgres")]
        #[cfg_attr(not(feature = "sqlite"), allow(unused_assignments))]
        let mut postgres = None;
        let (dialect, writer, reader) = match &location {
            #[cfg(feature = "sqlite")]
            Location::SqliteFile { .. } | Location::SqliteMemory => {
                let (path, mode) = match &location {
                    Location::SqliteFile { path, mode } => (path.clone(), *mode),
                    _ => (PathBuf::from(":memory:"), SqliteMode::Create),
                };
                let open = sqlite_open(
                    &path,
                    SqliteOptions {
                        busy_timeout: self.busy_timeout,
                        read_only,
                        create: self.create_if_missing && mode == SqliteMode::Create,
                        checkpointer: true,
                    },
                );
                // Short jobs may run on their caller's thread, with a borrowed connection.
                let (spawned, writer) = pool::spawn(
                    "writer",
                    1,
                    open,
                    shared.clone(),
                    writer_queue,
                    Serving::SoleWriter {
                        group_commit: self.group_commit,
                    },
                    true,
                )
                .await
                .map_err(connect_error)?;
                threads.extend(spawned);
                let reader = if location == Location::SqliteMemory || self.readers == 0 {
                    writer.clone()
                } else {
                    let open = sqlite_open(
                        &path,
                        SqliteOptions {
                            busy_timeout: self.busy_timeout,
                            read_only: true,
                            create: false,
                            checkpointer: false,
                        },
                    );
                    let (spawned, reader) = pool::spawn(
                        "reader",
                        self.readers,
                        open,
                        shared.clone(),
                        flume::unbounded(),
                        Serving::Pooled,
                        true,
                    )
                    .await
                    .map_err(connect_error)?;
                    threads.extend(spawned);
                    reader
                };
                (Dialect::Sqlite, writer, reader)
            }
            #[cfg(feature = "postgres")]
            Location::Postgres(url) => {
                let config = crate::store::pg_config::parse(url, self.connect_timeout)
                    .map_err(connect_error)?;
                postgres = Some(config.clone());
                let (pool_config, schema) = (config.clone(), self.schema.clone());
                let open: Open = Arc::new(move || {
                    PgBackend::connect(&pool_config, schema.as_deref())
                        .map(|b| Box::new(b) as Box<dyn Backend>)
                });
                // The synchronous driver cannot run on an async runtime's thread: every job
                // crosses to the pool's threads.
                let (spawned, pool) = pool::spawn(
                    "pg",
                    self.pool_size,
                    open,
                    shared.clone(),
                    writer_queue,
                    Serving::Pooled,
                    false,
                )
                .await
                .map_err(connect_error)?;
                threads.extend(spawned);
                (Dialect::Postgres, pool.clone(), pool)
            }
            // `parse_url` refuses the URL of a backend this build does not have.
            #[cfg(not(all(feature = "sqlite", feature = "postgres")))]
            _ => {
                return Err(Error::Url {
                    url: masked,
                    reason: "no backend of this build serves this URL".to_owned(),
                });
            }
        };
        let db = Db {
            inner: Arc::new(Inner {
                writer,
                reader,
                shared,
                dialect,
                url: masked,
                threads: Mutex::new(threads),
                extensions: Mutex::new(HashMap::new()),
                #[cfg(feature = "postgres")]
                postgres,
                #[cfg(feature = "postgres")]
                schema: self.schema.clone(),
            }),
        };
        // A read-only database (`mode=ro`) is used as it is.
        if !read_only {
            db.migrate().await?;
        }
        Ok(db)
    }
}

#[cfg(feature = "sqlite")]
fn sqlite_open(path: &std::path::Path, options: SqliteOptions) -> Open {
    let path = path.to_owned();
    Arc::new(move || SqliteBackend::open(&path, &options).map(|b| Box::new(b) as Box<dyn Backend>))
}

struct Inner {
    /// The state of the layers above the store, one value per type (see [`Db::extension`]).
    extensions: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    /// PostgreSQL: how to open a session of one's own (worker presence), and the schema.
    #[cfg(feature = "postgres")]
    postgres: Option<crate::store::pg_config::PgConfig>,
    #[cfg(feature = "postgres")]
    schema: Option<String>,
    writer: Jobs,
    reader: Jobs,
    shared: Arc<Shared>,
    dialect: Dialect,
    url: String,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// A database: the store every write of a model goes through, with its signals.
///
/// Cheap to clone (a shared handle). Writes outside a transaction are autocommit: each is one unit
/// of work on one connection (see the `conn` module for the phases). Inside a transaction, write
/// through the [`Tx`], not the `Db`: on SQLite a `Db` write waits for the transaction to end.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Start opening the database at `url`:
    ///
    /// - `sqlite://PATH` (relative), `sqlite:///ABSOLUTE/PATH` or `sqlite:PATH`, percent-decoded
    ///   (WAL, `synchronous=NORMAL`, a busy timeout), with an optional `?mode=`: `rwc` (the
    ///   default: created when missing, unless [`create_if_missing(false)`](DbBuilder::create_if_missing)),
    ///   `rw` (the file must exist) or `ro` (read-only, the file must exist, no migrations);
    /// - `sqlite::memory:`, a private in-memory database;
    /// - `postgres://USER:PASSWORD@HOST:PORT/DB?OPTIONS` or a libpq `key=value` string
    ///   (`host=.. user=.. dbname=..`), read by `postgres::Config`, plus `sslmode` and
    ///   `sslrootcert` (see [`DbBuilder::connect_timeout`] for `connect_timeout`).
    ///
    /// An option not listed is an error naming it, and so is the URL of a backend this build
    /// leaves out (the `sqlite` and `postgres` features).
    pub fn open(url: impl Into<String>) -> DbBuilder {
        DbBuilder {
            url: url.into(),
            signals: None,
            readers: 2,
            pool_size: 4,
            busy_timeout: Duration::from_secs(5),
            recursion_limit: DEFAULT_RECURSION_LIMIT,
            alias: herald_dispatch::DEFAULT_ALIAS.to_owned(),
            schema: None,
            group_commit: true,
            connect_timeout: None,
            create_if_missing: true,
        }
    }

    /// The registry whose receivers this database's writes run.
    pub fn signals(&self) -> &Signals {
        &self.inner.shared.signals
    }

    /// State that a layer above the store keeps per database (the workers' statistics, their
    /// LISTEN thread), made on first use and dropped with the last handle of the `Db`. The store
    /// holds it without knowing its type, so the layers point one way.
    pub(crate) fn extension<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        let mut extensions = crate::store::conn::lock(&self.inner.extensions);
        let slot = extensions
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(T::default()));
        slot.clone()
            .downcast::<T>()
            .expect("an extension is stored under its own TypeId")
    }

    /// Woken when a commit in this process adds tasks.
    pub(crate) fn tasks_added(&self) -> Arc<tokio::sync::Notify> {
        self.inner.shared.tasks_added.clone()
    }

    /// PostgreSQL: how to open a session of one's own, and the schema.
    #[cfg(feature = "postgres")]
    pub(crate) fn postgres_session(
        &self,
    ) -> Option<(crate::store::pg_config::PgConfig, Option<String>)> {
        self.inner
            .postgres
            .clone()
            .map(|config| (config, self.inner.schema.clone()))
    }

    /// The URL, with any password masked.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Whether this is a PostgreSQL database (otherwise SQLite).
    pub fn is_postgres(&self) -> bool {
        self.inner.dialect == Dialect::Postgres
    }

    /// Run `f` on a reading connection (SQLite: a read-only one; PostgreSQL: any).
    pub async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Conn) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        lifecycle::read(self.route(), f).await
    }

    /// Begin a transaction on its own connection (SQLite: the writer, which it holds until it
    /// ends, so other writes wait). Commit with [`Tx::commit`]; dropping it rolls it back.
    pub async fn begin(&self) -> Result<Tx<'static>> {
        Tx::begin_on(self.route(), false).await
    }

    /// [`begin`](Self::begin) a transaction whose saves of new instances do not wait for the
    /// database (PostgreSQL; on SQLite, where a statement is no round trip, this is `begin`).
    ///
    /// Such a save takes its key from a block the connection reserved from the key column's
    /// sequence, and its INSERT is sent with the transaction's next statement that is waited
    /// for (a read, an update, its `COMMIT`), in one round trip with it: a thousand saves cost
    /// about ten round trips instead of a thousand. What changes is when a failure is reported:
    /// the save itself returns `Ok` with its key, and a refused INSERT (a unique or foreign key
    /// violation) fails that later statement, or the commit, naming the INSERT and the server's
    /// detail (which names the row); the transaction cannot commit either way, as after any
    /// failed write in a `Tx`. Receivers run as in any transaction: a caller-side `post_save`
    /// sees the instance with its key before the row is written. Saves of instances that have a
    /// key (updates), and keys without a sequence to draw from (`GENERATED ALWAYS`, no default),
    /// wait for the database as usual. Reserved keys that are not used are skipped, as a
    /// sequence's cache skips them. Consecutive held INSERTs into one table are sent as
    /// multi-row INSERTs (of up to 64 rows): row triggers fire for each row as usual, and a
    /// statement trigger (`FOR EACH STATEMENT`) fires once per INSERT sent, not once per save.
    pub async fn begin_pipelined(&self) -> Result<Tx<'static>> {
        Tx::begin_on(self.route(), self.inner.dialect == Dialect::Postgres).await
    }

    /// The same operations without any signal: for fixtures, migrations and data repair, named so
    /// that it shows in review.
    pub fn without_signals(&self) -> Quiet<'_> {
        Quiet::new(Route {
            quiet: true,
            ..self.route()
        })
    }

    async fn migrate(&self) -> Result<()> {
        self.run(|conn| {
            crate::store::pool::held_by(|| crate::store::pool::HeldBy::Nobody);
            crate::store::migrate::apply(conn, crate::store::migrate::MIGRATIONS)
        })
        .await
    }

    /// Stop the connection threads once every handle is gone and their queues are empty; waits for them.
    pub fn close(self) {
        let threads = std::mem::take(
            &mut *self
                .inner
                .threads
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        drop(self);
        for thread in threads {
            let _ = thread.join();
        }
    }
}

impl Store for Db {}

impl Sealed for Db {
    fn route(&self) -> Route<'_> {
        Route {
            writes: &self.inner.writer,
            reads: &self.inner.reader,
            shared: &self.inner.shared,
            in_tx: false,
            quiet: false,
        }
    }
}

/// A [`Db`] or a [`Tx`] without signals: every write skips every receiver, of every phase. From
/// `without_signals()`; its operations are the [`Store`] ones.
#[derive(Debug)]
pub struct Quiet<'a> {
    route: Route<'a>,
}

impl<'a> Quiet<'a> {
    pub(crate) fn new(route: Route<'a>) -> Self {
        Self { route }
    }
}

impl Store for Quiet<'_> {}

impl Sealed for Quiet<'_> {
    fn route(&self) -> Route<'_> {
        self.route
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_of_a_backend_left_out_names_the_feature_to_enable() {
        let cases = [
            ("sqlite::memory:", cfg!(feature = "sqlite"), "sqlite"),
            ("sqlite://shop.db", cfg!(feature = "sqlite"), "sqlite"),
            ("postgres://u@h/db", cfg!(feature = "postgres"), "postgres"),
            ("host=h dbname=db", cfg!(feature = "postgres"), "postgres"),
        ];
        for (url, compiled_in, feature) in cases {
            match parse_url(url) {
                Ok(_) => assert!(compiled_in, "{url} opened without `{feature}`"),
                Err(error) => {
                    assert!(!compiled_in, "{url}: {error}");
                    let wanted = format!("enable herald's `{feature}` feature");
                    assert!(error.to_string().contains(&wanted), "{url}: {error}");
                }
            }
        }
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_urls_in_every_form_accepted() {
        let file = |path: &str, mode| Location::SqliteFile {
            path: PathBuf::from(path),
            mode,
        };
        use SqliteMode::{Create, ReadOnly, ReadWriteExisting};
        let cases = [
            ("sqlite://bookstore.db", file("bookstore.db", Create)),
            ("sqlite:bookstore.db", file("bookstore.db", Create)),
            ("sqlite:///tmp/shop.db", file("/tmp/shop.db", Create)),
            (
                "sqlite:///tmp/my%20shop.db",
                file("/tmp/my shop.db", Create),
            ),
            ("sqlite://./shop.db?mode=ro", file("./shop.db", ReadOnly)),
            (
                "sqlite:///tmp/shop.db?mode=rw",
                file("/tmp/shop.db", ReadWriteExisting),
            ),
            ("sqlite://shop.db?mode=rwc", file("shop.db", Create)),
            ("sqlite::memory:", Location::SqliteMemory),
            ("sqlite://:memory:", Location::SqliteMemory),
        ];
        for (url, expected) in cases {
            assert_eq!(parse_url(url).expect(url), expected, "{url}");
        }
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_urls_that_are_refused_say_why() {
        let cases = [
            ("sqlite://", "no file path"),
            ("sqlite:", "no file path"),
            ("sqlite://shop.db?cache=shared", "unknown option `cache`"),
            ("sqlite://shop.db?mode=memory", "unknown mode `memory`"),
            ("sqlite://shop.db#top", "write it %23"),
            (
                "sqlite:///no/such/dir/x.db",
                "the directory `/no/such/dir` does not exist",
            ),
            ("mysql://localhost/x", "unsupported scheme `mysql`"),
        ];
        for (url, wanted) in cases {
            let error = parse_url(url).expect_err(url).to_string();
            assert!(error.contains(wanted), "{url}: {error}");
        }
    }
}
