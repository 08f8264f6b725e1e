//! Observers: who wants to hear about each receiver call in the current scope (a web request that
//! adds a `Server-Timing` header, a test). Scoped like muting, to a task or a thread, never global.
//!
//! [`observed`] wraps a future and installs the observer while that future is polled; [`scope`]
//! installs it for a synchronous closure (a store installs the caller's observer on its connection
//! thread for the duration of one job: see [`current`]). Only timed calls are reported
//! ([`Timing::On`](crate::Timing::On)).
//!
//! Cost: one relaxed load of a process-wide count of live observers per timed receiver call; the
//! thread-local observer is read only while some observer somewhere is alive.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::info::ReceiverInfo;

/// Hears about receiver calls made while it is installed.
pub trait Observer: Send + Sync {
    /// A receiver call finished: who, for which sender, how long, whether it failed, and whether it
    /// was slower than the registry's slow threshold.
    fn receiver(
        &self,
        receiver: &ReceiverInfo,
        sender: &'static str,
        elapsed: Duration,
        failed: bool,
        slow: bool,
    );

    /// A unit of store work (one job on a connection thread) finished, with how long it took.
    /// Default: ignored.
    fn store_job(&self, _elapsed: Duration) {}
}

static LIVE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static CURRENT: RefCell<Option<Arc<dyn Observer>>> = const { RefCell::new(None) };
}

/// The observer installed on this thread now, if any (a store captures it to carry it to its
/// connection thread).
#[inline]
pub fn current() -> Option<Arc<dyn Observer>> {
    if LIVE.load(Relaxed) == 0 {
        return None;
    }
    CURRENT.with(|c| c.borrow().clone())
}

/// Call `f` with the current observer, if there is one.
#[inline]
pub(crate) fn with_current(f: impl FnOnce(&dyn Observer)) {
    if LIVE.load(Relaxed) != 0 {
        CURRENT.with(|c| {
            if let Some(observer) = &*c.borrow() {
                f(&**observer);
            }
        });
    }
}

struct Installed(Option<Arc<dyn Observer>>);

impl Installed {
    fn install(observer: Option<Arc<dyn Observer>>) -> Self {
        Self(CURRENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), observer)))
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

struct Live;

impl Live {
    fn new() -> Self {
        LIVE.fetch_add(1, Relaxed);
        Live
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Relaxed);
    }
}

/// Run `f` with `observer` installed on this thread (none: `f` runs with no observer).
pub fn scope<R>(observer: Option<Arc<dyn Observer>>, f: impl FnOnce() -> R) -> R {
    let _live = observer.as_ref().map(|_| Live::new());
    let _installed = Installed::install(observer);
    f()
}

/// Run `fut` with `observer` installed while it is polled, in this task only.
pub fn observed<F: Future>(observer: Arc<dyn Observer>, fut: F) -> Observed<F> {
    Observed {
        fut,
        observer,
        _live: Live::new(),
    }
}

pin_project_lite::pin_project! {
    /// A future running with an observer installed; see [`observed`].
    #[must_use = "futures do nothing unless polled"]
    pub struct Observed<F> {
        #[pin]
        fut: F,
        observer: Arc<dyn Observer>,
        _live: Live,
    }
}

impl<F> std::fmt::Debug for Observed<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed").finish_non_exhaustive()
    }
}

impl<F: Future> Future for Observed<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _installed = Installed::install(Some(this.observer.clone()));
        this.fut.poll(cx)
    }
}
