//! `#[derive(Model)]` expanded for real against `herald`: the constants a model declares, its values
//! in and out, its key, its JSON and its sender identity.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use chrono::{DateTime, TimeZone, Utc};
use herald::dispatch::{AnyModel, Sender};
use herald::{Column, Model, SqlType, Value};
use serde_json::json;

/// A model whose key the database assigns.
#[derive(Model, Clone, Debug, PartialEq)]
#[model(table = "books")]
pub struct Book {
    #[model(primary_key)]
    pub id: Option<i64>,
    pub title: String,
    #[model(column = "url_slug")]
    pub slug: String,
    pub price_cents: i64,
    pub published_at: Option<DateTime<Utc>>,
}

/// A model whose key the caller sets, with the defaults: table from the struct's name, and a
/// renamed model.
#[derive(Model, Clone, Debug, PartialEq)]
#[model(name = "Edition")]
pub struct BookEdition {
    pub title: String,
    #[model(primary_key)]
    pub isbn: String,
    pub copies: u32,
    pub tags: serde_json::Value,
}

/// The key found by its name, `id`, with an `auto` that is not `Option<i64>`.
#[derive(Model, Clone, Debug, PartialEq)]
pub struct Tag {
    #[model(auto)]
    pub id: Option<i32>,
    pub label: String,
}

mod renamed {
    /// `herald` under another name, as a crate re-exporting it would have it.
    pub(crate) use herald as db;
}

#[derive(Model, Clone, Debug, PartialEq)]
#[model(crate = renamed::db)]
pub struct Note {
    id: i64,
    r#type: String,
}

fn published() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 7, 1, 51).unwrap()
}

fn dune() -> Book {
    Book {
        id: Some(7),
        title: "Dune".into(),
        slug: "dune".into(),
        price_cents: 1299,
        published_at: Some(published()),
    }
}

fn column(name: &'static str, sql_type: SqlType, nullable: bool) -> Column {
    Column {
        name,
        sql_type,
        nullable,
    }
}

/// Every value of `model`, by `Model::value`, in column order.
fn values<M: Model>(model: &M) -> Vec<Value> {
    (0..M::COLUMNS.len()).map(|i| model.value(i)).collect()
}

#[test]
fn a_database_assigned_key_model_declares_its_table_columns_and_key() {
    assert_eq!(Book::TABLE, "books");
    assert_eq!(
        Book::COLUMNS,
        [
            column("id", SqlType::Int, true),
            column("title", SqlType::Text, false),
            column("url_slug", SqlType::Text, false),
            column("price_cents", SqlType::Int, false),
            column("published_at", SqlType::Timestamp, true),
        ]
    );
    assert_eq!((Book::PK, Book::AUTO_PK), (0, true));
    assert_eq!(Book::column_index("url_slug"), Some(2));
    assert_eq!(<Book as Sender>::NAME, "Book");
}

#[test]
fn a_caller_set_key_model_declares_its_table_columns_and_key() {
    assert_eq!(BookEdition::TABLE, "book_edition");
    assert_eq!(
        BookEdition::COLUMNS,
        [
            column("title", SqlType::Text, false),
            column("isbn", SqlType::Text, false),
            column("copies", SqlType::Int, false),
            column("tags", SqlType::Json, false),
        ]
    );
    assert_eq!((BookEdition::PK, BookEdition::AUTO_PK), (1, false));
    assert_eq!(<BookEdition as Sender>::NAME, "Edition");

    assert_eq!((Tag::TABLE, Tag::PK, Tag::AUTO_PK), ("tag", 0, true));
    assert_eq!(Note::COLUMNS[1].name, "type");
    assert_eq!((Note::PK, Note::AUTO_PK), (0, false));
}

#[test]
fn values_round_trip_through_from_values() {
    let book = dune();
    let values = values(&book);
    assert_eq!(
        values,
        [
            Value::Int(7),
            Value::Text("Dune".into()),
            Value::Text("dune".into()),
            Value::Int(1299),
            Value::Timestamp(published()),
        ]
    );
    assert_eq!(book.value(5), Value::Null, "past the last column");
    assert_eq!(Book::from_values(values).unwrap(), book);

    let unsaved = Book {
        id: None,
        published_at: None,
        ..dune()
    };
    assert_eq!(Book::from_values(self::values(&unsaved)).unwrap(), unsaved);
}

#[test]
fn from_values_names_the_first_column_that_does_not_fit() {
    let mut values = values(&dune());
    values[1] = Value::Int(1);
    values[3] = Value::Null;
    assert_eq!(
        Book::from_values(values).unwrap_err(),
        (1, "expected text, got Int(1)".to_owned())
    );

    let mut values = self::values(&dune());
    values[3] = Value::Null;
    let (index, reason) = Book::from_values(values).unwrap_err();
    assert_eq!(index, 3);
    assert!(reason.contains("got NULL"), "{reason}");
}

#[test]
fn from_values_rejects_a_wrong_number_of_values() {
    let mut values = values(&dune());
    values.pop();
    assert_eq!(
        Book::from_values(values).unwrap_err(),
        (4, "expected 5 columns, got 4".to_owned())
    );
    let mut values = self::values(&dune());
    values.push(Value::Null);
    assert_eq!(
        Book::from_values(values).unwrap_err(),
        (5, "expected 5 columns, got 6".to_owned())
    );
    assert_eq!(
        Note::from_values(vec![]).unwrap_err(),
        (0, "expected 2 columns, got 0".to_owned())
    );
}

#[test]
fn a_database_assigned_key_is_none_until_set() {
    let mut book = Book { id: None, ..dune() };
    assert_eq!((book.pk_value(), book.pk_string()), (None, None));

    book.set_pk_value(Value::Int(42)).unwrap();
    assert_eq!(book.id, Some(42));
    assert_eq!(book.pk_value(), Some(Value::Int(42)));
    assert_eq!(book.pk_string().as_deref(), Some("42"));

    assert_eq!(
        book.set_pk_value(Value::Null).unwrap_err(),
        "a primary key cannot be NULL"
    );
    assert_eq!(
        book.set_pk_value(Value::Text("x".into())).unwrap_err(),
        r#"expected an integer, got Text("x")"#
    );
    assert_eq!(book.id, Some(42), "a failed set leaves the key alone");

    let mut tag = Tag {
        id: None,
        label: "sf".into(),
    };
    tag.set_pk_value(Value::Int(3)).unwrap();
    assert_eq!(tag.id, Some(3));
    assert!(tag.set_pk_value(Value::Int(1 << 40)).is_err());
}

#[test]
fn a_caller_set_key_is_always_present() {
    let mut edition = BookEdition {
        title: "Dune".into(),
        isbn: "978-0441013593".into(),
        copies: 3,
        tags: json!(["sf"]),
    };
    assert_eq!(
        edition.pk_value(),
        Some(Value::Text("978-0441013593".into()))
    );
    assert_eq!(edition.pk_string().as_deref(), Some("978-0441013593"));
    edition.set_pk_value(Value::Text("0-00".into())).unwrap();
    assert_eq!(edition.isbn, "0-00");
    assert_eq!(
        edition.set_pk_value(Value::Null).unwrap_err(),
        "a primary key cannot be NULL"
    );
}

#[test]
fn the_type_erased_view_names_the_model_and_shows_every_column() {
    let book = dune();
    let any: &dyn AnyModel = &book;
    assert_eq!(any.model_name(), "Book");
    assert_eq!(any.pk_string().as_deref(), Some("7"));
    assert_eq!(
        any.to_json(),
        json!({
            "id": 7,
            "title": "Dune",
            "url_slug": "dune",
            "price_cents": 1299,
            "published_at": "2026-11-24T07:01:51.000000Z",
        })
    );
    assert_eq!(any.downcast_ref::<Book>(), Some(&book));

    let unsaved = Book {
        id: None,
        published_at: None,
        ..dune()
    };
    assert_eq!(unsaved.to_json()["id"], json!(null));
    assert_eq!(unsaved.to_json()["published_at"], json!(null));
    assert_eq!(
        BookEdition {
            title: "Dune".into(),
            isbn: "1".into(),
            copies: 3,
            tags: json!(["sf"]),
        }
        .model_name(),
        "Edition"
    );
}

#[test]
fn each_model_has_one_sender_key_of_its_own() {
    assert!(std::ptr::eq(Book::sender_key(), Book::sender_key()));
    assert!(!std::ptr::eq(Book::sender_key(), BookEdition::sender_key()));
    assert_ne!(Book::sender_key().index(), Tag::sender_key().index());
}

#[test]
fn statements_are_built_once_per_model() {
    assert!(std::ptr::eq(Book::statements(), Book::statements()));
    assert!(std::ptr::eq(
        BookEdition::statements(),
        BookEdition::statements()
    ));
    assert!(std::ptr::eq(Tag::statements(), Tag::statements()));
    assert!(std::ptr::eq(Note::statements(), Note::statements()));
    assert!(!std::ptr::eq(Book::statements(), Tag::statements()));
}
