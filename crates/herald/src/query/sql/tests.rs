//! The SQL a query writes, in both dialects.
#![allow(clippy::unwrap_used)]

use super::*;
use herald_macros::Model;

#[derive(Model, Clone, Debug)]
#[model(table = "books", crate = crate)]
struct Book {
    id: Option<i64>,
    title: String,
    #[model(column = "cents")]
    price_cents: i64,
    note: Option<String>,
}

fn check(query: &Query<Book>, what: Select, sqlite: &str, postgres: &str, params: &[Value]) {
    let lite = select(query, Dialect::Sqlite, what).unwrap();
    assert_eq!(lite.text, sqlite);
    assert_eq!(lite.params, params);
    let pg = select(query, Dialect::Postgres, what).unwrap();
    assert_eq!(pg.text, postgres);
    assert_eq!(pg.params, params);
}

const ROWS: Select = Select::Rows { lock: false };

#[test]
fn columns_are_typed_constants_with_index_and_name() {
    assert_eq!(Book::PRICE_CENTS.index(), 2);
    assert_eq!(Book::PRICE_CENTS.name(), "cents");
    assert_eq!(Book::NOTE.name(), "note");
}

#[test]
fn a_query_without_conditions_lists_in_key_order() {
    check(
        &Book::query(),
        ROWS,
        r#"SELECT "id", "title", "cents", "note" FROM "books" ORDER BY "id""#,
        r#"SELECT "id", "title", "cents", "note" FROM "books" ORDER BY "id""#,
        &[],
    );
}

#[test]
fn conditions_are_bound_and_parenthesised() {
    let query = Book::query()
        .filter(
            Book::PRICE_CENTS
                .ge(100)
                .and(Book::PRICE_CENTS.lt(200))
                .or(Book::TITLE.like("D%")),
        )
        .filter(!Book::NOTE.is_null())
        .filter(Book::ID.in_([1, 2]))
        .order_by(Book::TITLE.desc())
        .limit(10)
        .offset(20);
    check(
        &query,
        ROWS,
        r#"SELECT "id", "title", "cents", "note" FROM "books" WHERE ((("cents" >= ?1) AND ("cents" < ?2)) OR ("title" LIKE ?3 ESCAPE '\')) AND (NOT ("note" IS NULL)) AND ("id" IN (?4, ?5)) ORDER BY "title" DESC, "id" LIMIT ?6 OFFSET ?7"#,
        r#"SELECT "id", "title", "cents", "note" FROM "books" WHERE ((("cents" >= $1) AND ("cents" < $2)) OR ("title" LIKE $3 ESCAPE '\')) AND (NOT ("note" IS NULL)) AND ("id" IN ($4, $5)) ORDER BY "title" DESC, "id" LIMIT $6 OFFSET $7"#,
        &[
            Value::Int(100),
            Value::Int(200),
            Value::Text("D%".into()),
            Value::Int(1),
            Value::Int(2),
            Value::Int(10),
            Value::Int(20),
        ],
    );
}

#[test]
fn an_empty_in_list_matches_nothing_and_eq_none_is_is_null() {
    let query = Book::query()
        .filter(Book::ID.in_(Vec::<i64>::new()))
        .filter(Book::NOTE.eq(None::<String>))
        .filter(Book::NOTE.ne(None::<String>));
    check(
        &query,
        Select::Count,
        r#"SELECT COUNT(*) FROM "books" WHERE (1 = 0) AND ("note" IS NULL) AND ("note" IS NOT NULL)"#,
        r#"SELECT COUNT(*) FROM "books" WHERE (1 = 0) AND ("note" IS NULL) AND ("note" IS NOT NULL)"#,
        &[],
    );
}

#[test]
fn sqlite_needs_a_limit_for_an_offset_and_a_limited_count_counts_a_subquery() {
    let query = Book::query().offset(5);
    check(
        &query,
        Select::Count,
        r#"SELECT COUNT(*) FROM (SELECT "id" FROM "books" LIMIT -1 OFFSET ?1) AS counted"#,
        r#"SELECT COUNT(*) FROM (SELECT "id" FROM "books" OFFSET $1) AS counted"#,
        &[Value::Int(5)],
    );
}

#[test]
fn nullable_order_columns_sort_nulls_the_same_way_on_both_databases() {
    let query = Book::query().order_by(Book::NOTE.asc());
    check(
        &query,
        Select::Exists,
        r#"SELECT 1 FROM "books" LIMIT ?1"#,
        r#"SELECT 1 FROM "books" LIMIT $1"#,
        &[Value::Int(1)],
    );
    let sql = select(&query, Dialect::Postgres, ROWS).unwrap().text;
    assert!(
        sql.ends_with(r#"ORDER BY "note" ASC NULLS FIRST, "id""#),
        "{sql}"
    );
}

#[test]
fn keyset_by_key_and_by_row() {
    let by_key = Book::query().order_by(Book::ID.desc()).after(7);
    check(
        &by_key,
        ROWS,
        r#"SELECT "id", "title", "cents", "note" FROM "books" WHERE ("id" < ?1) ORDER BY "id" DESC"#,
        r#"SELECT "id", "title", "cents", "note" FROM "books" WHERE ("id" < $1) ORDER BY "id" DESC"#,
        &[Value::Int(7)],
    );
    let last = Book {
        id: Some(3),
        title: "Dune".into(),
        price_cents: 900,
        note: None,
    };
    let by_row = Book::query()
        .order_by(Book::PRICE_CENTS.desc())
        .after_row(&last);
    let sql = select(&by_row, Dialect::Sqlite, ROWS).unwrap();
    assert_eq!(
        sql.text,
        r#"SELECT "id", "title", "cents", "note" FROM "books" WHERE (("cents" < ?1) OR (("cents" = ?2) AND ("id" > ?3))) ORDER BY "cents" DESC, "id""#
    );
    assert_eq!(
        sql.params,
        [Value::Int(900), Value::Int(900), Value::Int(3)]
    );
}

#[test]
fn keyset_misuse_is_an_error_naming_the_model_and_the_column() {
    let error = select(
        &Book::query().order_by(Book::TITLE.asc()).after(7),
        Dialect::Sqlite,
        ROWS,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.starts_with("query on Book: after(key) needs an order on the key `id` alone")
            && error.contains("`title`"),
        "{error}"
    );
    let row = Book {
        id: Some(1),
        title: String::new(),
        price_cents: 0,
        note: None,
    };
    let error = select(
        &Book::query().order_by(Book::NOTE.asc()).after_row(&row),
        Dialect::Sqlite,
        ROWS,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("nullable column `note`"), "{error}");
}

#[test]
fn escape_like_escapes_the_wildcards_and_the_escape() {
    assert_eq!(crate::query::escape_like(r"50%_off\"), r"50\%\_off\\");
}
