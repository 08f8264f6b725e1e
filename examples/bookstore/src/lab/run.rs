//! A comparison run: for each pattern in turn, `books` saves by `clients` concurrent clients in
//! this process, each save timed; the background pattern then waits for its tasks. The figures
//! and the verdict of each pattern fill [`RunState::rows`] as soon as it is measured.
//!
//! Bounded: at most [`MAX_BOOKS`] books, [`MAX_CLIENTS`] clients and [`MAX_HEAVY_MS`] ms of work;
//! clients stop starting saves after [`SAVE_DEADLINE`] from the run's start, and the background
//! pattern waits at most [`DRAIN_DEADLINE`] for its tasks. One run at a time.
//!
//! The verdict is the rule `herald-bench`'s seed table uses (`crates/herald-bench/src/seed.rs`),
//! written again here in a few lines: the bench is a binary, and the rule is too small to be
//! worth a crate both depend on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{Lab, LabBook, Pattern, Work, count_run, work_completed};

pub(crate) const MAX_BOOKS: u64 = 1_000;
pub(crate) const MAX_CLIENTS: u64 = 32;
pub(crate) const MAX_HEAVY_MS: u64 = 1_000;
/// After this long from a run's start, no client starts another save.
pub(crate) const SAVE_DEADLINE: Duration = Duration::from_secs(90);
/// How long the background pattern waits for its tasks after its saves.
pub(crate) const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// What a run is asked to do.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct Settings {
    pub(crate) books: u64,
    pub(crate) clients: u64,
    pub(crate) heavy_ms: u64,
    #[serde(serialize_with = "work_name")]
    pub(crate) work: Work,
}

fn work_name<S: serde::Serializer>(work: &Work, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(work.name())
}

impl Settings {
    /// The settings, or what is wrong with them (a 400 names it).
    pub(crate) fn new(books: u64, clients: u64, heavy_ms: u64, work: &str) -> Result<Self, String> {
        if !(1..=MAX_BOOKS).contains(&books) {
            return Err(format!("books must be 1 to {MAX_BOOKS}, not {books}"));
        }
        if !(1..=MAX_CLIENTS).contains(&clients) {
            return Err(format!("clients must be 1 to {MAX_CLIENTS}, not {clients}"));
        }
        if !(1..=MAX_HEAVY_MS).contains(&heavy_ms) {
            return Err(format!(
                "heavy_ms must be 1 to {MAX_HEAVY_MS}, not {heavy_ms}"
            ));
        }
        let work = Work::from_name(work)
            .ok_or_else(|| format!("work must be sleep or cpu, not {work:?}"))?;
        Ok(Self {
            books,
            clients,
            heavy_ms,
            work,
        })
    }
}

/// One pattern's measured line of the table.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Row {
    pub(crate) pattern: &'static str,
    pub(crate) saves: u64,
    pub(crate) saves_per_s: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) work_completed: u64,
    /// Background pattern: from its last save until its last task finished (or the deadline).
    pub(crate) drain_ms: Option<f64>,
    pub(crate) verdict: &'static str,
    pub(crate) seed_verdict: &'static str,
}

/// The state of the latest run, as `GET /lab/run` shows it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct RunState {
    /// 0 until the first run.
    pub(crate) id: i64,
    pub(crate) running: bool,
    pub(crate) settings: Option<Settings>,
    /// What it is doing now, in words.
    pub(crate) doing: String,
    /// Steps done of `steps`: one per save, and one per background task awaited.
    pub(crate) done: u64,
    pub(crate) steps: u64,
    pub(crate) elapsed_s: f64,
    pub(crate) rows: Vec<Row>,
    /// Why the run ended early, or failed.
    pub(crate) stopped: Option<String>,
}

/// The runs of one lab: the latest one's state.
#[derive(Clone, Default)]
pub(crate) struct Runs {
    state: Arc<Mutex<RunState>>,
}

impl Runs {
    pub(crate) fn state(&self) -> MutexGuard<'_, RunState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Start a run on `lab` with `settings`; the state it starts with, or, if a run is going, an
/// error saying which.
pub(crate) fn start(lab: &Lab, settings: Settings) -> Result<RunState, String> {
    let id = {
        let mut state = lab.runs.state();
        if state.running {
            return Err(format!(
                "run {} is still going ({}); one run at a time",
                state.id, state.doing
            ));
        }
        // Microseconds since the epoch: unique across restarts, so that a leftover task of an
        // earlier run is never counted in this one.
        let id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        *state = RunState {
            id,
            running: true,
            settings: Some(settings),
            doing: "starting".to_owned(),
            done: 0,
            steps: settings.books * (Pattern::ALL.len() as u64 + 1),
            elapsed_s: 0.0,
            rows: Vec::new(),
            stopped: None,
        };
        id
    };
    count_run(id);
    let runner = lab.clone();
    tokio::spawn(async move {
        let outcome = run(&runner, id, settings).await;
        let mut state = runner.runs.state();
        state.running = false;
        state.doing = "finished".to_owned();
        if let Err(error) = outcome {
            state.stopped = Some(error);
            state.doing = "failed".to_owned();
        }
    });
    Ok(lab.runs.state().clone())
}

async fn run(lab: &Lab, id: i64, settings: Settings) -> Result<(), String> {
    let started = Instant::now();
    let deadline = started + SAVE_DEADLINE;
    let done = Arc::new(AtomicU64::new(0));
    for pattern in Pattern::ALL {
        lab.runs.state().doing = format!("saving with {}", pattern.name());
        let (latencies, elapsed) =
            clients(lab, id, pattern, settings, deadline, &done, started).await?;
        let saves = latencies.len() as u64;
        let mut drain = None;
        if pattern == Pattern::HeavyPostSaveBackground {
            lab.runs.state().doing = format!("waiting for {saves} background tasks");
            drain = Some(wait_for_tasks(lab, saves, &done, started).await);
        }
        let row = measured(pattern, latencies, elapsed, drain, settings.heavy_ms);
        let mut state = lab.runs.state();
        state.elapsed_s = started.elapsed().as_secs_f64();
        if saves < settings.books && state.stopped.is_none() {
            state.stopped = Some(format!(
                "time limit ({} s) reached: {} saved {saves} of {} books",
                SAVE_DEADLINE.as_secs(),
                pattern.name(),
                settings.books
            ));
        }
        state.rows.push(row);
    }
    lab.runs.state().elapsed_s = started.elapsed().as_secs_f64();
    Ok(())
}

/// `settings.clients` clients saving `settings.books` books of `pattern` between them: every
/// save's latency in ms, and the time from their start until the last one stopped.
async fn clients(
    lab: &Lab,
    id: i64,
    pattern: Pattern,
    settings: Settings,
    deadline: Instant,
    done: &Arc<AtomicU64>,
    started: Instant,
) -> Result<(Vec<f64>, Duration), String> {
    let next = Arc::new(AtomicU64::new(0));
    let began = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    for _ in 0..settings.clients {
        let (lab, next, done) = (lab.clone(), next.clone(), done.clone());
        running.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= settings.books || Instant::now() >= deadline {
                    break;
                }
                let mut book = LabBook {
                    id: None,
                    run: id,
                    pattern: pattern.name().to_owned(),
                    heavy_ms: i64::try_from(settings.heavy_ms).unwrap_or(i64::MAX),
                    work: settings.work.name().to_owned(),
                    title: format!("Run {id} book {n}"),
                    slug: String::new(),
                };
                let one = Instant::now();
                lab.save(pattern, &mut book)
                    .await
                    .map_err(|e| format!("saving a book with {}: {e}", pattern.name()))?;
                latencies.push(one.elapsed().as_secs_f64() * 1e3);
                let done = done.fetch_add(1, Ordering::SeqCst) + 1;
                let mut state = lab.runs.state();
                state.done = done;
                state.elapsed_s = started.elapsed().as_secs_f64();
            }
            Ok::<_, String>(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(joined) = running.join_next().await {
        latencies.extend(joined.map_err(|e| format!("a client stopped: {e}"))??);
    }
    Ok((latencies, began.elapsed()))
}

/// Wait until the background pattern's `saves` tasks have run, or [`DRAIN_DEADLINE`] has passed;
/// how long it waited.
async fn wait_for_tasks(lab: &Lab, saves: u64, done: &AtomicU64, started: Instant) -> Duration {
    let began = Instant::now();
    let before = done.load(Ordering::SeqCst);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        let ran = work_completed(Pattern::HeavyPostSaveBackground).min(saves);
        {
            let mut state = lab.runs.state();
            state.done = before + ran;
            state.elapsed_s = started.elapsed().as_secs_f64();
        }
        if ran >= saves || began.elapsed() >= DRAIN_DEADLINE {
            done.fetch_add(ran, Ordering::SeqCst);
            return began.elapsed();
        }
        tick.tick().await;
    }
}

fn measured(
    pattern: Pattern,
    mut latencies: Vec<f64>,
    elapsed: Duration,
    drain: Option<Duration>,
    heavy_ms: u64,
) -> Row {
    latencies.sort_by(f64::total_cmp);
    let saves = latencies.len() as u64;
    let work = work_completed(pattern);
    let p50_ms = percentile(&latencies, 0.50);
    Row {
        pattern: pattern.name(),
        saves,
        saves_per_s: saves as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_ms,
        p99_ms: percentile(&latencies, 0.99),
        work_completed: work,
        drain_ms: drain.map(|d| d.as_secs_f64() * 1e3),
        verdict: verdict(pattern, saves, work, p50_ms, heavy_ms as f64),
        seed_verdict: pattern.seed_verdict(),
    }
}

/// The nearest-rank `q` quantile of `sorted` (0 when empty), as `herald-bench` computes it.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n => sorted[((n as f64 * q) as usize).min(n - 1)],
    }
}

/// The verdict a measurement earns, in the seed's words, by `herald-bench`'s rule: work lost is
/// worst; then a save whose median takes at least as long as the heavy work blocks the response,
/// and the write too when the work runs before it.
fn verdict(pattern: Pattern, saves: u64, work: u64, p50_ms: f64, heavy_ms: f64) -> &'static str {
    if saves == 0 {
        "not measured: no save"
    } else if work < saves {
        "[X] Bad: heavy work lost"
    } else if p50_ms >= heavy_ms && pattern.before_write() {
        "[X] Bad: blocks the write and the response"
    } else if p50_ms >= heavy_ms {
        "[!] OK but risky: blocks the response"
    } else {
        "[OK] Good"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_bench_rule() {
        let v = |p, saves, work, p50| verdict(p, saves, work, p50, 20.0);
        assert_eq!(
            v(Pattern::HeavyPostSaveBackground, 100, 99, 0.1),
            "[X] Bad: heavy work lost"
        );
        assert_eq!(
            v(Pattern::HeavyPreSaveBlocking, 100, 100, 20.0),
            "[X] Bad: blocks the write and the response"
        );
        assert_eq!(
            v(Pattern::HeavyPostSaveBlocking, 100, 100, 25.0),
            "[!] OK but risky: blocks the response"
        );
        assert_eq!(v(Pattern::LightPreSave, 100, 100, 0.2), "[OK] Good");
        assert_eq!(
            v(Pattern::HeavyPostSaveBackground, 100, 100, 19.9),
            "[OK] Good"
        );
        assert_eq!(v(Pattern::LightPreSave, 0, 0, 0.0), "not measured: no save");
    }

    #[test]
    fn settings_are_bounded() {
        assert!(Settings::new(10, 4, 20, "sleep").is_ok());
        assert!(
            Settings::new(0, 4, 20, "sleep")
                .unwrap_err()
                .contains("books")
        );
        assert!(
            Settings::new(10, 33, 20, "cpu")
                .unwrap_err()
                .contains("clients")
        );
        assert!(
            Settings::new(10, 4, 5000, "cpu")
                .unwrap_err()
                .contains("heavy_ms")
        );
        assert!(
            Settings::new(10, 4, 20, "nap")
                .unwrap_err()
                .contains("sleep or cpu")
        );
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(
            (percentile(&sorted, 0.5), percentile(&sorted, 0.99)),
            (51.0, 100.0)
        );
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
