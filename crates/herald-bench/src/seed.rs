//! The seed's "Performance Comparison" table, measured on this machine.
//!
//! The seed rates four ways of running work around a save (heavy `pre_save`, light `pre_save`,
//! heavy `post_save` in the background, heavy `post_save` inline) with words: "[X] Bad", "[OK]
//! Good", "[!] OK but risky". Here each pattern runs for real and its verdict is computed from what
//! was measured.
//!
//! For each pattern: a fresh SQLite file (WAL/NORMAL) and a fresh [`Signals`] with only that
//! pattern's receiver; then `clients` tokio tasks on a multi-thread runtime each save new books in
//! a loop for the pattern's time, every save timed. The heavy work is a sleep (the seed's
//! `time.sleep`) or a busy loop of `heavy` length. The background pattern's task runs in an
//! in-process [`Worker`] started before the clients; after they stop, the pattern waits for every
//! task to finish (up to [`DRAIN_DEADLINE`]) and reports how long that took.
//!
//! With `--django`, `django/seed.py` runs the same patterns on Django ([`django`]) and its figures
//! are shown beside Herald's.

mod django;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use herald::Db;
use herald::Store;
use herald::dispatch::{Error as ReceiverError, PostSave, PreSave, Signals};
use herald::tasks::{Background, TaskContext, TaskOptions, Worker};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::logging::{Logging, format_counts};
use crate::names::SEED_PATTERNS;
use crate::rows::{Book, new_book, slugify};
use crate::tasks::Running;

/// How long the background pattern waits, after the clients stop, for its tasks to finish.
const DRAIN_DEADLINE: Duration = Duration::from_secs(120);

/// Seconds per pattern with `--quick` (and no `--seconds`).
const QUICK_SECONDS: f64 = 0.5;

/// Seconds per pattern otherwise.
const DEFAULT_SECONDS: f64 = 3.0;

/// The background worker's concurrency: enough for every sleeping task to sleep at once.
const WORKER_CONCURRENCY: usize = 256;

/// The task kind of the background pattern (also its enqueueing receiver's name).
const BACKGROUND_KIND: &str = "heavy_post_save_background";

/// The goal for the background pattern's p50: at most this times the light pattern's.
const BACKGROUND_GOAL: f64 = 1.15;

/// The seed table's command-line options.
#[derive(clap::Args, Debug)]
pub(crate) struct SeedArgs {
    /// Seed table: concurrent clients saving books.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    clients: u16,
    /// Seed table: seconds of saving per pattern [default: 3; 0.5 with --quick].
    #[arg(long, value_name = "S")]
    seconds: Option<f64>,
    /// Seed table: how long the heavy work takes, in ms.
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    heavy_ms: u64,
    /// Seed table: what the heavy work is.
    #[arg(long, value_enum, default_value_t = HeavyWork::Sleep)]
    heavy_work: HeavyWork,
    /// Seed table: also run the patterns on Django (in a venv created for it) and show them beside
    /// Herald's.
    #[arg(long)]
    django: bool,
    /// Seed table: run Herald's background pattern with no worker, so that its saves/s is what its
    /// saves alone cost (its tasks stay queued, and its work shows as not done). Django's side
    /// is unchanged.
    #[arg(long)]
    no_worker: bool,
    /// Seed table: the venv for `--django` [default: <workspace>/target/herald-bench/django-venv].
    #[arg(long, value_name = "DIR")]
    django_venv: Option<PathBuf>,
}

impl SeedArgs {
    /// `--seconds`, when given.
    pub(crate) fn seconds(&self) -> Option<f64> {
        self.seconds
    }

    /// The venv for Django's side, when `--django` asks for it.
    pub(crate) fn django_venv_if_wanted(&self) -> Option<PathBuf> {
        self.django.then(|| {
            self.django_venv
                .clone()
                .unwrap_or_else(django::default_venv)
        })
    }
}

/// What the heavy work is.
#[derive(clap::ValueEnum, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum HeavyWork {
    /// Wait: `std::thread::sleep` inline, `tokio::time::sleep` in the background task (the seed's
    /// `time.sleep`).
    Sleep,
    /// Keep a core busy for that long (on `spawn_blocking` in the background task).
    Spin,
}

impl HeavyWork {
    fn as_str(self) -> &'static str {
        match self {
            Self::Sleep => "sleep",
            Self::Spin => "spin",
        }
    }

    /// Do the work on this thread, blocking it for `length`.
    fn block(self, length: Duration) {
        match self {
            Self::Sleep => std::thread::sleep(length),
            Self::Spin => spin(length),
        }
    }

    /// Do the work without blocking the async runtime.
    async fn run(self, length: Duration) -> Result<(), ReceiverError> {
        match self {
            Self::Sleep => tokio::time::sleep(length).await,
            Self::Spin => tokio::task::spawn_blocking(move || spin(length))
                .await
                .map_err(|e| ReceiverError::msg(format!("the heavy work stopped: {e}")))?,
        }
        Ok(())
    }
}

/// Busy the core for `length`.
fn spin(length: Duration) {
    let started = Instant::now();
    while started.elapsed() < length {
        std::hint::spin_loop();
    }
}

/// The settings every pattern, Herald's and Django's, runs with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    heavy: Duration,
    work: HeavyWork,
    clients: usize,
    duration: Duration,
    drain_deadline: Duration,
    /// Whether Herald's background pattern runs its worker (`--no-worker` says not).
    worker: bool,
}

impl Settings {
    fn new(args: &SeedArgs, quick: bool) -> anyhow::Result<Self> {
        let seconds = args.seconds.unwrap_or(if quick {
            QUICK_SECONDS
        } else {
            DEFAULT_SECONDS
        });
        if !(seconds.is_finite() && seconds > 0.0) {
            bail!("--seconds must be a positive number of seconds, not {seconds}");
        }
        Ok(Self {
            heavy: Duration::from_millis(args.heavy_ms),
            work: args.heavy_work,
            clients: usize::from(args.clients),
            duration: Duration::from_secs_f64(seconds),
            drain_deadline: DRAIN_DEADLINE,
            worker: !args.no_worker,
        })
    }

    /// Whether `pattern` runs with a worker on Herald's side: the background one, unless
    /// `--no-worker`.
    fn runs_worker(&self, pattern: Pattern) -> bool {
        pattern == Pattern::HeavyPostSaveBackground && self.worker
    }

    /// Herald's slow threshold: half the heavy work, so every heavy call is named.
    fn slow_threshold(&self) -> Duration {
        self.heavy / 2
    }
}

/// One of the seed's patterns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pattern {
    HeavyPreSaveBlocking,
    LightPreSave,
    HeavyPostSaveBackground,
    HeavyPostSaveBlocking,
    HeavyPreSaveAsync,
    HeavyPostSaveAsync,
}

impl Pattern {
    /// In the order of the table (and of [`SEED_PATTERNS`]).
    const ALL: [Self; 6] = [
        Self::HeavyPreSaveBlocking,
        Self::LightPreSave,
        Self::HeavyPostSaveBackground,
        Self::HeavyPostSaveBlocking,
        Self::HeavyPreSaveAsync,
        Self::HeavyPostSaveAsync,
    ];

    /// The seed's own four, which Django runs too.
    const SEED: [Self; 4] = [
        Self::HeavyPreSaveBlocking,
        Self::LightPreSave,
        Self::HeavyPostSaveBackground,
        Self::HeavyPostSaveBlocking,
    ];

    fn name(self) -> &'static str {
        SEED_PATTERNS[self as usize]
    }

    /// Whether its work runs before the row is written.
    fn before_write(self) -> bool {
        matches!(
            self,
            Self::HeavyPreSaveBlocking | Self::LightPreSave | Self::HeavyPreSaveAsync
        )
    }

    /// What the seed's table says of it (of the heavy receiver it is a form of, for the async
    /// rows).
    fn seed_verdict(self) -> &'static str {
        match self {
            Self::HeavyPreSaveBlocking | Self::HeavyPreSaveAsync => "[X] Bad",
            Self::LightPreSave | Self::HeavyPostSaveBackground => "[OK] Good",
            Self::HeavyPostSaveBlocking | Self::HeavyPostSaveAsync => "[!] OK but risky",
        }
    }
}

/// What one pattern measured, on either side. `django/seed.py` prints the same fields.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct Measured {
    /// One of [`SEED_PATTERNS`].
    pub(crate) pattern: String,
    /// Saves that returned, from every client.
    pub(crate) saves: u64,
    /// From the clients' start until the last one stopped (its last save returned).
    pub(crate) elapsed_s: f64,
    /// Save latency, median of every save.
    pub(crate) p50_ms: f64,
    /// Save latency, 99th percentile of every save.
    pub(crate) p99_ms: f64,
    /// `saves / elapsed_s`.
    pub(crate) saves_per_second: f64,
    /// Runs of the pattern's work (the heavy work; the slug for the light pattern) that finished,
    /// counted once per save.
    pub(crate) work_completed: u64,
    /// `work_completed / saves`, in %.
    pub(crate) completed_pct: f64,
    /// Background pattern only: from the clients' stop until its last task finished (or the
    /// deadline passed).
    pub(crate) drain_s: Option<f64>,
}

impl Measured {
    /// The figures of a run: `latencies_ms` (any order, not empty) and `work_completed` of one
    /// pattern.
    fn new(
        pattern: Pattern,
        mut latencies_ms: Vec<f64>,
        elapsed: Duration,
        work_completed: u64,
        drain: Option<Duration>,
    ) -> Self {
        latencies_ms.sort_by(f64::total_cmp);
        let saves = latencies_ms.len() as u64;
        Self {
            pattern: pattern.name().to_owned(),
            saves,
            elapsed_s: elapsed.as_secs_f64(),
            p50_ms: percentile(&latencies_ms, 0.50),
            p99_ms: percentile(&latencies_ms, 0.99),
            saves_per_second: saves as f64 / elapsed.as_secs_f64(),
            work_completed,
            completed_pct: 100.0 * work_completed as f64 / saves.max(1) as f64,
            drain_s: drain.map(|d| d.as_secs_f64()),
        }
    }
}

/// The nearest-rank `q` quantile of `sorted` (0 when empty); `seed.py` computes it the same way.
pub(crate) fn percentile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n => sorted[((n as f64 * q) as usize).min(n - 1)],
    }
}

/// The background pattern's verdict with `--no-worker`: its work was not meant to run.
const NO_WORKER_VERDICT: &str = "— (no worker: its tasks stayed queued)";

/// The verdict a measurement earns, in the seed's words: work lost is worst; then a save that
/// takes at least as long as the heavy work blocks the response, and the write too when the work
/// runs before it.
fn verdict(pattern: Pattern, measured: &Measured, heavy: Duration) -> &'static str {
    let heavy_ms = heavy.as_secs_f64() * 1e3;
    if measured.work_completed < measured.saves {
        "[X] Bad: heavy work lost"
    } else if measured.p50_ms >= heavy_ms && pattern.before_write() {
        "[X] Bad: blocks the write and the response"
    } else if measured.p50_ms >= heavy_ms {
        "[!] OK but risky: blocks the response"
    } else {
        "[OK] Good"
    }
}

/// One line of the table and of the JSON report.
#[derive(Serialize, Clone, Debug)]
pub(crate) struct Entry {
    /// `herald` or `django`.
    side: &'static str,
    #[serde(flatten)]
    measured: Measured,
    verdict: &'static str,
    /// Herald only: the slow-receiver warnings of the pattern, by receiver.
    #[serde(skip_serializing_if = "Option::is_none")]
    slow_warnings: Option<BTreeMap<String, u64>>,
}

/// The seed table's part of `--json`.
#[derive(Serialize, Debug)]
pub(crate) struct Report {
    heavy_ms: f64,
    heavy_work: HeavyWork,
    clients: usize,
    seconds_per_pattern: f64,
    slow_threshold_ms: f64,
    /// Whether Herald's background pattern ran its worker (false with `--no-worker`).
    background_worker: bool,
    /// Herald's rows, then Django's when it ran.
    rows: Vec<Entry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    django_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    python_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    django_skipped: Option<String>,
}

/// Measure the patterns (and Django's, with `--django`), print the table, and return the report.
/// A failure on Herald's side is an error; on Django's, a "skipped" line.
pub(crate) fn run(args: &SeedArgs, quick: bool, logging: &Logging) -> anyhow::Result<Report> {
    let settings = Settings::new(args, quick)?;
    let steps = Pattern::ALL.len() + if args.django { Pattern::SEED.len() } else { 0 };
    let bar = progress_bar(steps as u64)?;
    logging.set_bar(&bar);
    let herald = herald_side(&settings, &bar, logging);
    let django = match (&herald, args.django) {
        (Ok(_), true) => {
            let venv = args
                .django_venv
                .clone()
                .unwrap_or_else(django::default_venv);
            Some(django::run(&settings, &venv, &bar))
        }
        _ => None,
    };
    bar.finish_and_clear();
    logging.clear_bar();
    let (herald, slow) = herald?;
    let report = Report::new(&settings, herald, django);
    print_table(&report, &slow);
    Ok(report)
}

/// One line of progress on stderr, for the tables without a bar.
pub(crate) fn print_progress(what: &str) {
    eprintln!("{what}");
}

/// Django's isolation cases (`django/seed.py --isolation`), in the venv at `venv`.
pub(crate) fn django_isolation(
    venv: &Path,
    seconds: f64,
) -> anyhow::Result<Vec<crate::isolation::Case>> {
    django::isolation(venv, seconds)
}

fn progress_bar(steps: u64) -> anyhow::Result<ProgressBar> {
    let style = ProgressStyle::with_template("{spinner} {elapsed:>4} [{bar:24}] {pos}/{len} {msg}")
        .context("the progress bar's template")?
        .progress_chars("=> ");
    let bar = ProgressBar::new(steps).with_style(style);
    bar.enable_steady_tick(Duration::from_millis(120));
    Ok(bar)
}

impl Report {
    fn new(
        settings: &Settings,
        mut rows: Vec<Entry>,
        django: Option<anyhow::Result<django::DjangoRun>>,
    ) -> Self {
        let (mut django_version, mut python_version, mut django_skipped) = (None, None, None);
        match django {
            None => {}
            Some(Ok(run)) => {
                for (pattern, measured) in run.patterns {
                    rows.push(Entry {
                        side: "django",
                        verdict: verdict(pattern, &measured, settings.heavy),
                        measured,
                        slow_warnings: None,
                    });
                }
                django_version = Some(run.version);
                python_version = Some(run.python);
            }
            Some(Err(error)) => {
                django_skipped = Some(format!("{error:#}").replace('\n', " "));
            }
        }
        Self {
            heavy_ms: settings.heavy.as_secs_f64() * 1e3,
            heavy_work: settings.work,
            clients: settings.clients,
            seconds_per_pattern: settings.duration.as_secs_f64(),
            slow_threshold_ms: settings.slow_threshold().as_secs_f64() * 1e3,
            background_worker: settings.worker,
            rows,
            django_version,
            python_version,
            django_skipped,
        }
    }

    fn row(&self, side: &str, pattern: Pattern) -> Option<&Entry> {
        self.rows
            .iter()
            .find(|r| r.side == side && r.measured.pattern == pattern.name())
    }

    /// The background pattern's p50 over the light one's, on `side`.
    fn background_ratio(&self, side: &str) -> Option<f64> {
        let background = self.row(side, Pattern::HeavyPostSaveBackground)?;
        let light = self.row(side, Pattern::LightPreSave)?;
        (light.measured.p50_ms > 0.0).then(|| background.measured.p50_ms / light.measured.p50_ms)
    }
}

/// Herald's four patterns, each with its slow warnings; and the warnings of all of them together.
fn herald_side(
    settings: &Settings,
    bar: &ProgressBar,
    logging: &Logging,
) -> anyhow::Result<(Vec<Entry>, BTreeMap<String, u64>)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the multi-thread runtime")?;
    let dir = tempfile::tempdir().context("creating a scratch folder")?;
    // Warnings of the rows before this table are not this table's.
    logging.take_slow();
    let mut entries = Vec::new();
    let mut all_slow = BTreeMap::new();
    for pattern in Pattern::ALL {
        let label = format!("Herald {}", pattern.name());
        bar.set_message(label.clone());
        let measured = runtime
            .block_on(measure(pattern, settings, dir.path(), bar, &label))
            .with_context(|| format!("measuring {}", pattern.name()))?;
        let slow = logging.take_slow();
        for (name, n) in &slow {
            *all_slow.entry(name.clone()).or_insert(0) += n;
        }
        let verdict = if pattern == Pattern::HeavyPostSaveBackground && !settings.worker {
            NO_WORKER_VERDICT
        } else {
            verdict(pattern, &measured, settings.heavy)
        };
        entries.push(Entry {
            side: "herald",
            verdict,
            measured,
            slow_warnings: Some(slow),
        });
        bar.inc(1);
    }
    Ok((entries, all_slow))
}

/// Runs of a pattern's work that finished, and a wake-up when they reach a target.
#[derive(Debug)]
struct Work {
    done: AtomicU64,
    target: AtomicU64,
    reached: Notify,
    /// Background tasks run at least once: the books whose task has finished, so a second run
    /// of one is not counted.
    books: Mutex<HashSet<i64>>,
}

impl Work {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            done: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            reached: Notify::new(),
            books: Mutex::new(HashSet::new()),
        })
    }

    fn count(&self) -> u64 {
        self.done.load(Ordering::SeqCst)
    }

    /// One run finished.
    fn finished(&self) {
        let done = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        if done >= self.target.load(Ordering::SeqCst) {
            self.reached.notify_one();
        }
    }

    /// The task of `book` finished; counted the first time only.
    fn finished_for(&self, book: Option<i64>) {
        let first = match book {
            Some(id) => self
                .books
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id),
            None => true,
        };
        if first {
            self.finished();
        }
    }

    /// Wait until `target` runs have finished or `deadline` has passed; true if they have.
    async fn wait_for(&self, target: u64, deadline: Duration) -> bool {
        self.target.store(target, Ordering::SeqCst);
        let until = tokio::time::Instant::now() + deadline;
        while self.count() < target {
            // `notify_one` keeps a permit: a run that finishes between the check and the wait
            // still wakes it.
            if tokio::time::timeout_at(until, self.reached.notified())
                .await
                .is_err()
            {
                return self.count() >= target;
            }
        }
        true
    }
}

/// One pattern on Herald: a fresh database and registry, the clients, and (background) the drain.
async fn measure(
    pattern: Pattern,
    settings: &Settings,
    dir: &Path,
    bar: &ProgressBar,
    label: &str,
) -> anyhow::Result<Measured> {
    let work = Work::new();
    let signals = Signals::builder()
        .slow_threshold(settings.slow_threshold())
        .build();
    connect(pattern, &signals, settings, &work);
    let url = format!(
        "sqlite://{}",
        dir.join(format!("seed_{}.db", pattern.name())).display()
    );
    let db = Db::open(&url)
        .signals(signals)
        .connect()
        .await
        .with_context(|| format!("opening {url}"))?;
    db.create_table::<Book>().await?;
    let worker = settings
        .runs_worker(pattern)
        .then(|| Running::spawn(background_worker(&db, settings, &work)));
    let (latencies, elapsed) = clients(&db, settings, bar, label).await?;
    let mut drain = None;
    if let Some(worker) = worker {
        bar.set_message(format!("{label}: waiting for the tasks"));
        let began = Instant::now();
        work.wait_for(latencies.len() as u64, settings.drain_deadline)
            .await;
        drain = Some(began.elapsed());
        worker.stop().await?;
    }
    tokio::task::spawn_blocking(move || db.close())
        .await
        .context("closing the database")?;
    Ok(Measured::new(
        pattern,
        latencies,
        elapsed,
        work.count(),
        drain,
    ))
}

/// Connect the pattern's one receiver, on the caller's side (the default). Each counts its work in
/// `work` once the work is done. The blocking ones are declared `blocking`, so that they run
/// through `block_in_place` instead of stalling the runtime's workers.
fn connect(pattern: Pattern, signals: &Signals, settings: &Settings, work: &Arc<Work>) {
    let (heavy, kind, work) = (settings.heavy, settings.work, work.clone());
    let connection = match pattern {
        Pattern::HeavyPreSaveBlocking => signals
            .pre_save::<Book>()
            .receiver(move |e: &mut PreSave<'_, Book>| {
                kind.block(heavy);
                e.instance.slug = slugify(&e.instance.title);
                work.finished();
                Ok(())
            })
            .name("heavy_pre_save")
            .blocking()
            .connect(),
        Pattern::HeavyPreSaveAsync => signals
            .pre_save::<Book>()
            .receiver_boxed(move |e| {
                let work = work.clone();
                Box::pin(async move {
                    kind.run(heavy).await?;
                    e.instance.slug = slugify(&e.instance.title);
                    work.finished();
                    Ok(())
                })
            })
            .name("heavy_pre_save_async")
            .connect(),
        Pattern::HeavyPostSaveAsync => signals
            .post_save::<Book>()
            .receiver_boxed(move |_e| {
                let work = work.clone();
                Box::pin(async move {
                    kind.run(heavy).await?;
                    work.finished();
                    Ok(())
                })
            })
            .name("heavy_post_save_async")
            .connect(),
        Pattern::LightPreSave => signals
            .pre_save::<Book>()
            .receiver(move |e: &mut PreSave<'_, Book>| {
                if e.instance.slug.is_empty() {
                    e.instance.slug = slugify(&e.instance.title);
                }
                work.finished();
                Ok(())
            })
            .name("light_pre_save")
            .connect(),
        Pattern::HeavyPostSaveBackground => signals
            .post_save::<Book>()
            .background(BACKGROUND_KIND, TaskOptions::default())
            .connect(),
        Pattern::HeavyPostSaveBlocking => signals
            .post_save::<Book>()
            .receiver(move |_e: &PostSave<'_, Book>| {
                kind.block(heavy);
                work.finished();
                Ok(())
            })
            .name("heavy_post_save")
            .blocking()
            .connect(),
    };
    connection.keep();
}

/// The worker that runs the background pattern's tasks: the heavy work, then counted.
fn background_worker(db: &Db, settings: &Settings, work: &Arc<Work>) -> Worker {
    let (heavy, kind, work) = (settings.heavy, settings.work, work.clone());
    Worker::new(db.clone())
        .concurrency(WORKER_CONCURRENCY)
        .model_task::<Book, _, _>(BACKGROUND_KIND, move |book: Book, _ctx: TaskContext| {
            let work = work.clone();
            async move {
                kind.run(heavy).await?;
                work.finished_for(book.id);
                Ok(())
            }
        })
}

/// Run the clients until the pattern's time is up: every save's latency in ms, and the time from
/// their start until the last one stopped.
async fn clients(
    db: &Db,
    settings: &Settings,
    bar: &ProgressBar,
    label: &str,
) -> anyhow::Result<(Vec<f64>, Duration)> {
    let saves = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + settings.duration;
    let mut running = JoinSet::new();
    for client in 0..settings.clients {
        running.spawn(save_until(db.clone(), client, until, saves.clone()));
    }
    let mut latencies = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            joined = running.join_next() => match joined {
                Some(joined) => latencies.extend(joined.context("a client stopped")??),
                None => break,
            },
            _ = tick.tick() => {
                bar.set_message(format!("{label}: {} saves", saves.load(Ordering::Relaxed)));
            }
        }
    }
    Ok((latencies, started.elapsed()))
}

/// One client: save new books one after another until `until`; each save's latency in ms.
async fn save_until(
    db: Db,
    client: usize,
    until: Instant,
    saves: Arc<AtomicU64>,
) -> anyhow::Result<Vec<f64>> {
    let mut latencies = Vec::new();
    while Instant::now() < until {
        let mut book = new_book(client * 1_000_000 + latencies.len());
        let one = Instant::now();
        db.save(&mut book)
            .await
            .with_context(|| format!("client {client} saving a book"))?;
        latencies.push(one.elapsed().as_secs_f64() * 1e3);
        saves.fetch_add(1, Ordering::Relaxed);
    }
    Ok(latencies)
}

fn print_table(report: &Report, slow: &BTreeMap<String, u64>) {
    println!("\n## Performance Comparison\n");
    println!(
        "Heavy work: {} {} ms. {} clients, {:.1} s per pattern, a fresh SQLite file (WAL/NORMAL) \
         per pattern. Herald's slow threshold: {} ms.\n",
        report.heavy_work.as_str(),
        report.heavy_ms,
        report.clients,
        report.seconds_per_pattern,
        report.slow_threshold_ms,
    );
    if !report.background_worker {
        println!(
            "Herald's background pattern ran with no worker (`--no-worker`): its tasks stayed \
             queued, so its work shows as not done.\n"
        );
    }
    println!(
        "| pattern | side | save p50 | save p99 | saves/s | work completed | drain | verdict (measured) | seed's verdict |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |");
    for pattern in Pattern::ALL {
        for side in ["herald", "django"] {
            if let Some(entry) = report.row(side, pattern) {
                print_row(entry, pattern);
            }
        }
    }
    println!();
    let ratio = |side: &str| {
        report
            .background_ratio(side)
            .map_or_else(|| "—".to_owned(), |r| format!("{r:.2}"))
    };
    let goal = match report.background_ratio("herald") {
        Some(r) if r <= BACKGROUND_GOAL => "met",
        Some(_) => "missed",
        None => "not measured",
    };
    print!(
        "background p50 / light p50: Herald {} (goal ≤ {BACKGROUND_GOAL:.2}: {goal})",
        ratio("herald")
    );
    if report.django_version.is_some() {
        print!(", Django {}", ratio("django"));
    }
    println!();
    println!("slow receivers named in warnings: {}", format_counts(slow));
    if let Some(version) = &report.django_version {
        println!(
            "Django: {version} on Python {}, one thread and connection per client, the same settings",
            report.python_version.as_deref().unwrap_or("?")
        );
    }
    if let Some(reason) = &report.django_skipped {
        println!("Django: skipped ({reason})");
    }
}

fn print_row(entry: &Entry, pattern: Pattern) {
    let m = &entry.measured;
    let side = if entry.side == "herald" {
        "Herald"
    } else {
        "Django"
    };
    println!(
        "| {} | {side} | {} | {} | {:.0} | {:.1} % ({}/{}) | {} | {} | {} |",
        pattern.name(),
        crate::format_ns(m.p50_ms * 1e6),
        crate::format_ns(m.p99_ms * 1e6),
        m.saves_per_second,
        m.completed_pct,
        m.work_completed,
        m.saves,
        m.drain_s
            .map_or_else(|| "—".to_owned(), |s| crate::format_ns(s * 1e9)),
        entry.verdict,
        pattern.seed_verdict(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAVY: Duration = Duration::from_millis(20);

    fn measured(saves: u64, work_completed: u64, p50_ms: f64) -> Measured {
        Measured {
            pattern: String::new(),
            saves,
            elapsed_s: 1.0,
            p50_ms,
            p99_ms: p50_ms,
            saves_per_second: saves as f64,
            work_completed,
            completed_pct: 100.0 * work_completed as f64 / saves as f64,
            drain_s: None,
        }
    }

    fn check(pattern: Pattern, m: Measured, expected: &str) {
        assert_eq!(verdict(pattern, &m, HEAVY), expected, "{pattern:?} {m:?}");
    }

    #[test]
    fn lost_work_is_bad_whatever_the_latency() {
        check(
            Pattern::HeavyPostSaveBackground,
            measured(100, 99, 0.1),
            "[X] Bad: heavy work lost",
        );
    }

    #[test]
    fn a_slow_save_before_the_write_blocks_both() {
        check(
            Pattern::HeavyPreSaveBlocking,
            measured(100, 100, 20.0),
            "[X] Bad: blocks the write and the response",
        );
    }

    #[test]
    fn a_slow_save_after_the_write_blocks_the_response() {
        check(
            Pattern::HeavyPostSaveBlocking,
            measured(100, 100, 25.0),
            "[!] OK but risky: blocks the response",
        );
    }

    #[test]
    fn a_fast_save_with_all_work_done_is_good() {
        check(Pattern::LightPreSave, measured(100, 100, 0.2), "[OK] Good");
        check(
            Pattern::HeavyPostSaveBackground,
            measured(100, 100, 19.9),
            "[OK] Good",
        );
    }

    #[test]
    fn figures_come_from_every_latency() {
        let latencies: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let m = Measured::new(
            Pattern::LightPreSave,
            latencies,
            Duration::from_secs(2),
            100,
            None,
        );
        assert_eq!((m.saves, m.p50_ms, m.p99_ms), (100, 51.0, 100.0));
        assert_eq!((m.saves_per_second, m.completed_pct), (50.0, 100.0));
        assert_eq!(m.pattern, "light_pre_save");
    }

    #[test]
    fn patterns_are_named_in_the_seed_order() {
        assert_eq!(Pattern::ALL.map(Pattern::name), SEED_PATTERNS);
        assert_eq!(Pattern::SEED, Pattern::ALL[..4]);
    }
}
