//! The bookstore end to end over HTTP: the binary on a free loopback port and a fresh database.

mod common;

use common::Server;
use serde_json::json;

fn create(server: &Server, title: &str, price_cents: i64) -> serde_json::Value {
    let response = server.post_json(
        "/api/books",
        &json!({ "title": title, "price_cents": price_cents }),
    );
    assert_eq!(response.status, 201, "{}", response.body);
    response.json()
}

#[test]
fn a_created_book_reads_back_with_its_slug() {
    let server = Server::start(&[]);
    let book = create(&server, "The Word for World Is Forest", 899);
    assert_eq!(book["slug"], "the-word-for-world-is-forest");
    let id = book["id"].as_i64().expect("an id");
    let read = server.get(&format!("/api/books/{id}"));
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["slug"], "the-word-for-world-is-forest");
}

#[test]
fn a_negative_price_is_refused_naming_the_receiver() {
    let server = Server::start(&[]);
    let response = server.post_json("/api/books", &json!({ "title": "Free", "price_cents": -5 }));
    assert_eq!(response.status, 422, "{}", response.body);
    let body = response.json();
    assert_eq!(body["receiver"], "bookstore::shop::check_price");
    assert!(
        body["error"]
            .as_str()
            .expect("a message")
            .contains("negative")
    );
    let books = server.get("/api/books").json();
    let titles: Vec<&str> = books
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|b| b["title"].as_str())
        .collect();
    assert!(!titles.contains(&"Free"), "nothing is written: {titles:?}");
}

#[test]
fn every_save_writes_an_audit_row() {
    let server = Server::start(&[]);
    let book = create(&server, "Kindred", 999);
    let key = book["id"].to_string();
    let audit = server.get("/api/audit").json();
    let found = audit.as_array().expect("a list").iter().any(|row| {
        row["model"] == "Book"
            && row["key"].as_str() == Some(key.as_str())
            && row["action"] == "created"
    });
    assert!(found, "no audit row for Book {key}: {audit}");
}

#[test]
fn the_search_index_is_rebuilt_in_the_background() {
    let server = Server::start(&[]);
    let book = create(&server, "The Lathe of Heaven", 1099);
    let id = book["id"].as_i64().expect("an id");
    let terms = server.wait_for(&format!("/api/books/{id}/search"), |r| {
        (r.status == 200).then(|| r.json()["terms"].as_str().map(str::to_owned))?
    });
    assert_eq!(terms, "heaven lathe of the");
}

#[test]
fn every_response_that_saves_has_server_timing() {
    let server = Server::start(&[]);
    let response = server.post_json(
        "/api/books",
        &json!({ "title": "Solaris", "price_cents": 800 }),
    );
    let timing = response
        .header("server-timing")
        .expect("a Server-Timing header");
    assert!(timing.contains("pre_save;dur="), "{timing}");
    assert!(timing.contains("fill_slug"), "{timing}");
}

#[test]
fn a_failing_email_is_retried_until_it_is_sent() {
    // The 1st, 3rd, 5th.. attempts fail: the one book's email fails once and then goes out.
    let server = Server::start(&[
        ("BOOKSTORE_SAMPLE_DATA", "0"),
        ("BOOKSTORE_EMAIL_FAIL_EVERY", "2"),
    ]);
    let book = create(&server, "Parable of the Sower", 1199);
    let emails = server.wait_for("/api/emails", |r| {
        let list = r.json();
        (!list.as_array()?.is_empty()).then_some(list)
    });
    assert_eq!(emails[0]["book_id"], book["id"]);
    let metrics = server.get("/metrics").body;
    let retries = metrics
        .lines()
        .find(|l| l.starts_with("herald_task_retries_total{kind=\"email_author\"}"))
        .unwrap_or_else(|| panic!("no email retries in:\n{metrics}"));
    assert!(retries.ends_with(" 1"), "one retry: {retries}");
}

#[test]
fn an_email_that_always_fails_ends_dead_with_its_error() {
    let server = Server::start(&[
        ("BOOKSTORE_SAMPLE_DATA", "0"),
        ("BOOKSTORE_EMAIL_FAIL_EVERY", "1"),
    ]);
    create(&server, "Dawn", 999);
    let dead = server.wait_for("/api/tasks", |r| {
        let tasks = r.json();
        let dead = tasks["dead"].as_array()?.first()?.clone();
        Some(dead)
    });
    assert_eq!(dead["kind"], "email_author");
    assert_eq!(dead["attempt"], 3);
    assert!(
        dead["error"]
            .as_str()
            .expect("an error")
            .contains("deliberate, simulated mail failure")
    );
}

#[test]
fn with_no_worker_a_separate_worker_process_runs_the_tasks() {
    let server = Server::start_with(&[("BOOKSTORE_SAMPLE_DATA", "0")], &["--no-worker"]);
    let book = create(&server, "Always Coming Home", 1399);
    let id = book["id"].as_i64().expect("an id");
    let tasks = server.get("/api/tasks").json();
    assert!(
        tasks["counts"]
            .as_array()
            .expect("a list")
            .iter()
            .any(|c| c["state"] == "available"),
        "the tasks wait for a worker: {tasks}"
    );
    let worker = std::process::Command::new(common::BIN)
        .args(["worker", "--database", &common::database_url(&server.dir)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("bookstore worker starts");
    let _worker = common::Killed(worker);
    let terms = server.wait_for(&format!("/api/books/{id}/search"), |r| {
        (r.status == 200).then(|| r.json()["terms"].as_str().map(str::to_owned))?
    });
    assert_eq!(terms, "always coming home");
}

/// What a page on another site makes the visitor's browser send along with its form.
const FROM_EVIL: [(&str, &str); 2] = [
    ("Origin", "http://evil.example"),
    ("Sec-Fetch-Site", "cross-site"),
];
const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");
const JSON: (&str, &str) = ("Content-Type", "application/json");

fn titles(server: &Server) -> Vec<String> {
    server
        .get("/api/books")
        .json()
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|b| b["title"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn another_site_cannot_change_the_shop() {
    let server = Server::start(&[("BOOKSTORE_SAMPLE_DATA", "0")]);
    let book = create(&server, "The Left Hand of Darkness", 999);
    let id = book["id"].as_i64().expect("an id");
    let form = [FORM, FROM_EVIL[0], FROM_EVIL[1]];
    let json = [JSON, FROM_EVIL[0], FROM_EVIL[1]];
    let attempts = [
        ("POST", format!("/books/{id}/delete"), &form, String::new()),
        (
            "POST",
            "/books".to_owned(),
            &form,
            "title=Spam&price_cents=1".to_owned(),
        ),
        (
            "POST",
            format!("/books/{id}"),
            &form,
            "title=Defaced&price_cents=1".to_owned(),
        ),
        (
            "POST",
            "/api/books".to_owned(),
            &json,
            json!({ "title": "Spam", "price_cents": 1 }).to_string(),
        ),
        (
            "PUT",
            format!("/api/books/{id}"),
            &json,
            json!({ "title": "Defaced", "price_cents": 1 }).to_string(),
        ),
        ("DELETE", format!("/api/books/{id}"), &json, String::new()),
    ];
    for (method, path, headers, body) in &attempts {
        let response = server.send(method, path, &headers[..], body);
        assert_eq!(response.status, 403, "{method} {path}: {}", response.body);
        let error = response.json()["error"]
            .as_str()
            .expect("a message")
            .to_owned();
        assert!(
            error.contains("cross-site request refused") && error.contains("http://evil.example"),
            "{method} {path}: {error}"
        );
    }
    // A browser that sends only Origin is refused too.
    let response = server.send(
        "POST",
        &format!("/books/{id}/delete"),
        &[FORM, ("Origin", "http://evil.example")],
        "",
    );
    assert_eq!(response.status, 403, "{}", response.body);
    assert!(
        response.body.contains("cross-origin request refused"),
        "{}",
        response.body
    );

    assert_eq!(
        titles(&server),
        ["The Left Hand of Darkness"],
        "nothing changed"
    );
}

#[test]
fn the_shops_own_forms_still_change_it() {
    let server = Server::start(&[("BOOKSTORE_SAMPLE_DATA", "0")]);
    let origin = format!("http://{}", server.addr);
    let own = [
        FORM,
        ("Origin", origin.as_str()),
        ("Sec-Fetch-Site", "same-origin"),
    ];
    let created = server.send("POST", "/books", &own, "title=Kindred&price_cents=999");
    assert_eq!(created.status, 303, "{}", created.body);
    assert_eq!(created.header("location"), Some("/"));
    let books = server.get("/api/books").json();
    let id = books[0]["id"].as_i64().expect("an id");
    assert_eq!(titles(&server), ["Kindred"]);
    let deleted = server.send("POST", &format!("/books/{id}/delete"), &own, "");
    assert_eq!(deleted.status, 303, "{}", deleted.body);
    assert!(titles(&server).is_empty());
}

/// The text a browser shows for `html`: character references (`&#60;`, `&lt;`, ...) decoded,
/// tags left in place.
fn decode_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let decoded = match entity {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix('#')
                .and_then(|n| n.parse::<u32>().ok())
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A title with markup in it is shown as text on the shop's list, on the book's page and on its
/// edit page (in the page's title, its heading and the form's `value`), never run.
#[test]
fn markup_in_a_title_is_shown_as_text_on_the_shop_pages() {
    const HOSTILE: &str = "<script>alert(\"x\")</script><img src=x onerror='y'>&";
    let server = Server::start(&[("BOOKSTORE_SAMPLE_DATA", "0")]);
    let id = create(&server, HOSTILE, 999)["id"].as_i64().expect("an id");
    for (path, places) in [
        (
            "/".to_owned(),
            vec![format!("<td><a href=\"/books/{id}\">{HOSTILE}</a></td>")],
        ),
        (
            format!("/books/{id}"),
            vec![
                format!("<title>{HOSTILE}</title>"),
                format!("<h1>{HOSTILE}</h1>"),
            ],
        ),
        (
            format!("/books/{id}/edit"),
            vec![
                format!("<title>Edit {HOSTILE}</title>"),
                format!("<h1>Edit {HOSTILE}</h1>"),
                format!("value=\"{HOSTILE}\""),
            ],
        ),
    ] {
        let page = server.get(&path);
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        assert!(
            !page.body.contains("<script") && !page.body.contains("<img"),
            "{path}: {}",
            page.body
        );
        assert!(
            !page.body.contains("onerror='y'") && !page.body.contains("alert(\"x\")"),
            "{path}: quotes are escaped, so no attribute is closed early: {}",
            page.body
        );
        let shown = decode_html(&page.body);
        for place in places {
            assert!(shown.contains(&place), "{path}: {place} in {shown}");
        }
    }
}

/// A form the shop refuses (a receiver's veto) answers with the refusal's status and a page
/// naming the reason, and writes nothing.
#[test]
fn a_refused_form_shows_why_on_a_page() {
    let server = Server::start(&[("BOOKSTORE_SAMPLE_DATA", "0")]);
    let origin = format!("http://{}", server.addr);
    let own = [FORM, ("Origin", origin.as_str())];
    let refused = server.send("POST", "/books", &own, "title=Free&price_cents=-5");
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        refused.body.contains("<title>Not saved</title>")
            && refused.body.contains("<p class=\"error\">")
            && refused.body.contains("price must not be negative, got -5"),
        "{}",
        refused.body
    );
    assert!(titles(&server).is_empty(), "nothing is written");
}
