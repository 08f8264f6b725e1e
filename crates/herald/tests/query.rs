//! The query API on SQLite and (when `HERALD_TEST_POSTGRES_URL` is set) PostgreSQL: every filter
//! operator, order, limit and offset, the terminal operations, keyset pagination under inserts,
//! and `update_where` / `delete_where` with and without receivers.
// A build with one backend leaves out the other's tests, and what only they use.
#![cfg_attr(
    not(all(feature = "sqlite", feature = "postgres")),
    allow(dead_code, unused_imports)
)]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::collections::HashSet;

use chrono::{TimeZone, Utc};
use common::{Book, Everything, Log, book};
use herald::dispatch::{PostDelete, PreDelete};
use herald::query::Query;
use herald::{Db, Error, Model, Store};

/// Save a book with this title and price.
async fn priced(db: &impl Store, title: &str, price_cents: i64) -> Book {
    let mut b = book(title);
    b.price_cents = price_cents;
    db.save(&mut b).await.unwrap();
    b
}

/// The titles `query` returns, in its order.
async fn titles(db: &impl Store, query: Query<Book>) -> Vec<String> {
    query
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.title)
        .collect()
}

/// The price of every book, by title, sorted by title.
async fn prices(db: &Db) -> Vec<(String, i64)> {
    let mut all: Vec<(String, i64)> = Book::query()
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|b| (b.title, b.price_cents))
        .collect();
    all.sort();
    all
}

const INJECTION: &str = "O'Brien\"; DROP TABLE books; --";

/// Five books: A 100, B 200, C 300, D 400, and one whose title is SQL, 500.
async fn five_books(db: &Db) {
    for (title, price) in [
        ("A", 100),
        ("B", 200),
        ("C", 300),
        ("D", 400),
        (INJECTION, 500),
    ] {
        priced(db, title, price).await;
    }
}

backend_test!(
    every_comparison_operator_filters_with_bound_values,
    |db, backend| async move {
        five_books(&db).await;
        let q = Book::query;
        let p = Book::PRICE_CENTS;
        let cases: Vec<(&str, Query<Book>, Vec<&str>)> = vec![
            ("eq", q().filter(p.eq(200)), vec!["B"]),
            ("ne", q().filter(p.ne(200)), vec!["A", "C", "D", INJECTION]),
            ("lt", q().filter(p.lt(300)), vec!["A", "B"]),
            ("le", q().filter(p.le(300)), vec!["A", "B", "C"]),
            ("gt", q().filter(p.gt(300)), vec!["D", INJECTION]),
            ("ge", q().filter(p.ge(300)), vec!["C", "D", INJECTION]),
            ("in", q().filter(p.in_([100, 400, 9])), vec!["A", "D"]),
            ("in []", q().filter(p.in_(Vec::<i64>::new())), vec![]),
            (
                "not in []",
                q().filter(!p.in_(Vec::<i64>::new())),
                vec!["A", "B", "C", "D", INJECTION],
            ),
            (
                "like",
                q().filter(Book::TITLE.like("O'B%")),
                vec![INJECTION],
            ),
            (
                "like _",
                q().filter(Book::TITLE.like("_")),
                vec!["A", "B", "C", "D"],
            ),
            (
                "eq text with SQL in it",
                q().filter(Book::TITLE.eq(INJECTION)),
                vec![INJECTION],
            ),
            ("and", q().filter(p.ge(200).and(p.le(300))), vec!["B", "C"]),
            (
                "two filters",
                q().filter(p.ge(200)).filter(p.le(300)),
                vec!["B", "C"],
            ),
            (
                "or",
                q().filter(p.eq(100).or(p.eq(500))),
                vec!["A", INJECTION],
            ),
            ("not", q().filter(!p.lt(400)), vec!["D", INJECTION]),
            ("not()", q().filter(p.lt(400).not()), vec!["D", INJECTION]),
            (
                "nested",
                q().filter(p.lt(200).or(p.gt(200).and(Book::TITLE.ne("C")))),
                vec!["A", "D", INJECTION],
            ),
        ];
        for (what, query, expected) in cases {
            assert_eq!(titles(&db, query).await, expected, "{backend}: {what}");
        }
        assert_eq!(
            Book::query().count(&db).await.unwrap(),
            5,
            "{backend}: the table is intact"
        );

        // `\` escapes a wildcard on both databases; escape_like escapes text a user typed.
        for title in ["50% off", "50x off", r"back\slash"] {
            priced(&db, title, 1).await;
        }
        let like = |pattern: String| titles(&db, Book::query().filter(Book::TITLE.like(pattern)));
        assert_eq!(
            like("50% off".into()).await,
            ["50% off", "50x off"],
            "{backend}"
        );
        assert_eq!(like(r"50\% off".into()).await, ["50% off"], "{backend}");
        let typed = format!("%{}%", herald::query::escape_like("0% o"));
        assert_eq!(like(typed).await, ["50% off"], "{backend}");
        let typed = format!("%{}%", herald::query::escape_like(r"k\s"));
        assert_eq!(like(typed).await, [r"back\slash"], "{backend}");
    }
);

backend_test!(
    null_and_every_field_type_compare_on_both_databases,
    |db, backend| async move {
        let at = |h| Utc.with_ymd_and_hms(2026, 12, 1, h, 0, 0).unwrap();
        for (i, maybe) in [Some("x"), None, Some("y")].into_iter().enumerate() {
            let i32_i = i32::try_from(i).unwrap();
            let mut row = Everything {
                id: None,
                small: i32_i,
                ratio: 0.5 * f64::from(i32_i),
                flag: i == 1,
                name: format!("n{i}"),
                maybe: maybe.map(str::to_owned),
                blob: vec![u8::try_from(i).unwrap()],
                at: at(u32::try_from(i).unwrap() + 1),
                doc: serde_json::json!({ "i": i }),
            };
            db.save(&mut row).await.unwrap();
        }
        let names = |rows: Vec<Everything>| rows.into_iter().map(|r| r.name).collect::<Vec<_>>();
        let q = Everything::query;
        let cases: Vec<(&str, Query<Everything>, Vec<&str>)> = vec![
            (
                "is_null",
                q().filter(Everything::MAYBE.is_null()),
                vec!["n1"],
            ),
            (
                "is_not_null",
                q().filter(Everything::MAYBE.is_not_null()),
                vec!["n0", "n2"],
            ),
            (
                "eq None",
                q().filter(Everything::MAYBE.eq(None::<String>)),
                vec!["n1"],
            ),
            (
                "ne None",
                q().filter(Everything::MAYBE.ne(None::<String>)),
                vec!["n0", "n2"],
            ),
            (
                "Option column, plain value",
                q().filter(Everything::MAYBE.eq("y".to_owned())),
                vec!["n2"],
            ),
            (
                "ne skips NULL",
                q().filter(Everything::MAYBE.ne("y".to_owned())),
                vec!["n0"],
            ),
            (
                "like on Option",
                q().filter(Everything::MAYBE.like("%")),
                vec!["n0", "n2"],
            ),
            ("i32", q().filter(Everything::SMALL.gt(0)), vec!["n1", "n2"]),
            (
                "f64",
                q().filter(Everything::RATIO.le(0.5)),
                vec!["n0", "n1"],
            ),
            ("bool", q().filter(Everything::FLAG.eq(true)), vec!["n1"]),
            (
                "bytes",
                q().filter(Everything::BLOB.eq(vec![2u8])),
                vec!["n2"],
            ),
            (
                "timestamp",
                q().filter(Everything::AT.lt(at(3))),
                vec!["n0", "n1"],
            ),
            (
                "in timestamps",
                q().filter(Everything::AT.in_([at(1), at(3)])),
                vec!["n0", "n2"],
            ),
            (
                "json",
                q().filter(Everything::DOC.eq(serde_json::json!({ "i": 1 }))),
                vec!["n1"],
            ),
            (
                "nullable order, NULLs first",
                q().order_by(Everything::MAYBE.asc()),
                vec!["n1", "n0", "n2"],
            ),
            (
                "nullable order desc, NULLs last",
                q().order_by(Everything::MAYBE.desc()),
                vec!["n2", "n0", "n1"],
            ),
        ];
        for (what, query, expected) in cases {
            assert_eq!(
                names(query.all(&db).await.unwrap()),
                expected,
                "{backend}: {what}"
            );
        }
    }
);

backend_test!(
    order_limit_offset_count_exists_and_first,
    |db, backend| async move {
        five_books(&db).await;
        priced(&db, "E", 300).await;
        let by_price = || Book::query().order_by(Book::PRICE_CENTS.desc());
        assert_eq!(
            titles(&db, by_price()).await,
            [INJECTION, "D", "C", "E", "B", "A"],
            "{backend}: the key breaks the tie between C and E"
        );
        assert_eq!(
            titles(&db, by_price().limit(2).offset(1)).await,
            ["D", "C"],
            "{backend}"
        );
        assert_eq!(
            titles(&db, Book::query().order_by(Book::TITLE.asc()).offset(4)).await,
            ["E", INJECTION],
            "{backend}: offset without limit"
        );
        assert_eq!(Book::query().count(&db).await.unwrap(), 6, "{backend}");
        let cheap = Book::query().filter(Book::PRICE_CENTS.le(300));
        assert_eq!(cheap.count(&db).await.unwrap(), 4, "{backend}");
        assert_eq!(
            cheap.clone().limit(3).count(&db).await.unwrap(),
            3,
            "{backend}"
        );
        assert_eq!(
            cheap.clone().offset(3).count(&db).await.unwrap(),
            1,
            "{backend}"
        );
        assert!(cheap.exists(&db).await.unwrap(), "{backend}");
        assert!(
            !cheap.clone().offset(4).exists(&db).await.unwrap(),
            "{backend}"
        );
        assert!(
            !Book::query()
                .filter(Book::PRICE_CENTS.gt(500))
                .exists(&db)
                .await
                .unwrap(),
            "{backend}"
        );
        let first = by_price().first(&db).await.unwrap().unwrap();
        assert_eq!(first.title, INJECTION, "{backend}");
        assert_eq!(
            Book::query()
                .filter(Book::TITLE.eq("nope"))
                .first(&db)
                .await
                .unwrap(),
            None,
            "{backend}"
        );

        // A query's future is `Send`: a web handler can spawn it.
        let spawned = tokio::spawn({
            let db = db.clone();
            let cheap = cheap.clone();
            async move { cheap.count(&db).await }
        });
        assert_eq!(spawned.await.unwrap().unwrap(), 4, "{backend}: spawned");

        // The same queries inside a transaction see its writes; the Db does not until it commits.
        let tx = db.begin().await.unwrap();
        priced(&tx, "F", 50).await;
        assert_eq!(cheap.count(&tx).await.unwrap(), 5, "{backend}: Tx");
        assert_eq!(
            cheap.count(&tx.without_signals()).await.unwrap(),
            5,
            "{backend}: Tx quiet"
        );
        assert_eq!(
            Book::query()
                .order_by(Book::PRICE_CENTS.asc())
                .first(&tx)
                .await
                .unwrap()
                .unwrap()
                .title,
            "F"
        );
        assert_eq!(
            cheap.count(&db).await.unwrap(),
            4,
            "{backend}: not committed yet"
        );
        tx.commit().await.unwrap();
        assert_eq!(
            cheap.count(&db.without_signals()).await.unwrap(),
            5,
            "{backend}: Quiet"
        );
    }
);

backend_test!(
    a_row_that_does_not_decode_names_the_model_key_and_column,
    |db, backend| async move {
        let mut row = Everything {
            id: None,
            small: 1,
            ratio: 0.0,
            flag: false,
            name: "n".to_owned(),
            maybe: None,
            blob: Vec::new(),
            at: Utc::now(),
            doc: serde_json::Value::Null,
        };
        db.save(&mut row).await.unwrap();
        // A BIGINT that does not fit the field's i32.
        db.execute("UPDATE everything SET small = 10000000000", vec![])
            .await
            .unwrap();
        let error = Everything::query()
            .filter(Everything::NAME.eq("n"))
            .all(&db)
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Decode { .. }), "{backend}: {error}");
        let message = error.to_string();
        let key = format!("Everything (pk {})", row.id.unwrap());
        assert!(
            message.contains(&key) && message.contains("`small`"),
            "{backend}: {message}"
        );
    }
);

backend_test!(
    keyset_pagination_is_stable_under_inserts,
    |db, backend| async move {
        // Twenty books in four price groups: the key breaks the ties.
        let mut original = HashSet::new();
        for i in 0..20 {
            let b = priced(&db, &format!("b{i:02}"), (i % 4) * 100 + 100).await;
            original.insert(b.id.unwrap());
        }

        // In price order, by the last row of each page; rows are added before and after the cursor
        // between pages.
        let mut seen = Vec::new();
        let mut last: Option<Book> = None;
        let mut extra = 0;
        loop {
            let mut query = Book::query().order_by(Book::PRICE_CENTS.asc()).limit(6);
            if let Some(last) = &last {
                query = query.after_row(last);
            }
            let page = query.all(&db).await.unwrap();
            let Some(end) = page.last().cloned() else {
                break;
            };
            seen.extend(page.iter().map(|b| b.id.unwrap()));
            if extra < 12 {
                // Before the cursor, tied with it (after it: a higher key), and past the end.
                for price in [50, end.price_cents, 1000] {
                    extra += 1;
                    priced(&db, &format!("new{extra}"), price).await;
                }
            }
            last = Some(end);
        }
        let unique: HashSet<i64> = seen.iter().copied().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "{backend}: a row was seen twice: {seen:?}"
        );
        assert!(
            original.is_subset(&unique),
            "{backend}: a row was skipped: {seen:?}"
        );

        // By key, descending: new rows (higher keys) are before the cursor and never seen.
        let mut seen: Vec<i64> = Vec::new();
        let mut after: Option<i64> = None;
        loop {
            let mut query = Book::query().order_by(Book::ID.desc()).limit(7);
            if let Some(key) = after {
                query = query.after(key);
            }
            let page: Vec<i64> = query
                .all(&db)
                .await
                .unwrap()
                .iter()
                .map(|b| b.id.unwrap())
                .collect();
            let Some(end) = page.last().copied() else {
                break;
            };
            seen.extend(&page);
            priced(&db, "later", 1).await;
            after = Some(end);
        }
        let mut sorted = seen.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        sorted.dedup();
        assert_eq!(seen, sorted, "{backend}: in order, each once");
        assert!(original.iter().all(|id| seen.contains(id)), "{backend}");

        // Keyset by key in another order is an error naming the model and the column.
        let error = Book::query()
            .order_by(Book::TITLE.asc())
            .after(1)
            .all(&db)
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::InvalidQuery { model: "Book", .. }),
            "{error}"
        );
        assert!(error.to_string().contains("`title`"), "{error}");
    }
);

backend_test!(
    update_where_fires_pre_and_post_save_per_row_with_the_new_values,
    |db, backend| async move {
        five_books(&db).await;
        let log = Log::default();
        let pre = log.pre_save(&db, |e| {
            format!(
                "pre {} {} {:?}",
                e.instance.title, e.instance.price_cents, e.update_fields
            )
        });
        let post = log.post_save(&db, |e| {
            format!(
                "post {} {} created={}",
                e.instance.title, e.instance.price_cents, e.created
            )
        });
        let cheap = || Book::query().filter(Book::PRICE_CENTS.lt(300));
        let changed = db
            .update_where(
                cheap(),
                &[Book::PRICE_CENTS.set(1200), Book::BODY.set("on sale")],
            )
            .await
            .unwrap();
        assert_eq!(changed, 2, "{backend}");
        assert_eq!(
            log.take(),
            [
                r#"pre A 1200 Some(["price_cents", "body"])"#,
                r#"pre B 1200 Some(["price_cents", "body"])"#,
                "post A 1200 created=false",
                "post B 1200 created=false",
            ],
            "{backend}"
        );
        let sale = Book::query()
            .filter(Book::BODY.eq("on sale"))
            .all(&db)
            .await
            .unwrap();
        assert_eq!(
            sale.iter().map(|b| b.price_cents).collect::<Vec<_>>(),
            [1200, 1200],
            "{backend}"
        );

        // Inside a transaction: the same signals, undone by its rollback.
        let tx = db.begin().await.unwrap();
        let changed = tx
            .update_where(
                Book::query().filter(Book::TITLE.eq("C")),
                &[Book::PRICE_CENTS.set(1)],
            )
            .await
            .unwrap();
        assert_eq!(changed, 1, "{backend}");
        assert_eq!(log.take().len(), 2, "{backend}: pre and post in the Tx");
        tx.rollback().await.unwrap();
        assert_eq!(
            prices(&db).await[2],
            ("C".to_owned(), 300),
            "{backend}: rolled back"
        );

        // Quiet: one statement, no receiver.
        let changed = db
            .without_signals()
            .update_where(
                Book::query().filter(Book::PRICE_CENTS.eq(1200)),
                &[Book::PRICE_CENTS.set(1100)],
            )
            .await
            .unwrap();
        assert_eq!(changed, 2, "{backend}");
        assert!(log.take().is_empty(), "{backend}: quiet fires nothing");

        // No receiver connected: one statement; with a limit, only the rows of the order's window
        // (A and B cost 1100: the key breaks the tie, A first). A value with SQL in it is bound.
        drop((pre, post));
        let changed = db
            .update_where(
                Book::query().order_by(Book::PRICE_CENTS.desc()).limit(1),
                &[Book::BODY.set(INJECTION)],
            )
            .await
            .unwrap();
        assert_eq!(changed, 1, "{backend}");
        assert!(log.take().is_empty(), "{backend}");
        let top = Book::query()
            .filter(Book::BODY.eq(INJECTION))
            .all(&db)
            .await
            .unwrap();
        assert_eq!(top.len(), 1, "{backend}");
        assert_eq!(top[0].title, "A", "{backend}");
        assert_eq!(
            prices(&db).await,
            [
                ("A".to_owned(), 1100),
                ("B".to_owned(), 1100),
                ("C".to_owned(), 300),
                ("D".to_owned(), 400),
                (INJECTION.to_owned(), 500),
            ],
            "{backend}"
        );

        // Setting the key is refused before anything runs.
        let error = db
            .update_where(Book::query(), &[Book::ID.set(7)])
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::InvalidQuery { model: "Book", .. }),
            "{error}"
        );
    }
);

backend_test!(
    a_pre_save_receiver_of_update_where_may_change_the_assigned_value,
    |db, backend| async move {
        five_books(&db).await;
        let _cap = db.signals().pre_save::<Book>().connect(
            |e: &mut herald::dispatch::PreSave<'_, Book>| {
                e.instance.price_cents = e.instance.price_cents.min(999);
                Ok(())
            },
        );
        db.update_where(
            Book::query().filter(Book::TITLE.eq("A")),
            &[Book::PRICE_CENTS.set(5000)],
        )
        .await
        .unwrap();
        assert_eq!(prices(&db).await[0], ("A".to_owned(), 999), "{backend}");
    }
);

backend_test!(
    delete_where_fires_pre_and_post_delete_per_row,
    |db, backend| async move {
        five_books(&db).await;
        let log = Log::default();
        let pre_log = log.clone();
        let pre = db
            .signals()
            .pre_delete::<Book>()
            .connect(move |e: &PreDelete<'_, Book>| {
                pre_log.push(format!("pre_delete {}", e.instance.title));
                Ok(())
            });
        let post_log = log.clone();
        let post = db.signals().post_delete::<Book>().on_commit().connect(
            move |e: &PostDelete<'_, Book>| {
                post_log.push(format!("post_delete on commit {}", e.instance.title));
                Ok(())
            },
        );
        let deleted = db
            .delete_where(Book::query().filter(Book::PRICE_CENTS.le(200)))
            .await
            .unwrap();
        assert_eq!(deleted, 2, "{backend}");
        assert_eq!(
            log.take(),
            [
                "pre_delete A",
                "pre_delete B",
                "post_delete on commit A",
                "post_delete on commit B"
            ],
            "{backend}"
        );

        let deleted = db
            .without_signals()
            .delete_where(Book::query().filter(Book::TITLE.eq("C")))
            .await
            .unwrap();
        assert_eq!(deleted, 1, "{backend}");
        assert!(log.take().is_empty(), "{backend}: quiet fires nothing");

        drop((pre, post));
        let deleted = db
            .delete_where(Book::query().filter(Book::TITLE.eq(INJECTION)))
            .await
            .unwrap();
        assert_eq!(deleted, 1, "{backend}");
        assert!(log.take().is_empty(), "{backend}");
        assert_eq!(
            Book::query()
                .all(&db)
                .await
                .unwrap()
                .iter()
                .map(|b| b.title.as_str())
                .collect::<Vec<_>>(),
            ["D"],
            "{backend}"
        );
    }
);

backend_test!(
    update_where_with_only_an_in_transaction_receiver_runs_it_per_row,
    |db, backend| async move {
        five_books(&db).await;
        let log = Log::default();
        let _in_tx = log.in_transaction(&db, |e| {
            format!(
                "in_transaction {} {}",
                e.instance.title, e.instance.price_cents
            )
        });
        let changed = db
            .update_where(
                Book::query().filter(Book::TITLE.in_(["A", "C"])),
                &[Book::PRICE_CENTS.set(7)],
            )
            .await
            .unwrap();
        assert_eq!(changed, 2, "{backend}");
        assert_eq!(
            log.take(),
            ["in_transaction A 7", "in_transaction C 7"],
            "{backend}"
        );
    }
);

backend_test!(
    a_failing_post_save_of_update_where_says_the_writes_were_committed,
    |db, backend| async move {
        five_books(&db).await;
        let _fails =
            db.signals()
                .post_save::<Book>()
                .connect(|_: &herald::dispatch::PostSave<'_, Book>| {
                    Err(herald::dispatch::Error::msg("post_save failed"))
                });
        let error = db
            .update_where(
                Book::query().filter(Book::TITLE.eq("A")),
                &[Book::PRICE_CENTS.set(1)],
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                Error::AfterWrite {
                    committed: true,
                    ..
                }
            ),
            "{backend}: {error}"
        );
        assert_eq!(prices(&db).await[0], ("A".to_owned(), 1), "{backend}: kept");
    }
);

backend_test!(
    a_caller_side_receiver_of_update_where_on_a_db_may_write_through_the_db,
    |db, backend| async move {
        five_books(&db).await;
        // An async post_save receiver on the caller that writes another row through the Db: no
        // transaction of update_where's own is open while it runs, so the write goes through.
        let writer = db.clone();
        let _audit = db.signals().post_save::<Book>().connect_boxed(move |e| {
            let writer = writer.clone();
            let title = e.instance.title.clone();
            Box::pin(async move {
                if title != "audit" {
                    writer.save(&mut book("audit")).await?;
                }
                Ok(())
            })
        });
        let changed = common::within(
            "update_where with a receiver that writes through the Db",
            db.update_where(
                Book::query().filter(Book::PRICE_CENTS.le(200)),
                &[Book::PRICE_CENTS.set(1)],
            ),
        )
        .await
        .unwrap();
        assert_eq!(changed, 2, "{backend}");
        let audits = Book::query()
            .filter(Book::TITLE.eq("audit"))
            .count(&db)
            .await
            .unwrap();
        assert_eq!(audits, 2, "{backend}: one row written per updated book");
    }
);
