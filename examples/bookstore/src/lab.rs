//! The lab: the seed's four patterns of work around a save, on a model of their own (`LabBook`),
//! so that the shop's books and its receivers' statistics are untouched.
//!
//! Every pattern is a receiver declared here like any other (listed by `bookstore receivers` and
//! on the dashboard). A lab save runs only its pattern's receiver: the others, and the shop's
//! every-model receivers (`audit_save`), are muted for that save ([`Lab::save`]). How heavy the
//! work is travels with the instance (`heavy_ms`, `work`), so that the background task gets it
//! too. `lab_committed` runs on commit for every pattern and records the commit.
//!
//! What a run measures, and the verdict it earns, is in [`run`]; the HTTP side in `web.rs`.

pub(crate) mod run;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use herald::Db;
use herald::dispatch::observe::Observer;
use herald::dispatch::{Mute, Phase, ReceiverId, ReceiverInfo, muted_by};
use herald::prelude::*;
use herald::tasks::TaskContext;

/// A book saved in the lab: which pattern saved it, and how heavy that pattern's work was.
#[derive(Model, Clone, Debug, serde::Serialize, serde::Deserialize)]
#[model(table = "lab_books")]
pub(crate) struct LabBook {
    #[model(primary_key)]
    pub(crate) id: Option<i64>,
    /// The comparison run that saved it; 0 for a save from the page's form.
    pub(crate) run: i64,
    /// One of [`Pattern::name`].
    pub(crate) pattern: String,
    pub(crate) heavy_ms: i64,
    /// `sleep` or `cpu` ([`Work`]).
    pub(crate) work: String,
    pub(crate) title: String,
    pub(crate) slug: String,
}

/// One of the seed's four patterns, in the order of its Performance Comparison table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pattern {
    HeavyPreSaveBlocking,
    LightPreSave,
    HeavyPostSaveBackground,
    HeavyPostSaveBlocking,
}

impl Pattern {
    pub(crate) const ALL: [Self; 4] = [
        Self::HeavyPreSaveBlocking,
        Self::LightPreSave,
        Self::HeavyPostSaveBackground,
        Self::HeavyPostSaveBlocking,
    ];

    /// Its name in forms, JSON and `LabBook::pattern`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::HeavyPreSaveBlocking => "heavy_pre_save_blocking",
            Self::LightPreSave => "light_pre_save",
            Self::HeavyPostSaveBackground => "heavy_post_save_background",
            Self::HeavyPostSaveBlocking => "heavy_post_save_blocking",
        }
    }

    /// The seed's name for it.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::HeavyPreSaveBlocking => "Heavy pre_save blocking logic",
            Self::LightPreSave => "Lightweight pre_save logic",
            Self::HeavyPostSaveBackground => "Heavy post_save async logic (background)",
            Self::HeavyPostSaveBlocking => "Heavy post_save blocking logic",
        }
    }

    /// The receiver that is this pattern (its short name).
    pub(crate) fn receiver(self) -> &'static str {
        match self {
            Self::HeavyPreSaveBlocking => "lab_heavy_pre_save",
            Self::LightPreSave => "lab_light_pre_save",
            Self::HeavyPostSaveBackground => "lab_heavy_post_save_background",
            Self::HeavyPostSaveBlocking => "lab_heavy_post_save",
        }
    }

    /// What the seed's table says of it.
    pub(crate) fn seed_verdict(self) -> &'static str {
        match self {
            Self::HeavyPreSaveBlocking => "[X] Bad",
            Self::LightPreSave | Self::HeavyPostSaveBackground => "[OK] Good",
            Self::HeavyPostSaveBlocking => "[!] OK but risky",
        }
    }

    /// Whether its work runs before the row is written.
    pub(crate) fn before_write(self) -> bool {
        matches!(self, Self::HeavyPreSaveBlocking | Self::LightPreSave)
    }

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What the heavy work is: a wait (the seed's `time.sleep`) or a busy core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Work {
    Sleep,
    Cpu,
}

impl Work {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Sleep => "sleep",
            Self::Cpu => "cpu",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        match name {
            "sleep" => Some(Self::Sleep),
            "cpu" => Some(Self::Cpu),
            _ => None,
        }
    }

    /// Do the work on this thread, blocking it for `length`.
    fn block(self, length: Duration) {
        match self {
            Self::Sleep => std::thread::sleep(length),
            Self::Cpu => spin(length),
        }
    }

    /// Do the work without blocking the async runtime.
    async fn run(self, length: Duration) -> ReceiverResult {
        match self {
            Self::Sleep => tokio::time::sleep(length).await,
            Self::Cpu => tokio::task::spawn_blocking(move || spin(length))
                .await
                .map_err(|e| {
                    herald::dispatch::Error::msg(format!("the heavy work stopped: {e}"))
                })?,
        }
        Ok(())
    }
}

/// Keep the core busy for `length`.
fn spin(length: Duration) {
    let started = Instant::now();
    while started.elapsed() < length {
        std::hint::spin_loop();
    }
}

impl LabBook {
    fn heavy(&self) -> (Work, Duration) {
        let work = Work::from_name(&self.work).unwrap_or(Work::Sleep);
        let ms = u64::try_from(self.heavy_ms).unwrap_or(0);
        (work, Duration::from_millis(ms))
    }

    fn pattern(&self) -> Option<Pattern> {
        Pattern::from_name(&self.pattern)
    }
}

// ---- the receivers ------------------------------------------------------------------------------

/// Heavy `pre_save` blocking logic: the work, then the slug. On the caller, before the write:
/// the save and its response wait for it.
#[receiver(pre_save, sender = LabBook, blocking)]
fn lab_heavy_pre_save(e: &mut PreSave<'_, LabBook>) -> ReceiverResult {
    let (work, length) = e.instance.heavy();
    work.block(length);
    e.instance.slug = crate::shop::slugify(&e.instance.title);
    work_done(e.instance);
    Ok(())
}

/// Lightweight `pre_save` logic: the slug from the title.
#[receiver(pre_save, sender = LabBook)]
fn lab_light_pre_save(e: &mut PreSave<'_, LabBook>) -> ReceiverResult {
    if e.instance.slug.is_empty() {
        e.instance.slug = crate::shop::slugify(&e.instance.title);
    }
    work_done(e.instance);
    Ok(())
}

/// Heavy `post_save` blocking logic: the work after the write, on the caller: the row is written,
/// the response still waits.
#[receiver(post_save, sender = LabBook, blocking)]
fn lab_heavy_post_save(e: &PostSave<'_, LabBook>) -> ReceiverResult {
    let (work, length) = e.instance.heavy();
    work.block(length);
    work_done(e.instance);
    Ok(())
}

/// Heavy `post_save` work in the background: the save writes a task row in its transaction; a
/// worker runs this after the commit.
#[receiver(post_save, sender = LabBook, background, queue = "lab")]
async fn lab_heavy_post_save_background(book: LabBook, ctx: TaskContext) -> ReceiverResult {
    if let Some(id) = book.id {
        progress().entry(id).or_default().started = Some(Started {
            at: Instant::now(),
            task: ctx.id(),
            attempt: ctx.attempt(),
        });
    }
    let (work, length) = book.heavy();
    work.run(length).await?;
    if let Some(id) = book.id {
        progress().entry(id).or_default().finished = Some(Instant::now());
    }
    work_done(&book);
    Ok(())
}

/// On commit, every pattern: the save is permanent (the page's "committed" step).
#[receiver(post_save, sender = LabBook, on_commit)]
fn lab_committed(e: &PostSave<'_, LabBook>) -> ReceiverResult {
    if let Some(id) = e.instance.id {
        let mut progress = progress();
        if progress.len() >= MAX_TRACKED {
            progress.clear();
        }
        progress.entry(id).or_default().committed = Some(Instant::now());
    }
    Ok(())
}

// ---- what the page follows ----------------------------------------------------------------------

/// How many saves' progress is kept; past it the record starts again (a page follows one save for
/// seconds, not thousands).
const MAX_TRACKED: usize = 10_000;

/// One save's way through: committed, its task started and finished (background pattern).
#[derive(Debug, Default, Clone)]
pub(crate) struct Progress {
    pub(crate) committed: Option<Instant>,
    pub(crate) started: Option<Started>,
    pub(crate) finished: Option<Instant>,
}

/// A background task's start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Started {
    pub(crate) at: Instant,
    pub(crate) task: i64,
    pub(crate) attempt: u32,
}

static PROGRESS: LazyLock<Mutex<HashMap<i64, Progress>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

pub(crate) fn progress() -> MutexGuard<'static, HashMap<i64, Progress>> {
    PROGRESS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The run whose work is being counted (0: none) and its counts per pattern.
static COUNTED_RUN: AtomicI64 = AtomicI64::new(0);
static WORK_DONE: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// One run of a pattern's work finished for `book`: counted if it belongs to the run counted now.
fn work_done(book: &LabBook) {
    let counted = COUNTED_RUN.load(Ordering::SeqCst);
    if book.run != 0
        && book.run == counted
        && let Some(pattern) = book.pattern()
    {
        WORK_DONE[pattern.index()].fetch_add(1, Ordering::SeqCst);
    }
}

/// Start counting the work of `run`, from zero.
pub(crate) fn count_run(run: i64) {
    for counter in &WORK_DONE {
        counter.store(0, Ordering::SeqCst);
    }
    COUNTED_RUN.store(run, Ordering::SeqCst);
}

/// The work of `pattern` completed in the run counted now.
pub(crate) fn work_completed(pattern: Pattern) -> u64 {
    WORK_DONE[pattern.index()].load(Ordering::SeqCst)
}

// ---- saving -------------------------------------------------------------------------------------

/// The lab's handle on the shop's database: which receivers each pattern's save mutes.
#[derive(Clone)]
pub(crate) struct Lab {
    pub(crate) db: Db,
    /// Per pattern, the receivers its saves mute.
    mutes: Arc<[Vec<ReceiverId>; 4]>,
    pub(crate) runs: run::Runs,
}

impl Lab {
    /// The lab on `db`, whose registry has the lab's receivers (autodiscovered).
    pub(crate) fn new(db: Db) -> Self {
        let receivers = db.signals().receivers();
        let mutes = Pattern::ALL.map(|pattern| {
            receivers
                .iter()
                .map(|r| r.info())
                .filter(|info| mutes_for(pattern, info))
                .map(ReceiverInfo::id)
                .collect()
        });
        Self {
            db,
            mutes: Arc::new(mutes),
            runs: run::Runs::default(),
        }
    }

    /// Save `book` with its pattern's receiver only (and `lab_committed`).
    pub(crate) async fn save(&self, pattern: Pattern, book: &mut LabBook) -> herald::Result<()> {
        let db = &self.db;
        let mut save: Pin<Box<dyn Future<Output = herald::Result<()>> + Send + '_>> =
            Box::pin(async move { db.save(book).await.map(drop) });
        for id in &self.mutes[pattern.index()] {
            save = Box::pin(muted_by(Mute::Receiver(*id), save));
        }
        save.await
    }
}

/// Whether a save of `pattern` mutes this receiver: the other patterns' receivers, and receivers
/// for every model (the shop's audit) that would otherwise run for a `LabBook` too.
fn mutes_for(pattern: Pattern, info: &ReceiverInfo) -> bool {
    match info.sender() {
        "*" => true,
        "LabBook" => {
            let name = info.short_name();
            Pattern::ALL
                .iter()
                .any(|p| *p != pattern && p.receiver() == name)
        }
        _ => false,
    }
}

/// Where a receiver ran, in the page's words and as a `data-where` value.
pub(crate) fn where_it_ran(phase: Phase) -> &'static str {
    match phase {
        Phase::Caller => "caller",
        Phase::OnCommit => "on_commit",
        // A background receiver's part in the save is writing its task row, in the transaction.
        _ => "in_transaction",
    }
}

/// One timed step of a save, as the page draws it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Step {
    /// `receiver` or `db` (a store job).
    pub(crate) kind: &'static str,
    /// The receiver's short name (`db` for a store job).
    pub(crate) name: String,
    /// Its full name, as Server-Timing's `desc` has it.
    pub(crate) full: String,
    pub(crate) signal: &'static str,
    /// `caller`, `in_transaction`, `on_commit` ([`where_it_ran`]); `connection` for a store job.
    pub(crate) ran: &'static str,
    /// The receiver's declared phase (`background` for the enqueueing receiver).
    pub(crate) phase: &'static str,
    pub(crate) start_ms: f64,
    pub(crate) dur_ms: f64,
}

/// An observer that records when each receiver call and store job of one save began and how long
/// it took, and passes every report on to the observer it was installed over (the request's
/// Server-Timing), so that the header and the page tell the same story.
pub(crate) struct Timeline {
    outer: Option<Arc<dyn Observer>>,
    started: Instant,
    steps: Mutex<Vec<Step>>,
}

impl Timeline {
    /// A timeline starting now, over the observer installed now.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            outer: herald::dispatch::observe::current(),
            started: Instant::now(),
            steps: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// The steps, in the order they began.
    pub(crate) fn steps(&self) -> Vec<Step> {
        let mut steps = self
            .steps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        steps.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
        steps
    }

    fn push(&self, step: Step) {
        self.steps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(step);
    }

    /// Milliseconds from the timeline's start to the start of a step that just took `elapsed`.
    fn start_of(&self, elapsed: Duration) -> f64 {
        let began = Instant::now().checked_sub(elapsed).unwrap_or(self.started);
        began.saturating_duration_since(self.started).as_secs_f64() * 1e3
    }
}

impl Observer for Timeline {
    fn receiver(
        &self,
        receiver: &ReceiverInfo,
        sender: &'static str,
        elapsed: Duration,
        failed: bool,
        slow: bool,
    ) {
        self.push(Step {
            kind: "receiver",
            name: receiver.short_name(),
            full: receiver.name().to_owned(),
            signal: receiver.signal(),
            ran: where_it_ran(receiver.phase()),
            phase: receiver.phase().as_str(),
            start_ms: self.start_of(elapsed),
            dur_ms: elapsed.as_secs_f64() * 1e3,
        });
        if let Some(outer) = &self.outer {
            outer.receiver(receiver, sender, elapsed, failed, slow);
        }
    }

    fn store_job(&self, elapsed: Duration) {
        self.push(Step {
            kind: "db",
            name: "db".to_owned(),
            full: "store job".to_owned(),
            signal: "",
            ran: "connection",
            phase: "",
            start_ms: self.start_of(elapsed),
            dur_ms: elapsed.as_secs_f64() * 1e3,
        });
        if let Some(outer) = &self.outer {
            outer.store_job(elapsed);
        }
    }
}
