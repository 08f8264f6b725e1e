//! What a receiver is: its name, where it was written, what it listens to. Computed once, at
//! registration; never per call.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where and when a receiver runs relative to the write that sent its signal: part of its
/// declaration. The default, for every model signal, is [`Phase::Caller`].
///
/// | phase | runs on | when | holds a connection | an error |
/// | --- | --- | --- | --- | --- |
/// | `Caller` | the task that called the write | `pre_*`: before the write's job is sent; `post_*`: after its answer came back | no | `pre_*`: vetoes the write; `post_*`: reported, the write is kept (inside a `Tx`, the caller decides) |
/// | `InTransaction` | the write's connection | inside the write's transaction | yes (`e.conn()`) | rolls the write back |
/// | `OnCommit` | the task that called the write | after the outermost COMMIT | no | logged and counted, never unwinds the write |
/// | `Background` | a worker | after the commit, from a task row written in the write's transaction | no | retried, then kept as dead |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Phase {
    /// On the caller's task, outside the transaction: a slow receiver delays only its own write.
    /// `pre_save` receivers may change the instance; an error from a `pre_*` receiver vetoes the
    /// write. Async receivers are awaited in the caller's async context.
    Caller,
    /// On the write's connection, inside its transaction: what the receiver writes through
    /// `e.conn()` commits or rolls back with the write, and an error rolls the write back. The only
    /// receivers that hold a connection: a slow one delays every write waiting for it.
    InTransaction,
    /// On the caller's task, after the outermost transaction commits; never for a rollback. A
    /// failure is logged and counted, never unwinds the write.
    OnCommit,
    /// In a worker, after commit, from a durable task row written in the write's transaction.
    Background,
}

impl Phase {
    /// The phase's name as logs, metrics and listings show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Caller => "caller",
            Phase::InTransaction => "in_transaction",
            Phase::OnCommit => "on_commit",
            Phase::Background => "background",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Where a receiver was written (for `#[receiver]`) or connected (for `connect`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourceLocation {
    /// Source file, as `file!()` gives it.
    pub file: &'static str,
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1.
    pub column: u32,
}

impl SourceLocation {
    /// The caller's location, through `#[track_caller]`.
    #[track_caller]
    pub fn caller() -> Self {
        let l = std::panic::Location::caller();
        Self {
            file: l.file(),
            line: l.line(),
            column: l.column(),
        }
    }
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A receiver's identity, unique in the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReceiverId(u64);

impl ReceiverId {
    pub(crate) fn fresh() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// The id as a number (stable for the life of the process).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ReceiverId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Everything known about a receiver apart from its statistics.
#[derive(Clone, Debug)]
pub struct ReceiverInfo {
    pub(crate) id: ReceiverId,
    pub(crate) name: Cow<'static, str>,
    pub(crate) location: SourceLocation,
    pub(crate) signal: &'static str,
    pub(crate) sender: &'static str,
    pub(crate) priority: i32,
    pub(crate) phase: Phase,
    pub(crate) dispatch_uid: Option<Cow<'static, str>>,
    pub(crate) is_async: bool,
    pub(crate) blocking: bool,
}

impl ReceiverInfo {
    /// The receiver's id.
    pub fn id(&self) -> ReceiverId {
        self.id
    }
    /// Its name: the function's path for `#[receiver]` and fn items, or the name given at connect.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Where it was written or connected.
    pub fn location(&self) -> SourceLocation {
        self.location
    }
    /// The signal it listens to (`"pre_save"`, `"post_save"`, ..., or a custom signal's name).
    pub fn signal(&self) -> &'static str {
        self.signal
    }
    /// The sender it listens for: a model name, `"*"` for every sender, `"-"` for a custom signal.
    pub fn sender(&self) -> &'static str {
        self.sender
    }
    /// Its priority: higher runs first.
    pub fn priority(&self) -> i32 {
        self.priority
    }
    /// When it runs relative to the write.
    pub fn phase(&self) -> Phase {
        self.phase
    }
    /// The `dispatch_uid` it was connected with, if any.
    pub fn dispatch_uid(&self) -> Option<&str> {
        self.dispatch_uid.as_deref()
    }
    /// Whether it is an async receiver.
    pub fn is_async(&self) -> bool {
        self.is_async
    }
    /// Whether it was declared `blocking`: a synchronous receiver that blocks its thread (file or
    /// network IO, heavy work), which a caller-side send runs off the async runtime's workers.
    pub fn is_blocking(&self) -> bool {
        self.blocking
    }
    /// The name in the form Server-Timing and metric labels use: the last path segment, with
    /// characters outside `[A-Za-z0-9_]` replaced by `_`.
    pub fn short_name(&self) -> String {
        let last = self
            .name
            .rsplit("::")
            .find(|s| !s.starts_with('{'))
            .unwrap_or(&self.name);
        last.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}
