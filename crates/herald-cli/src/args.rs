//! The command line's grammar (clap): the commands, their options, and the one rule clap cannot
//! state (`serve`'s options before another command).

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Parse the command line. `serve`'s options before another subcommand are an error (clap's
/// `args_conflicts_with_subcommands` would say so too, but would also refuse the global
/// `--schema` there).
pub(crate) fn parse<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut cli = Cli::command();
    let matches = cli.try_get_matches_from_mut(args)?;
    if let Some((command, _)) = matches.subcommand()
        && let Some((_, option)) = SERVE_OPTIONS
            .into_iter()
            .find(|(id, _)| matches.value_source(id) == Some(ValueSource::CommandLine))
    {
        return Err(cli.error(
            clap::error::ErrorKind::ArgumentConflict,
            format!(
                "`{option}` before `{command}` is an option of `serve`; give `{command}`'s options after it"
            ),
        ));
    }
    Cli::from_arg_matches(&matches)
}

#[derive(Parser, Debug)]
#[command(about = "A Herald application's management commands")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    /// With no subcommand: `serve` with these options.
    #[command(flatten)]
    pub(crate) serve: ServeArgs,
    /// PostgreSQL: work in this schema (created if missing) instead of `public`. Default: the
    /// HERALD_SCHEMA environment variable. An error with a SQLite database.
    #[arg(long, global = true, value_name = "NAME")]
    pub(crate) schema: Option<String>,
}

/// `serve`'s options: their ids (distinct from the subcommands' own `database`, which clap
/// would otherwise merge with this one) and how they are written.
pub(crate) const SERVE_OPTIONS: [(&str, &str); 3] = [
    ("serve_port", "--port"),
    ("serve_database", "--database"),
    ("serve_no_worker", "--no-worker"),
];

#[derive(clap::Args, Debug)]
pub(crate) struct ServeArgs {
    /// The port to bind on 127.0.0.1 (0: a free one, printed).
    #[arg(long, id = "serve_port", default_value_t = 0)]
    pub(crate) port: u16,
    /// The database URL (`sqlite://FILE` or `postgres://...`).
    #[arg(long, id = "serve_database")]
    pub(crate) database: Option<String>,
    /// Do not embed a worker (run `worker` processes instead).
    #[arg(long, id = "serve_no_worker")]
    pub(crate) no_worker: bool,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Migrate, then serve HTTP on 127.0.0.1 with an embedded worker (the default command).
    Serve(ServeArgs),
    /// Run a worker only, until Ctrl-C.
    Worker {
        #[arg(long)]
        database: Option<String>,
        /// The name recorded on the tasks it claims (default: HOST:PID).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Create the models' tables.
    Migrate {
        #[arg(long)]
        database: Option<String>,
    },
    /// List every receiver with its signal, sender, phase, priority and source location; with
    /// `--from`, as the running application reports them, with their statistics.
    Receivers {
        /// The running application's dashboard (e.g. http://127.0.0.1:8000/_herald), or the
        /// application's URL when it told where its dashboard is: its receivers, with calls,
        /// errors and latencies.
        #[arg(long, value_name = "URL")]
        from: Option<String>,
    },
    /// Inspect and manage the task queue.
    Tasks {
        #[command(subcommand)]
        action: Option<TaskAction>,
        #[arg(long, global = true)]
        database: Option<String>,
    },
    /// Load a fixture file (Django's JSON format), each row saved with `raw = true`.
    Loaddata {
        file: std::path::PathBuf,
        #[arg(long)]
        database: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum TaskAction {
    /// Tasks per queue and state (the default).
    Counts,
    /// Dead tasks with their last error.
    Dead {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Run a dead task again.
    Retry { id: i64 },
    /// Run every dead task again.
    RetryDead,
    /// Cancel pending work: one task (available or running), or every pending task of a kind. A
    /// running task's attempt runs to its end, but its outcome is not kept and it is not retried.
    Cancel {
        /// The task's id.
        #[arg(required_unless_present = "kind", conflicts_with = "kind")]
        id: Option<i64>,
        /// Cancel every pending task of this kind instead.
        #[arg(long, value_name = "KIND")]
        kind: Option<String>,
    },
    /// Delete the finished tasks (completed, dead or cancelled) in a state; pending work is
    /// cancelled instead.
    Purge {
        /// A finished state: completed, dead or cancelled.
        #[arg(value_parser = herald::tasks::purgeable)]
        state: herald::tasks::TaskState,
    },
}
