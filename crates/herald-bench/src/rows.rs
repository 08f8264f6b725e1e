//! The rows: what each measures, and how.

use std::time::Instant;

use anyhow::Context;
use herald::Store;
use herald::dispatch::{PostSave, PreSave, Signals};
use herald::tasks::{Background, TaskOptions};
use herald::{Db, Model};
use rusqlite::OptionalExtension;

use crate::{Row, Spread};

/// Every row, in the order they run.
pub(crate) use crate::names::ROWS as NAMES;

/// The title and body Django's script saves.
const TITLE: &str = "Hello Django Signals";
const BODY: &str = "A short body of text for the benchmark row.";

/// Django's medians on this kind of machine (`../shared/anchors/django/RESULTS.md`, WAL/NORMAL),
/// for the row that matches, in ns per op or per row.
pub(crate) fn django_ns(name: &str) -> Option<f64> {
    Some(match name {
        "raw_insert" => 17_231.0,        // Python's sqlite3, the same INSERT
        "save_no_receivers" => 70_833.0, // (a) create(), no receivers
        "save_background" => 190_051.0,  // post_save starts a Thread
        "save_pre_post" => 80_901.0,     // (c) create(), pre_save slugify + post_save trivial
        "update_pre_post" => 94_773.0,   // (f) save() of a fetched row, no receivers
        "bulk_create_1000" => 10_670.0,  // (g) bulk_create(1000), no signals fire
        "atomic_1000" => 56_878.0,       // (h) 1000 x create() in one atomic(), receivers on
        _ => return None,
    })
}

#[derive(Model, Clone, Debug)]
#[model(table = "books")]
pub(crate) struct Book {
    #[model(primary_key)]
    pub(crate) id: Option<i64>,
    pub(crate) title: String,
    pub(crate) slug: String,
    body: String,
    price_cents: i64,
}

impl Book {
    /// A book from a bare rusqlite row of its columns (`id, title, slug, body, price_cents`).
    pub(crate) fn from_raw(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: Some(r.get(0)?),
            title: r.get(1)?,
            slug: r.get(2)?,
            body: r.get(3)?,
            price_cents: r.get(4)?,
        })
    }
}

pub(crate) fn new_book(i: usize) -> Book {
    Book {
        id: None,
        title: TITLE.to_owned(),
        slug: String::new(),
        body: BODY.to_owned(),
        price_cents: i as i64,
    }
}

/// Django's `slugify` for ASCII titles: lowercase words joined by `-`.
pub(crate) fn slugify(title: &str) -> String {
    let mut slug = String::with_capacity(title.len());
    for word in title
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if !slug.is_empty() {
            slug.push('-');
        }
        slug.extend(word.chars().flat_map(char::to_lowercase));
    }
    slug
}

/// How much to run.
pub(crate) struct Plan {
    /// Operations per sample; also the tasks the drain rows run.
    pub(crate) ops: usize,
    pub(crate) samples: usize,
    batches: usize,
    /// Saves whose commit-to-start latency is measured.
    pub(crate) starts: usize,
    /// Workers killed in `rescue_after_death`.
    pub(crate) rescues: usize,
}

impl Plan {
    pub(crate) fn new(quick: bool) -> Self {
        if quick {
            Self {
                ops: 1_000,
                samples: 3,
                batches: 2,
                starts: 200,
                rescues: 1,
            }
        } else {
            Self {
                ops: 10_000,
                samples: 7,
                batches: 10,
                starts: 2_000,
                rescues: 3,
            }
        }
    }
}

/// Per-sample means and every single latency.
#[derive(Default)]
pub(crate) struct Samples {
    pub(crate) means: Vec<f64>,
    pub(crate) each: Vec<f64>,
}

impl Samples {
    pub(crate) fn row(mut self, name: String, unit: &'static str) -> Row {
        self.means.sort_by(f64::total_cmp);
        self.each.sort_by(f64::total_cmp);
        let median = self.means[self.means.len() / 2];
        let at = |q: usize| self.each[(self.each.len() * q / 100).min(self.each.len() - 1)];
        let p99 = (!self.each.is_empty()).then(|| at(99));
        let ops = (!self.each.is_empty()).then(|| Spread {
            p10_ns: at(10),
            p50_ns: at(50),
            p90_ns: at(90),
            mean_ns: self.each.iter().sum::<f64>() / self.each.len() as f64,
        });
        Row {
            name,
            unit,
            median_ns: median,
            p99_ns: p99,
            per_second: Some(1e9 / median),
            ops,
        }
    }
}

fn connect_receivers(signals: &Signals) {
    signals
        .pre_save::<Book>()
        .connect(|e: &mut PreSave<'_, Book>| {
            if e.instance.slug.is_empty() {
                e.instance.slug = slugify(&e.instance.title);
            }
            Ok(())
        })
        .keep();
    signals
        .post_save::<Book>()
        .connect(|e: &PostSave<'_, Book>| {
            std::hint::black_box(e.created);
            Ok(())
        })
        .keep();
}

/// Empty the books and the task queue, outbox included (which only `save_background` fills).
async fn reset(db: &Db) -> anyhow::Result<()> {
    let postgres = db.is_postgres();
    db.run(move |conn| {
        if postgres {
            conn.batch("TRUNCATE books, herald_tasks, herald_outbox RESTART IDENTITY")
        } else {
            conn.batch(
                "DELETE FROM books; DELETE FROM herald_tasks; DELETE FROM herald_outbox; \
                 PRAGMA wal_checkpoint(TRUNCATE);",
            )
        }
    })
    .await?;
    Ok(())
}

/// Autocommit saves of new books, each timed.
async fn saves(db: &Db, plan: &Plan) -> anyhow::Result<Samples> {
    let mut samples = Samples::default();
    for _ in 0..plan.samples {
        reset(db).await?;
        let started = Instant::now();
        for i in 0..plan.ops {
            let mut book = new_book(i);
            let one = Instant::now();
            db.save(&mut book).await?;
            samples.each.push(one.elapsed().as_nanos() as f64);
        }
        samples
            .means
            .push(started.elapsed().as_nanos() as f64 / plan.ops as f64);
    }
    Ok(samples)
}

/// Reads by key of `plan.ops` existing books (created without signals, outside the timing), each
/// timed.
async fn gets(db: &Db, plan: &Plan) -> anyhow::Result<Samples> {
    let mut samples = Samples::default();
    reset(db).await?;
    let mut books: Vec<Book> = (0..plan.ops).map(new_book).collect();
    db.without_signals().bulk_create(&mut books).await?;
    let keys: Vec<i64> = books.iter().filter_map(|b| b.id).collect();
    for _ in 0..plan.samples {
        let started = Instant::now();
        for &key in &keys {
            let one = Instant::now();
            let book = db.get::<Book>(key).await?;
            std::hint::black_box(book);
            samples.each.push(one.elapsed().as_nanos() as f64);
        }
        samples
            .means
            .push(started.elapsed().as_nanos() as f64 / plan.ops as f64);
    }
    Ok(samples)
}

async fn updates(db: &Db, plan: &Plan) -> anyhow::Result<Samples> {
    let mut samples = Samples::default();
    for _ in 0..plan.samples {
        reset(db).await?;
        let mut books: Vec<Book> = (0..plan.ops).map(new_book).collect();
        db.without_signals().bulk_create(&mut books).await?;
        let started = Instant::now();
        for book in &mut books {
            book.price_cents += 1;
            let one = Instant::now();
            db.save(book).await?;
            samples.each.push(one.elapsed().as_nanos() as f64);
        }
        samples
            .means
            .push(started.elapsed().as_nanos() as f64 / plan.ops as f64);
    }
    Ok(samples)
}

async fn bulk(db: &Db, plan: &Plan) -> anyhow::Result<Samples> {
    let mut samples = Samples::default();
    for _ in 0..plan.samples {
        reset(db).await?;
        let mut elapsed = 0.0;
        for _ in 0..plan.batches {
            let mut books: Vec<Book> = (0..1000).map(new_book).collect();
            let started = Instant::now();
            db.bulk_create(&mut books).await?;
            elapsed += started.elapsed().as_nanos() as f64;
        }
        samples.means.push(elapsed / (plan.batches * 1000) as f64);
    }
    Ok(samples)
}

/// How `bulk_update_1000` rows write their books.
#[derive(Clone, Copy, PartialEq, Eq)]
enum UpdateWay {
    /// `db.bulk_update`: every `pre_save` on the caller, one job, every `post_save`.
    Bulk,
    /// What a bulk update cost when it ran one UPDATE per row: in one transaction on the
    /// connection, one `save_fields` per book (its `pre_save`, one UPDATE, its `post_save`).
    OneByOne,
}

/// The fields the `bulk_update_1000` rows write.
const UPDATED: [&str; 2] = ["title", "price_cents"];

/// Batches of 1000 existing books (created without signals, outside the timing) updated with new
/// titles and prices, `way`; ns per row.
async fn bulk_updates(db: &Db, plan: &Plan, way: UpdateWay) -> anyhow::Result<Samples> {
    let mut samples = Samples::default();
    for _ in 0..plan.samples {
        reset(db).await?;
        let mut elapsed = 0.0;
        for _ in 0..plan.batches {
            let mut books: Vec<Book> = (0..1000).map(new_book).collect();
            db.without_signals().bulk_create(&mut books).await?;
            for (i, book) in books.iter_mut().enumerate() {
                book.title = format!("{TITLE} {i}");
                book.price_cents += 1;
            }
            let started = Instant::now();
            match way {
                UpdateWay::Bulk => db.bulk_update(&mut books, &UPDATED).await?,
                UpdateWay::OneByOne => {
                    db.run(move |conn| {
                        conn.atomic(|conn| {
                            for book in &mut books {
                                conn.save_fields(book, &UPDATED)?;
                            }
                            Ok(())
                        })
                    })
                    .await?;
                }
            }
            elapsed += started.elapsed().as_nanos() as f64;
        }
        samples.means.push(elapsed / (plan.batches * 1000) as f64);
    }
    Ok(samples)
}

async fn atomic(db: &Db, plan: &Plan, pipelined: bool) -> anyhow::Result<Samples> {
    let mut samples = Samples::default();
    for _ in 0..plan.samples {
        reset(db).await?;
        let mut elapsed = 0.0;
        for _ in 0..plan.batches {
            let started = Instant::now();
            let tx = if pipelined {
                db.begin_pipelined().await?
            } else {
                db.begin().await?
            };
            for i in 0..1000 {
                tx.save(&mut new_book(i)).await?;
            }
            tx.commit().await?;
            elapsed += started.elapsed().as_nanos() as f64;
        }
        samples.means.push(elapsed / (plan.batches * 1000) as f64);
    }
    Ok(samples)
}

/// Herald's rows (all but `raw_insert`) against `url`, names suffixed with `suffix`.
async fn herald_rows(
    url: &str,
    schema: Option<String>,
    plan: &Plan,
    suffix: &str,
    wanted: &dyn Fn(&str) -> bool,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let open = |signals: Signals| {
        let mut builder = Db::open(url).signals(signals);
        if let Some(schema) = &schema {
            builder = builder.schema(schema.clone());
        }
        builder.connect()
    };
    if wanted("save_no_receivers") {
        let db = open(Signals::new())
            .await
            .with_context(|| format!("opening {url}"))?;
        db.create_table::<Book>().await?;
        rows.push(
            saves(&db, plan)
                .await?
                .row(format!("save_no_receivers{suffix}"), "op"),
        );
    }
    if wanted("get") {
        let db = open(Signals::new())
            .await
            .with_context(|| format!("opening {url}"))?;
        db.create_table::<Book>().await?;
        rows.push(gets(&db, plan).await?.row(format!("get{suffix}"), "op"));
    }
    if wanted("save_background") {
        // One background receiver, no worker: the save writes a task row in its transaction.
        let db = open(Signals::new())
            .await
            .with_context(|| format!("opening {url}"))?;
        db.create_table::<Book>().await?;
        db.signals()
            .post_save::<Book>()
            .background("reindex", TaskOptions::default())
            .connect()
            .keep();
        rows.push(
            saves(&db, plan)
                .await?
                .row(format!("save_background{suffix}"), "op"),
        );
    }
    let signals = Signals::new();
    connect_receivers(&signals);
    let db = open(signals)
        .await
        .with_context(|| format!("opening {url}"))?;
    db.create_table::<Book>().await?;
    if wanted("save_pre_post") {
        rows.push(
            saves(&db, plan)
                .await?
                .row(format!("save_pre_post{suffix}"), "op"),
        );
    }
    if wanted("update_pre_post") {
        rows.push(
            updates(&db, plan)
                .await?
                .row(format!("update_pre_post{suffix}"), "op"),
        );
    }
    if wanted("update_changes") {
        // The same updates, with one more post_save receiver that asks what changed: each update
        // then reads the row first, in its transaction.
        let _reads = db
            .signals()
            .post_save::<Book>()
            .receiver(|e: &PostSave<'_, Book>| {
                std::hint::black_box(e.changed_fields());
                Ok(())
            })
            .name("reads_changes")
            .changes()
            .connect();
        rows.push(
            updates(&db, plan)
                .await?
                .row(format!("update_changes{suffix}"), "op"),
        );
    }
    if wanted("bulk_create_1000") {
        rows.push(
            bulk(&db, plan)
                .await?
                .row(format!("bulk_create_1000{suffix}"), "row"),
        );
    }
    if wanted("bulk_update_1000") {
        rows.push(
            bulk_updates(&db, plan, UpdateWay::Bulk)
                .await?
                .row(format!("bulk_update_1000{suffix}"), "row"),
        );
    }
    if wanted("bulk_update_1000_one_by_one") {
        rows.push(
            bulk_updates(&db, plan, UpdateWay::OneByOne)
                .await?
                .row(format!("bulk_update_1000_one_by_one{suffix}"), "row"),
        );
    }
    if wanted("atomic_1000") {
        rows.push(
            atomic(&db, plan, false)
                .await?
                .row(format!("atomic_1000{suffix}"), "row"),
        );
    }
    if wanted("atomic_1000_pipelined") {
        // The same transactions through `db.begin_pipelined()`: the INSERTs ride with the
        // COMMIT (PostgreSQL; on SQLite the same as `atomic_1000`).
        rows.push(
            atomic(&db, plan, true)
                .await?
                .row(format!("atomic_1000_pipelined{suffix}"), "row"),
        );
    }
    if wanted("atomic_1000_in_transaction") {
        // The same transactions, with one more post_save receiver that runs in the transaction:
        // each save then runs its receivers on the connection (no savepoint inside a Tx).
        let _in_tx = db
            .signals()
            .post_save::<Book>()
            .in_transaction()
            .receiver(|e: &PostSave<'_, Book>| {
                std::hint::black_box(e.created);
                Ok(())
            })
            .name("in_transaction_trivial")
            .connect();
        rows.push(
            atomic(&db, plan, false)
                .await?
                .row(format!("atomic_1000_in_transaction{suffix}"), "row"),
        );
    }
    if let Some(schema) = &schema {
        db.execute(
            format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"),
            vec![],
        )
        .await?;
    }
    Ok(rows)
}

/// The SQLite rows.
pub(crate) async fn sqlite(plan: &Plan, wanted: &dyn Fn(&str) -> bool) -> anyhow::Result<Vec<Row>> {
    let dir = tempfile::tempdir().context("creating a scratch folder")?;
    let mut rows = Vec::new();
    if wanted("raw_insert") {
        rows.push(raw_sqlite(&dir.path().join("raw.db"), plan)?);
    }
    if wanted("raw_get") {
        rows.push(raw_sqlite_get(&dir.path().join("raw_get.db"), plan)?);
    }
    if wanted("raw_insert_with_task") {
        rows.push(raw_sqlite_with_task(&dir.path().join("raw_task.db"), plan)?);
    }
    for (name, way) in [
        ("raw_bulk_update_1000", RawUpdate::PerRow),
        ("raw_bulk_update_1000_values", RawUpdate::Values),
    ] {
        if wanted(name) {
            let path = dir.path().join(format!("{name}.db"));
            rows.push(raw_sqlite_bulk_update(&path, plan, way)?.row(name.to_owned(), "row"));
        }
    }
    let url = format!("sqlite://{}", dir.path().join("herald.db").display());
    rows.extend(herald_rows(&url, None, plan, "", wanted).await?);
    rows.extend(crate::queries::sqlite(dir.path(), plan, wanted).await?);
    rows.extend(crate::tasks::sqlite(plan, dir.path(), wanted).await?);
    Ok(rows)
}

/// The PostgreSQL rows, in a schema of their own.
pub(crate) async fn postgres(
    plan: &Plan,
    url: &str,
    wanted: &dyn Fn(&str) -> bool,
) -> anyhow::Result<Vec<Row>> {
    let schema = format!("herald_bench_{}", std::process::id());
    let mut rows = herald_rows(url, Some(schema), plan, "_postgres", wanted).await?;
    rows.extend(crate::tasks::postgres(plan, url, wanted).await?);
    Ok(rows)
}

/// The raw rows' INSERT of a book, as Herald's save sends it (`raw_insert`, `raw_insert_with_task`).
const RAW_INSERT: &str = "INSERT INTO \"books\" (\"title\", \"slug\", \"body\", \"price_cents\") VALUES (?1, ?2, ?3, ?4)";

/// The raw rows' INSERT of the books they read or update, outside their timing.
const RAW_FILL: &str = "INSERT INTO books (title, slug, body, price_cents) VALUES (?1, '', ?2, ?3)";

/// A bare connection to a new database at `path` in WAL/NORMAL, with the books table.
fn raw_books(path: &std::path::Path) -> anyhow::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))?;
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL; CREATE TABLE books (\"id\" INTEGER PRIMARY KEY AUTOINCREMENT, \
         \"title\" TEXT NOT NULL, \"slug\" TEXT NOT NULL, \"body\" TEXT NOT NULL, \"price_cents\" INTEGER NOT NULL)",
    )?;
    Ok(conn)
}

/// The floor of `get`: the same SELECT by key through the same driver, decoded into a `Book`.
fn raw_sqlite_get(path: &std::path::Path, plan: &Plan) -> anyhow::Result<Row> {
    let mut conn = raw_books(path)?;
    let fill = conn.transaction()?;
    for i in 0..plan.ops {
        fill.execute(RAW_FILL, rusqlite::params![TITLE, BODY, i as i64])?;
    }
    fill.commit()?;
    let sql = "SELECT \"id\", \"title\", \"slug\", \"body\", \"price_cents\" FROM \"books\" WHERE \"id\" = ?1";
    let mut samples = Samples::default();
    for _ in 0..plan.samples {
        let started = Instant::now();
        for key in 1..=plan.ops as i64 {
            let one = Instant::now();
            let mut statement = conn.prepare_cached(sql)?;
            let book = statement.query_row([key], Book::from_raw).optional()?;
            std::hint::black_box(book);
            samples.each.push(one.elapsed().as_nanos() as f64);
        }
        samples
            .means
            .push(started.elapsed().as_nanos() as f64 / plan.ops as f64);
    }
    Ok(samples.row("raw_get".to_owned(), "op"))
}

/// The floor of `save_background`: in one transaction (`BEGIN IMMEDIATE`, as Herald's writes),
/// `raw_insert`'s INSERT and a row appended to a table of the outbox's columns with no index but
/// its key (the DDL of Herald's outbox migration, copied), its payload the book's JSON.
fn raw_sqlite_with_task(path: &std::path::Path, plan: &Plan) -> anyhow::Result<Row> {
    let conn = raw_books(path)?;
    conn.execute_batch(
        "CREATE TABLE appended (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, queue TEXT NOT NULL, \
         payload TEXT NOT NULL, priority INTEGER NOT NULL, max_attempts INTEGER NOT NULL, \
         timeout_ms INTEGER NOT NULL, unique_key TEXT, created_at INTEGER NOT NULL, \
         run_at INTEGER NOT NULL)",
    )?;
    let task = "INSERT INTO appended (kind, queue, payload, priority, max_attempts, timeout_ms, \
                unique_key, created_at, run_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
    let slug = slugify(TITLE);
    let mut samples = Samples::default();
    for _ in 0..plan.samples {
        conn.execute_batch(
            "DELETE FROM books; DELETE FROM appended; PRAGMA wal_checkpoint(TRUNCATE);",
        )?;
        let started = Instant::now();
        for i in 0..plan.ops {
            let one = Instant::now();
            conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
            conn.prepare_cached(RAW_INSERT)?
                .execute(rusqlite::params![TITLE, slug, BODY, i as i64])?;
            let key = conn.last_insert_rowid();
            let payload = serde_json::json!({
                "model": "Book",
                "instance": {"id": key, "title": TITLE, "slug": slug, "body": BODY, "price_cents": i},
            })
            .to_string();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_micros() as i64;
            conn.prepare_cached(task)?.execute(rusqlite::params![
                "reindex",
                "default",
                payload,
                0,
                25,
                0,
                None::<String>,
                now,
                now
            ])?;
            conn.prepare_cached("COMMIT")?.execute([])?;
            samples.each.push(one.elapsed().as_nanos() as f64);
        }
        samples
            .means
            .push(started.elapsed().as_nanos() as f64 / plan.ops as f64);
    }
    Ok(samples.row("raw_insert_with_task".to_owned(), "op"))
}

/// How a `raw_bulk_update_1000` row sends its UPDATEs.
#[derive(Clone, Copy)]
enum RawUpdate {
    /// One prepared `UPDATE .. WHERE id = ?` run per row (what Herald's `bulk_update` does on
    /// SQLite).
    PerRow,
    /// One statement for the whole batch: `WITH v(k, c0, c1) AS (VALUES (?, ?, ?), ..) UPDATE ..
    /// FROM v` (SQLite 3.33 or later).
    Values,
}

/// The floor of `bulk_update_1000` on SQLite: the same 1,000 books updated (title and price) in
/// one transaction through the same driver, with no Herald and no receivers, `way`; ns per row.
fn raw_sqlite_bulk_update(
    path: &std::path::Path,
    plan: &Plan,
    way: RawUpdate,
) -> anyhow::Result<Samples> {
    let mut conn = raw_books(path)?;
    let sql = match way {
        RawUpdate::PerRow => {
            "UPDATE \"books\" SET \"title\" = ?1, \"price_cents\" = ?2 WHERE \"id\" = ?3".to_owned()
        }
        RawUpdate::Values => format!(
            "WITH v(k, c0, c1) AS (VALUES {}) UPDATE \"books\" SET \"title\" = v.c0, \
             \"price_cents\" = v.c1 FROM v WHERE \"books\".\"id\" = v.k",
            vec!["(?, ?, ?)"; 1000].join(", ")
        ),
    };
    let mut samples = Samples::default();
    for _ in 0..plan.samples {
        conn.execute_batch("DELETE FROM books; PRAGMA wal_checkpoint(TRUNCATE);")?;
        let mut elapsed = 0.0;
        for _ in 0..plan.batches {
            let fill = conn.transaction()?;
            let mut keys = Vec::with_capacity(1000);
            for i in 0..1000 {
                fill.execute(RAW_FILL, rusqlite::params![TITLE, BODY, i as i64])?;
                keys.push(fill.last_insert_rowid());
            }
            fill.commit()?;
            let rows: Vec<(i64, String, i64)> = keys
                .iter()
                .enumerate()
                .map(|(i, &key)| (key, format!("{TITLE} {i}"), i as i64 + 1))
                .collect();
            let started = Instant::now();
            let tx = conn.transaction()?;
            {
                let mut statement = tx.prepare_cached(&sql)?;
                match way {
                    RawUpdate::PerRow => {
                        for (key, title, price) in &rows {
                            statement.execute(rusqlite::params![title, price, key])?;
                        }
                    }
                    RawUpdate::Values => {
                        let params = rows.iter().flat_map(|(key, title, price)| {
                            [
                                key as &dyn rusqlite::ToSql,
                                title as &dyn rusqlite::ToSql,
                                price as &dyn rusqlite::ToSql,
                            ]
                        });
                        statement.execute(rusqlite::params_from_iter(params))?;
                    }
                }
            }
            tx.commit()?;
            elapsed += started.elapsed().as_nanos() as f64;
        }
        samples.means.push(elapsed / (plan.batches * 1000) as f64);
    }
    Ok(samples)
}

/// The floor: the same INSERT through the same driver, autocommit, no Herald: a plain INSERT and
/// the connection's last inserted rowid, as Herald's save on SQLite reads its key.
fn raw_sqlite(path: &std::path::Path, plan: &Plan) -> anyhow::Result<Row> {
    let conn = raw_books(path)?;
    let slug = slugify(TITLE);
    let mut samples = Samples::default();
    for _ in 0..plan.samples {
        conn.execute_batch("DELETE FROM books; PRAGMA wal_checkpoint(TRUNCATE);")?;
        let started = Instant::now();
        for i in 0..plan.ops {
            let one = Instant::now();
            let mut statement = conn.prepare_cached(RAW_INSERT)?;
            // `execute` runs the statement to its end: SQLite's automatic checkpoint runs only
            // when a statement that committed completes (not when one is reset after its first
            // row), so it runs in this row's timing as it does in a save's.
            statement.execute(rusqlite::params![TITLE, slug, BODY, i as i64])?;
            std::hint::black_box(conn.last_insert_rowid());
            samples.each.push(one.elapsed().as_nanos() as f64);
        }
        samples
            .means
            .push(started.elapsed().as_nanos() as f64 / plan.ops as f64);
    }
    Ok(samples.row("raw_insert".to_owned(), "op"))
}
