//! `#[receiver]` expanded for real against `herald-dispatch`: declared receivers are discovered,
//! run in priority order with the events their signals lend, and show in the registry with their
//! names, signals, senders, phases and the place they are written.
//!
//! Discovery is process-wide (`inventory`), so every receiver this test binary declares is in this
//! file, and every registry built here holds all of them. Receivers record what they see in a
//! thread-local log: they run on the thread that sends, so tests running in parallel do not see
//! each other's entries.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::cell::RefCell;
use std::fmt::Debug;

use herald_dispatch::{
    AnyModel, Error, Phase, PostDelete, PostSave, PostSaveAny, PreDelete, PreSave, Result, Signals,
};
use herald_macros::receiver;

#[derive(Debug, Default)]
struct Book {
    id: Option<i64>,
    title: String,
    slug: String,
}

impl AnyModel for Book {
    fn model_name(&self) -> &'static str {
        "Book"
    }
    fn pk_string(&self) -> Option<String> {
        self.id.map(|id| id.to_string())
    }
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "id": self.id, "title": self.title, "slug": self.slug })
    }
}
herald_dispatch::sender!(Book);

#[derive(Debug)]
struct Shelf {
    id: i64,
}

impl AnyModel for Shelf {
    fn model_name(&self) -> &'static str {
        "Shelf"
    }
    fn pk_string(&self) -> Option<String> {
        Some(self.id.to_string())
    }
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "id": self.id })
    }
}
herald_dispatch::sender!(Shelf);

thread_local! {
    static LOG: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn log(entry: impl Into<String>) {
    LOG.with(|log| log.borrow_mut().push(entry.into()));
}

/// What receivers recorded on this thread since the last call.
fn take_log() -> Vec<String> {
    LOG.with(|log| std::mem::take(&mut *log.borrow_mut()))
}

// ---- the declared receivers -------------------------------------------------------------------

#[receiver(pre_save, sender = Book, priority = 10, crate = herald_dispatch)]
fn slugify(event: &mut PreSave<'_, Book>) -> Result {
    event.instance.slug = event.instance.title.to_lowercase().replace(' ', "-");
    log("slugify");
    Ok(())
}

#[receiver(pre_save, sender = Book, priority = -1, name = "slug is set", crate = herald_dispatch)]
async fn check_slug(event: &mut PreSave<'_, Book>) -> Result {
    log(format!("check_slug:{}", event.instance.slug));
    if event.instance.slug.is_empty() {
        return Err(Error::msg("a book needs a title"));
    }
    Ok(())
}

#[receiver(
    post_save,
    sender = Book,
    on_commit,
    dispatch_uid = "book-mail",
    crate = herald_dispatch
)]
fn mail_after_commit(event: &PostSave<'_, Book>) -> Result {
    log(format!("mail:{}", event.instance.pk_string().unwrap()));
    Ok(())
}

/// Every sender's saves, before the sender's own receivers of priority 0.
#[receiver(post_save, priority = 5, crate = herald_dispatch)]
fn audit_every_save(event: &PostSaveAny<'_>) -> Result {
    log(format!(
        "audit:{}:{}",
        event.instance.model_name(),
        if event.created { "created" } else { "updated" }
    ));
    Ok(())
}

/// Several signals, each with its own event: the receiver is generic over the event.
#[receiver([pre_save, pre_delete], sender = Book, priority = 20, crate = herald_dispatch)]
async fn touched<E: Debug>(event: &E) -> Result {
    // `PreSave { instance: .. }` -> "PreSave"
    let debug = format!("{event:?}");
    log(format!("touched:{}", debug.split(' ').next().unwrap()));
    Ok(())
}

/// A trait of the application's, implemented by the events a list receiver gets.
trait ShelfEvent {
    fn describe(&self) -> String;
}

impl ShelfEvent for PostSave<'_, Shelf> {
    fn describe(&self) -> String {
        format!("saved {}", self.instance.id)
    }
}

impl ShelfEvent for PostDelete<'_, Shelf> {
    fn describe(&self) -> String {
        format!("deleted {}", self.instance.id)
    }
}

#[receiver([post_save, post_delete], sender = Shelf, crate = herald_dispatch)]
fn shelf_changed(event: &impl ShelfEvent) -> Result {
    log(format!("shelf:{}", event.describe()));
    Ok(())
}

/// Atomic with the write: runs on the connection, inside the transaction.
#[receiver(post_save, sender = Shelf, in_transaction, crate = herald_dispatch)]
fn shelf_in_transaction(event: &PostSave<'_, Shelf>) -> Result {
    log(format!("in_transaction:{}", event.instance.id));
    Ok(())
}

/// A synchronous receiver that blocks its thread.
#[receiver(pre_save, sender = Shelf, blocking, crate = herald_dispatch)]
fn shelf_blocking(event: &mut PreSave<'_, Shelf>) -> Result {
    log(format!("blocking:{}", event.instance.id));
    Ok(())
}

mod nested {
    use herald_dispatch::{AnyModel, PostDelete, Result};
    use herald_macros::receiver;

    /// After the senders' own receivers (equal priorities would run in discovery order).
    #[receiver(post_delete, priority = -10, crate = herald_dispatch)]
    pub(super) fn forget_every_deleted(event: &PostDelete<'_, dyn AnyModel>) -> Result {
        super::log(format!("forget:{}", event.instance.model_name()));
        Ok(())
    }
}

// ---- helpers ----------------------------------------------------------------------------------

fn discovered() -> Signals {
    Signals::builder().autodiscover().build()
}

fn book(title: &str) -> Book {
    Book {
        id: None,
        title: title.to_owned(),
        slug: String::new(),
    }
}

/// The line and column (from 1) where `needle` starts in this file.
fn position_of(needle: &str) -> (u32, u32) {
    let source = include_str!("receiver.rs");
    let (index, line) = source
        .lines()
        .enumerate()
        .find(|(_, line)| line.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} is in this file"));
    let column = line.find(needle).unwrap();
    (index as u32 + 1, column as u32 + 1)
}

// ---- the tests --------------------------------------------------------------------------------

#[test]
fn declared_receivers_run_in_priority_order_with_their_events() {
    let signals = discovered();
    let mut dune = book("Dune Messiah");

    signals
        .pre_save::<Book>()
        .send(&mut PreSave::new(&mut dune))
        .unwrap();
    assert_eq!(
        take_log(),
        ["touched:PreSave", "slugify", "check_slug:dune-messiah"]
    );
    assert_eq!(
        dune.slug, "dune-messiah",
        "pre_save receivers change the instance"
    );

    dune.id = Some(1); // the write
    let mut saved = PostSave::new(&dune, true);
    signals.post_save::<Book>().send(&mut saved).unwrap();
    assert_eq!(take_log(), ["audit:Book:created"], "in the transaction");
    signals
        .post_save::<Book>()
        .on_commit()
        .send(&mut saved)
        .unwrap();
    assert_eq!(take_log(), ["mail:1"], "after the commit");

    signals
        .pre_delete::<Book>()
        .send(&mut PreDelete::new(&dune))
        .unwrap();
    assert_eq!(take_log(), ["touched:PreDelete"]);
    signals
        .post_delete::<Book>()
        .send(&mut PostDelete::new(&dune))
        .unwrap();
    assert_eq!(take_log(), ["forget:Book"]);
}

#[test]
fn a_failing_declared_receiver_is_named_by_its_name() {
    let signals = discovered();
    let mut untitled = book("");
    let error = signals
        .pre_save::<Book>()
        .send(&mut PreSave::new(&mut untitled))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "pre_save receiver `slug is set` for Book failed: a book needs a title"
    );
    assert_eq!(take_log(), ["touched:PreSave", "slugify", "check_slug:"]);
}

#[test]
fn a_list_receiver_gets_each_signal_with_its_own_event() {
    let signals = discovered();
    let shelf = Shelf { id: 3 };
    signals
        .post_save::<Shelf>()
        .send(&mut PostSave::new(&shelf, false))
        .unwrap();
    assert_eq!(take_log(), ["audit:Shelf:updated", "shelf:saved 3"]);
    signals
        .post_delete::<Shelf>()
        .send(&mut PostDelete::new(&shelf))
        .unwrap();
    assert_eq!(take_log(), ["shelf:deleted 3", "forget:Shelf"]);
}

#[test]
fn in_transaction_and_blocking_receivers_are_declared_where_they_run() {
    let signals = discovered();
    let mut shelf = Shelf { id: 4 };
    signals
        .post_save::<Shelf>()
        .in_transaction()
        .send(&mut PostSave::new(&shelf, true))
        .unwrap();
    assert_eq!(
        take_log(),
        ["in_transaction:4"],
        "only the in_transaction receiver is in that phase"
    );
    signals
        .pre_save::<Shelf>()
        .send(&mut PreSave::new(&mut shelf))
        .unwrap();
    assert_eq!(take_log(), ["blocking:4"]);
    let blocking = signals
        .receivers()
        .into_iter()
        .find(|r| r.info().name().ends_with("shelf_blocking"))
        .unwrap();
    assert!(blocking.info().is_blocking());
}

#[test]
fn receivers_are_not_connected_without_autodiscover() {
    let signals = Signals::new();
    assert!(signals.receivers().is_empty());
    let mut dune = book("Dune");
    signals
        .pre_save::<Book>()
        .send(&mut PreSave::new(&mut dune))
        .unwrap();
    assert!(take_log().is_empty());
    assert_eq!(dune.slug, "");
}

#[test]
fn the_function_is_kept_as_written() {
    let mut dune = book("Children of Dune");
    slugify(&mut PreSave::new(&mut dune)).unwrap();
    assert_eq!(dune.slug, "children-of-dune");
    assert_eq!(take_log(), ["slugify"]);
}

#[test]
fn the_registry_lists_each_declared_receiver_once_per_signal() {
    let signals = discovered();
    let mut listed: Vec<_> = signals
        .receivers()
        .iter()
        .map(|r| {
            let info = r.info();
            (
                info.name().to_owned(),
                info.signal(),
                info.sender(),
                info.phase(),
                info.priority(),
                info.dispatch_uid().map(str::to_owned),
                info.is_async(),
            )
        })
        .collect();
    listed.sort();

    let path = |name: &str| format!("{}::{name}", module_path!());
    let mut expected = vec![
        (
            path("slugify"),
            "pre_save",
            "Book",
            Phase::Caller,
            10,
            None,
            false,
        ),
        (
            "slug is set".to_owned(),
            "pre_save",
            "Book",
            Phase::Caller,
            -1,
            None,
            true,
        ),
        (
            path("mail_after_commit"),
            "post_save",
            "Book",
            Phase::OnCommit,
            0,
            Some("book-mail".to_owned()),
            false,
        ),
        (
            path("audit_every_save"),
            "post_save",
            "*",
            Phase::Caller,
            5,
            None,
            false,
        ),
        (
            path("touched"),
            "pre_save",
            "Book",
            Phase::Caller,
            20,
            None,
            true,
        ),
        (
            path("touched"),
            "pre_delete",
            "Book",
            Phase::Caller,
            20,
            None,
            true,
        ),
        (
            path("shelf_changed"),
            "post_save",
            "Shelf",
            Phase::Caller,
            0,
            None,
            false,
        ),
        (
            path("shelf_changed"),
            "post_delete",
            "Shelf",
            Phase::Caller,
            0,
            None,
            false,
        ),
        (
            path("shelf_in_transaction"),
            "post_save",
            "Shelf",
            Phase::InTransaction,
            0,
            None,
            false,
        ),
        (
            path("shelf_blocking"),
            "pre_save",
            "Shelf",
            Phase::Caller,
            0,
            None,
            false,
        ),
        (
            path("nested::forget_every_deleted"),
            "post_delete",
            "*",
            Phase::Caller,
            -10,
            None,
            false,
        ),
    ];
    expected.sort();
    assert_eq!(listed, expected);
}

#[test]
fn a_declared_receiver_is_located_at_its_function_name() {
    let signals = discovered();
    for (function, name) in [
        ("fn slugify(", "slugify"),
        ("async fn check_slug(", "slug is set"),
        ("fn mail_after_commit(", "mail_after_commit"),
        ("async fn touched<", "touched"),
        ("fn forget_every_deleted(", "forget_every_deleted"),
    ] {
        let (line, column) = position_of(function);
        let column = column + function.find("fn ").unwrap() as u32 + 3; // the name, after `fn `
        let receivers = signals.receivers();
        let located: Vec<_> = receivers
            .iter()
            .filter(|r| r.info().name().ends_with(name))
            .map(|r| r.info().location())
            .collect();
        assert!(!located.is_empty(), "{name} is registered");
        for location in located {
            assert!(
                location
                    .file
                    .replace('\\', "/")
                    .ends_with("tests/receiver.rs"),
                "{name}: {location}"
            );
            assert_eq!((location.line, location.column), (line, column), "{name}");
        }
    }
}
