//! Django's side of the seed table: `django/seed.py` (built into this binary) run in a venv with
//! the pinned Django, with the same settings as Herald's side.
//!
//! The venv is created with `python3 -m venv` (or `$HERALD_BENCH_PYTHON -m venv`) and Django
//! installed into it with pip, once: a venv that already has the pinned Django is reused. Every
//! failure (no Python, no network, a script error) is an `Err` with the reason; the caller prints
//! it as "Django: skipped (..)" and goes on.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use indicatif::ProgressBar;
use serde::Deserialize;

use super::{Measured, Pattern, Settings};

/// The Django the baseline was measured with (`../shared/anchors/django`).
const DJANGO_VERSION: &str = "5.2.19";

/// The script, written to a scratch folder to run.
const SCRIPT: &str = include_str!("../../django/seed.py");

/// The longest a venv may take to be created.
const VENV_BOUND: Duration = Duration::from_secs(120);

/// The longest pip may take to install Django.
const INSTALL_BOUND: Duration = Duration::from_secs(600);

/// Lines of a failing command's stderr kept for its error.
const TAIL: usize = 20;

/// What the script printed.
#[derive(Deserialize, Debug)]
struct Printed {
    django: String,
    python: String,
    patterns: Vec<Measured>,
}

/// Django's figures.
#[derive(Debug)]
pub(super) struct DjangoRun {
    /// Django's version.
    pub(super) version: String,
    /// Python's version.
    pub(super) python: String,
    /// Every pattern, in the seed's order.
    pub(super) patterns: Vec<(Pattern, Measured)>,
}

impl DjangoRun {
    /// The script's report, if it has every pattern, in the seed's order.
    fn from_printed(printed: Printed) -> anyhow::Result<Self> {
        let names: Vec<&str> = printed
            .patterns
            .iter()
            .map(|m| m.pattern.as_str())
            .collect();
        if names != Pattern::SEED.map(Pattern::name) {
            bail!("the script reported the patterns {names:?}, not the seed's");
        }
        let patterns = Pattern::SEED.into_iter().zip(printed.patterns).collect();
        Ok(Self {
            version: printed.django,
            python: printed.python,
            patterns,
        })
    }
}

/// `<workspace>/target/herald-bench/django-venv`.
pub(super) fn default_venv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/herald-bench/django-venv")
}

/// Run the patterns on Django, in the venv at `venv` (created if needed). The bar shows which
/// pattern runs and advances one step per pattern.
pub(super) fn run(
    settings: &Settings,
    venv: &Path,
    bar: &ProgressBar,
) -> anyhow::Result<DjangoRun> {
    bar.set_message(format!("Django: preparing the venv at {}", venv.display()));
    let python = ensure_venv(venv)?;
    let dir = tempfile::tempdir().context("creating a scratch folder")?;
    let script = dir.path().join("seed.py");
    std::fs::write(&script, SCRIPT).with_context(|| format!("writing {}", script.display()))?;
    let mut command = Command::new(&python);
    command
        .arg(&script)
        .arg("--clients")
        .arg(settings.clients.to_string())
        .arg("--seconds")
        .arg(settings.duration.as_secs_f64().to_string())
        .arg("--heavy-ms")
        .arg(settings.heavy.as_millis().to_string())
        .arg("--heavy-work")
        .arg(settings.work.as_str())
        .arg("--drain-deadline")
        .arg(settings.drain_deadline.as_secs_f64().to_string())
        .arg("--dir")
        .arg(dir.path());
    let patterns = Pattern::SEED.len() as u32;
    let bound = (settings.duration + settings.drain_deadline) * patterns + Duration::from_secs(120);
    let stdout = run_bounded(command, bound, |line| {
        if let Some(pattern) = line.strip_prefix("pattern ") {
            bar.set_message(format!("Django {pattern}"));
        } else if line.starts_with("done ") {
            bar.inc(1);
        }
    })
    .context("running django/seed.py")?;
    let printed: Printed = serde_json::from_str(&stdout)
        .with_context(|| format!("reading django/seed.py's report `{}`", stdout.trim()))?;
    DjangoRun::from_printed(printed)
}

/// The venv's Python, with the pinned Django installed.
/// The isolation cases on Django (`seed.py --isolation`): every case but the async one.
pub(super) fn isolation(venv: &Path, seconds: f64) -> anyhow::Result<Vec<crate::isolation::Case>> {
    #[derive(Deserialize)]
    struct Printed {
        isolation: Vec<crate::isolation::Case>,
    }
    let python = ensure_venv(venv)?;
    let dir = tempfile::tempdir().context("creating a scratch folder")?;
    let script = dir.path().join("seed.py");
    std::fs::write(&script, SCRIPT).with_context(|| format!("writing {}", script.display()))?;
    let mut command = Command::new(&python);
    command
        .arg(&script)
        .arg("--isolation")
        .arg("--clients")
        .arg(crate::isolation::PLAIN_CLIENTS.to_string())
        .arg("--seconds")
        .arg(seconds.to_string())
        .arg("--heavy-ms")
        .arg(crate::isolation::SLOW.as_millis().to_string())
        .arg("--dir")
        .arg(dir.path());
    let bound = Duration::from_secs_f64(seconds * 6.0) + Duration::from_secs(120);
    let stdout = run_bounded(command, bound, |line| {
        if let Some(case) = line.strip_prefix("case ") {
            eprintln!("isolation: Django {case}");
        }
    })
    .context("running django/seed.py --isolation")?;
    let printed: Printed = serde_json::from_str(&stdout)
        .with_context(|| format!("reading django/seed.py's report `{}`", stdout.trim()))?;
    Ok(printed.isolation)
}

fn ensure_venv(venv: &Path) -> anyhow::Result<PathBuf> {
    let python = venv.join(if cfg!(windows) {
        "Scripts/python.exe"
    } else {
        "bin/python"
    });
    if django_version(&python).as_deref() == Some(DJANGO_VERSION) {
        return Ok(python);
    }
    if !python.exists() {
        if let Some(parent) = venv.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let base = std::env::var_os("HERALD_BENCH_PYTHON").unwrap_or_else(|| "python3".into());
        let mut command = Command::new(&base);
        command.arg("-m").arg("venv").arg(venv);
        run_bounded(command, VENV_BOUND, |_| {}).with_context(|| {
            format!("creating a venv with `{} -m venv`", base.to_string_lossy())
        })?;
    }
    let mut command = Command::new(&python);
    command.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--timeout",
        "30",
        &format!("django=={DJANGO_VERSION}"),
    ]);
    run_bounded(command, INSTALL_BOUND, |_| {})
        .with_context(|| format!("installing Django {DJANGO_VERSION} with pip"))?;
    match django_version(&python) {
        Some(version) if version == DJANGO_VERSION => Ok(python),
        found => bail!("pip installed Django, but the venv has {found:?}, not {DJANGO_VERSION}"),
    }
}

/// The Django version `python` imports, if it imports one.
fn django_version(python: &Path) -> Option<String> {
    let output = Command::new(python)
        .args(["-c", "import django; print(django.get_version())"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Run `command` to its end, within `bound` (then it is killed): its stdout, once it exited with
/// success. Each stderr line goes to `on_line` as it comes; a failure names the last ones.
fn run_bounded(
    mut command: Command,
    bound: Duration,
    mut on_line: impl FnMut(&str),
) -> anyhow::Result<String> {
    let what = format!("`{}`", command.get_program().to_string_lossy());
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let mut stdout = child.stdout.take().context("the child has no stdout")?;
    let stderr = child.stderr.take().context("the child has no stderr")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + bound;
    let mut tail = VecDeque::with_capacity(TAIL);
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                on_line(&line);
                if tail.len() == TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                // Already gone, or cannot be killed: either way there is nothing more to do.
                let _ = child.kill();
                let _ = child.wait();
                bail!("{what} took longer than {bound:?}");
            }
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for {what}"))?;
    let stdout = reader
        .join()
        .map_err(|_| anyhow!("reading {what}'s output failed"))?
        .with_context(|| format!("reading {what}'s output"))?;
    if !status.success() {
        let last = tail
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map_or("no output", |l| l.trim());
        bail!("{what} failed ({status}): {last}");
    }
    Ok(stdout)
}
