//! The steps every walk over receivers shares, model and custom signals alike: how it runs
//! ([`WalkMode`]), starting one receiver ([`Started`]) and finishing it here or awaited.

use crate::error::Cause;
use crate::receiver::{Config, ReceiverCore};
use crate::slot::ReceiverFuture;

/// How a walk runs: stopping at the first failure or not, and where a receiver declared
/// `blocking` runs (through the blocking runner when awaited on an async runtime; directly in a
/// synchronous send, which the store makes only on its connection threads).
#[derive(Clone, Copy, Debug)]
pub(crate) struct WalkMode {
    pub(crate) robust: bool,
    pub(crate) offload: bool,
}

impl WalkMode {
    /// A synchronous send.
    pub(crate) const HERE: WalkMode = WalkMode {
        robust: false,
        offload: false,
    };
    /// An awaited send.
    pub(crate) const AWAITED: WalkMode = WalkMode {
        robust: false,
        offload: true,
    };

    /// The same, going on after a failure.
    pub(crate) const fn robust(self) -> WalkMode {
        WalkMode {
            robust: true,
            ..self
        }
    }
}

/// Finish a receiver already started, on this thread (an async one driven to completion by a
/// minimal executor). `None`: it succeeded
/// (or was muted).
#[inline(always)]
pub(crate) fn finish_here(
    core: &ReceiverCore,
    config: &Config,
    sender: &'static str,
    started: Started<'_>,
) -> Option<Cause> {
    match started {
        Started::Done(outcome) => outcome,
        Started::Pending(future) => {
            core.call(config, sender, || futures::executor::block_on(future))
        }
    }
}

/// What starting a receiver gave: its outcome (a synchronous receiver ran to the end), or the
/// future of an async one to await.
pub(crate) enum Started<'a> {
    Done(Option<Cause>),
    Pending(ReceiverFuture<'a>),
}

/// Finish one receiver: await it if it is async. `None`: it succeeded (or was muted).
pub(crate) async fn call_async(
    core: &ReceiverCore,
    config: &Config,
    sender: &'static str,
    started: Started<'_>,
) -> Option<Cause> {
    match started {
        Started::Done(outcome) => outcome,
        Started::Pending(future) => core.call_async(config, sender, future).await,
    }
}
