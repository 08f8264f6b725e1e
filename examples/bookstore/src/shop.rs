//! The shop's models and receivers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use herald::prelude::*;
use herald::tasks::TaskContext;
use herald::{Db, Value};

#[derive(Model, Clone, Debug, serde::Serialize, serde::Deserialize)]
#[model(table = "authors")]
pub(crate) struct Author {
    #[model(primary_key)]
    pub(crate) id: Option<i64>,
    pub(crate) name: String,
    pub(crate) email: String,
}

#[derive(Model, Clone, Debug, serde::Serialize, serde::Deserialize)]
#[model(table = "books")]
pub(crate) struct Book {
    #[model(primary_key)]
    pub(crate) id: Option<i64>,
    pub(crate) author_id: i64,
    pub(crate) title: String,
    pub(crate) slug: String,
    pub(crate) price_cents: i64,
}

#[derive(Model, Clone, Debug, serde::Serialize)]
#[model(table = "reviews")]
pub(crate) struct Review {
    #[model(primary_key)]
    pub(crate) id: Option<i64>,
    pub(crate) book_id: i64,
    pub(crate) rating: i64,
    pub(crate) body: String,
}

/// One row per save or delete of any model, written in that write's transaction.
#[derive(Model, Clone, Debug, serde::Serialize)]
#[model(table = "audit_log")]
pub(crate) struct AuditEntry {
    #[model(primary_key)]
    pub(crate) id: Option<i64>,
    pub(crate) model: String,
    pub(crate) key: String,
    pub(crate) action: String,
}

/// The search index, one row per book, written by the background `reindex_book`.
#[derive(Model, Clone, Debug, serde::Serialize)]
#[model(table = "search_index")]
pub(crate) struct SearchEntry {
    #[model(primary_key)]
    pub(crate) book_id: Option<i64>,
    pub(crate) terms: String,
}

/// The emails the background `email_author` "sent".
#[derive(Model, Clone, Debug, serde::Serialize)]
#[model(table = "emails")]
pub(crate) struct EmailSent {
    #[model(primary_key)]
    pub(crate) id: Option<i64>,
    pub(crate) book_id: i64,
    pub(crate) to_address: String,
    pub(crate) subject: String,
}

pub(crate) fn slugify(title: &str) -> String {
    let words: Vec<String> = title
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    words.join("-")
}

/// pre_save, on the caller's task: fill the slug from the title when it is empty.
#[receiver(pre_save, sender = Book, priority = 10)]
fn fill_slug(e: &mut PreSave<'_, Book>) -> ReceiverResult {
    if e.instance.slug.is_empty() {
        e.instance.slug = slugify(&e.instance.title);
    }
    Ok(())
}

/// pre_save, on the caller's task: a negative price vetoes the save; nothing is sent to the
/// database.
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

/// One change of a book's price, written by [`record_price_change`] in the update's transaction.
#[derive(Model, Clone, Debug, serde::Serialize)]
#[model(table = "price_changes")]
pub(crate) struct PriceChange {
    #[model(primary_key)]
    pub(crate) id: Option<i64>,
    pub(crate) book_id: i64,
    pub(crate) old_cents: i64,
    pub(crate) new_cents: i64,
}

fn is_bookkeeping(model: &str) -> bool {
    matches!(
        model,
        "AuditEntry" | "SearchEntry" | "EmailSent" | "PriceChange"
    )
}

/// post_save, in the update's transaction, only when the price changed: the old and new price,
/// from the row as it was just before the write (read in that transaction), so the history is
/// what the database held, whoever changed it last.
#[receiver(post_save, sender = Book, in_transaction, when_changed = ["price_cents"])]
fn record_price_change(e: &PostSave<'_, Book>) -> ReceiverResult {
    let (Some(book_id), Some(previous)) = (e.instance.id, e.previous()) else {
        return Ok(());
    };
    e.conn()?.save(&mut PriceChange {
        id: None,
        book_id,
        old_cents: previous.price_cents,
        new_cents: e.instance.price_cents,
    })?;
    Ok(())
}

/// The indexes the shop's lists read through: books by author (in key order, for pages of one
/// author's books) and price changes by book. Created when the shop starts, if missing.
pub(crate) async fn indexes(db: &Db) -> herald::Result<()> {
    for sql in [
        "CREATE INDEX IF NOT EXISTS books_by_author ON books (author_id, id)",
        "CREATE INDEX IF NOT EXISTS price_changes_by_book ON price_changes (book_id, id)",
    ] {
        db.execute(sql, vec![]).await?;
    }
    Ok(())
}

/// post_save, every model, in the write's transaction: an audit row written through the write's
/// own connection (rolled back with it).
#[receiver(post_save, in_transaction)]
fn audit_save(e: &PostSaveAny<'_>) -> ReceiverResult {
    let model = e.instance.model_name();
    if is_bookkeeping(model) {
        return Ok(());
    }
    let action = if e.created { "created" } else { "updated" };
    let mut entry = AuditEntry {
        id: None,
        model: model.to_owned(),
        key: e.instance.pk_string().unwrap_or_default(),
        action: action.to_owned(),
    };
    e.conn()?.save(&mut entry)?;
    Ok(())
}

/// post_delete, every model, in the delete's transaction: an audit row.
#[receiver(post_delete, in_transaction)]
fn audit_delete(e: &PostDeleteAny<'_>) -> ReceiverResult {
    let model = e.instance.model_name();
    if is_bookkeeping(model) {
        return Ok(());
    }
    let mut entry = AuditEntry {
        id: None,
        model: model.to_owned(),
        key: e.instance.pk_string().unwrap_or_default(),
        action: "deleted".to_owned(),
    };
    e.conn()?.save(&mut entry)?;
    Ok(())
}

/// The book cache the JSON API reads through; entries are dropped on commit only.
pub(crate) static CACHE: LazyLock<Mutex<HashMap<i64, Book>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

pub(crate) fn cache() -> std::sync::MutexGuard<'static, HashMap<i64, Book>> {
    // A panic while holding the lock leaves a map that is still valid.
    CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// on_commit, on the caller's task: invalidate the cached book once the write is permanent.
#[receiver(post_save, sender = Book, on_commit)]
fn invalidate_cache(e: &PostSave<'_, Book>) -> ReceiverResult {
    if let Some(id) = e.instance.id {
        cache().remove(&id);
    }
    Ok(())
}

/// on_commit of a delete: the same.
#[receiver(post_delete, sender = Book, on_commit)]
fn invalidate_cache_on_delete(e: &PostDelete<'_, Book>) -> ReceiverResult {
    if let Some(id) = e.instance.id {
        cache().remove(&id);
    }
    Ok(())
}

/// post_delete, in the delete's transaction: drop the book's index row with it.
#[receiver(post_delete, sender = Book, in_transaction)]
fn unindex_book(e: &PostDelete<'_, Book>) -> ReceiverResult {
    if let Some(id) = e.instance.id {
        let conn = e.conn()?;
        if let Some(entry) = conn.get::<SearchEntry>(id)? {
            conn.delete(&entry)?;
        }
    }
    Ok(())
}

fn placeholders(postgres: bool, sql: &str) -> String {
    if !postgres {
        return sql.to_owned();
    }
    let mut out = String::new();
    for (n, part) in sql.split('?').enumerate() {
        if n > 0 {
            out.push_str(&format!("${n}"));
        }
        out.push_str(part);
    }
    out
}

/// How long one reindex waits on the search service: `BOOKSTORE_REINDEX_MS`, default 3.
fn reindex_wait() -> Duration {
    static WAIT: LazyLock<Duration> = LazyLock::new(|| {
        let ms = std::env::var("BOOKSTORE_REINDEX_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3);
        Duration::from_millis(ms)
    });
    *WAIT
}

/// The index terms of a title: its words, lower-cased, sorted, once each.
fn index_terms(title: &str) -> String {
    let mut words: Vec<String> = title
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    words.sort();
    words.dedup();
    words.join(" ")
}

/// Background: rebuild the book's search entry. Deliberately heavy: it stands in for a call to a
/// search service, a few ms each (`BOOKSTORE_REINDEX_MS`), far longer than the save that caused
/// it. Pending reindexes of one book coalesce (`unique = "pk"`).
#[receiver(post_save, sender = Book, background, unique = "pk")]
async fn reindex_book(book: Book, ctx: TaskContext) -> ReceiverResult {
    let Some(id) = book.id else { return Ok(()) };
    let terms = index_terms(&book.title);
    tokio::time::sleep(reindex_wait()).await;
    let db = ctx.db();
    let sql = placeholders(
        db.is_postgres(),
        "INSERT INTO search_index (book_id, terms) VALUES (?, ?) \
         ON CONFLICT (book_id) DO UPDATE SET terms = excluded.terms",
    );
    db.execute(sql, vec![Value::Int(id), Value::Text(terms)])
        .await
        .map_err(herald::dispatch::Error::msg)?;
    Ok(())
}

static EMAIL_ATTEMPTS: AtomicU64 = AtomicU64::new(0);

/// Every how many email attempts one fails (the 1st, the N+1th, ..): `BOOKSTORE_EMAIL_FAIL_EVERY`,
/// default 5; 0 never fails, 1 always fails (the task ends dead after its 3 attempts).
fn email_fail_every() -> u64 {
    std::env::var("BOOKSTORE_EMAIL_FAIL_EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

/// Background, when a book is created (not when it is edited): tell its author. Fails
/// deterministically now and then (see [`email_fail_every`]); the worker retries it with backoff,
/// up to 3 attempts. Books loaded from a fixture (`loaddata`, raw saves) send no email
/// (`skip_raw`).
#[receiver(post_save, sender = Book, background, max_attempts = 3, skip_raw, on = "create")]
async fn email_author(book: Book, ctx: TaskContext) -> ReceiverResult {
    let attempt = EMAIL_ATTEMPTS.fetch_add(1, Ordering::Relaxed);
    let every = email_fail_every();
    if every > 0 && attempt.is_multiple_of(every) {
        return Err(herald::dispatch::Error::msg(format!(
            "deliberate, simulated mail failure: the demo fails one email attempt in {every} \
             (BOOKSTORE_EMAIL_FAIL_EVERY) to show retries; attempt {} of task {}",
            ctx.attempt(),
            ctx.id()
        )));
    }
    let db = ctx.db();
    let author = db
        .get::<Author>(book.author_id)
        .await
        .map_err(herald::dispatch::Error::msg)?;
    let to_address = author.map(|a| a.email).unwrap_or_default();
    let mut email = EmailSent {
        id: None,
        book_id: book.id.unwrap_or_default(),
        to_address,
        subject: format!("Your new book \"{}\" is in the shop", book.title),
    };
    db.save(&mut email)
        .await
        .map_err(herald::dispatch::Error::msg)?;
    Ok(())
}

/// A few authors and books, when the shop is empty.
pub(crate) async fn sample_data(db: &Db) -> herald::Result<()> {
    if Author::query().exists(db).await? {
        return Ok(());
    }
    let authors = [
        ("Ursula K. Le Guin", "ursula@example.invalid"),
        ("Octavia E. Butler", "octavia@example.invalid"),
    ];
    let books = [
        (0, "The Left Hand of Darkness", 1299),
        (0, "The Dispossessed", 1099),
        (1, "Kindred", 999),
    ];
    let mut ids = Vec::new();
    for (name, email) in authors {
        let mut author = Author {
            id: None,
            name: name.to_owned(),
            email: email.to_owned(),
        };
        db.save(&mut author).await?;
        ids.push(author.id.unwrap_or_default());
    }
    for (author, title, price_cents) in books {
        db.save(&mut Book {
            id: None,
            author_id: ids[author],
            title: title.to_owned(),
            slug: String::new(),
            price_cents,
        })
        .await?;
    }
    Ok(())
}
