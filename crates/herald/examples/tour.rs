//! A tour of Herald on an embedded SQLite file: `cargo run --release -p herald --example tour`.
//!
//! Saves books through a store whose receivers a bookshop would have: a slug filled in `pre_save`,
//! a negative price vetoed, an audit row written inside every save's transaction, a cache
//! invalidated on commit, a deliberately slow receiver (named in a warning as it happens), and a
//! search index rebuilt in the background by a durable task that a worker runs after the commit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use herald::prelude::*;
use herald::tasks::{TaskContext, Worker};

#[derive(Model, Clone, Debug)]
#[model(table = "books")]
struct Book {
    #[model(primary_key)]
    id: Option<i64>,
    title: String,
    slug: String,
    price_cents: i64,
}

#[derive(Model, Clone, Debug)]
#[model(table = "audit_log")]
struct AuditEntry {
    #[model(primary_key)]
    id: Option<i64>,
    model: String,
    key: String,
    action: String,
}

fn slugify(title: &str) -> String {
    let words: Vec<String> = title
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    words.join("-")
}

/// pre_save: fill the slug from the title when it is empty.
#[receiver(pre_save, sender = Book, priority = 10)]
fn fill_slug(e: &mut PreSave<'_, Book>) -> ReceiverResult {
    if e.instance.slug.is_empty() {
        e.instance.slug = slugify(&e.instance.title);
    }
    Ok(())
}

/// pre_save: a negative price vetoes the save; nothing is written.
#[receiver(pre_save, sender = Book)]
fn check_price(e: &mut PreSave<'_, Book>) -> ReceiverResult {
    if e.instance.price_cents < 0 {
        return Err(herald::dispatch::Error::msg(format!(
            "price must not be negative, got {}",
            e.instance.price_cents
        )));
    }
    Ok(())
}

/// post_save, every model: an audit row, written in the save's own transaction.
#[receiver(post_save)]
fn audit(e: &PostSaveAny<'_>) -> ReceiverResult {
    if e.instance.model_name() == "AuditEntry" {
        return Ok(());
    }
    let mut entry = AuditEntry {
        id: None,
        model: e.instance.model_name().to_owned(),
        key: e.instance.pk_string().unwrap_or_default(),
        action: if e.created { "created" } else { "updated" }.to_owned(),
    };
    e.conn()?.save(&mut entry)?;
    Ok(())
}

static CACHE_INVALIDATIONS: AtomicUsize = AtomicUsize::new(0);

/// on_commit: invalidate a cache only once the write is permanent.
#[receiver(post_save, sender = Book, on_commit)]
fn invalidate_cache(_e: &PostSave<'_, Book>) -> ReceiverResult {
    CACHE_INVALIDATIONS.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// The seed's "heavy post_save blocking logic": it blocks the save it belongs to, and is named.
#[receiver(post_save, sender = Book)]
fn recompute_bestsellers(_e: &PostSave<'_, Book>) -> ReceiverResult {
    std::thread::sleep(Duration::from_millis(25));
    Ok(())
}

/// The seed's "heavy post_save async logic", done right: a durable task written in the save's
/// transaction, run by a worker after the commit; pending tasks of one book coalesce.
#[receiver(post_save, sender = Book, background, unique = "pk", queue = "search")]
async fn reindex(book: Book, ctx: TaskContext) -> ReceiverResult {
    tokio::time::sleep(Duration::from_millis(5)).await;
    println!(
        "  [worker] reindexed \"{}\" (task {}, attempt {})",
        book.title,
        ctx.id(),
        ctx.attempt()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_target(true).init();
    let path = std::env::temp_dir().join(format!("herald-tour-{}.db", std::process::id()));
    let signals = Signals::builder()
        .autodiscover()
        .slow_threshold(Duration::from_millis(10))
        .build();
    let db = Db::open(format!("sqlite://{}", path.display()))
        .signals(signals)
        .connect()
        .await?;
    db.create_table::<Book>().await?;
    db.create_table::<AuditEntry>().await?;

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = Worker::new(db.clone()).autodiscover().queues(["search"]);
    let worker = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));

    println!("save a new book (the slow receiver is named in a warning):");
    let mut book = Book {
        id: None,
        title: "The Left Hand of Darkness".into(),
        slug: String::new(),
        price_cents: 1299,
    };
    let saved = db.save(&mut book).await?;
    println!(
        "  created={} id={:?} slug={}",
        saved.created, book.id, book.slug
    );

    println!("update it:");
    book.price_cents = 999;
    db.save(&mut book).await?;

    println!("a negative price is vetoed by a pre_save receiver:");
    let mut free = Book {
        id: None,
        title: "Free Money".into(),
        slug: String::new(),
        price_cents: -1,
    };
    match db.save(&mut free).await {
        Ok(_) => println!("  unexpectedly saved"),
        Err(error) => println!("  refused: {error}"),
    }

    println!("three books in one transaction, then a rolled-back one:");
    let tx = db.begin().await?;
    for title in ["Dune", "Kindred", "Solaris"] {
        tx.save(&mut Book {
            id: None,
            title: title.into(),
            slug: String::new(),
            price_cents: 800,
        })
        .await?;
    }
    tx.commit().await?;
    let tx = db.begin().await?;
    tx.save(&mut Book {
        id: None,
        title: "Never Written".into(),
        slug: String::new(),
        price_cents: 1,
    })
    .await?;
    tx.rollback().await?;

    // Let the worker drain the queue (it was woken by each commit).
    while db
        .tasks()
        .counts()
        .await?
        .iter()
        .any(|c| c.state == "available" || c.state == "running")
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(());
    worker.await??;

    let books = db.all::<Book>().await?;
    let audit = db.all::<AuditEntry>().await?;
    println!(
        "\n{} books stored, {} audit rows, {} cache invalidations (on commit only)",
        books.len(),
        audit.len(),
        CACHE_INVALIDATIONS.load(Ordering::Relaxed)
    );
    for count in db.tasks().counts().await? {
        println!("tasks: {} {} = {}", count.queue, count.state, count.count);
    }

    println!("\nreceivers:");
    println!(
        "  {:<36} {:<10} {:<6} {:<15} {:>5} {:>6} {:>11} {:>11}  location",
        "name", "signal", "sender", "phase", "calls", "errors", "p50", "max"
    );
    for receiver in db.signals().receivers() {
        let (info, stats) = (receiver.info(), receiver.stats());
        println!(
            "  {:<36} {:<10} {:<6} {:<15} {:>5} {:>6} {:>11.3?} {:>11.3?}  {}",
            info.name(),
            info.signal(),
            info.sender(),
            info.phase(),
            stats.calls,
            stats.errors,
            stats.p50(),
            stats.max,
            info.location()
        );
    }
    println!("\ndatabase: {}", path.display());
    Ok(())
}
