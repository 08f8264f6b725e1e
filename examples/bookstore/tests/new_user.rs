//! A new user's path: from a fresh clone, the README's two commands, exactly as written, work.
//!
//! The test reads the command lines under "The two commands" in the workspace's `README.md` (and
//! fails if the section or its two commands are gone, so that it follows the README instead of a
//! copy of it), `git clone`s the workspace's committed `HEAD` into a temporary directory, and there:
//!
//! 1. runs the first command (`cargo run --release -p bookstore`) through `sh -c`, waits for the
//!    line with the URL, checks that `/`, `/_herald` and `/metrics` answer, and stops it;
//! 2. runs the second command (`cargo test --workspace`) through `sh -c` with
//!    `HERALD_NESTED_NEW_USER=1`, which makes this very test, inside it, return at once; and
//!    expects it to succeed.
//!
//! Cargo holds a lock on its target directory while `cargo test` runs, so the nested commands
//! cannot build in the outer one: they use `<outer target>/new-user` (the outer target is
//! `CARGO_TARGET_DIR`, or the workspace's `target/`), which stays between runs, so that only the
//! first run builds everything. Their output is kept in `<outer target>/new-user/logs/`, and the
//! tails are printed if the test fails. Uncommitted changes are not in the clone: the test checks
//! what a new user would get from the repository.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Proc, addr_in, request};

/// Set for the nested `cargo test --workspace`: there this test only says so and returns.
const NESTED: &str = "HERALD_NESTED_NEW_USER";
/// Building the release binary from nothing on a small shared machine takes minutes.
const BUILD_AND_START: Duration = Duration::from_secs(45 * 60);
/// Building and running the whole suite from nothing takes longer.
const WHOLE_SUITE: Duration = Duration::from_secs(90 * 60);

#[test]
fn the_readmes_two_commands_work_in_a_fresh_clone() {
    if std::env::var_os(NESTED).is_some() {
        println!(
            "new_user: nested inside the new-user test's own `cargo test --workspace`: skipped"
        );
        return;
    }
    let root = workspace_root();
    let [serve, test] = readme_commands(&root);
    let target = outer_target_dir(&root).join("new-user");
    let logs = target.join("logs");
    std::fs::create_dir_all(&logs).expect("create the log directory");
    let clone = clone_head(&root);

    check_the_shop_serves(&serve, clone.path(), &target, &logs);
    check_the_suite_passes(&test, clone.path(), &target, &logs);
}

/// The repository's top directory, found from this package's directory with git.
fn workspace_root() -> PathBuf {
    let manifest = env!("CARGO_MANIFEST_DIR");
    let top = git(&["-C", manifest, "rev-parse", "--show-toplevel"]).unwrap_or_else(|e| {
        panic!("this test clones the repository around {manifest} with git, which failed: {e}")
    });
    PathBuf::from(top)
}

/// `git ARGS`'s trimmed stdout, or why it failed.
fn git(args: &[&str]) -> Result<String, String> {
    let output = Command::new("git")
        .args(args)
        .output()
        .map_err(|e| format!("git is not available ({e}); install git"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "`git {}` failed: {}",
            args.join(" "),
            stderr.trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The two command lines of README.md's "The two commands" section, in order.
fn readme_commands(root: &Path) -> [String; 2] {
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md is readable");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("The two commands"))
        .expect("README.md has no `## The two commands` section (this test runs its commands)");
    let commands = code_lines(section);
    commands.try_into().unwrap_or_else(|found: Vec<String>| {
        panic!("README.md's `The two commands` should show two command lines, found {found:?}")
    })
}

/// The lines of the Markdown code blocks in `text`: indented by four spaces, or fenced.
fn code_lines(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if (fenced || line.starts_with("    ")) && !line.trim().is_empty() {
            lines.push(line.trim().to_owned());
        }
    }
    lines
}

/// `CARGO_TARGET_DIR` if set (relative to the workspace if relative), else `target/`.
fn outer_target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// A fresh clone of the repository's committed `HEAD` in a temporary directory.
fn clone_head(root: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (root, into) = (
        root.to_str().expect("UTF-8"),
        dir.path().to_str().expect("UTF-8"),
    );
    git(&["clone", "--quiet", root, into]).unwrap_or_else(|e| panic!("cloning {root}: {e}"));
    let head = git(&["-C", root, "rev-parse", "HEAD"]).expect("the HEAD commit");
    let cloned = git(&["-C", into, "rev-parse", "HEAD"]).expect("the clone's HEAD commit");
    assert_eq!(cloned, head, "the clone is at the workspace's HEAD");
    if git(&["-C", root, "status", "--porcelain"]).is_ok_and(|s| !s.is_empty()) {
        println!("note: uncommitted changes in {root} are not in the clone, nor tested here");
    }
    dir
}

/// `sh -c COMMAND` in `dir`, building in `target`.
fn shell(command: &str, dir: &Path, target: &Path) -> Command {
    let mut shell = Command::new("sh");
    shell
        .args(["-c", command])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .env("NO_COLOR", "1")
        .env("CARGO_TERM_COLOR", "never");
    shell
}

/// The first command serves the shop: its URL line, then `/`, `/_herald` and `/metrics`.
fn check_the_shop_serves(command: &str, clone: &Path, target: &Path, logs: &Path) {
    let mut shop = Proc::spawn_group("run", shell(command, clone, target), logs);
    let line = shop.line_with("http://", BUILD_AND_START);
    let addr = addr_in(&line);
    // The shop's page; the dashboard and the metrics, each naming the shop's receivers.
    for (path, expected) in [
        ("/", ["<h1>Bookstore</h1>", "href=\"/_herald\""]),
        ("/_herald", ["<h1>Herald</h1>", "fill_slug"]),
        (
            "/metrics",
            ["# TYPE herald_receiver_calls_total", "fill_slug"],
        ),
    ] {
        let response = request(&addr, "GET", path, None);
        assert_eq!(response.status, 200, "GET {path}: {}", response.body);
        for text in expected {
            assert!(
                response.body.contains(text),
                "GET {path} should contain `{text}`: {}",
                response.body
            );
        }
    }
    drop(shop);
}

/// The second command runs the whole suite, this test returning early inside it, and passes.
fn check_the_suite_passes(command: &str, clone: &Path, target: &Path, logs: &Path) {
    let mut suite = shell(command, clone, target);
    suite.env(NESTED, "1");
    let mut suite = Proc::spawn_group("test", suite, logs);
    let status = suite.wait(WHOLE_SUITE);
    assert!(
        status.success(),
        "`{command}` in the clone failed: {status}"
    );
}
