//! What the Server-Timing layer costs per request: a trivial axum route called through
//! `tower::ServiceExt::oneshot`, without and with the layer, and with the layer when the handler
//! sends a signal that three receivers hear (so the header is built).
//!
//! `cargo bench -p herald-axum --bench layer`; results in the crate's README.md.

use std::hint::black_box;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use futures::executor::block_on;
use herald::dispatch::{AnyModel, PostSave, Signals};
use herald_axum::ServerTimingLayer;
use tower::ServiceExt;

#[derive(Debug)]
struct Book {
    id: i64,
}

impl AnyModel for Book {
    fn model_name(&self) -> &'static str {
        "Book"
    }
    fn pk_string(&self) -> Option<String> {
        Some(self.id.to_string())
    }
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "id": self.id })
    }
}
herald::dispatch::sender!(Book);

fn request() -> Request<Body> {
    Request::builder()
        .uri("/")
        .body(Body::empty())
        .expect("a static request is valid")
}

fn trivial() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

fn with_receivers(signals: Signals) -> Router {
    Router::new().route(
        "/",
        get(move || {
            let signals = signals.clone();
            async move {
                let book = Book { id: 1 };
                signals
                    .post_save::<Book>()
                    .send(&mut PostSave::new(&book, true))
                    .map(|()| "ok")
                    .map_err(|e| e.to_string())
            }
        }),
    )
}

fn layer(c: &mut Criterion) {
    let mut group = c.benchmark_group("server_timing");
    let plain = trivial();
    group.bench_function("trivial_route_without_layer", |b| {
        b.iter(|| block_on(plain.clone().oneshot(black_box(request()))))
    });
    let identity = trivial().layer(tower::layer::util::Identity::new());
    group.bench_function("trivial_route_with_identity_layer", |b| {
        b.iter(|| block_on(identity.clone().oneshot(black_box(request()))))
    });
    let layered = trivial().layer(ServerTimingLayer::new());
    group.bench_function("trivial_route_with_layer", |b| {
        b.iter(|| block_on(layered.clone().oneshot(black_box(request()))))
    });

    let signals = Signals::new();
    let _guards: Vec<_> = ["reindex", "audit", "notify"]
        .into_iter()
        .map(|name| {
            signals
                .post_save::<Book>()
                .receiver(|_e: &PostSave<'_, Book>| Ok(()))
                .name(name)
                .connect()
        })
        .collect();
    let sending = with_receivers(signals.clone());
    group.bench_function("three_receivers_without_layer", |b| {
        b.iter(|| block_on(sending.clone().oneshot(black_box(request()))))
    });
    let sending_layered = with_receivers(signals).layer(ServerTimingLayer::new());
    group.bench_function("three_receivers_with_layer_and_header", |b| {
        b.iter(|| block_on(sending_layered.clone().oneshot(black_box(request()))))
    });
    group.finish();
}

criterion_group!(benches, layer);
criterion_main!(benches);
