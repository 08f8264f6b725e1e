//! The store's errors: each names what failed, and for a write, the model and its key.

use std::fmt;

use herald_dispatch::DispatchError;

/// What kind of database failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DbErrorKind {
    /// A UNIQUE or PRIMARY KEY constraint.
    Unique,
    /// A NOT NULL constraint.
    NotNull,
    /// A FOREIGN KEY constraint.
    ForeignKey,
    /// A CHECK constraint.
    Check,
    /// The table (or column) does not exist.
    MissingTable,
    /// The connection is gone (server restarted, network down, file removed).
    ConnectionLost,
    /// The database stayed locked for longer than the busy timeout.
    Busy,
    /// Anything else.
    Other,
}

/// A failure reported by the database driver, classified, with the driver's own error kept: its
/// code (PostgreSQL's SQLSTATE, SQLite's extended result code) and, through
/// [`source`](std::error::Error::source), the driver's error value, as sqlx's `DatabaseError`
/// keeps them.
#[derive(Debug)]
pub struct DbError {
    pub(crate) kind: DbErrorKind,
    pub(crate) message: String,
    /// Boxed, so that a `Result` carrying a store error stays small.
    driver: Option<Box<Driver>>,
}

/// What the driver said of a failure, as it said it.
#[derive(Debug, Default)]
struct Driver {
    code: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl DbError {
    /// A classified failure.
    pub fn new(kind: DbErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            driver: None,
        }
    }

    /// The same, with the driver's code (`"23505"`, `"2067"`).
    pub(crate) fn with_code(mut self, code: impl Into<String>) -> Self {
        self.driver.get_or_insert_default().code = Some(code.into());
        self
    }

    /// The same, keeping the driver's error as its source.
    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.driver.get_or_insert_default().source = Some(Box::new(source));
        self
    }

    /// Its kind.
    pub fn kind(&self) -> DbErrorKind {
        self.kind
    }

    /// The driver's message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The driver's code for it, when it has one: PostgreSQL's SQLSTATE (`"23505"` for a unique
    /// violation), SQLite's extended result code as a number (`"2067"`).
    pub fn code(&self) -> Option<&str> {
        self.driver.as_ref()?.code.as_deref()
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.driver
            .as_ref()?
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// What a store operation was doing when it failed, for the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The model (`"Book"`), or a description of the statement.
    pub model: &'static str,
    /// The primary key, when there is one.
    pub key: Option<String>,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{} (pk {key})", self.model),
            None => write!(f, "{} (unsaved)", self.model),
        }
    }
}

/// A store failure. Every variant names what failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database URL could not be used.
    #[error("bad database URL `{url}`: {reason}")]
    Url {
        /// The URL as given (a password in it is masked).
        url: String,
        /// Why.
        reason: String,
    },
    /// A SQLite file that does not exist, opened with
    /// [`create_if_missing(false)`](crate::DbBuilder::create_if_missing): nothing was created.
    #[error("no database at {}: the file does not exist, and it was not created", path.display())]
    NoDatabase {
        /// The file's path, as the URL gave it.
        path: std::path::PathBuf,
    },
    /// The database could not be opened or reached.
    #[error("cannot connect to `{url}`: {source}")]
    Connect {
        /// The URL (password masked).
        url: String,
        /// The driver's error.
        source: DbError,
    },
    /// A receiver failed before the write was kept: a `pre_*` veto (nothing was written), an
    /// `in_transaction` failure (the write was rolled back), or a caller-side `post_*` failure of
    /// a write made on the connection inside a transaction. The error names the receiver, the
    /// model and the key.
    #[error("{0}")]
    Receiver(#[from] DispatchError),
    /// A caller-side `post_save` or `post_delete` receiver failed after its write succeeded. The
    /// write stands: `committed` (an autocommit write: it is kept; do not retry it), or in the
    /// open transaction (the caller decides whether to roll back).
    #[error("{error}; the write itself succeeded and {}", kept(*committed))]
    AfterWrite {
        /// The receiver's failure, naming the receiver, the model and the key.
        error: DispatchError,
        /// True when the write was already committed.
        committed: bool,
    },
    /// A constraint refused the write; nothing of it was kept.
    #[error("{op} {target} violates a {kind} constraint: {source}", kind = constraint_name(source.kind))]
    Constraint {
        /// What was being done (`"saving"`, `"deleting"`, ...).
        op: &'static str,
        /// The model and key.
        target: Target,
        /// The driver's error.
        source: DbError,
    },
    /// Any other database failure while working on a model.
    #[error("{op} {target} failed: {source}")]
    Database {
        /// What was being done.
        op: &'static str,
        /// The model and key.
        target: Target,
        /// The driver's error.
        source: DbError,
    },
    /// A query over a model's table (not one row) failed.
    #[error("{op} {model} failed: {source}")]
    Query {
        /// What was being done (`"listing"`).
        op: &'static str,
        /// The model.
        model: &'static str,
        /// The driver's error.
        source: DbError,
    },
    /// A statement not tied to one model failed (a transaction command, DDL, a raw query).
    #[error("{what} failed: {source}")]
    Statement {
        /// What was running.
        what: String,
        /// The driver's error.
        source: DbError,
    },
    /// No row has this key (`get`, or `save_fields` of a row that is gone).
    #[error("{target} does not exist")]
    NotFound {
        /// The model and key.
        target: Target,
    },
    /// `save_fields` named a field the model does not have; nothing ran.
    #[error("{model} has no field `{field}` (update_fields); its fields are: {known}")]
    UnknownField {
        /// The model.
        model: &'static str,
        /// The unknown name.
        field: String,
        /// The model's fields, comma-separated.
        known: String,
    },
    /// A row could not be turned into the model.
    #[error("cannot read {target} from the database: column `{column}`: {reason}")]
    Decode {
        /// The model and key.
        target: Target,
        /// The column.
        column: &'static str,
        /// Why.
        reason: String,
    },
    /// Writes nested inside receivers went deeper than the limit: a receiver writes the instance
    /// it was called for, again and again.
    #[error(
        "writing {target} nested {depth} writes deep (the limit): a receiver probably writes the instance it was called for, again and again"
    )]
    Recursion {
        /// The model and key.
        target: Target,
        /// The limit that was reached.
        depth: usize,
    },
    /// Fixture data could not be loaded.
    #[error("fixture {what}: {reason}")]
    Fixture {
        /// Which fixture entry.
        what: String,
        /// Why.
        reason: String,
    },
    /// The task queue refused an operation (`TaskQueue` and [`crate::tasks`]): a state that is not
    /// one, or an operation that does not apply to it (purging pending work, which is cancelled
    /// instead). Nothing was changed.
    #[error("task queue {op}: {reason}")]
    TaskQueue {
        /// The operation (`"purge"`, `"list"`, `"cancel"`, ...).
        op: &'static str,
        /// What was wrong, naming the value (cut short when long).
        reason: String,
    },
    /// A call that would wait on itself, such as `db.save(..)` from a receiver running on the
    /// connection the save needs; the message says what to use instead.
    #[error("{0}")]
    WouldDeadlock(&'static str),
    /// A transaction (or savepoint) was committed after a statement in it had failed: nothing of
    /// it was kept (it was rolled back, its `on_rollback` hooks ran, no `on_commit` receiver or
    /// task). On PostgreSQL a failed statement aborts the transaction; on SQLite Herald makes it
    /// behave the same. Roll back a savepoint around work that may fail to keep the rest.
    #[error(
        "the {} was rolled back instead of committed: a statement in it had failed ({cause})",
        if *savepoint { "savepoint" } else { "transaction" }
    )]
    TransactionFailed {
        /// True for a savepoint (the enclosing transaction goes on).
        savepoint: bool,
        /// The first failure.
        cause: String,
    },
    /// The connection was lost while the database ran COMMIT: the write may have been kept or
    /// not. Check before retrying it, since a retry may duplicate it.
    #[error(
        "the connection was lost during COMMIT, so whether the write was kept is unknown: check before retrying it ({source})"
    )]
    CommitUnknown {
        /// The driver's error.
        source: DbError,
    },
    /// Transaction control (`BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`, `RELEASE`) sent as a
    /// statement: the store would not know of it.
    #[error(
        "`{statement}` through execute()/query()/batch() is refused: use `db.begin()`, `tx.commit()`, `tx.rollback()` and `tx.begin()` (a savepoint), so that on_commit receivers and hooks follow the transaction"
    )]
    TransactionControl {
        /// The statement's keyword.
        statement: String,
    },
    /// A value the database cannot store, refused before any statement of the write.
    #[error("{op} {target}: field `{field}` {reason}")]
    Invalid {
        /// What was being done.
        op: &'static str,
        /// The model and key.
        target: Target,
        /// The field.
        field: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// A query that cannot run as built (keyset pagination in an order it does not support, an
    /// `update_where` that sets the key); nothing was sent to the database.
    #[error("query on {model}: {reason}")]
    InvalidQuery {
        /// The model.
        model: &'static str,
        /// What is wrong, naming the column or the call.
        reason: String,
    },
    /// The store's connection threads are gone (the `Db` was closed).
    #[error("the database connection is closed")]
    Closed,
    /// A store job panicked outside any receiver (receivers' panics are [`Error::Receiver`]); its
    /// transaction was rolled back.
    #[error("a store operation panicked; its transaction was rolled back (see the log)")]
    Panicked,
    /// `event.conn()` from a receiver that does not run inside the write's transaction.
    #[error(
        "`e.conn()` is lent only to receivers declared `in_transaction` (they run on the write's connection, inside its transaction); declare this receiver with `#[receiver(.., in_transaction)]` or connect it with `.in_transaction()`"
    )]
    NoConnection,
}

fn kept(committed: bool) -> &'static str {
    if committed {
        "was committed: it is kept (do not retry it)"
    } else {
        "stands in the open transaction (roll the transaction back to undo it)"
    }
}

fn constraint_name(kind: DbErrorKind) -> &'static str {
    match kind {
        DbErrorKind::Unique => "unique",
        DbErrorKind::NotNull => "not-null",
        DbErrorKind::ForeignKey => "foreign-key",
        DbErrorKind::Check => "check",
        _ => "database",
    }
}

impl Error {
    /// What a write that succeeded inside a group commit reports when the shared COMMIT then
    /// failed (see `store::pool`): the same kind of failure, saying that nothing was kept.
    pub(crate) fn for_grouped_write(&self) -> Error {
        match self {
            Error::Panicked => Error::Panicked,
            Error::CommitUnknown { source } => Error::CommitUnknown {
                source: DbError::new(source.kind(), source.message()),
            },
            other => Error::Statement {
                what: "COMMIT (shared with the writes queued beside this one; nothing was kept)"
                    .to_owned(),
                source: DbError::new(
                    other.as_db().map_or(DbErrorKind::Other, DbError::kind),
                    other.to_string(),
                ),
            },
        }
    }

    /// The receiver failure inside, if this is one.
    pub fn as_receiver(&self) -> Option<&DispatchError> {
        match self {
            Error::Receiver(e) | Error::AfterWrite { error: e, .. } => Some(e),
            _ => None,
        }
    }

    /// The database failure inside, if this is one.
    pub fn as_db(&self) -> Option<&DbError> {
        match self {
            Error::Constraint { source, .. }
            | Error::Database { source, .. }
            | Error::Statement { source, .. }
            | Error::Query { source, .. }
            | Error::CommitUnknown { source }
            | Error::Connect { source, .. } => Some(source),
            _ => None,
        }
    }

    /// A failure of a write to `target`, classified: constraint violations get their own variant.
    pub(crate) fn write(op: &'static str, target: Target, source: DbError) -> Self {
        match source.kind {
            DbErrorKind::Unique
            | DbErrorKind::NotNull
            | DbErrorKind::ForeignKey
            | DbErrorKind::Check => Error::Constraint { op, target, source },
            _ => Error::Database { op, target, source },
        }
    }
}

/// The store's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
