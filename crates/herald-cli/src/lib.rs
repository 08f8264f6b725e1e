//! A manage-style command line a Herald application embeds in its `main`, like Django's
//! `manage.py`:
//!
//! ```no_run
//! use herald_cli::App;
//!
//! fn main() -> std::process::ExitCode {
//!     App::new("shop")
//!         .database("sqlite://shop.db")
//!         // .model::<Book>() for each model; .serve(|db, listener| ..) with the app's router
//!         .dashboard_path("/_herald")
//!         .metrics_path("/metrics")
//!         .run()
//! }
//! ```
//!
//! The application says what only it knows — its signals, its models' tables, how to serve its
//! HTTP routes on a listener Herald binds, how to configure its worker — and [`App::run`] does
//! the rest:
//!
//! ```text
//! app serve [--port N] [--database URL] [--no-worker]   migrate, bind 127.0.0.1, print the URL,
//!                                                        serve, and run an embedded worker
//! app worker [--database URL] [--name NAME]              a worker process only (for other machines)
//! app migrate [--database URL]                           create the models' tables
//! app receivers [--from URL]                             every receiver: signal, sender, phase,
//!                                                        priority, source location; with --from,
//!                                                        the running application's statistics
//! app tasks [counts|dead|retry ID|retry-dead|cancel ID|cancel --kind KIND|purge STATE]
//!           [--database URL]                             the task queue: pending work is cancelled,
//!                                                        finished tasks (completed, dead,
//!                                                        cancelled) are purged
//! app loaddata FILE [--database URL]                     fixtures, saved with raw = true
//! ```
//!
//! With no subcommand it serves (and takes `serve`'s options). Every command takes `--schema NAME`
//! (default: the `HERALD_SCHEMA` environment variable): on PostgreSQL it works in that schema
//! (created if missing) instead of `public`, so that several applications, or tests, share one
//! database; with a SQLite URL it is an error. `serve` and `migrate` create a SQLite file that
//! does not exist; `worker`, `tasks` and `loaddata` work on an existing database and refuse a
//! missing file (`error: no database at PATH ...`), creating nothing, so that a mistyped
//! `--database` leaves no empty database behind. Inputs (a fixture file, a task state) are
//! checked before any database is opened. Every failure is one line on stderr (`error: ...`) and
//! exit code 1; a command line clap cannot parse is clap's message and exit code 2.
//!
//! Herald does not depend on a web framework: `serve` hands the application a bound
//! [`tokio::net::TcpListener`] and the connected [`Db`], and the application serves its router
//! on it (for axum, `axum::serve(listener, router)`).

#![warn(missing_docs)]

use std::future::Future;
use std::io::Write as _;
use std::process::ExitCode;

mod args;
mod commands;

use args::{Command, ServeArgs, TaskAction, parse};
use commands::{cmd_tasks, mount_path, running_receivers};

use futures::future::BoxFuture;
use herald::dispatch::Signals;

use herald::tasks::Worker;
use herald::{Db, Model, Store};

/// The error type of the application's hooks: anything that displays as one line.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

type MigrateFn = Box<dyn Fn(Db) -> BoxFuture<'static, herald::Result<()>> + Send + Sync>;
type FixtureFn = Box<dyn Fn(Db, String) -> BoxFuture<'static, herald::Result<usize>> + Send + Sync>;
type ServeFn = Box<
    dyn Fn(Db, tokio::net::TcpListener) -> BoxFuture<'static, Result<(), BoxError>> + Send + Sync,
>;
type WorkerFn = Box<dyn Fn(Worker) -> Worker + Send + Sync>;
type CheckFn = Box<dyn Fn() -> Result<(), BoxError> + Send + Sync>;

struct ModelEntry {
    name: &'static str,
    migrate: MigrateFn,
    fixture: FixtureFn,
}

/// An application's command line. Build it once in `main` and call [`App::run`].
#[must_use]
pub struct App {
    name: String,
    database: String,
    signals: Box<dyn Fn() -> Signals + Send + Sync>,
    models: Vec<ModelEntry>,
    serve: Option<ServeFn>,
    checks: Vec<CheckFn>,
    worker: WorkerFn,
    paths: Paths,
}

/// Where the application serves Herald's pages, as it told [`App::dashboard_path`] and
/// [`App::metrics_path`].
#[derive(Debug, Default)]
struct Paths {
    dashboard: Option<String>,
    metrics: Option<String>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("name", &self.name)
            .field("database", &self.database)
            .field(
                "models",
                &self.models.iter().map(|m| m.name).collect::<Vec<_>>(),
            )
            .field("serve", &self.serve.is_some())
            .field("checks", &self.checks.len())
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl App {
    /// An application called `name` (shown in help and in the URL line). Defaults: database
    /// `sqlite://{name}.db`, signals `Signals::builder().autodiscover().build()`, no models, no
    /// `serve` (the command then fails saying so), a worker with every autodiscovered task kind.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            database: format!("sqlite://{name}.db"),
            name,
            signals: Box::new(|| Signals::builder().autodiscover().build()),
            models: Vec::new(),
            serve: None,
            checks: Vec::new(),
            worker: Box::new(|worker| worker),
            paths: Paths::default(),
        }
    }

    /// Where the application mounts the dashboard (`herald_axum::dashboard`), e.g. `"/_herald"`.
    /// `serve` prints its URL beside the application's, and `receivers --from URL` given the
    /// application's URL (no path) reads the dashboard there. Default: none (nothing printed, and
    /// `--from` must be the dashboard's own URL).
    pub fn dashboard_path(mut self, path: impl Into<String>) -> Self {
        self.paths.dashboard = Some(mount_path(path.into()));
        self
    }

    /// Where the application serves the Prometheus metrics (`herald_axum::metrics_router`),
    /// e.g. `"/metrics"`; `serve` prints its URL. Default: none (nothing printed).
    pub fn metrics_path(mut self, path: impl Into<String>) -> Self {
        self.paths.metrics = Some(mount_path(path.into()));
        self
    }

    /// The database URL used when `--database` is not given.
    pub fn database(mut self, url: impl Into<String>) -> Self {
        self.database = url.into();
        self
    }

    /// How to build the application's signals (called once per command).
    pub fn signals(mut self, build: impl Fn() -> Signals + Send + Sync + 'static) -> Self {
        self.signals = Box::new(build);
        self
    }

    /// A model whose table `migrate` (and `serve`) creates and whose rows `loaddata` accepts.
    /// Tables are created, and fixture rows loaded, in the order models are added: add a model
    /// before the models that refer to it.
    pub fn model<M: Model>(mut self) -> Self {
        self.models.push(ModelEntry {
            name: M::NAME,
            migrate: Box::new(|db| Box::pin(async move { db.create_table::<M>().await })),
            fixture: Box::new(|db, json| {
                Box::pin(async move { db.load_fixture::<M>(&json).await })
            }),
        });
        self
    }

    /// How to serve the application on a listener Herald has bound (after migrating). The future
    /// runs until the server stops; Herald drops it on Ctrl-C.
    pub fn serve<F, Fut>(mut self, serve: F) -> Self
    where
        F: Fn(Db, tokio::net::TcpListener) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.serve = Some(Box::new(move |db, listener| Box::pin(serve(db, listener))));
        self
    }

    /// A check of the application's own configuration (an environment variable, a file) that
    /// `serve` runs first, before it opens the database, binds or prints anything: an `Err` is the
    /// command's error, one `error: ...` line and exit code 1, instead of a server that starts and
    /// then fails. For settings only serving uses, such as a dashboard token; other commands do
    /// not run it. Checks run in the order they were added. Default: none.
    pub fn check_before_serve(
        mut self,
        check: impl Fn() -> Result<(), BoxError> + Send + Sync + 'static,
    ) -> Self {
        self.checks.push(Box::new(check));
        self
    }

    /// Configure the worker `serve` embeds and `worker` runs (given one with every
    /// autodiscovered task kind).
    pub fn worker(mut self, configure: impl Fn(Worker) -> Worker + Send + Sync + 'static) -> Self {
        self.worker = Box::new(configure);
        self
    }

    /// Parse the process's arguments, run the command on a new tokio runtime, and return the
    /// exit code; an error is printed as one line on stderr.
    pub fn run(self) -> ExitCode {
        self.run_from(std::env::args_os())
    }

    /// [`App::run`] with the given arguments (the first is the program name).
    pub fn run_from<I, T>(self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let cli = match parse(args) {
            Ok(cli) => cli,
            // A value that a command refuses (a state that purge does not take): one line, as
            // every other error, not clap's usage block.
            Err(e) if e.kind() == clap::error::ErrorKind::ValueValidation => {
                let text = e.render().to_string();
                let line = text.lines().next().unwrap_or_default();
                return fail(line.trim_start_matches("error: "));
            }
            Err(e) => e.exit(),
        };
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => return fail(&format!("starting the runtime: {e}")),
        };
        let schema = Schema::chosen(cli.schema);
        let command = cli.command.unwrap_or(Command::Serve(cli.serve));
        let result = runtime.block_on(self.dispatch(command, schema.as_ref()));
        // Connections still open when the server stopped get a moment, not forever.
        runtime.shutdown_timeout(std::time::Duration::from_secs(2));
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e.to_string()),
        }
    }

    /// Open `database` (or the application's default), in `schema` if one was chosen; a missing
    /// SQLite file is created or refused, as `missing` says.
    async fn connect(
        &self,
        database: Option<String>,
        schema: Option<&Schema>,
        missing: Missing,
    ) -> Result<Db, BoxError> {
        let url = database.unwrap_or_else(|| self.database.clone());
        let mut open = Db::open(url.clone())
            .signals((self.signals)())
            .create_if_missing(missing == Missing::Create);
        if let Some(schema) = schema {
            if url.starts_with("sqlite:") {
                return Err(format!(
                    "{} `{}` is for PostgreSQL, but {url} is a SQLite database (SQLite has no schemas)",
                    schema.from, schema.name
                )
                .into());
            }
            open = open.schema(schema.name.clone());
        }
        open.connect().await.map_err(|e| match e {
            herald::Error::NoDatabase { path } => format!(
                "no database at {}: `{} {}` does not create one (`{} migrate --database {url}` does)",
                path.display(),
                self.name,
                missing.command(),
                self.name,
            )
            .into(),
            // These already name the URL, its password masked.
            e @ (herald::Error::Url { .. } | herald::Error::Connect { .. }) => e.to_string().into(),
            other => format!("opening {}: {other}", herald::masked_url(&url)).into(),
        })
    }

    async fn migrate(&self, db: &Db) -> Result<(), BoxError> {
        for model in &self.models {
            (model.migrate)(db.clone())
                .await
                .map_err(|e| format!("creating the table of {}: {e}", model.name))?;
        }
        Ok(())
    }

    async fn dispatch(&self, command: Command, schema: Option<&Schema>) -> Result<(), BoxError> {
        match command {
            Command::Serve(args) => self.cmd_serve(args, schema).await,
            Command::Worker { database, name } => {
                let db = self
                    .connect(database, schema, Missing::Refuse("worker"))
                    .await?;
                let mut worker = (self.worker)(Worker::new(db.clone()).autodiscover());
                if let Some(name) = &name {
                    worker = worker.name(name.clone());
                }
                println!(
                    "{} worker{}: serving tasks {:?}",
                    self.name,
                    name.map(|n| format!(" {n}")).unwrap_or_default(),
                    worker.kinds()
                );
                std::io::stdout().flush()?;
                worker.run(ctrl_c()).await?;
                Ok(())
            }
            Command::Migrate { database } => {
                let db = self.connect(database, schema, Missing::Create).await?;
                self.migrate(&db).await?;
                println!("migrated {} models", self.models.len());
                Ok(())
            }
            Command::Receivers { from: None } => {
                self.cmd_receivers();
                Ok(())
            }
            Command::Receivers { from: Some(url) } => {
                let url = self.dashboard_url(&url);
                tokio::task::spawn_blocking(move || running_receivers(&url))
                    .await
                    .map_err(|e| format!("reading the running receivers: {e}"))?
            }
            Command::Tasks { action, database } => {
                let db = self
                    .connect(database, schema, Missing::Refuse("tasks"))
                    .await?;
                cmd_tasks(&db, action.unwrap_or(TaskAction::Counts)).await
            }
            Command::Loaddata { file, database } => {
                let json = std::fs::read_to_string(&file)
                    .map_err(|e| format!("reading {}: {e}", file.display()))?;
                let groups = self.fixture_groups(&json)?;
                let db = self
                    .connect(database, schema, Missing::Refuse("loaddata"))
                    .await?;
                self.loaddata(&db, groups).await
            }
        }
    }

    /// `receivers --from URL`: the dashboard's URL. An application's URL with no path (`http://host:port`
    /// or `http://host:port/`) goes to the dashboard's path when the application gave one
    /// ([`App::dashboard_path`]); any other URL is taken as the dashboard's own.
    fn dashboard_url(&self, url: &str) -> String {
        let url = url.trim_end_matches('/');
        let after_scheme = url.find("://").map_or(0, |i| i + 3);
        match &self.paths.dashboard {
            Some(path) if !url[after_scheme..].contains('/') => format!("{url}{path}"),
            _ => url.to_owned(),
        }
    }

    async fn cmd_serve(&self, args: ServeArgs, schema: Option<&Schema>) -> Result<(), BoxError> {
        let serve = self
            .serve
            .as_ref()
            .ok_or_else(|| format!("{} has no `serve` (App::serve was not called)", self.name))?;
        for check in &self.checks {
            check()?;
        }
        let db = self.connect(args.database, schema, Missing::Create).await?;
        self.migrate(&db).await?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
            .await
            .map_err(|e| format!("binding 127.0.0.1:{}: {e}", args.port))?;
        let addr = listener.local_addr()?;
        let pages: Vec<String> = [
            ("dashboard", &self.paths.dashboard),
            ("metrics", &self.paths.metrics),
        ]
        .into_iter()
        .filter_map(|(what, path)| Some(format!("{what} http://{addr}{}", path.as_ref()?)))
        .collect();
        println!(
            "{} serving http://{addr}/{} on {}{}{}",
            self.name,
            if pages.is_empty() {
                String::new()
            } else {
                format!(" ({})", pages.join(", "))
            },
            db.url(),
            schema
                .map(|s| format!(" (schema {})", s.name))
                .unwrap_or_default(),
            if args.no_worker { ", no worker" } else { "" }
        );
        std::io::stdout().flush()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = (!args.no_worker).then(|| {
            let worker = (self.worker)(Worker::new(db.clone()).autodiscover());
            tokio::spawn(worker.run(async {
                let _ = stopped.await;
            }))
        });
        let served = tokio::select! {
            served = serve(db.clone(), listener) => served,
            () = ctrl_c() => Ok(()),
        };
        let _ = stop.send(());
        if let Some(worker) = worker {
            worker.await.map_err(|e| format!("worker: {e}"))??;
        }
        served
    }

    /// One line per receiver, ordered by signal, sender, phase and priority (higher first).
    fn cmd_receivers(&self) {
        let signals = (self.signals)();
        let mut receivers = signals.receivers();
        receivers.sort_by_key(|r| {
            let info = r.info();
            (
                info.signal(),
                info.sender(),
                info.phase().to_string(),
                -i64::from(info.priority()),
            )
        });
        let width = receivers
            .iter()
            .map(|r| r.info().name().len())
            .max()
            .unwrap_or(0)
            .max("receiver".len());
        println!(
            "{:<width$}  {:<12} {:<8} {:<15} {:>8}  location  (condition)",
            "receiver", "signal", "sender", "phase", "priority"
        );
        for receiver in &receivers {
            let info = receiver.info();
            // Where it runs, and how: `caller` (its own caller only), `caller,blocking`
            // (through block_in_place), `in_transaction` (holds the connection), ...
            let phase = if info.is_blocking() {
                format!("{},blocking", info.phase())
            } else {
                info.phase().to_string()
            };
            println!(
                "{:<width$}  {:<12} {:<8} {:<15} {:>8}  {}{}",
                info.name(),
                info.signal(),
                info.sender(),
                phase,
                info.priority(),
                info.location(),
                condition_text(info.condition().map(ToString::to_string).as_deref()),
            );
        }
        println!(
            "({} receivers; calls, errors and latencies are kept per process: \
             `receivers --from URL-OF-ITS-DASHBOARD` reads them from the running application)",
            receivers.len()
        );
    }

    /// A fixture file's rows, grouped by model (`"model": "Book"` or Django's `"shop.book"`), in
    /// the order the models were added; the whole file is refused, before any database is opened,
    /// if it is not a JSON list or a row is for an unknown model.
    fn fixture_groups(&self, json: &str) -> Result<Vec<(&ModelEntry, String)>, BoxError> {
        let rows: Vec<serde_json::Value> =
            serde_json::from_str(json).map_err(|e| format!("not a JSON list of rows: {e}"))?;
        let is = |row: &serde_json::Value, model: &ModelEntry| {
            let name = row.get("model").and_then(|m| m.as_str()).unwrap_or("");
            name.eq_ignore_ascii_case(model.name)
                || name.ends_with(&format!(".{}", model.name.to_lowercase()))
        };
        if let Some((i, row)) = rows
            .iter()
            .enumerate()
            .find(|(_, row)| !self.models.iter().any(|m| is(row, m)))
        {
            let name = row.get("model").and_then(|m| m.as_str()).unwrap_or("?");
            return Err(format!("row {}: `{name}` is not a model of {}", i + 1, self.name).into());
        }
        let mut groups = Vec::new();
        for model in &self.models {
            let mine: Vec<&serde_json::Value> = rows.iter().filter(|row| is(row, model)).collect();
            if !mine.is_empty() {
                groups.push((model, serde_json::to_string(&mine)?));
            }
        }
        Ok(groups)
    }

    /// Load each model's rows in one transaction, in the order the models were added. A missing
    /// table (a database that was never migrated) gets a hint to run `migrate`.
    async fn loaddata(&self, db: &Db, groups: Vec<(&ModelEntry, String)>) -> Result<(), BoxError> {
        for (model, rows) in groups {
            let n = (model.fixture)(db.clone(), rows).await.map_err(|e| {
                let missing_table = e
                    .as_db()
                    .is_some_and(|source| source.kind() == herald::DbErrorKind::MissingTable);
                if missing_table {
                    format!(
                        "{e}; the database has no table (or column) for {}: if it was never \
                         migrated, run `{} migrate --database {}` first",
                        model.name,
                        self.name,
                        db.url()
                    )
                } else {
                    e.to_string()
                }
            })?;
            println!("loaded {n} {} rows", model.name);
        }
        Ok(())
    }
}

/// What a command does with a SQLite file that does not exist: `serve` and `migrate` create it;
/// the others (which read or manage what is there) refuse, naming the path, so that a mistyped
/// `--database` does not leave an empty database behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Missing {
    Create,
    /// Refused by this command.
    Refuse(&'static str),
}

impl Missing {
    fn command(self) -> &'static str {
        match self {
            Missing::Create => "migrate",
            Missing::Refuse(command) => command,
        }
    }
}

fn fail(message: &str) -> ExitCode {
    // One line, whatever the error's text holds.
    eprintln!("error: {}", message.replace('\n', " "));
    ExitCode::FAILURE
}

/// The environment variable `--schema` defaults to.
const SCHEMA_ENV: &str = "HERALD_SCHEMA";

/// The PostgreSQL schema every command works in, and what chose it (for error messages).
#[derive(Debug)]
struct Schema {
    name: String,
    from: &'static str,
}

impl Schema {
    /// `--schema` if given, else a non-empty `HERALD_SCHEMA`, else none (`public`).
    fn chosen(flag: Option<String>) -> Option<Schema> {
        if let Some(name) = flag {
            return Some(Schema {
                name,
                from: "--schema",
            });
        }
        std::env::var(SCHEMA_ENV)
            .ok()
            .filter(|name| !name.is_empty())
            .map(|name| Schema {
                name,
                from: SCHEMA_ENV,
            })
    }
}

async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        // No signal handling available: run until killed.
        std::future::pending::<()>().await;
    }
}

/// `"  (when price_cents changed)"` after a listing's line, or nothing for a receiver called on
/// every write.
pub(crate) fn condition_text(condition: Option<&str>) -> String {
    condition.map_or_else(String::new, |c| format!("  ({c})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receivers_from_an_applications_url_go_to_its_dashboard() {
        let app = App::new("shop").dashboard_path("_herald/");
        for url in ["http://127.0.0.1:8000", "http://127.0.0.1:8000/"] {
            assert_eq!(app.dashboard_url(url), "http://127.0.0.1:8000/_herald");
        }
        assert_eq!(
            app.dashboard_url("http://127.0.0.1:8000/ops/herald/"),
            "http://127.0.0.1:8000/ops/herald",
            "a URL with a path is the dashboard's own"
        );
        assert_eq!(
            App::new("shop").dashboard_url("http://127.0.0.1:8000/"),
            "http://127.0.0.1:8000",
            "without a dashboard path the URL is taken as it is"
        );
    }
}
