//! The query rows: a filtered query and a count through Herald's query API, each beside the same
//! statement through the bare rusqlite connection (`raw_*`), on one table of 10,000 books; and the
//! count's statement through `db.read(..)` (`read_query_count`: the store's hop to a reader thread
//! without the query builder).

use std::path::Path;
use std::time::Instant;

use herald::{Db, Model, SqlType, Store, Value};

use crate::Row;
use crate::rows::{Book, Plan, Samples, new_book};

/// Books in the table; book `i` costs `i` cents.
const BOOKS: usize = 10_000;
/// The price window of the filtered query and the count: 2,001 books.
const LOW: i64 = 4_000;
const HIGH: i64 = 6_000;
/// The filtered query's page.
const PAGE: u64 = 100;

/// The statements Herald writes for the two queries (pinned by `herald`'s own SQL tests), run
/// as they are by the raw rows.
const FILTERED_SQL: &str = "SELECT \"id\", \"title\", \"slug\", \"body\", \"price_cents\" FROM \"books\" \
     WHERE ((\"price_cents\" >= ?1) AND (\"price_cents\" <= ?2)) ORDER BY \"id\" LIMIT ?3";
const COUNT_SQL: &str =
    "SELECT COUNT(*) FROM \"books\" WHERE ((\"price_cents\" >= ?1) AND (\"price_cents\" <= ?2))";

/// Time `op` `runs` times per sample, `plan`'s samples.
async fn measure<F, Fut>(plan: &Plan, runs: usize, mut op: F) -> anyhow::Result<Samples>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut samples = Samples::default();
    for _ in 0..plan.samples {
        let started = Instant::now();
        for _ in 0..runs {
            let one = Instant::now();
            op().await?;
            samples.each.push(one.elapsed().as_nanos() as f64);
        }
        samples
            .means
            .push(started.elapsed().as_nanos() as f64 / runs as f64);
    }
    Ok(samples)
}

/// The four rows that `wanted` selects, on a fresh SQLite file in `dir`.
pub(crate) async fn sqlite(
    dir: &Path,
    plan: &Plan,
    wanted: &dyn Fn(&str) -> bool,
) -> anyhow::Result<Vec<Row>> {
    let names = [
        "raw_query_filtered",
        "query_filtered",
        "raw_query_count",
        "read_query_count",
        "query_count",
    ];
    if !names.iter().any(|name| wanted(name)) {
        return Ok(Vec::new());
    }
    // A query costs about a hundred saves: a tenth of the save rows' operations per sample.
    let runs = (plan.ops / 10).max(10);
    let path = dir.join("query.db");
    let db = Db::open(format!("sqlite://{}", path.display()))
        .connect()
        .await?;
    db.create_table::<Book>().await?;
    let mut books: Vec<Book> = (0..BOOKS).map(new_book).collect();
    db.without_signals().bulk_create(&mut books).await?;
    let raw = rusqlite::Connection::open(&path)?;

    let window = || Book::query().filter(Book::PRICE_CENTS.ge(LOW).and(Book::PRICE_CENTS.le(HIGH)));
    let mut rows = Vec::new();
    if wanted("raw_query_filtered") {
        let samples = measure(plan, runs, || {
            let result = raw_filtered(&raw);
            async move { result }
        })
        .await?;
        rows.push(samples.row("raw_query_filtered".to_owned(), "op"));
    }
    if wanted("query_filtered") {
        let query = window().limit(PAGE);
        let samples = measure(plan, runs, || async {
            let books = query.all(&db).await?;
            anyhow::ensure!(books.len() == PAGE as usize, "{} books", books.len());
            Ok(())
        })
        .await?;
        rows.push(samples.row("query_filtered".to_owned(), "op"));
    }
    if wanted("raw_query_count") {
        let samples = measure(plan, runs, || {
            let result = raw_count(&raw);
            async move { result }
        })
        .await?;
        rows.push(samples.row("raw_query_count".to_owned(), "op"));
    }
    if wanted("read_query_count") {
        let samples = measure(plan, runs, || async {
            let rows = db
                .read(|conn| {
                    conn.query(
                        COUNT_SQL,
                        &[Value::Int(LOW), Value::Int(HIGH)],
                        &[SqlType::Int],
                    )
                })
                .await?;
            anyhow::ensure!(rows[0][0] == Value::Int(HIGH - LOW + 1), "{rows:?}");
            Ok(())
        })
        .await?;
        rows.push(samples.row("read_query_count".to_owned(), "op"));
    }
    if wanted("query_count") {
        let query = window();
        let samples = measure(plan, runs, || async {
            let n = query.count(&db).await?;
            anyhow::ensure!(n == (HIGH - LOW + 1) as u64, "counted {n}");
            Ok(())
        })
        .await?;
        rows.push(samples.row("query_count".to_owned(), "op"));
    }
    Ok(rows)
}

/// The filtered query through rusqlite: the same statement, prepared once, each row decoded into
/// a `Book`.
fn raw_filtered(conn: &rusqlite::Connection) -> anyhow::Result<()> {
    let mut statement = conn.prepare_cached(FILTERED_SQL)?;
    let books = statement
        .query_map(rusqlite::params![LOW, HIGH, PAGE as i64], Book::from_raw)?
        .collect::<Result<Vec<Book>, _>>()?;
    anyhow::ensure!(books.len() == PAGE as usize, "{} books", books.len());
    std::hint::black_box(books);
    Ok(())
}

/// The count through rusqlite.
fn raw_count(conn: &rusqlite::Connection) -> anyhow::Result<()> {
    let mut statement = conn.prepare_cached(COUNT_SQL)?;
    let n: i64 = statement.query_row(rusqlite::params![LOW, HIGH], |r| r.get(0))?;
    anyhow::ensure!(n == HIGH - LOW + 1, "counted {n}");
    Ok(())
}
