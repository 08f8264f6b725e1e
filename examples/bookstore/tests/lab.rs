//! The lab's HTTP side: a save answers its steps and its Server-Timing and leaves the shop alone;
//! comparison runs are bounded and one at a time; another site cannot start either.

mod common;

use common::Server;
use serde_json::json;

/// The calls of the receiver with this short name, from the dashboard's report.
fn calls(server: &Server, short_name: &str) -> u64 {
    let report = server.get("/_herald/api/receivers").json();
    report["receivers"]
        .as_array()
        .expect("a list of receivers")
        .iter()
        .find(|r| r["short_name"] == short_name)
        .unwrap_or_else(|| panic!("{short_name} in {report}"))["calls"]
        .as_u64()
        .expect("a count")
}

#[test]
fn a_lab_save_answers_its_steps_and_server_timing_and_leaves_the_shop_alone() {
    let server = Server::start(&[("BOOKSTORE_SAMPLE_DATA", "0")]);
    let saved = server.post_json(
        "/lab/save",
        &json!({ "pattern": "heavy_post_save_blocking", "heavy_ms": 5, "work": "cpu" }),
    );
    assert_eq!(saved.status, 200, "{}", saved.body);
    let timing = saved
        .header("server-timing")
        .expect("a Server-Timing header");
    for entry in [
        "post_save;dur=",
        "recv_lab_heavy_post_save;",
        "on_commit;",
        "db;",
        "total;",
    ] {
        assert!(timing.contains(entry), "{entry} in {timing}");
    }
    let body = saved.json();
    let ran: Vec<(String, String)> = body["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["kind"] == "receiver")
        .map(|s| {
            (
                s["name"].as_str().unwrap_or("").to_owned(),
                s["ran"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        ran,
        [
            ("lab_heavy_post_save".to_owned(), "caller".to_owned()),
            ("lab_committed".to_owned(), "on_commit".to_owned())
        ],
        "only the pattern's receiver, then the commit's: {body}"
    );
    let heavy = &body["steps"].as_array().expect("steps")[1];
    assert!(
        heavy["dur_ms"].as_f64().expect("a duration") >= 5.0,
        "{heavy}"
    );
    assert_eq!(
        body["book"]["slug"], "",
        "the light pattern's slug receiver was muted"
    );

    // The shop's every-model audit was muted: no audit row, no call counted.
    assert_eq!(server.get("/api/audit").json(), json!([]));
    assert_eq!(calls(&server, "audit_save"), 0);
    assert_eq!(calls(&server, "lab_heavy_post_save"), 1);
    assert_eq!(calls(&server, "lab_light_pre_save"), 0);

    let bad = server.post_json(
        "/lab/save",
        &json!({ "pattern": "heavy_everything", "heavy_ms": 5, "work": "cpu" }),
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(
        bad.json()["error"]
            .as_str()
            .expect("a message")
            .contains("heavy_everything")
    );
}

#[test]
fn a_run_is_bounded_and_refused_while_another_is_going() {
    let server = Server::start(&[("BOOKSTORE_SAMPLE_DATA", "0")]);
    let too_many = server.post_json(
        "/lab/run",
        &json!({ "books": 100_000, "clients": 2, "heavy_ms": 5, "work": "sleep" }),
    );
    assert_eq!(too_many.status, 400, "{}", too_many.body);
    assert!(
        too_many.json()["error"]
            .as_str()
            .expect("a message")
            .contains("books must be 1 to 1000")
    );

    // One client, two books, 400 ms of sleep each: the first pattern alone lasts 800 ms, so the
    // second request arrives while the run is going.
    let settings = json!({ "books": 2, "clients": 1, "heavy_ms": 400, "work": "sleep" });
    let started = server.post_json("/lab/run", &settings);
    assert_eq!(started.status, 202, "{}", started.body);
    let id = started.json()["id"].as_i64().expect("a run id");
    let refused = server.post_json("/lab/run", &settings);
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.json()["error"]
            .as_str()
            .expect("a message")
            .contains(&format!("run {id} is still going")),
        "{}",
        refused.body
    );

    let state = server.wait_for("/lab/run", |r| {
        let state = r.json();
        (state["running"] == false).then_some(state)
    });
    assert_eq!(state["id"], id);
    assert_eq!(
        state["done"], state["steps"],
        "the progress ends full: {state}"
    );
    let rows = state["rows"].as_array().expect("rows");
    let patterns: Vec<&str> = rows.iter().filter_map(|r| r["pattern"].as_str()).collect();
    assert_eq!(
        patterns,
        [
            "heavy_pre_save_blocking",
            "light_pre_save",
            "heavy_post_save_background",
            "heavy_post_save_blocking"
        ]
    );
    for row in rows {
        assert_eq!(
            (row["saves"].as_u64(), row["work_completed"].as_u64()),
            (Some(2), Some(2)),
            "{row}"
        );
        assert!(
            row["verdict"].as_str().is_some_and(|v| v.starts_with('[')),
            "{row}"
        );
    }
    // Heavy work before the write takes at least its length, whatever the machine.
    assert_eq!(
        rows[0]["verdict"],
        "[X] Bad: blocks the write and the response"
    );
    assert_eq!(rows[3]["verdict"], "[!] OK but risky: blocks the response");

    let again = server.post_json(
        "/lab/run",
        &json!({ "books": 1, "clients": 1, "heavy_ms": 1, "work": "sleep" }),
    );
    assert_eq!(
        again.status, 202,
        "a finished run lets the next one start: {}",
        again.body
    );
}

#[test]
fn another_site_cannot_save_in_the_lab_or_start_a_run() {
    let server = Server::start(&[("BOOKSTORE_SAMPLE_DATA", "0")]);
    let evil = [
        ("Content-Type", "application/json"),
        ("Origin", "http://evil.example"),
    ];
    for (path, body) in [
        (
            "/lab/save",
            json!({ "pattern": "light_pre_save", "heavy_ms": 0, "work": "sleep" }),
        ),
        (
            "/lab/run",
            json!({ "books": 1, "clients": 1, "heavy_ms": 1, "work": "sleep" }),
        ),
    ] {
        let refused = server.send("POST", path, &evil, &body.to_string());
        assert_eq!(refused.status, 403, "{path}: {}", refused.body);
    }
    assert_eq!(server.get("/lab/run").json()["id"], 0, "no run started");
    assert_eq!(calls(&server, "lab_light_pre_save"), 0, "nothing saved");
}
