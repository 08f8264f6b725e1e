//! The store's signal lifecycle, on SQLite and (when `HERALD_TEST_POSTGRES_URL` is set) PostgreSQL.
// A build with one backend leaves out the other's tests, and what only they use.
#![cfg_attr(
    not(all(feature = "sqlite", feature = "postgres")),
    allow(dead_code, unused_imports)
)]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{Audit, Book, Edition, Everything, Log, book};
use herald::Store;
use herald::dispatch::{
    AnyModel, Error as ReceiverError, PostDelete, PostSave, PreDelete, PreSave,
};
use herald::{Db, Error, EventConn, Model};

fn slugify(title: &str) -> String {
    title
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

async fn count(db: &Db, table: &str) -> i64 {
    let table = table.to_owned();
    db.read(move |conn| {
        let rows = conn.query(
            &format!("SELECT COUNT(*) FROM {table}"),
            &[],
            &[herald::SqlType::Int],
        )?;
        Ok(match rows[0][0] {
            herald::Value::Int(n) => n,
            _ => -1,
        })
    })
    .await
    .unwrap()
}

backend_test!(
    pre_save_then_post_save_with_created_true_on_insert_and_false_on_update,
    |db, backend| async move {
        let log = Log::default();
        let _pre = log.pre_save(&db, |e| format!("pre_save {:?}", e.instance.id));
        let _post = log.post_save(&db, |e| {
            format!(
                "post_save {:?} created={} raw={} using={}",
                e.instance.id, e.created, e.raw, e.using
            )
        });
        let mut b = book("Dune");
        let saved = db.save(&mut b).await.unwrap();
        assert!(saved.created && saved.written, "{backend}");
        let id = b.id.expect("the key was assigned");
        b.price_cents = 1200;
        assert!(!db.save(&mut b).await.unwrap().created);
        assert_eq!(
            log.take(),
            [
                "pre_save None".to_owned(),
                format!("post_save Some({id}) created=true raw=false using=default"),
                format!("pre_save Some({id})"),
                format!("post_save Some({id}) created=false raw=false using=default"),
            ],
            "{backend}"
        );
        assert_eq!(db.get::<Book>(id).await.unwrap().unwrap().price_cents, 1200);
    }
);

backend_test!(
    fixture_loading_saves_with_raw_true,
    |db, backend| async move {
        let log = Log::default();
        let _post = log.post_save(&db, |e| {
            format!("{} raw={} created={}", e.instance.title, e.raw, e.created)
        });
        let fixture = r#"[
        {"model": "Book", "pk": 7, "fields": {"title": "Emma", "slug": "emma", "body": "", "price_cents": 500}},
        {"model": "shop.book", "pk": 8, "fields": {"title": "Persuasion", "slug": "persuasion", "body": "", "price_cents": 600}}
    ]"#;
        assert_eq!(
            db.load_fixture::<Book>(fixture).await.unwrap(),
            2,
            "{backend}"
        );
        assert_eq!(
            log.take(),
            [
                "Emma raw=true created=true",
                "Persuasion raw=true created=true"
            ]
        );
        assert_eq!(
            db.get::<Book>(8).await.unwrap().unwrap().title,
            "Persuasion"
        );

        let broken = r#"[{"model": "Book", "pk": 9, "fields": {"title": 3}}]"#;
        let error = db.load_fixture::<Book>(broken).await.unwrap_err();
        assert!(
            error.to_string().contains("field `title`: expected text"),
            "{error}"
        );
        assert!(db.get::<Book>(9).await.unwrap().is_none());
    }
);

backend_test!(
    a_caller_set_key_not_in_the_table_gives_created_true,
    |db, backend| async move {
        let log = Log::default();
        let seen = log.clone();
        let _post =
            db.signals()
                .post_save::<Edition>()
                .connect(move |e: &PostSave<'_, Edition>| {
                    seen.push(format!("{} created={}", e.instance.isbn, e.created));
                    Ok(())
                });
        let mut e = Edition {
            isbn: "978-0441013593".into(),
            title: "Dune".into(),
            copies: 3,
        };
        assert!(db.save(&mut e).await.unwrap().created, "{backend}");
        e.copies = 4;
        assert!(!db.save(&mut e).await.unwrap().created);
        assert_eq!(
            log.take(),
            [
                "978-0441013593 created=true",
                "978-0441013593 created=false"
            ]
        );
        assert_eq!(
            db.get::<Edition>("978-0441013593")
                .await
                .unwrap()
                .unwrap()
                .copies,
            4
        );
    }
);

backend_test!(
    update_fields_are_passed_through_exactly_and_the_empty_list_sends_nothing,
    |db, backend| async move {
        let log = Log::default();
        let _pre = log.pre_save(&db, |e| format!("pre {:?}", e.update_fields));
        let _post = log.post_save(&db, |e| format!("post {:?}", e.update_fields));
        let mut b = book("Dune");
        db.save(&mut b).await.unwrap();
        log.take();

        b.title = "Dune Messiah".into();
        b.price_cents = 1;
        db.save_fields(&mut b, &["title"]).await.unwrap();
        assert_eq!(
            log.take(),
            [r#"pre Some(["title"])"#, r#"post Some(["title"])"#],
            "{backend}"
        );
        let stored = db.get::<Book>(b.id.unwrap()).await.unwrap().unwrap();
        assert_eq!(
            (stored.title.as_str(), stored.price_cents),
            ("Dune Messiah", 900),
            "only the title was written"
        );

        let nothing = db.save_fields(&mut b, &[]).await.unwrap();
        assert!(!nothing.written);
        assert!(log.take().is_empty(), "the empty list sends nothing");

        let error = db.save_fields(&mut b, &["titel"]).await.unwrap_err();
        assert!(matches!(error, Error::UnknownField { .. }), "{error}");
        assert_eq!(
            error.to_string(),
            "Book has no field `titel` (update_fields); its fields are: id, title, slug, body, price_cents"
        );
        assert!(
            log.take().is_empty(),
            "an unknown field is an error before any receiver runs"
        );
    }
);

backend_test!(
    a_pre_save_change_is_what_is_stored,
    |db, _backend| async move {
        let _slug = db
            .signals()
            .pre_save::<Book>()
            .connect(|e: &mut PreSave<'_, Book>| {
                if e.instance.slug.is_empty() {
                    e.instance.slug = slugify(&e.instance.title);
                }
                Ok(())
            });
        let mut b = book("The Left Hand of Darkness");
        db.save(&mut b).await.unwrap();
        assert_eq!(
            b.slug, "the-left-hand-of-darkness",
            "the caller's instance has the change"
        );
        assert_eq!(
            db.get::<Book>(b.id.unwrap()).await.unwrap().unwrap().slug,
            "the-left-hand-of-darkness"
        );

        let mut given = Book {
            slug: "given".into(),
            ..book("Another")
        };
        db.save(&mut given).await.unwrap();
        assert_eq!(
            db.get::<Book>(given.id.unwrap())
                .await
                .unwrap()
                .unwrap()
                .slug,
            "given",
            "only when empty"
        );
    }
);

backend_test!(
    a_vetoing_pre_save_writes_nothing_and_names_the_receiver,
    |db, backend| async move {
        let _veto = db
            .signals()
            .pre_save::<Book>()
            .receiver(|e: &mut PreSave<'_, Book>| {
                if e.instance.price_cents < 0 {
                    return Err(ReceiverError::msg("price must not be negative"));
                }
                Ok(())
            })
            .name("check_price")
            .connect();
        let mut b = Book {
            price_cents: -1,
            ..book("Free")
        };
        let error = db.save(&mut b).await.unwrap_err();
        assert_eq!(
            error.as_receiver().unwrap().receiver().name(),
            "check_price",
            "{backend}"
        );
        assert_eq!(
            error.to_string(),
            "pre_save receiver `check_price` for Book failed: price must not be negative"
        );
        assert_eq!(count(&db, "books").await, 0);
        assert_eq!(b.id, None);
    }
);

backend_test!(
    a_failing_post_save_rolls_the_write_back_with_what_receivers_wrote,
    |db, backend| async move {
        let _audit = db.signals().post_save_any().in_transaction().connect(
            |e: &PostSave<'_, dyn AnyModel>| {
                if e.instance.model_name() == "Audit" {
                    return Ok(());
                }
                let mut row = Audit {
                    id: None,
                    model: e.instance.model_name().into(),
                    key: e.instance.pk_string().unwrap_or_default(),
                    action: "saved".into(),
                };
                e.conn()?.save(&mut row)?;
                Ok(())
            },
        );
        let _fail = db
            .signals()
            .post_save::<Book>()
            .in_transaction()
            .receiver(|e: &PostSave<'_, Book>| {
                if e.instance.title == "bad" {
                    Err(ReceiverError::msg("no"))
                } else {
                    Ok(())
                }
            })
            .name("refuse_bad")
            .connect();

        let mut good = book("good");
        db.save(&mut good).await.unwrap();
        assert_eq!(
            (count(&db, "books").await, count(&db, "audit").await),
            (1, 1),
            "{backend}"
        );

        let mut bad = book("bad");
        let error = db.save(&mut bad).await.unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("post_save receiver `refuse_bad` for Book (pk "),
            "{error}"
        );
        assert_eq!(count(&db, "books").await, 1, "the book was rolled back");
        assert_eq!(count(&db, "audit").await, 1, "and so was its audit row");
    }
);

backend_test!(
    delete_sends_pre_delete_and_post_delete_with_the_key_still_set,
    |db, backend| async move {
        let log = Log::default();
        let (pre, post) = (log.clone(), log.clone());
        let _pre = db
            .signals()
            .pre_delete::<Book>()
            .connect(move |e: &PreDelete<'_, Book>| {
                pre.push(format!("pre_delete {:?}", e.instance.id));
                Ok(())
            });
        let _post = db
            .signals()
            .post_delete::<Book>()
            .connect(move |e: &PostDelete<'_, Book>| {
                post.push(format!("post_delete {:?}", e.instance.id));
                Ok(())
            });
        let mut b = book("Dune");
        db.save(&mut b).await.unwrap();
        assert!(db.delete(&b).await.unwrap(), "{backend}");
        let id = b.id.unwrap();
        assert_eq!(
            log.take(),
            [
                format!("pre_delete Some({id})"),
                format!("post_delete Some({id})")
            ]
        );
        assert!(db.get::<Book>(id).await.unwrap().is_none());
        assert!(!db.delete(&b).await.unwrap(), "nothing left to delete");
        assert_eq!(
            log.take(),
            [format!("pre_delete Some({id})")],
            "post_delete only when a row went"
        );
    }
);

backend_test!(
    a_receiver_for_every_model_and_one_for_book_both_fire_for_a_book,
    |db, _backend| async move {
        let log = Log::default();
        let (any, own) = (log.clone(), log.clone());
        let _any = db
            .signals()
            .post_save_any()
            .connect(move |e: &PostSave<'_, dyn AnyModel>| {
                any.push(format!("any {}", e.instance.model_name()));
                Ok(())
            });
        let _book = db
            .signals()
            .post_save::<Book>()
            .connect(move |_e: &PostSave<'_, Book>| {
                own.push("book");
                Ok(())
            });
        db.save(&mut book("Dune")).await.unwrap();
        db.save(&mut Edition {
            isbn: "1".into(),
            title: "x".into(),
            copies: 1,
        })
        .await
        .unwrap();
        assert_eq!(log.take(), ["any Book", "book", "any Edition"]);
    }
);

backend_test!(
    bulk_create_sends_both_signals_for_every_row_and_assigns_keys_in_order,
    |db, backend| async move {
        let log = Log::default();
        let pre = log.clone();
        let _slug = db
            .signals()
            .pre_save::<Book>()
            .connect(move |e: &mut PreSave<'_, Book>| {
                e.instance.slug = slugify(&e.instance.title);
                pre.push("pre");
                Ok(())
            });
        let _post = log.post_save(&db, |e| format!("post {} {}", e.instance.title, e.created));
        let mut books: Vec<Book> = (0..250).map(|i| book(&format!("Book {i}"))).collect();
        db.bulk_create(&mut books).await.unwrap();
        let entries = log.take();
        assert_eq!(
            entries.iter().filter(|e| *e == "pre").count(),
            250,
            "{backend}"
        );
        assert_eq!(
            entries
                .iter()
                .filter(|e| e.starts_with("post ") && e.ends_with(" true"))
                .count(),
            250
        );
        for b in &books {
            let stored = db.get::<Book>(b.id.unwrap()).await.unwrap().unwrap();
            assert_eq!(&stored, b, "keys in order, slugs stored");
        }

        // bulk_update, then delete_many
        for b in &mut books {
            b.price_cents += 1;
        }
        db.bulk_update(&mut books, &["price_cents"]).await.unwrap();
        assert_eq!(
            log.take().iter().filter(|e| e.ends_with(" false")).count(),
            250
        );
        assert_eq!(
            db.get::<Book>(books[7].id.unwrap())
                .await
                .unwrap()
                .unwrap()
                .price_cents,
            901
        );
        assert_eq!(db.delete_many(&books[..100]).await.unwrap(), 100);
        assert_eq!(count(&db, "books").await, 150);
    }
);

backend_test!(
    without_signals_skips_every_receiver,
    |db, _backend| async move {
        let log = Log::default();
        let seen = log.clone();
        let _pre = db
            .signals()
            .pre_save::<Book>()
            .connect(move |_e: &mut PreSave<'_, Book>| {
                seen.push("pre");
                Ok(())
            });
        let mut b = book("Dune");
        db.without_signals().save(&mut b).await.unwrap();
        let mut many = vec![book("a"), book("b")];
        db.without_signals().bulk_create(&mut many).await.unwrap();
        db.without_signals().delete(&b).await.unwrap();
        assert!(log.take().is_empty());
        assert_eq!(count(&db, "books").await, 2);
    }
);

backend_test!(every_field_type_round_trips, |db, backend| async move {
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-24T07:01:51.123456Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let mut row = Everything {
        id: None,
        small: -7,
        ratio: 0.25,
        flag: true,
        name: "naïve".into(),
        maybe: None,
        blob: vec![0, 1, 255],
        at,
        doc: serde_json::json!({"tags": ["a", "b"], "n": 1}),
    };
    db.save(&mut row).await.unwrap();
    assert_eq!(
        db.get::<Everything>(row.id.unwrap())
            .await
            .unwrap()
            .unwrap(),
        row,
        "{backend}"
    );
    row.maybe = Some("set".into());
    db.save(&mut row).await.unwrap();
    assert_eq!(db.all::<Everything>().await.unwrap(), vec![row]);
});

/// The stored books, in key order.
async fn stored(db: &Db) -> Vec<Book> {
    let mut books = db.all::<Book>().await.unwrap();
    books.sort_by_key(|b| b.id);
    books
}

backend_test!(
    bulk_update_of_many_rows_writes_every_row,
    |db, backend| async move {
        // 2500 rows: three statements on PostgreSQL (1000 rows each at most).
        let mut books: Vec<Book> = (0..2500).map(|i| book(&format!("Book {i}"))).collect();
        db.bulk_create(&mut books).await.unwrap();
        for (i, b) in books.iter_mut().enumerate() {
            b.title = format!("Renamed {i}");
            b.price_cents = i as i64 * 3;
            b.body = "not written".into();
        }
        db.bulk_update(&mut books, &["title", "price_cents"])
            .await
            .unwrap();
        let stored = stored(&db).await;
        assert_eq!(stored.len(), 2500, "{backend}");
        for (i, (b, s)) in books.iter().zip(&stored).enumerate() {
            assert_eq!(s.id, b.id, "{backend}");
            assert_eq!(s.title, format!("Renamed {i}"), "{backend}");
            assert_eq!(s.price_cents, i as i64 * 3, "{backend}");
            assert_eq!(s.body, "", "{backend}: a field not named is not written");
        }
    }
);

backend_test!(
    bulk_update_writes_every_field_type_and_null,
    |db, backend| async move {
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-24T07:01:51.123456Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let row = |n: i32, maybe: Option<&str>| Everything {
            id: None,
            small: n,
            ratio: f64::from(n) / 4.0,
            flag: n % 2 == 0,
            name: format!("row {n}"),
            maybe: maybe.map(str::to_owned),
            blob: vec![0, 1, 255],
            at,
            doc: serde_json::json!({"n": n}),
        };
        let mut rows = vec![row(1, Some("set")), row(2, None), row(3, Some("kept"))];
        db.bulk_create(&mut rows).await.unwrap();
        rows[0].maybe = None;
        rows[1].maybe = Some("now set".into());
        for r in &mut rows {
            r.small += 10;
            r.ratio += 1.5;
            r.flag = !r.flag;
            r.name.push_str(" (renamed)");
            r.blob.push(7);
            r.at += chrono::Duration::seconds(90);
            r.doc = serde_json::json!({"n": r.small, "list": [1, 2]});
        }
        let fields = [
            "small", "ratio", "flag", "name", "maybe", "blob", "at", "doc",
        ];
        db.bulk_update(&mut rows, &fields).await.unwrap();
        let mut stored = db.all::<Everything>().await.unwrap();
        stored.sort_by_key(|r| r.id);
        assert_eq!(stored, rows, "{backend}");
    }
);

backend_test!(
    bulk_update_of_a_missing_row_is_not_found_and_writes_nothing,
    |db, backend| async move {
        let mut books: Vec<Book> = (0..1500).map(|i| book(&format!("Book {i}"))).collect();
        db.bulk_create(&mut books).await.unwrap();
        let before = stored(&db).await;
        // The missing row is in the second batch on PostgreSQL, after a first batch was written.
        let gone = books[1200].clone();
        assert!(db.delete(&gone).await.unwrap());
        for b in &mut books {
            b.price_cents += 1;
        }
        let error = db
            .bulk_update(&mut books, &["price_cents"])
            .await
            .unwrap_err();
        let key = gone.id.unwrap().to_string();
        match &error {
            Error::NotFound { target } => {
                assert_eq!(target.model, "Book", "{backend}");
                assert_eq!(target.key.as_deref(), Some(key.as_str()), "{backend}");
            }
            other => panic!("{backend}: Error::NotFound, not {other:?}"),
        }
        assert_eq!(
            error.to_string(),
            format!("Book (pk {key}) does not exist"),
            "{backend}"
        );
        let mut expected = before;
        expected.retain(|b| b.id != gone.id);
        assert_eq!(stored(&db).await, expected, "{backend}: nothing written");
    }
);

backend_test!(
    update_where_with_receivers_writes_every_matching_row,
    |db, backend| async move {
        let mut books: Vec<Book> = (0..1200).map(|i| book(&format!("Book {i}"))).collect();
        for (i, b) in books.iter_mut().enumerate() {
            b.price_cents = i as i64;
        }
        db.bulk_create(&mut books).await.unwrap();
        let log = Log::default();
        let _post = log.post_save(&db, |e| format!("{} {}", e.instance.title, e.created));
        let changed = db
            .update_where(
                Book::query().filter(Book::PRICE_CENTS.lt(1100)),
                &[Book::PRICE_CENTS.set(7)],
            )
            .await
            .unwrap();
        assert_eq!(changed, 1100, "{backend}");
        assert_eq!(log.take().len(), 1100, "{backend}: a post_save per row");
        let prices: Vec<i64> = stored(&db).await.iter().map(|b| b.price_cents).collect();
        let expected: Vec<i64> = (0..1200).map(|i| if i < 1100 { 7 } else { i }).collect();
        assert_eq!(prices, expected, "{backend}");
    }
);

backend_test!(
    bulk_update_of_one_row_twice_keeps_the_last_values,
    |db, backend| async move {
        let mut books = vec![book("a"), book("b")];
        db.bulk_create(&mut books).await.unwrap();
        let mut twice = vec![books[0].clone(), books[1].clone(), books[0].clone()];
        twice[0].price_cents = 1;
        twice[1].price_cents = 2;
        twice[2].price_cents = 3;
        db.bulk_update(&mut twice, &["price_cents"]).await.unwrap();
        let prices: Vec<i64> = stored(&db).await.iter().map(|b| b.price_cents).collect();
        assert_eq!(prices, [3, 2], "{backend}");
    }
);

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_sqlite_file_is_refused_when_it_must_not_be_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.db");
    let url = format!("sqlite://{}", path.display());
    let error = Db::open(url.clone())
        .create_if_missing(false)
        .connect()
        .await
        .unwrap_err();
    match &error {
        Error::NoDatabase { path: named } => assert_eq!(named, &path),
        other => panic!("Error::NoDatabase, not {other:?}"),
    }
    assert!(
        error
            .to_string()
            .contains(&format!("no database at {}", path.display())),
        "{error}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing was created"
    );

    // By default the file is created; then it opens without creating anything.
    Db::open(url.clone()).connect().await.unwrap().close();
    assert!(path.exists());
    let db = Db::open(url)
        .create_if_missing(false)
        .connect()
        .await
        .unwrap();
    assert!(db.tasks().counts().await.unwrap().is_empty());
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_urls_mode_opens_read_only_or_only_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.db");
    let url = format!("sqlite://{}", path.display());
    for mode in ["ro", "rw"] {
        let error = Db::open(format!("{url}?mode={mode}"))
            .connect()
            .await
            .unwrap_err();
        assert!(
            matches!(&error, Error::NoDatabase { path: named } if named == &path),
            "mode={mode}: {error}"
        );
    }
    assert!(!path.exists(), "nothing was created");

    let db = Db::open(format!("{url}?mode=rwc")).connect().await.unwrap();
    db.create_table::<Book>().await.unwrap();
    db.save(&mut book("Dune")).await.unwrap();
    db.close();

    let read_only = Db::open(format!("{url}?mode=ro")).connect().await.unwrap();
    let titles: Vec<String> = read_only
        .all::<Book>()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.title)
        .collect();
    assert_eq!(titles, ["Dune"]);
    let error = read_only.save(&mut book("Emma")).await.unwrap_err();
    assert!(error.to_string().contains("readonly"), "{error}");

    let read_write = Db::open(format!("{url}?mode=rw")).connect().await.unwrap();
    read_write.save(&mut book("Emma")).await.unwrap();
    assert_eq!(read_write.all::<Book>().await.unwrap().len(), 2);
}

/// A model whose key the database assigns, in a table its owner made.
#[derive(Model, Clone, Debug, PartialEq)]
#[model(table = "tickets")]
struct Ticket {
    #[model(primary_key)]
    id: Option<i64>,
    name: String,
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_save_reads_back_its_key_whether_or_not_the_key_is_the_rowid() {
    // `INTEGER PRIMARY KEY` is the rowid; a `BIGINT PRIMARY KEY` with a default is a column of its
    // own, whose value differs from the rowid SQLite gives the row beside it.
    for (table, key) in [
        ("INTEGER PRIMARY KEY", "rowid key"),
        (
            "BIGINT PRIMARY KEY DEFAULT (1000 + abs(random() % 1000000))",
            "a key of its own",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(format!("sqlite://{}", dir.path().join("t.db").display()))
            .connect()
            .await
            .unwrap();
        db.run(move |conn| {
            conn.batch(&format!(
                "CREATE TABLE tickets (id {table}, name TEXT NOT NULL)"
            ))
        })
        .await
        .unwrap();
        for name in ["first", "second"] {
            let mut ticket = Ticket {
                id: None,
                name: name.to_owned(),
            };
            db.save(&mut ticket).await.unwrap();
            let id = ticket.id.expect("a saved ticket has its key");
            let read = db.get::<Ticket>(id).await.unwrap();
            assert_eq!(
                read.as_ref(),
                Some(&ticket),
                "{key}: {name} read back by {id}"
            );
        }
    }
}
