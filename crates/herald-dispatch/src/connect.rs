//! Connecting: the receiver builder every signal hands out, and the guard a connect returns.

use std::borrow::Cow;
use std::fmt;

use crate::info::{Condition, ReceiverId, SourceLocation, WriteKind};

/// The options a receiver is connected with.
pub(crate) struct Options {
    pub(crate) name: Cow<'static, str>,
    pub(crate) location: SourceLocation,
    pub(crate) priority: i32,
    pub(crate) dispatch_uid: Option<Cow<'static, str>>,
    pub(crate) blocking: bool,
    pub(crate) on: Option<WriteKind>,
    pub(crate) when_changed: Vec<Cow<'static, str>>,
    pub(crate) changes: bool,
}

impl Options {
    /// The receiver's condition, checked against the signal it is connected to and the fields of
    /// its sender (`None`: a receiver for every sender). `Err` says what does not fit.
    pub(crate) fn condition(
        &self,
        signal: &'static str,
        sender: &'static str,
        fields: Option<&'static [&'static str]>,
    ) -> Result<Option<Condition>, String> {
        if self.on.is_none() && self.when_changed.is_empty() && !self.changes {
            return Ok(None);
        }
        if signal != "post_save" {
            return Err(format!(
                "`on`, `when_changed` and `changes` apply to post_save receivers only, not to {signal}"
            ));
        }
        let mut when_changed = Vec::with_capacity(self.when_changed.len());
        for name in &self.when_changed {
            let Some(fields) = fields else {
                return Err(format!(
                    "when_changed names `{name}`, but a receiver for every sender has no fields to name"
                ));
            };
            let Some(field) = fields.iter().find(|f| **f == name.as_ref()) else {
                return Err(format!(
                    "when_changed names `{name}`, which {sender} does not have (its fields: {})",
                    fields.join(", ")
                ));
            };
            when_changed.push(*field);
        }
        if self.on == Some(WriteKind::Create) && !when_changed.is_empty() {
            return Err(
                "`on_create` and `when_changed` exclude each other: a create is not a \
                 change, so the receiver would never be called"
                    .to_owned(),
            );
        }
        if self.on.is_none() && when_changed.is_empty() {
            return Ok(None);
        }
        Ok(Some(Condition {
            on: self.on,
            when_changed,
        }))
    }

    /// Whether the receiver reads what an update changed.
    pub(crate) fn wants_changes(&self) -> bool {
        self.changes || !self.when_changed.is_empty()
    }
}

/// Why a receiver could not be connected: a condition that does not fit its signal or sender (a
/// field name the model does not have, `when_changed` on another signal than `post_save`). A
/// programmer's mistake, found at startup: [`ReceiverBuilder::connect`] panics with it,
/// [`ReceiverBuilder::try_connect`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectError {
    receiver: String,
    signal: &'static str,
    sender: &'static str,
    reason: String,
}

impl ConnectError {
    pub(crate) fn new(
        receiver: &str,
        signal: &'static str,
        sender: &'static str,
        reason: String,
    ) -> Self {
        Self {
            receiver: receiver.to_owned(),
            signal,
            sender,
            reason,
        }
    }

    /// The receiver's name.
    pub fn receiver(&self) -> &str {
        &self.receiver
    }

    /// What does not fit.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "receiver `{}` cannot be connected to {} for {}: {}",
            self.receiver, self.signal, self.sender, self.reason
        )
    }
}

impl std::error::Error for ConnectError {}

/// What attaching a receiver to its registry does with its options.
pub(crate) type Attach<'s> = Box<dyn FnOnce(Options) -> Result<Connection, ConnectError> + 's>;

/// A receiver about to be connected, with its options. Made by a signal's `receiver(..)`; nothing is
/// connected until [`connect`](ReceiverBuilder::connect).
#[must_use = "nothing is connected until `.connect()`"]
pub struct ReceiverBuilder<'s> {
    options: Options,
    attach: Attach<'s>,
}

impl<'s> ReceiverBuilder<'s> {
    pub(crate) fn new(
        default_name: &'static str,
        location: SourceLocation,
        attach: Attach<'s>,
    ) -> Self {
        Self {
            options: Options {
                name: Cow::Borrowed(default_name),
                location,
                priority: 0,
                dispatch_uid: None,
                blocking: false,
                on: None,
                when_changed: Vec::new(),
                changes: false,
            },
            attach,
        }
    }

    /// The name logs, errors, metrics and the registry show. Default: the function's path
    /// (`std::any::type_name`), which for a closure ends in `{{closure}}`, so name closures.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.options.name = name.into();
        self
    }

    /// Higher runs first; receivers of equal priority run in registration order. Default: 0.
    pub fn priority(mut self, priority: i32) -> Self {
        self.options.priority = priority;
        self
    }

    /// Django's `dispatch_uid`: a second receiver connected to the same signal and sender with the
    /// same uid is not connected (the first is kept). Default: none, so identity decides: the same
    /// fn item or capture-less closure connected twice is kept once.
    pub fn dispatch_uid(mut self, uid: impl Into<Cow<'static, str>>) -> Self {
        self.options.dispatch_uid = Some(uid.into());
        self
    }

    /// Declare a synchronous receiver as one that blocks its thread (file or network IO, a lock
    /// held elsewhere, heavy computation). An async send (the store's caller-side phases) runs it
    /// through the registry's blocking runner, which the store sets to
    /// `tokio::task::block_in_place` on a multi-threaded runtime, so that it does not stall the other
    /// tasks of the runtime's few worker threads. Default: not blocking (a plain call). Async
    /// receivers ignore it: they await instead of blocking.
    pub fn blocking(mut self) -> Self {
        self.options.blocking = true;
        self
    }

    /// Where the receiver was written. Default: where `receiver(..)` was called.
    pub fn location(mut self, location: SourceLocation) -> Self {
        self.options.location = location;
        self
    }

    /// Call a `post_save` receiver only for writes that inserted a row (`created`). Default: every
    /// write. See [`Condition`].
    pub fn on_create(mut self) -> Self {
        self.options.on = Some(WriteKind::Create);
        self
    }

    /// Call a `post_save` receiver only for writes that updated an existing row. Default: every
    /// write. See [`Condition`].
    pub fn on_update(mut self) -> Self {
        self.options.on = Some(WriteKind::Update);
        self
    }

    /// Call a `post_save` receiver (or, for a background receiver, enqueue its task) only for an
    /// update that changed at least one of these fields (column names, as `update_fields` names
    /// them). Implies [`changes`](Self::changes). A name the model does not have is an error at
    /// connect. Default: every write. See [`Condition`].
    pub fn when_changed<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Cow<'static, str>>,
    {
        self.options
            .when_changed
            .extend(fields.into_iter().map(Into::into));
        self
    }

    /// Declare that a `post_save` receiver reads what an update changed
    /// ([`PostSave::previous`](crate::PostSave::previous),
    /// [`PostSave::changes`](crate::PostSave::changes)): while such a receiver is connected, the
    /// store reads the row as it was before each update of the model, inside the write's
    /// transaction. Default: not asked (no read, and `previous()` is `None` unless another
    /// receiver asked).
    pub fn changes(mut self) -> Self {
        self.options.changes = true;
        self
    }

    /// Connect it. The receiver stays connected until the returned guard is dropped or
    /// [`disconnect`](Connection::disconnect)ed, or for the registry's life after
    /// [`keep`](Connection::keep).
    ///
    /// # Panics
    /// When the receiver's condition does not fit its signal or sender (see
    /// [`try_connect`](Self::try_connect)): a mistake in the program, found at startup.
    #[track_caller]
    pub fn connect(self) -> Connection {
        match self.try_connect() {
            Ok(connection) => connection,
            Err(error) => panic!("{error}"),
        }
    }

    /// [`connect`](Self::connect), returning the mistake instead of panicking: a condition on
    /// another signal than `post_save`, or a `when_changed` field the model does not have.
    pub fn try_connect(self) -> Result<Connection, ConnectError> {
        (self.attach)(self.options)
    }
}

impl fmt::Debug for ReceiverBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceiverBuilder")
            .field("name", &self.options.name)
            .field("priority", &self.options.priority)
            .field("dispatch_uid", &self.options.dispatch_uid)
            .field("blocking", &self.options.blocking)
            .field("on", &self.options.on)
            .field("when_changed", &self.options.when_changed)
            .field("changes", &self.options.changes)
            .finish_non_exhaustive()
    }
}

type Detach = Box<dyn FnOnce() -> bool + Send + Sync>;

enum State {
    Connected(Detach),
    Duplicate,
    Released,
}

/// What a connect returns. Dropping it disconnects the receiver; so does
/// [`disconnect`](Self::disconnect), which also says whether it did. [`keep`](Self::keep) leaves the
/// receiver connected for as long as its registry lives.
///
/// A connect that was refused as a duplicate (same zero-sized receiver, or same `dispatch_uid`)
/// returns an inert guard: [`is_duplicate`](Self::is_duplicate) is true, and dropping it leaves the
/// receiver that was there first alone.
#[must_use = "dropping the guard disconnects the receiver; call `.keep()` to keep it"]
pub struct Connection {
    id: ReceiverId,
    state: State,
}

impl Connection {
    pub(crate) fn connected(id: ReceiverId, detach: Detach) -> Self {
        Self {
            id,
            state: State::Connected(detach),
        }
    }

    pub(crate) fn duplicate(existing: ReceiverId) -> Self {
        Self {
            id: existing,
            state: State::Duplicate,
        }
    }

    /// The connected receiver's id; for a duplicate, the id of the receiver kept in its place.
    pub fn id(&self) -> ReceiverId {
        self.id
    }

    /// True when the connect was refused because an equal receiver was already connected.
    pub fn is_duplicate(&self) -> bool {
        matches!(self.state, State::Duplicate)
    }

    /// Disconnect now. True if this removed the receiver; false if it was a duplicate, or was
    /// already removed (by [`Signals::disconnect`](crate::Signals::disconnect), by uid, or because
    /// the registry is gone).
    pub fn disconnect(mut self) -> bool {
        self.release()
    }

    /// Keep the receiver connected for the registry's whole life.
    pub fn keep(mut self) {
        self.state = State::Released;
    }

    fn release(&mut self) -> bool {
        match std::mem::replace(&mut self.state, State::Released) {
            State::Connected(detach) => detach(),
            State::Duplicate | State::Released => false,
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.release();
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Connected(_) => "connected",
            State::Duplicate => "duplicate",
            State::Released => "released",
        };
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("state", &state)
            .finish()
    }
}
