//! `SameOriginLayer` in front of an application's routes: a write another site asks for is refused
//! with 403 naming that site, and nothing is written; the page's own requests, clients that are
//! not browsers, and reads go through.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Method, Request, StatusCode, header};
use axum::routing::{get, post};
use common::{Answer, book, call, fresh_db};
use herald::dispatch::Signals;
use herald::{Db, Store};
use herald_axum::SameOriginLayer;

const HOST: &str = "shop.example:8080";

/// A shop with a form that creates books, one that deletes them, and a list: the layer on all.
fn shop(db: Db, layer: SameOriginLayer) -> Router {
    async fn create(State(db): State<Db>) -> StatusCode {
        db.save(&mut book("Kindred")).await.unwrap();
        StatusCode::CREATED
    }
    async fn delete(State(db): State<Db>, Path(id): Path<i64>) -> StatusCode {
        if let Some(b) = db.get::<common::Book>(id).await.unwrap() {
            db.delete(&b).await.unwrap();
        }
        StatusCode::NO_CONTENT
    }
    async fn list(State(db): State<Db>) -> String {
        db.all::<common::Book>().await.unwrap().len().to_string()
    }
    Router::new()
        .route("/books", get(list).post(create).put(create).patch(create))
        .route("/books/{id}", axum::routing::delete(delete))
        .route("/books/{id}/delete", post(delete))
        .with_state(db)
        .layer(layer)
}

fn send(method: Method, uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, HOST);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::empty()).unwrap()
}

async fn books(db: &Db) -> usize {
    db.all::<common::Book>().await.unwrap().len()
}

/// 403 with a JSON error that says why and names where the request came from.
#[track_caller]
fn refused(answer: &Answer, needles: &[&str]) {
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    assert_eq!(answer.headers[header::CONTENT_TYPE], "application/json");
    let error = answer.json()["error"].as_str().unwrap().to_owned();
    for needle in needles {
        assert!(error.contains(needle), "`{needle}` in: {error}");
    }
}

const EVIL: &[(&str, &str)] = &[
    ("origin", "http://evil.example"),
    ("sec-fetch-site", "cross-site"),
];

#[tokio::test]
async fn writes_from_another_site_are_refused_and_change_nothing() {
    let (db, _dir) = fresh_db(Signals::new()).await;
    let mut first = book("The Dispossessed");
    db.save(&mut first).await.unwrap();
    let id = first.id.unwrap();
    let app = shop(db.clone(), SameOriginLayer::new());

    // The brief's curl: a form on evil.example posting to the delete and create endpoints.
    let answer = call(
        &app,
        send(Method::POST, &format!("/books/{id}/delete"), EVIL),
    )
    .await;
    refused(
        &answer,
        &["cross-site request refused", "http://evil.example", HOST],
    );
    for method in [Method::POST, Method::PUT, Method::PATCH] {
        refused(
            &call(&app, send(method, "/books", EVIL)).await,
            &["evil.example"],
        );
    }
    refused(
        &call(&app, send(Method::DELETE, &format!("/books/{id}"), EVIL)).await,
        &["evil.example"],
    );
    // An older browser that sends only Origin; a sibling subdomain; a sandboxed frame.
    let answer = call(
        &app,
        send(
            Method::POST,
            "/books",
            &[("origin", "http://evil.example:8080")],
        ),
    )
    .await;
    refused(
        &answer,
        &["cross-origin request refused", "evil.example:8080"],
    );
    let answer = call(
        &app,
        send(
            Method::POST,
            "/books",
            &[
                ("origin", "http://blog.shop.example:8080"),
                ("sec-fetch-site", "same-site"),
            ],
        ),
    )
    .await;
    refused(&answer, &["same-site", "blog.shop.example"]);
    refused(
        &call(&app, send(Method::POST, "/books", &[("origin", "null")])).await,
        &["`null`"],
    );
    assert_eq!(books(&db).await, 1, "nothing was created or deleted");

    // Reading from anywhere is not the layer's business.
    let read = call(&app, send(Method::GET, "/books", EVIL)).await;
    assert_eq!((read.status, read.body.as_str()), (StatusCode::OK, "1"));
}

#[tokio::test]
async fn the_sites_own_pages_and_clients_that_are_not_browsers_write() {
    let (db, _dir) = fresh_db(Signals::new()).await;
    let app = shop(db.clone(), SameOriginLayer::new());
    let own = [
        ("origin", "http://shop.example:8080"),
        ("sec-fetch-site", "same-origin"),
    ];
    for headers in [
        &own[..],
        &own[..1],                            // an older browser: Origin only
        &[("sec-fetch-site", "same-origin")], // a same-origin request without Origin
        &[],                                  // curl, a server-to-server client
    ] {
        let answer = call(&app, send(Method::POST, "/books", headers)).await;
        assert_eq!(
            answer.status,
            StatusCode::CREATED,
            "{headers:?}: {}",
            answer.body
        );
    }
    assert_eq!(books(&db).await, 4);
}

#[tokio::test]
async fn an_allowed_origin_may_write() {
    let (db, _dir) = fresh_db(Signals::new()).await;
    let app = shop(
        db.clone(),
        SameOriginLayer::new().allow_origin("https://admin.example.com"),
    );
    let admin = [
        ("origin", "https://admin.example.com"),
        ("sec-fetch-site", "cross-site"),
    ];
    let answer = call(&app, send(Method::POST, "/books", &admin)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let answer = call(&app, send(Method::POST, "/books", EVIL)).await;
    refused(&answer, &["SameOriginLayer::allow_origin"]);
    assert_eq!(books(&db).await, 1);
}
