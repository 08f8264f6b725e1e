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
    pub(crate) condition: Option<Condition>,
    pub(crate) changes: bool,
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
    /// When it is called, if not on every write (`post_save` receivers only): `on = "create"`,
    /// `on = "update"`, `when_changed = [..]`.
    pub fn condition(&self) -> Option<&Condition> {
        self.condition.as_ref()
    }

    /// Whether it asked for what an update changed (`changes`, or a `when_changed` condition): the
    /// store then reads the row as it was before each update of its model, inside the write's
    /// transaction.
    pub fn wants_changes(&self) -> bool {
        self.changes
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

/// Which writes a `post_save` receiver is called for (`on = "create"` / `on = "update"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WriteKind {
    /// Writes that inserted a row (`created` is true).
    Create,
    /// Writes that updated an existing row.
    Update,
}

impl WriteKind {
    /// `"create"` or `"update"`, as the attribute writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteKind::Create => "create",
            WriteKind::Update => "update",
        }
    }
}

/// When a `post_save` receiver is called, if not on every write. Checked by the dispatcher before
/// the call: a receiver whose condition does not hold is not called, not timed and not counted
/// (and a background receiver enqueues nothing).
///
/// - `on`: only for creates, or only for updates.
/// - `when_changed`: only for an update that changed at least one of these fields (column names,
///   as `update_fields` names them), comparing the row as it was just before the write (read in
///   the write's transaction) with the instance as written. A create is not a change: a
///   receiver that should also see creates is connected a second time with `on = "create"`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Condition {
    pub(crate) on: Option<WriteKind>,
    pub(crate) when_changed: Vec<&'static str>,
}

impl Condition {
    /// Only for creates or only for updates, if set.
    pub fn on(&self) -> Option<WriteKind> {
        self.on
    }

    /// The fields of which one must have changed; empty when any write will do.
    pub fn when_changed(&self) -> &[&'static str] {
        &self.when_changed
    }

    /// Whether a write with this outcome is one the receiver is called for. `changed` is the
    /// fields the write changed, or `None` when they were not read (a create, or no receiver of
    /// the write asked for them).
    #[inline]
    pub fn admits(&self, created: bool, changed: Option<&[&'static str]>) -> bool {
        match self.on {
            Some(WriteKind::Create) if !created => return false,
            Some(WriteKind::Update) if created => return false,
            _ => {}
        }
        if self.when_changed.is_empty() {
            return true;
        }
        !created
            && changed.is_some_and(|changed| {
                self.when_changed
                    .iter()
                    .any(|field| changed.contains(field))
            })
    }
}

impl fmt::Display for Condition {
    /// `on create`, `on update`, `when price_cents changed`, `when price_cents or title changed`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(on) = self.on {
            parts.push(format!("on {}", on.as_str()));
        }
        if !self.when_changed.is_empty() {
            parts.push(format!("when {} changed", self.when_changed.join(" or ")));
        }
        f.pad(&parts.join(", "))
    }
}
