//! Connecting: the receiver builder every signal hands out, and the guard a connect returns.

use std::borrow::Cow;
use std::fmt;

use crate::info::{ReceiverId, SourceLocation};

/// The options a receiver is connected with.
pub(crate) struct Options {
    pub(crate) name: Cow<'static, str>,
    pub(crate) location: SourceLocation,
    pub(crate) priority: i32,
    pub(crate) dispatch_uid: Option<Cow<'static, str>>,
    pub(crate) blocking: bool,
}

/// A receiver about to be connected, with its options. Made by a signal's `receiver(..)`; nothing is
/// connected until [`connect`](ReceiverBuilder::connect).
#[must_use = "nothing is connected until `.connect()`"]
pub struct ReceiverBuilder<'s> {
    options: Options,
    attach: Box<dyn FnOnce(Options) -> Connection + 's>,
}

impl<'s> ReceiverBuilder<'s> {
    pub(crate) fn new(
        default_name: &'static str,
        location: SourceLocation,
        attach: Box<dyn FnOnce(Options) -> Connection + 's>,
    ) -> Self {
        Self {
            options: Options {
                name: Cow::Borrowed(default_name),
                location,
                priority: 0,
                dispatch_uid: None,
                blocking: false,
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

    /// Connect it. The receiver stays connected until the returned guard is dropped or
    /// [`disconnect`](Connection::disconnect)ed, or for the registry's life after
    /// [`keep`](Connection::keep).
    pub fn connect(self) -> Connection {
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
