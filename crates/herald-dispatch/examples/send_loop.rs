//! A fixed number of `post_save` sends, for counting instructions rather than timing them:
//! a shared or busy machine changes a send's time, not its instruction count.
//!
//! ```text
//! cargo build --release -p herald-dispatch --example send_loop
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     $CARGO_TARGET_DIR/release/examples/send_loop one_receiver 1000000
//! ```
//!
//! Cases: `no_receivers`, `one_receiver`, `ten_receivers`, `one_async_awaited` (one async
//! receiver, sent with `send_async` and polled to its end here). Run each with two counts and take
//! the difference over the difference in sends: what a send costs, without the start-up.

use std::hint::black_box;

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

fn trivial(e: &PostSave<'_, Book>) -> herald_dispatch::Result {
    black_box(e.created);
    Ok(())
}

async fn trivial_async(e: &PostSave<'_, Book>) -> herald_dispatch::Result {
    black_box(e.created);
    Ok(())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().unwrap_or_else(|| "one_receiver".to_owned());
    let sends: u64 = args
        .next()
        .map_or(Ok(1_000_000), |n| n.parse())
        .unwrap_or_else(|e| panic!("the number of sends: {e}"));
    let signals = Signals::builder().timing(Timing::Off).build();
    let _guards: Vec<Connection> = match case.as_str() {
        "no_receivers" => Vec::new(),
        "one_receiver" => vec![signals.post_save::<Book>().connect(trivial)],
        "ten_receivers" => (0..10)
            .map(|i| {
                signals
                    .post_save::<Book>()
                    .connect(move |e: &PostSave<'_, Book>| {
                        black_box((i, e.created));
                        Ok(())
                    })
            })
            .collect(),
        "one_async_awaited" => vec![signals.post_save::<Book>().connect_async(trivial_async)],
        other => panic!("unknown case `{other}`"),
    };
    let book = Book { id: Some(1) };
    let signal = signals.post_save::<Book>();
    for _ in 0..sends {
        let outcome = if case == "one_async_awaited" {
            futures::executor::block_on(
                signal.send_async(&mut PostSave::new(black_box(&book), true)),
            )
        } else {
            signal.send(&mut PostSave::new(black_box(&book), true))
        };
        if let Err(error) = outcome {
            panic!("{error}");
        }
    }
}
