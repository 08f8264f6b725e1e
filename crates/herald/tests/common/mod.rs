//! Shared by the store tests: models, a fresh database per test on every backend, and a log.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use herald::Store;
use herald::dispatch::{Connection, PostSave, PreSave};
use herald::{Db, Model};

#[derive(Model, Clone, Debug, PartialEq)]
#[model(table = "books")]
pub struct Book {
    #[model(primary_key)]
    pub id: Option<i64>,
    pub title: String,
    pub slug: String,
    pub body: String,
    pub price_cents: i64,
}

/// A model whose key the caller sets.
#[derive(Model, Clone, Debug, PartialEq)]
#[model(table = "editions")]
pub struct Edition {
    #[model(primary_key)]
    pub isbn: String,
    pub title: String,
    pub copies: i64,
}

/// Rows receivers write inside the save's transaction.
#[derive(Model, Clone, Debug, PartialEq)]
#[model(table = "audit")]
pub struct Audit {
    #[model(primary_key)]
    pub id: Option<i64>,
    pub model: String,
    pub key: String,
    pub action: String,
}

/// Every field type a model may have.
#[derive(Model, Clone, Debug, PartialEq)]
#[model(table = "everything")]
pub struct Everything {
    #[model(primary_key)]
    pub id: Option<i64>,
    pub small: i32,
    pub ratio: f64,
    pub flag: bool,
    pub name: String,
    pub maybe: Option<String>,
    pub blob: Vec<u8>,
    pub at: chrono::DateTime<chrono::Utc>,
    pub doc: serde_json::Value,
}

pub fn book(title: &str) -> Book {
    Book {
        id: None,
        title: title.to_owned(),
        slug: String::new(),
        body: String::new(),
        price_cents: 900,
    }
}

/// The titles of every stored book, sorted.
pub async fn titles(db: &Db) -> Vec<String> {
    let mut titles: Vec<String> = db
        .all::<Book>()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.title)
        .collect();
    titles.sort();
    titles
}

/// What receivers saw, in order.
#[derive(Clone, Default, Debug)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    /// Connect a caller-side `pre_save` receiver for `Book` that logs what `describe` says of each
    /// event.
    pub fn pre_save(
        &self,
        db: &Db,
        describe: impl Fn(&PreSave<'_, Book>) -> String + Send + Sync + 'static,
    ) -> Connection {
        let log = self.clone();
        db.signals()
            .pre_save::<Book>()
            .connect(move |e: &mut PreSave<'_, Book>| {
                log.push(describe(e));
                Ok(())
            })
    }

    /// Connect an `in_transaction` `post_save` receiver for `Book` that logs `describe(event)`.
    pub fn in_transaction(
        &self,
        db: &Db,
        describe: impl Fn(&PostSave<'_, Book>) -> String + Send + Sync + 'static,
    ) -> Connection {
        let log = self.clone();
        db.signals()
            .post_save::<Book>()
            .in_transaction()
            .connect(move |e: &PostSave<'_, Book>| {
                log.push(describe(e));
                Ok(())
            })
    }

    /// Connect a caller-side `post_save` receiver for `Book` that logs `describe(event)`.
    pub fn post_save(
        &self,
        db: &Db,
        describe: impl Fn(&PostSave<'_, Book>) -> String + Send + Sync + 'static,
    ) -> Connection {
        let log = self.clone();
        db.signals()
            .post_save::<Book>()
            .connect(move |e: &PostSave<'_, Book>| {
                log.push(describe(e));
                Ok(())
            })
    }

    /// Connect an on-commit `post_save` receiver for `Book` that logs `describe(event)`.
    pub fn on_commit(
        &self,
        db: &Db,
        describe: impl Fn(&PostSave<'_, Book>) -> String + Send + Sync + 'static,
    ) -> Connection {
        let log = self.clone();
        db.signals()
            .post_save::<Book>()
            .on_commit()
            .connect(move |e: &PostSave<'_, Book>| {
                log.push(describe(e));
                Ok(())
            })
    }

    pub fn push(&self, entry: impl Into<String>) {
        self.0.lock().unwrap().push(entry.into());
    }
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// A database to run one test on.
pub struct Target {
    pub name: &'static str,
    pub url: String,
    pub schema: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

static NEXT_SCHEMA: AtomicUsize = AtomicUsize::new(0);

/// The backends a test runs on; `backend_test!` makes one test per backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh database of `backend` for the test `test`.
pub fn target(backend: Backend, test: &str) -> Target {
    match backend {
        Backend::Sqlite => sqlite(test),
        Backend::Postgres => postgres(test),
    }
}

/// A fresh SQLite file.
pub fn sqlite(_test: &str) -> Target {
    let dir = tempfile::tempdir().unwrap();
    Target {
        name: "sqlite",
        url: format!("sqlite://{}", dir.path().join("test.db").display()),
        schema: None,
        _dir: Some(dir),
    }
}

/// A fresh schema on the PostgreSQL server of `HERALD_TEST_POSTGRES_URL`. The tests that call
/// this are `#[ignore = "needs HERALD_TEST_POSTGRES_URL"]`; run with `--include-ignored` and
/// without the variable, they fail here, saying so.
pub fn postgres(test: &str) -> Target {
    let url = std::env::var("HERALD_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "{test}: HERALD_TEST_POSTGRES_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test); \
                 this test needs PostgreSQL"
            )
        });
    Target {
        name: "postgres",
        url,
        schema: Some(format!(
            "herald_test_{}_{}_{}",
            test.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(30)
                .collect::<String>()
                .to_lowercase(),
            std::process::id(),
            NEXT_SCHEMA.fetch_add(1, Ordering::Relaxed)
        )),
        _dir: None,
    }
}

impl Target {
    /// Open the database with a fresh registry and the test tables.
    pub async fn open(&self) -> Db {
        let mut builder = Db::open(&self.url).signals(herald::dispatch::Signals::new());
        if let Some(schema) = &self.schema {
            builder = builder.schema(schema.clone());
        }
        let db = builder
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.name));
        db.create_table::<Book>().await.unwrap();
        db.create_table::<Edition>().await.unwrap();
        db.create_table::<Audit>().await.unwrap();
        db.create_table::<Everything>().await.unwrap();
        db.execute(
            r#"CREATE UNIQUE INDEX IF NOT EXISTS books_slug ON books (slug) WHERE slug <> ''"#,
            vec![],
        )
        .await
        .unwrap();
        db
    }

    /// Drop the test's PostgreSQL schema.
    pub async fn cleanup(&self, db: Db) {
        if let Some(schema) = &self.schema {
            db.execute(
                format!(r#"DROP SCHEMA IF EXISTS "{schema}" CASCADE"#),
                vec![],
            )
            .await
            .unwrap();
        }
    }
}

/// Run `test` on a fresh database of `backend`, with a fresh registry; `backend_test!` calls it.
pub async fn run_on<F, Fut>(backend: Backend, name: &str, test: F)
where
    F: FnOnce(Db, &'static str) -> Fut,
    Fut: Future<Output = ()>,
{
    let target = target(backend, name);
    let db = target.open().await;
    test(db.clone(), target.name).await;
    target.cleanup(db).await;
}

/// One test per backend from one body: `backend_test!(name, |db, backend| async move { .. })`
/// makes `name::sqlite` (with the `sqlite` feature) and `name::postgres` (with the `postgres`
/// feature, ignored unless run with `--include-ignored`, as it needs `HERALD_TEST_POSTGRES_URL`),
/// each on a fresh database and registry; `backend` is `"sqlite"` or `"postgres"`.
#[macro_export]
macro_rules! backend_test {
    ($name:ident, $test:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[cfg(feature = "sqlite")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::common::run_on($crate::common::Backend::Sqlite, stringify!($name), $test)
                    .await;
            }

            #[cfg(feature = "postgres")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "needs HERALD_TEST_POSTGRES_URL"]
            async fn postgres() {
                $crate::common::run_on($crate::common::Backend::Postgres, stringify!($name), $test)
                    .await;
            }
        }
    };
}

/// The bound on every wait: generous, because the machine is small and shared.
pub const BOUND: std::time::Duration = std::time::Duration::from_secs(60);

/// `f`, or a panic naming `what` if it takes longer than [`BOUND`].
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {BOUND:?} waiting for {what}"))
}

/// Wait until `check` holds, checking every few milliseconds, within [`BOUND`].
pub async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within(what, async {
        while !check().await {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Run `worker` on its own task until the returned sender is used (or dropped); the handle gives
/// its report.
pub fn spawn_worker(
    worker: herald::tasks::Worker,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<herald::tasks::WorkerReport>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        worker
            .run(async {
                let _ = stopped.await;
            })
            .await
            .unwrap()
    });
    (stop, handle)
}

/// A future kept after its first poll ([`queued`]).
pub type Pending<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

/// Poll `future` once, so that its job is on the writer's queue, and keep it for later: with the
/// writer pinned by an open transaction, writes queue deterministically.
pub fn queued<T>(future: impl Future<Output = T> + Send + 'static) -> Pending<T> {
    let mut future: Pending<T> = Box::pin(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(
        future.as_mut().poll(&mut cx).is_pending(),
        "the writer is pinned by a transaction, so no write can have finished"
    );
    future
}

/// Save `book` and give it back, as a future that owns what it needs.
pub fn save(
    db: &Db,
    mut book: Book,
) -> impl Future<Output = herald::Result<Book>> + Send + 'static {
    let db = db.clone();
    async move {
        db.save(&mut book).await?;
        Ok(book)
    }
}
