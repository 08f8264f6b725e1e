//! The bookstore's command line (`herald-cli`): each command against a temporary database.

mod common;

use std::process::{Command, Output};

use common::{BIN, BOUND, Server, database_url};

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("bookstore runs")
}

/// Run the binary with `env` set, waiting at most [`BOUND`] for it to exit (a server that started
/// instead of refusing would run forever: then it is killed and the test fails).
fn run_bounded(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("bookstore runs");
    let exited = common::poll(BOUND, || child.try_wait().expect("try_wait"));
    if exited.is_none() {
        let _ = child.kill();
        let output = child.wait_with_output().expect("its output");
        panic!(
            "bookstore {args:?} was still running after {BOUND:?}: {}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
    child.wait_with_output().expect("its output")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The command failed with exactly one line on stderr, starting `error:`, containing `needle`.
fn check_one_line_error(output: &Output, needle: &str) {
    assert!(!output.status.success(), "exit code should not be 0");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(errors.len(), 1, "one line on stderr: {stderr}");
    assert!(errors[0].starts_with("error: "), "{}", errors[0]);
    assert!(errors[0].contains(needle), "`{needle}` in: {}", errors[0]);
}

#[test]
fn receivers_lists_every_receiver_with_its_source_location() {
    let output = run(&["receivers"]);
    assert!(output.status.success());
    let text = stdout(&output);
    for (name, phase) in [
        ("fill_slug", "caller"),
        ("check_price", "caller"),
        ("audit_save", "in_transaction"),
        ("invalidate_cache", "on_commit"),
        ("reindex_book", "background"),
        ("email_author", "background"),
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} missing from:\n{text}"));
        assert!(line.contains(phase), "{line}");
        assert!(line.contains("examples/bookstore/src/shop.rs:"), "{line}");
    }
    // A condition follows the location.
    for (name, condition) in [
        ("record_price_change", "(when price_cents changed)"),
        ("email_author", "(on create)"),
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} missing from:\n{text}"));
        assert!(line.ends_with(condition), "{line}");
    }
    for (name, phase) in [
        ("lab_heavy_pre_save", "caller"),
        ("lab_light_pre_save", "caller"),
        ("lab_heavy_post_save_background", "background"),
        ("lab_heavy_post_save", "caller"),
        ("lab_committed", "on_commit"),
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(name) && l.contains(phase))
            .unwrap_or_else(|| panic!("{name} ({phase}) missing from:\n{text}"));
        assert!(line.contains("LabBook"), "{line}");
        assert!(line.contains("examples/bookstore/src/lab.rs:"), "{line}");
    }
    assert!(
        text.contains("receivers --from"),
        "says where the running application's statistics are: {text}"
    );
}

#[test]
fn migrate_then_loaddata_then_tasks() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = database_url(&dir);
    let migrated = run(&["migrate", "--database", &url]);
    assert!(migrated.status.success(), "{migrated:?}");

    let fixture = dir.path().join("books.json");
    std::fs::write(
        &fixture,
        r#"[{"model": "bookstore.author", "pk": 1, "fields": {"name": "N. K. Jemisin", "email": "nk@example.invalid"}},
            {"model": "Book", "pk": 7, "fields": {"author_id": 1, "title": "The Fifth Season", "slug": "fifth", "price_cents": 1500}}]"#,
    )
    .expect("write the fixture");
    let loaded = run(&[
        "loaddata",
        fixture.to_str().expect("utf-8 path"),
        "--database",
        &url,
    ]);
    assert!(loaded.status.success(), "{loaded:?}");
    assert!(
        stdout(&loaded).contains("loaded 1 Book rows"),
        "{}",
        stdout(&loaded)
    );

    // Fixtures are saved with raw = true: the book's reindex is enqueued, its email is not
    // (`skip_raw`); no worker ran here, so the one task waits.
    let counts = run(&["tasks", "counts", "--database", &url]);
    assert!(counts.status.success(), "{counts:?}");
    let text = stdout(&counts);
    assert!(
        text.lines()
            .any(|l| l.contains("available") && l.trim_end().ends_with(" 1")),
        "{text}"
    );
    let dead = run(&["tasks", "dead", "--database", &url]);
    assert!(dead.status.success(), "{dead:?}");
    check_one_line_error(
        &run(&["tasks", "retry", "999", "--database", &url]),
        "task 999",
    );
    let purged = run(&["tasks", "purge", "completed", "--database", &url]);
    assert!(stdout(&purged).contains("purged 0 completed"), "{purged:?}");
}

#[test]
fn a_bad_database_url_is_one_line_and_a_failure() {
    let output = run(&["migrate", "--database", "nosuchdb://nowhere"]);
    check_one_line_error(&output, "nosuchdb://nowhere");
}

#[test]
fn an_unreachable_server_is_one_line_that_hides_the_password() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let output = run(&[
        "migrate",
        "--database",
        "postgres://shop:hunter2@127.0.0.1:1/shop",
    ]);
    check_one_line_error(&output, "postgres://shop:***@127.0.0.1:1/shop");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn a_missing_fixture_file_is_one_line_and_a_failure() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let missing = dir.path().join("missing.json");
    let output = run(&[
        "loaddata",
        missing.to_str().expect("utf-8 path"),
        "--database",
        &database_url(&dir),
    ]);
    check_one_line_error(&output, "missing.json");
}

#[test]
fn an_unknown_task_state_is_one_line_and_a_failure() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let output = run(&[
        "tasks",
        "purge",
        "sideways",
        "--database",
        &database_url(&dir),
    ]);
    check_one_line_error(&output, "sideways");
}

#[test]
fn a_fixture_row_for_an_unknown_model_is_one_line_and_a_failure() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let fixture = dir.path().join("bad.json");
    std::fs::write(
        &fixture,
        r#"[{"model": "shop.unicorn", "pk": 1, "fields": {}}]"#,
    )
    .expect("write the fixture");
    let output = run(&[
        "loaddata",
        fixture.to_str().expect("utf-8 path"),
        "--database",
        &database_url(&dir),
    ]);
    check_one_line_error(&output, "shop.unicorn");
}

#[test]
fn a_schema_for_a_sqlite_database_is_one_line_and_a_failure() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = database_url(&dir);
    let output = run(&["migrate", "--database", &url, "--schema", "shop"]);
    check_one_line_error(&output, "SQLite");
    let output = Command::new(BIN)
        .args(["tasks", "--database", &url])
        .env("HERALD_SCHEMA", "shop")
        .output()
        .expect("bookstore runs");
    check_one_line_error(&output, "HERALD_SCHEMA `shop`");
}

#[test]
fn serve_options_before_another_command_are_refused() {
    let output = run(&["--port", "8000", "worker"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`--port` before `worker`"), "{stderr}");
}

#[test]
fn receivers_from_the_running_server_show_their_statistics() {
    let server = Server::start(&[("BOOKSTORE_SAMPLE_DATA", "0")]);
    for title in ["The Lathe of Heaven", "Dawn"] {
        let created = server.post_json(
            "/api/books",
            &serde_json::json!({ "title": title, "price_cents": 700 }),
        );
        assert_eq!(created.status, 201, "{}", created.body);
    }
    let dashboard = format!("http://{}/_herald", server.addr);
    let output = run(&["receivers", "--from", &dashboard]);
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output);
    assert!(text.contains("calls"), "{text}");
    let fill_slug = text
        .lines()
        .find(|l| l.starts_with("fill_slug "))
        .unwrap_or_else(|| panic!("fill_slug listed: {text}"));
    let columns: Vec<&str> = fill_slug.split_whitespace().collect();
    // receiver, signal, sender, phase, priority, calls, errors, p50, p99, max, location
    assert_eq!(
        &columns[1..5],
        ["pre_save", "Book", "caller", "10"],
        "{fill_slug}"
    );
    assert_eq!(columns[5], "2", "two saves, two calls: {fill_slug}");
    assert_eq!(columns[6], "0", "no errors: {fill_slug}");
    assert!(
        columns[7].parse::<f64>().is_ok_and(|us| us > 0.0),
        "{fill_slug}"
    );
    assert!(columns[10].contains("shop.rs"), "{fill_slug}");
}

#[test]
fn serve_prints_the_dashboard_and_metrics_where_the_shop_mounts_them() {
    let server = Server::start(&[("BOOKSTORE_SAMPLE_DATA", "0")]);
    let addr = &server.addr;
    assert!(
        server.url_line.starts_with(&format!(
            "bookstore serving http://{addr}/ (dashboard http://{addr}/_herald, metrics http://{addr}/metrics) on "
        )),
        "{}",
        server.url_line
    );
    for path in ["/_herald", "/metrics"] {
        assert_eq!(server.get(path).status, 200, "{path} answers");
    }
}

#[test]
fn receivers_from_the_shops_own_url_find_its_dashboard() {
    let server = Server::start(&[("BOOKSTORE_SAMPLE_DATA", "0")]);
    let created = server.post_json(
        "/api/books",
        &serde_json::json!({ "title": "Kindred", "price_cents": 700 }),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let shop = format!("http://{}/", server.addr);
    let output = run(&["receivers", "--from", &shop]);
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output);
    let fill_slug = text
        .lines()
        .find(|l| l.starts_with("fill_slug "))
        .unwrap_or_else(|| panic!("fill_slug listed: {text}"));
    assert_eq!(
        fill_slug.split_whitespace().nth(5),
        Some("1"),
        "one save, one call: {fill_slug}"
    );
    assert!(
        text.contains(&format!("as http://{}/_herald reports them", server.addr)),
        "read from the path the shop mounts its dashboard at: {text}"
    );
}

#[test]
fn receivers_from_a_wrong_url_is_one_line_and_a_failure() {
    let port = common::free_port();
    let output = run(&[
        "receivers",
        "--from",
        &format!("http://127.0.0.1:{port}/_herald"),
    ]);
    check_one_line_error(&output, &format!("127.0.0.1:{port}/_herald/api/receivers"));
}

#[test]
fn a_dashboard_token_that_cannot_work_stops_serve_before_it_starts() {
    for (token, needle) in [
        (
            "   ",
            "HERALD_DASHBOARD_TOKEN is refused: the dashboard token is blank",
        ),
        (
            "hunter2",
            "the dashboard token has 7 characters; it needs at least 16",
        ),
        (
            "pässwörd-pässwörd-pässwörd",
            "cannot go in an HTTP header (character 2)",
        ),
        (
            "a token with spaces in it",
            "cannot go in an HTTP header (character 2)",
        ),
    ] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let output = run_bounded(
            &["serve", "--port", "0", "--database", &database_url(&dir)],
            &[("HERALD_DASHBOARD_TOKEN", token)],
        );
        assert_eq!(output.status.code(), Some(1), "{token:?}: {output:?}");
        check_one_line_error(&output, needle);
        assert!(
            stdout(&output).is_empty(),
            "{token:?}: nothing served, no URL printed: {}",
            stdout(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            token.trim().is_empty() || !stderr.contains(token),
            "the token is not echoed: {stderr}"
        );
        assert!(
            !dir.path().join("bookstore.db").exists(),
            "{token:?}: refused before the database was opened"
        );
    }
}

#[test]
fn pending_tasks_are_cancelled_and_only_finished_ones_purged() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = database_url(&dir);
    assert!(run(&["migrate", "--database", &url]).status.success());
    let fixture = dir.path().join("books.json");
    std::fs::write(
        &fixture,
        r#"[{"model": "Author", "pk": 1, "fields": {"name": "Octavia E. Butler", "email": "oeb@example.invalid"}},
            {"model": "Book", "pk": 1, "fields": {"author_id": 1, "title": "Kindred", "slug": "kindred", "price_cents": 999}},
            {"model": "Book", "pk": 2, "fields": {"author_id": 1, "title": "Dawn", "slug": "dawn", "price_cents": 899}}]"#,
    )
    .expect("write the fixture");
    let loaded = run(&[
        "loaddata",
        fixture.to_str().expect("utf-8 path"),
        "--database",
        &url,
    ]);
    assert!(loaded.status.success(), "{loaded:?}");
    let count = |state: &str| -> u64 {
        let counts = run(&["tasks", "counts", "--database", &url]);
        stdout(&counts)
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some(state))
            .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok())
            .sum()
    };
    assert_eq!(
        count("available"),
        2,
        "two reindex tasks wait (no worker ran)"
    );

    // Purging pending work is refused, saying to cancel it; nothing is deleted.
    let purge = run(&["tasks", "purge", "available", "--database", &url]);
    check_one_line_error(&purge, "available tasks cannot be purged");
    check_one_line_error(&purge, "cancel them instead");
    check_one_line_error(
        &run(&["tasks", "purge", "running", "--database", &url]),
        "running tasks cannot be purged",
    );
    assert_eq!(count("available"), 2);

    let one = run(&["tasks", "cancel", "1", "--database", &url]);
    assert!(one.status.success(), "{one:?}");
    assert_eq!(stdout(&one).trim(), "task 1 cancelled");
    check_one_line_error(
        &run(&["tasks", "cancel", "1", "--database", &url]),
        "task 1 is cancelled: only pending (available or running) tasks can be cancelled",
    );
    check_one_line_error(
        &run(&["tasks", "cancel", "999", "--database", &url]),
        "no task with id 999",
    );
    let by_kind = run(&[
        "tasks",
        "cancel",
        "--kind",
        "reindex_book",
        "--database",
        &url,
    ]);
    assert!(by_kind.status.success(), "{by_kind:?}");
    assert_eq!(
        stdout(&by_kind).trim(),
        "cancelled 1 pending reindex_book tasks"
    );
    assert_eq!((count("available"), count("cancelled")), (0, 2));

    let purged = run(&["tasks", "purge", "cancelled", "--database", &url]);
    assert!(purged.status.success(), "{purged:?}");
    assert_eq!(stdout(&purged).trim(), "purged 2 cancelled tasks");
    assert_eq!(count("cancelled"), 0);
}

#[test]
fn commands_that_use_an_existing_database_do_not_create_one() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let typo = dir.path().join("typo.db");
    let url = format!("sqlite://{}", typo.display());
    let expected = format!("no database at {}", typo.display());
    for args in [
        &["tasks", "--database", &url][..],
        &["tasks", "dead", "--database", &url],
        &["tasks", "cancel", "1", "--database", &url],
        &["worker", "--database", &url],
    ] {
        let output = run_bounded(args, &[]);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {output:?}");
        check_one_line_error(&output, &expected);
        check_one_line_error(&output, "migrate --database");
        assert!(stdout(&output).is_empty(), "{args:?}: {}", stdout(&output));
    }
    let fixture = dir.path().join("books.json");
    std::fs::write(&fixture, "[]").expect("write the fixture");
    let output = run(&[
        "loaddata",
        fixture.to_str().expect("utf-8 path"),
        "--database",
        &url,
    ]);
    check_one_line_error(&output, &expected);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("the directory")
        .map(|e| e.expect("an entry").file_name())
        .collect();
    assert_eq!(left, ["books.json"], "no database file was created");

    // `migrate` creates it; then the same listing works.
    assert!(run(&["migrate", "--database", &url]).status.success());
    let listed = run(&["tasks", "--database", &url]);
    assert!(listed.status.success(), "{listed:?}");
}

#[test]
fn loaddata_into_a_database_that_was_never_migrated_says_to_migrate() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = database_url(&dir);
    // An existing database without the shop's tables: an empty SQLite file.
    std::fs::File::create(dir.path().join("bookstore.db")).expect("an empty database file");
    let fixture = dir.path().join("authors.json");
    std::fs::write(
        &fixture,
        r#"[{"model": "Author", "pk": 1, "fields": {"name": "Ursula K. Le Guin", "email": "ukl@example.invalid"}}]"#,
    )
    .expect("write the fixture");
    let output = run(&[
        "loaddata",
        fixture.to_str().expect("utf-8 path"),
        "--database",
        &url,
    ]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    check_one_line_error(&output, "no such table: authors");
    check_one_line_error(
        &output,
        &format!("run `bookstore migrate --database {url}` first"),
    );

    assert!(run(&["migrate", "--database", &url]).status.success());
    let loaded = run(&[
        "loaddata",
        fixture.to_str().expect("utf-8 path"),
        "--database",
        &url,
    ]);
    assert!(loaded.status.success(), "{loaded:?}");
    assert!(
        stdout(&loaded).contains("loaded 1 Author rows"),
        "{}",
        stdout(&loaded)
    );
}
