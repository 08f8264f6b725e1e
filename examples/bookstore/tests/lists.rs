//! The shop's lists over HTTP: pages of at most 100 rows, the next one named in a `Link` header
//! (JSON) or a link (HTML); books filtered by author and price; a book's price history; the
//! author's email on create only.

mod common;

use common::{Response, Server};
use herald::{Db, SqlType, Value};
use serde_json::json;

fn create(server: &Server, title: &str, price_cents: i64) -> i64 {
    let response = server.post_json(
        "/api/books",
        &json!({ "title": title, "price_cents": price_cents }),
    );
    assert_eq!(response.status, 201, "{}", response.body);
    response.json()["id"].as_i64().expect("an id")
}

fn update(server: &Server, id: i64, title: &str, price_cents: i64) {
    let body = json!({ "title": title, "price_cents": price_cents }).to_string();
    let response = server.send(
        "PUT",
        &format!("/api/books/{id}"),
        &[("Content-Type", "application/json")],
        &body,
    );
    assert_eq!(response.status, 200, "{}", response.body);
}

/// The path of the `Link: <path>; rel="next"` header, if any.
fn next_link(response: &Response) -> Option<String> {
    let link = response.header("link")?;
    assert!(link.ends_with("; rel=\"next\""), "{link}");
    Some(link[1..link.find('>')?].to_owned())
}

fn ids(response: &Response) -> Vec<i64> {
    response
        .json()
        .as_array()
        .unwrap_or_else(|| panic!("a list: {}", response.body))
        .iter()
        .map(|b| b["id"].as_i64().expect("an id"))
        .collect()
}

#[test]
fn book_pages_follow_their_link_headers_without_repeats_or_gaps_while_books_are_added() {
    let server = Server::start(&[("BOOKSTORE_SAMPLE_DATA", "0")]);
    let first: Vec<i64> = (0..5)
        .map(|n| create(&server, &format!("b{n}"), 100))
        .collect();

    let mut seen = Vec::new();
    let mut path = Some("/api/books?limit=2".to_owned());
    let mut added = Vec::new();
    while let Some(p) = path {
        let page = server.get(&p);
        assert_eq!(page.status, 200, "{p}: {}", page.body);
        let rows = ids(&page);
        assert!(rows.len() <= 2, "{p}: {rows:?}");
        seen.extend(rows);
        path = next_link(&page);
        // A book added while paging comes after every existing one: no page shifts.
        if added.len() < 2 {
            added.push(create(&server, "added while paging", 100));
        }
    }
    let expected: Vec<i64> = first.iter().chain(&added).copied().collect();
    assert_eq!(seen, expected, "every book once, in key order");

    // A full page by default is 100, and the last page names no next one.
    let extra: Vec<i64> = (0..100)
        .map(|n| create(&server, &format!("c{n}"), 1))
        .collect();
    let page = server.get("/api/books");
    assert_eq!(ids(&page).len(), 100);
    let next = next_link(&page).expect("a second page");
    let rest = server.get(&next);
    assert_eq!(ids(&rest).len(), expected.len() + extra.len() - 100);
    assert_eq!(next_link(&rest), None);
}

#[test]
fn a_bad_page_or_filter_is_a_400_naming_the_parameter() {
    let server = Server::start(&[("BOOKSTORE_SAMPLE_DATA", "0")]);
    for (path, message) in [
        (
            "/api/books?limit=101",
            "`limit` must be between 1 and 100, got 101",
        ),
        (
            "/api/books?limit=0",
            "`limit` must be between 1 and 100, got 0",
        ),
        (
            "/api/books?after=ten",
            "`after` must be a whole number, got \"ten\"",
        ),
        (
            "/api/books?min_price_cents=1.5",
            "`min_price_cents` must be a whole number, got \"1.5\"",
        ),
        (
            "/api/audit?limit=-1",
            "`limit` must be between 1 and 100, got -1",
        ),
        (
            "/api/emails?after=x",
            "`after` must be a whole number, got \"x\"",
        ),
    ] {
        let response = server.get(path);
        assert_eq!(response.status, 400, "{path}: {}", response.body);
        assert_eq!(response.json()["error"], message, "{path}");
    }
    let page = server.get("/?author_id=nobody");
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(
        page.body.contains("`author_id` must be a whole number"),
        "{}",
        page.body
    );
}

#[test]
fn books_filter_by_author_and_price_range_on_the_api_and_the_page() {
    // The sample data: Le Guin (author 1) at 12.99 and 10.99, Butler (author 2) at 9.99.
    let server = Server::start(&[]);
    let titles = |path: &str| -> Vec<String> {
        let response = server.get(path);
        assert_eq!(response.status, 200, "{path}: {}", response.body);
        let list = response.json();
        list.as_array()
            .expect("a list")
            .iter()
            .map(|b| b["title"].as_str().expect("a title").to_owned())
            .collect()
    };
    assert_eq!(titles("/api/books?author_id=2"), ["Kindred"]);
    assert_eq!(
        titles("/api/books?min_price_cents=1000&max_price_cents=1299"),
        ["The Left Hand of Darkness", "The Dispossessed"]
    );
    assert_eq!(
        titles("/api/books?author_id=1&max_price_cents=1100"),
        ["The Dispossessed"]
    );
    assert!(titles("/api/books?min_price_cents=5000").is_empty());

    // The page's filter form sends blank fields for filters not given.
    let page = server.get("/?author_id=2&min_price_cents=&max_price_cents=");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(">Kindred</a>"), "{}", page.body);
    assert!(!page.body.contains("Dispossessed"), "{}", page.body);
    assert!(
        page.body.contains("<option value=\"2\" selected>"),
        "{}",
        page.body
    );

    let authors = server.get("/api/authors").json();
    let names: Vec<&str> = authors
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names, ["Ursula K. Le Guin", "Octavia E. Butler"]);
    let page = server.get("/authors");
    assert!(
        page.body
            .contains("<a href=\"/?author_id=2\">Octavia E. Butler</a>"),
        "{}",
        page.body
    );
}

#[test]
fn the_home_page_shows_one_page_of_books_and_links_the_next() {
    let server = Server::start(&[("BOOKSTORE_SAMPLE_DATA", "0")]);
    let ids: Vec<i64> = (0..101)
        .map(|n| create(&server, &format!("t{n}"), 1))
        .collect();
    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert_eq!(page.body.matches("<tr><td><a href=\"/books/").count(), 100);
    let next = format!("/?after={}", ids[99]);
    assert!(
        page.body
            .contains(&format!("<a rel=\"next\" href=\"{next}\">")),
        "{}",
        page.body
    );
    let last = server.get(&next);
    assert_eq!(last.body.matches("<tr><td><a href=\"/books/").count(), 1);
    assert!(last.body.contains(">t100</a>"), "{}", last.body);
    assert!(!last.body.contains("rel=\"next\""), "{}", last.body);
}

#[test]
fn a_price_change_is_recorded_with_old_and_new_and_shown_on_the_books_page() {
    let server = Server::start(&[("BOOKSTORE_SAMPLE_DATA", "0")]);
    let id = create(&server, "Solaris", 800);
    update(&server, id, "Solaris", 950);
    update(&server, id, "Solaris (new edition)", 950);
    update(&server, id, "Solaris (new edition)", 700);

    let changes = server.get(&format!("/api/books/{id}/prices")).json();
    let pairs: Vec<(i64, i64)> = changes
        .as_array()
        .expect("a list")
        .iter()
        .map(|c| {
            (
                c["old_cents"].as_i64().unwrap(),
                c["new_cents"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [(800, 950), (950, 700)],
        "the title change is not one"
    );

    let page = server.get(&format!("/books/{id}"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body
            .contains("<tr><td class=\"num\">8.00</td><td class=\"num\">9.50</td></tr>"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("<tr><td class=\"num\">9.50</td><td class=\"num\">7.00</td></tr>"),
        "{}",
        page.body
    );
    assert_eq!(server.get("/books/999999").status, 404);
}

/// How many `email_author` tasks the shop's database holds, in the tasks table or still in the
/// outbox: each is appended in the transaction of the save that caused it, so the count is final
/// when the save has answered (a worker's move takes rows from one table to the other in one
/// transaction, and one statement reads both).
fn email_tasks(server: &Server) -> i64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let url = common::database_url(&server.dir);
    runtime.block_on(async {
        let db = Db::open(&url).connect().await.expect("the shop's database");
        let rows = db
            .read(|conn| {
                conn.query(
                    "SELECT (SELECT COUNT(*) FROM herald_tasks WHERE kind = 'email_author') \
                     + (SELECT COUNT(*) FROM herald_outbox WHERE kind = 'email_author')",
                    &[],
                    &[SqlType::Int],
                )
            })
            .await
            .expect("the task count");
        match rows.first().and_then(|r| r.first()) {
            Some(Value::Int(n)) => *n,
            other => panic!("a count, not {other:?}"),
        }
    })
}

#[test]
fn the_author_is_emailed_when_a_book_is_created_not_when_it_is_edited() {
    // No sample data: its books are saved while the server starts, and would race the count.
    let server = Server::start(&[("BOOKSTORE_SAMPLE_DATA", "0")]);
    let id = create(&server, "The Fifth Season", 1500);
    assert_eq!(email_tasks(&server), 1, "one email for the new book");
    update(&server, id, "The Fifth Season", 1600);
    update(&server, id, "The Obelisk Gate", 1600);
    assert_eq!(email_tasks(&server), 1, "edits send no email");
}
