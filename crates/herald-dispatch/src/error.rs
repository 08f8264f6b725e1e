//! Errors: what a receiver returns ([`Error`]) and what a send reports ([`DispatchError`]).

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use crate::info::ReceiverInfo;

/// The result a receiver returns: `Ok(())` to let the dispatch go on, `Err` to report a failure.
pub type Result<T = (), E = Error> = core::result::Result<T, E>;

/// A receiver's own failure.
///
/// Any `std::error::Error + Send + Sync` converts into it with `?`; [`Error::msg`] makes one from a
/// message. Like `anyhow::Error` it does not itself implement `std::error::Error`, which is what lets
/// the blanket `From` exist; [`DispatchError`], which wraps it and names the receiver, does.
pub struct Error {
    inner: Box<dyn StdError + Send + Sync + 'static>,
}

impl Error {
    /// An error carrying only a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self {
            inner: message.to_string().into(),
        }
    }

    /// The underlying error.
    pub fn as_std(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.inner
    }

    /// The underlying error, if it is a `T`.
    pub fn downcast_ref<T: StdError + 'static>(&self) -> Option<&T> {
        self.inner.downcast_ref::<T>()
    }

    /// The underlying boxed error.
    pub fn into_boxed(self) -> Box<dyn StdError + Send + Sync + 'static> {
        self.inner
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for Error {
    fn from(error: E) -> Self {
        Self {
            inner: Box::new(error),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

/// Why a receiver failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Cause {
    /// The receiver returned `Err`.
    Failed(Error),
    /// The receiver panicked; the panic was caught at the receiver and holds its message.
    Panicked(String),
}

/// A receiver failed during a send. Names the receiver, the signal, the sender and, for model
/// signals, the primary key of the instance (when it has one).
///
/// One pointer wide, so `Result<(), DispatchError>` costs nothing to return or drop when it is `Ok`.
#[derive(Debug)]
pub struct DispatchError(Box<Failure>);

#[derive(Debug)]
struct Failure {
    receiver: Arc<ReceiverInfo>,
    sender: &'static str,
    key: Option<String>,
    cause: Cause,
}

/// Log the failures of a robust send at ERROR (target `herald::dispatch`), one event each, naming the
/// receiver, the signal, the sender and the key, as Django's `send_robust` logs what it catches.
#[cold]
pub(crate) fn log_robust(errors: &[DispatchError]) {
    for error in errors {
        let receiver = error.receiver();
        tracing::error!(
            target: "herald::dispatch",
            receiver = %receiver.name(),
            signal = receiver.signal(),
            sender = error.sender(),
            key = error.key().unwrap_or(""),
            location = %receiver.location(),
            "{error}"
        );
    }
}

impl DispatchError {
    pub(crate) fn new(
        receiver: Arc<ReceiverInfo>,
        sender: &'static str,
        key: Option<String>,
        cause: Cause,
    ) -> Self {
        Self(Box::new(Failure {
            receiver,
            sender,
            key,
            cause,
        }))
    }

    /// The receiver that failed.
    pub fn receiver(&self) -> &ReceiverInfo {
        &self.0.receiver
    }

    /// The sender the signal was sent for (a model name, or `-` for a custom signal).
    pub fn sender(&self) -> &'static str {
        self.0.sender
    }

    /// The primary key of the instance, when the signal is a model signal and the instance has one.
    pub fn key(&self) -> Option<&str> {
        self.0.key.as_deref()
    }

    /// Why it failed.
    pub fn cause(&self) -> &Cause {
        &self.0.cause
    }

    /// True when the receiver panicked rather than returned an error.
    pub fn panicked(&self) -> bool {
        matches!(self.0.cause, Cause::Panicked(_))
    }

    /// The receiver's own error, when it returned one.
    pub fn receiver_error(&self) -> Option<&Error> {
        match &self.0.cause {
            Cause::Failed(e) => Some(e),
            Cause::Panicked(_) => None,
        }
    }
}

impl fmt::Display for DispatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Failure {
            receiver: r,
            sender,
            key,
            cause,
        } = &*self.0;
        write!(f, "{} receiver `{}` for {sender}", r.signal(), r.name())?;
        if let Some(key) = key {
            write!(f, " (pk {key})")?;
        }
        match cause {
            Cause::Failed(e) => write!(f, " failed: {e}"),
            Cause::Panicked(msg) => write!(f, " panicked: {msg}"),
        }
    }
}

impl StdError for DispatchError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.0.cause {
            Cause::Failed(e) => Some(e.as_std()),
            Cause::Panicked(_) => None,
        }
    }
}

/// The text of a caught panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_owned()
    }
}
