//! A tour of Herald's signals: `cargo run --release -p herald --example tour`.
//!
//! Connects the receivers a bookshop would have, sends the signals a save sends, and shows a slow
//! receiver being named in a warning, with each receiver's statistics at the end.

use std::time::Duration;

use herald::prelude::*;

#[derive(Debug, Clone)]
struct Book {
    id: Option<i64>,
    title: String,
    slug: String,
    price_cents: i64,
}

impl AnyModel for Book {
    fn model_name(&self) -> &'static str {
        "Book"
    }
    fn pk_string(&self) -> Option<String> {
        self.id.map(|id| id.to_string())
    }
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "id": self.id, "title": self.title, "slug": self.slug, "price_cents": self.price_cents })
    }
}
herald::dispatch::sender!(Book);

fn slugify(title: &str) -> String {
    title
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

fn fill_slug(e: &mut PreSave<'_, Book>) -> ReceiverResult {
    if e.instance.slug.is_empty() {
        e.instance.slug = slugify(&e.instance.title);
    }
    Ok(())
}

fn check_price(e: &mut PreSave<'_, Book>) -> ReceiverResult {
    if e.instance.price_cents < 0 {
        return Err(herald::dispatch::Error::msg(format!(
            "price must not be negative, got {}",
            e.instance.price_cents
        )));
    }
    Ok(())
}

fn audit(e: &PostSaveAny<'_>) -> ReceiverResult {
    println!(
        "  audit: {} {} pk={}",
        e.instance.model_name(),
        if e.created { "created" } else { "updated" },
        e.instance.pk_string().unwrap_or_default()
    );
    Ok(())
}

/// The seed's "heavy post_save blocking logic": it blocks the save it belongs to.
fn rebuild_search_index(_e: &PostSave<'_, Book>) -> ReceiverResult {
    std::thread::sleep(Duration::from_millis(25));
    Ok(())
}

/// What a store does around one write: pre_save, the write, post_save.
fn save(signals: &Signals, book: &mut Book, next_id: &mut i64) -> Result<(), DispatchError> {
    signals.pre_save::<Book>().send(&mut PreSave::new(book))?;
    let created = book.id.is_none();
    if created {
        *next_id += 1;
        book.id = Some(*next_id);
    }
    signals
        .post_save::<Book>()
        .send(&mut PostSave::new(book, created))
}

fn main() {
    tracing_subscriber::fmt().with_target(true).init();
    let signals = Signals::builder()
        .slow_threshold(Duration::from_millis(10))
        .build();
    let guards = [
        signals.pre_save::<Book>().connect(fill_slug),
        signals
            .pre_save::<Book>()
            .receiver(check_price)
            .priority(10)
            .connect(),
        signals.post_save_any().connect(audit),
        signals.post_save::<Book>().connect(rebuild_search_index),
    ];

    let mut next_id = 0;
    let mut book = Book {
        id: None,
        title: "The Left Hand of Darkness".into(),
        slug: String::new(),
        price_cents: 1299,
    };
    println!("save a new book:");
    save(&signals, &mut book, &mut next_id).expect("the receivers accept it");
    println!("  stored slug: {}", book.slug);

    println!("update it:");
    book.price_cents = 999;
    save(&signals, &mut book, &mut next_id).expect("the receivers accept it");

    println!("a negative price is vetoed by a pre_save receiver:");
    let mut bad = Book {
        id: None,
        title: "Free Money".into(),
        slug: String::new(),
        price_cents: -1,
    };
    match save(&signals, &mut bad, &mut next_id) {
        Ok(()) => println!("  unexpectedly saved"),
        Err(error) => println!("  refused: {error}"),
    }

    println!("\nreceivers:");
    println!(
        "  {:<40} {:<10} {:<7} {:<15} {:>5} {:>6} {:>10} {:>10}",
        "name", "signal", "sender", "phase", "calls", "errors", "p50", "max"
    );
    for receiver in signals.receivers() {
        let (info, stats) = (receiver.info(), receiver.stats());
        println!(
            "  {:<40} {:<10} {:<7} {:<15} {:>5} {:>6} {:>10.3?} {:>10.3?}",
            info.name(),
            info.signal(),
            info.sender(),
            info.phase(),
            stats.calls,
            stats.errors,
            stats.p50(),
            stats.max
        );
    }
    drop(guards);
}
