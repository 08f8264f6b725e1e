//! Muting, scoped to the current task or thread, never global.
//!
//! A mute is a rule ([`Mute`]) pushed on a thread-local stack for as long as a scope lasts:
//! [`muted`] / [`muted_by`] wrap a future and push the rule only while that future is being polled,
//! so other tasks on the same worker thread are not affected; [`mute_thread`] pushes it for a
//! synchronous scope on the current thread. Tests running in parallel therefore never mute each other.
//!
//! Cost: one relaxed load of a process-wide count of live mute scopes per receiver call; the
//! thread-local stack is read only while some scope somewhere is alive.

use std::borrow::Cow;
use std::cell::RefCell;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Poll};

use crate::info::{ReceiverId, ReceiverInfo};

/// What a mute silences.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mute {
    /// Every receiver of every signal.
    All,
    /// One signal (`"post_save"`, or a custom signal's name), for one sender or for all of them.
    Signal {
        /// The signal's name.
        signal: &'static str,
        /// The sender's name (`"Book"`), or `None` for every sender.
        sender: Option<&'static str>,
    },
    /// One receiver, by id (from its connection guard or from the registry).
    Receiver(ReceiverId),
    /// Every receiver with this name (as [`ReceiverInfo::name`] shows it).
    ReceiverNamed(Cow<'static, str>),
}

impl Mute {
    /// Mute one signal for every sender.
    pub fn signal(signal: &'static str) -> Self {
        Mute::Signal {
            signal,
            sender: None,
        }
    }

    /// Mute one signal for one sender.
    pub fn signal_for(signal: &'static str, sender: &'static str) -> Self {
        Mute::Signal {
            signal,
            sender: Some(sender),
        }
    }

    /// Mute every receiver with this name.
    pub fn receiver_named(name: impl Into<Cow<'static, str>>) -> Self {
        Mute::ReceiverNamed(name.into())
    }

    fn silences(&self, receiver: &ReceiverInfo, sender: &str) -> bool {
        match self {
            Mute::All => true,
            Mute::Signal { signal, sender: s } => {
                *signal == receiver.signal() && s.is_none_or(|s| s == sender)
            }
            Mute::Receiver(id) => *id == receiver.id(),
            Mute::ReceiverNamed(name) => name == receiver.name(),
        }
    }
}

static LIVE_SCOPES: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static ACTIVE: RefCell<Vec<Mute>> = const { RefCell::new(Vec::new()) };
}

/// Whether `receiver`, sent for `sender`, is muted in the current scope.
#[inline]
pub(crate) fn is_muted(receiver: &ReceiverInfo, sender: &str) -> bool {
    LIVE_SCOPES.load(Relaxed) != 0 && is_muted_slow(receiver, sender)
}

#[cold]
#[inline(never)]
fn is_muted_slow(receiver: &ReceiverInfo, sender: &str) -> bool {
    ACTIVE.with(|active| active.borrow().iter().any(|m| m.silences(receiver, sender)))
}

struct Pushed;

impl Pushed {
    fn push(rule: Mute) -> Self {
        ACTIVE.with(|active| active.borrow_mut().push(rule));
        Pushed
    }
}

impl Drop for Pushed {
    fn drop(&mut self) {
        ACTIVE.with(|active| active.borrow_mut().pop());
    }
}

struct LiveScope;

impl LiveScope {
    fn new() -> Self {
        LIVE_SCOPES.fetch_add(1, Relaxed);
        LiveScope
    }
}

impl Drop for LiveScope {
    fn drop(&mut self) {
        LIVE_SCOPES.fetch_sub(1, Relaxed);
    }
}

/// Mutes on the current thread until dropped. Not `Send`: it belongs to the thread that made it.
/// Guards must be dropped in the reverse order they were made (as scopes are).
#[must_use = "the mute lasts only as long as the guard"]
#[derive(Debug)]
pub struct MuteGuard {
    _pushed: Pushed,
    _live: LiveScope,
    _not_send: PhantomData<*const ()>,
}

impl std::fmt::Debug for Pushed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pushed")
    }
}

impl std::fmt::Debug for LiveScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveScope")
    }
}

/// The mutes in force in the current scope, captured so that work done elsewhere on this scope's
/// behalf (a store job on a connection thread) is muted the same way; see [`scope`].
#[derive(Clone, Debug, Default)]
pub struct Mutes(Vec<Mute>);

impl Mutes {
    /// Whether no mute is in force.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The mutes in force here, or `None` when there are none (one relaxed load when no mute scope is
/// alive anywhere).
#[inline]
pub fn current() -> Option<Mutes> {
    if LIVE_SCOPES.load(Relaxed) == 0 {
        return None;
    }
    let rules = ACTIVE.with(|active| active.borrow().clone());
    (!rules.is_empty()).then_some(Mutes(rules))
}

/// Run `f` with `mutes` (captured with [`current`] in another scope) in force on this thread.
pub fn scope<R>(mutes: Option<&Mutes>, f: impl FnOnce() -> R) -> R {
    let Some(mutes) = mutes.filter(|m| !m.is_empty()) else {
        return f();
    };
    let _live = LiveScope::new();
    // Each one pops the top rule when dropped: as many pops as pushes.
    let _pushed: Vec<Pushed> = mutes.0.iter().cloned().map(Pushed::push).collect();
    f()
}

/// Mute `rule` on the current thread until the guard drops. For async code use [`muted_by`], which
/// follows the task instead of the thread.
pub fn mute_thread(rule: Mute) -> MuteGuard {
    MuteGuard {
        _live: LiveScope::new(),
        _pushed: Pushed::push(rule),
        _not_send: PhantomData,
    }
}

/// Run `fut` with every receiver muted, in this task only.
pub fn muted<F: Future>(fut: F) -> Muted<F> {
    muted_by(Mute::All, fut)
}

/// Run `fut` with `rule` muted, in this task only: the rule applies while `fut` is polled, on
/// whichever thread polls it, and to nothing else.
pub fn muted_by<F: Future>(rule: Mute, fut: F) -> Muted<F> {
    Muted {
        fut,
        rule,
        _live: LiveScope::new(),
    }
}

pin_project_lite::pin_project! {
    /// A future running with a mute in force; see [`muted_by`].
    #[must_use = "futures do nothing unless polled"]
    pub struct Muted<F> {
        #[pin]
        fut: F,
        rule: Mute,
        _live: LiveScope,
    }
}

impl<F> std::fmt::Debug for Muted<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Muted")
            .field("rule", &self.rule)
            .finish_non_exhaustive()
    }
}

impl<F: Future> Future for Muted<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _pushed = Pushed::push(this.rule.clone());
        this.fut.poll(cx)
    }
}
