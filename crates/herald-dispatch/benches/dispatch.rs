//! The dispatcher's hot path: `cargo bench -p herald-dispatch --bench dispatch`.
//!
//! Group `dispatch`: a `post_save` send for `Book`, with each receiver set, timing off and on.
//! Results and the machine are in BENCHMARKS.md.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use herald_dispatch::{AnyModel, Connection, PostSave, Signals, Timing};

struct Book {
    id: Option<i64>,
}
impl AnyModel for Book {
    fn model_name(&self) -> &'static str {
        "Book"
    }
    fn pk_string(&self) -> Option<String> {
        self.id.map(|id| id.to_string())
    }
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "id": self.id })
    }
}
herald_dispatch::sender!(Book);

struct Author;
impl AnyModel for Author {
    fn model_name(&self) -> &'static str {
        "Author"
    }
    fn pk_string(&self) -> Option<String> {
        None
    }
    fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}
herald_dispatch::sender!(Author);

/// A trivial receiver: it reads the event, as Django's benchmark receiver does.
fn trivial_book(e: &PostSave<'_, Book>) -> herald_dispatch::Result {
    black_box(e.created);
    Ok(())
}

fn trivial_author(e: &PostSave<'_, Author>) -> herald_dispatch::Result {
    black_box(e.created);
    Ok(())
}

/// `n` distinct receivers (capturing closures, so none is dropped as a duplicate).
fn connect_book(signals: &Signals, n: usize) -> Vec<Connection> {
    (0..n)
        .map(|i| {
            signals
                .post_save::<Book>()
                .connect(move |e: &PostSave<'_, Book>| {
                    black_box((i, e.created));
                    Ok(())
                })
        })
        .collect()
}

fn connect_author(signals: &Signals, n: usize) -> Vec<Connection> {
    (0..n)
        .map(|i| {
            signals
                .post_save::<Author>()
                .connect(move |e: &PostSave<'_, Author>| {
                    black_box((i, e.created));
                    Ok(())
                })
        })
        .collect()
}

/// Connects one case's receivers.
type Connect = dyn Fn(&Signals) -> Vec<Connection>;

/// A send as a store makes it: failures propagate (here, as a panic), success costs nothing more.
#[inline(always)]
fn send(signals: &Signals, book: &Book) {
    if let Err(error) = signals
        .post_save::<Book>()
        .send(&mut PostSave::new(black_box(book), true))
    {
        panic!("{error}");
    }
}

fn dispatch(c: &mut Criterion) {
    let mut group = c.benchmark_group("dispatch");
    let book = Book { id: Some(1) };
    for (timing, label) in [(Timing::Off, "timing_off"), (Timing::On, "timing_on")] {
        let cases: [(&str, Box<Connect>); 4] = [
            ("no_receivers", Box::new(|_| Vec::new())),
            (
                "one_receiver",
                Box::new(|s| vec![s.post_save::<Book>().connect(trivial_book)]),
            ),
            (
                "ten_receivers_other_model",
                Box::new(|s| connect_author(s, 10)),
            ),
            ("ten_receivers", Box::new(|s| connect_book(s, 10))),
        ];
        for (name, connect) in cases {
            let signals = Signals::builder().timing(timing).build();
            let _guards = connect(&signals);
            group.bench_with_input(BenchmarkId::new(name, label), &signals, |b, signals| {
                b.iter(|| send(signals, &book))
            });
        }
    }
    group.finish();

    // The floor Django's table starts from: a direct call of the trivial receiver.
    let mut group = c.benchmark_group("reference");
    group.bench_function("direct_call", |b| {
        b.iter(|| black_box(trivial_book(&PostSave::new(black_box(&book), true)).is_ok()))
    });
    let signals = Signals::builder().timing(Timing::Off).build();
    let _guard = signals.post_save::<Author>().connect(trivial_author);
    group.bench_function("one_receiver_other_model_only", |b| {
        b.iter(|| send(&signals, &book))
    });
    group.finish();
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
