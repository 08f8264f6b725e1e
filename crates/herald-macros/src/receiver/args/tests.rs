//! Tests of parsing the receiver attribute.

use super::*;
use quote::quote;

fn parse(tokens: proc_macro2::TokenStream) -> syn::Result<ReceiverArgs> {
    syn::parse2::<ReceiverArgs>(tokens)
}

/// Parses, or fails the test with the error.
fn ok(tokens: proc_macro2::TokenStream) -> ReceiverArgs {
    parse(tokens).unwrap_or_else(|e| panic!("expected to parse, got: {e}"))
}

/// Fails to parse with a message containing `expected`.
fn fails(tokens: proc_macro2::TokenStream, expected: &str) {
    match parse(tokens) {
        Ok(args) => panic!("expected an error containing {expected:?}, parsed {args:?}"),
        Err(e) => assert!(
            e.to_string().contains(expected),
            "error {:?} does not contain {expected:?}",
            e.to_string()
        ),
    }
}

#[test]
fn one_signal_and_no_options() {
    let args = ok(quote!(post_save));
    assert_eq!(args.signals.iter().collect::<Vec<_>>(), [Signal::PostSave]);
    assert!(args.sender.is_none() && args.priority.is_none() && args.on_commit.is_none());
    assert!(args.name.is_none() && args.dispatch_uid.is_none() && args.krate.is_none());
    assert!(args.background.is_none() && args.task.keys.is_empty());
    assert!(args.signals.brackets.is_none());
}

#[test]
fn every_option() {
    let args = ok(quote!(
        post_save,
        sender = crate::models::Book,
        priority = -5,
        dispatch_uid = "uid",
        name = "audit",
        on_commit,
        crate = herald_dispatch,
    ));
    assert_eq!(
        args.sender.map(|t| quote!(#t).to_string()),
        Some(quote!(crate::models::Book).to_string())
    );
    assert_eq!(args.priority, Some(-5));
    assert_eq!(args.dispatch_uid.map(|l| l.value()).as_deref(), Some("uid"));
    assert_eq!(args.name.map(|l| l.value()).as_deref(), Some("audit"));
    assert!(args.on_commit.is_some());
    assert_eq!(
        args.krate.map(|p| quote!(#p).to_string()),
        Some("herald_dispatch".to_owned())
    );
}

#[test]
fn a_list_of_signals_keeps_its_order() {
    let args = ok(quote!([post_delete, post_save,], sender = Book));
    assert_eq!(
        args.signals.iter().collect::<Vec<_>>(),
        [Signal::PostDelete, Signal::PostSave]
    );
    assert!(args.signals.is_several());
    assert!(!ok(quote!([pre_save])).signals.is_several());
}

#[test]
fn priority_bounds() {
    assert_eq!(
        ok(quote!(pre_save, priority = 2147483647)).priority,
        Some(i32::MAX)
    );
    assert_eq!(
        ok(quote!(pre_save, priority = -2147483648)).priority,
        Some(i32::MIN)
    );
    assert_eq!(ok(quote!(pre_save, priority = 7i32)).priority, Some(7));
    fails(
        quote!(pre_save, priority = 2147483648),
        "a priority is an `i32`",
    );
    fails(quote!(pre_save, priority = 1u8), "without a suffix");
    fails(quote!(pre_save, priority = high), "expected an integer");
}

#[test]
fn the_signal_comes_first() {
    fails(quote!(), "expected the signal first");
    fails(
        quote!(sender = Book, post_save),
        "expected the signal first",
    );
    fails(quote!(on_commit), "expected the signal first");
    fails(quote!("post_save"), "expected the signal first");
}

#[test]
fn unknown_signals_list_the_valid_ones() {
    fails(
        quote!(pre_safe),
        "unknown signal `pre_safe` (did you mean `pre_save`?); expected one of `pre_save`, \
             `post_save`, `pre_delete` or `post_delete`, or a list",
    );
    fails(
        quote!([post_save, m2m_changed]),
        "unknown signal `m2m_changed`; expected one of",
    );
    fails(quote!([]), "at least one signal");
    fails(
        quote!([post_save, post_save]),
        "`post_save` is listed twice",
    );
    fails(
        quote!(post_save, post_delete),
        "list them: `#[receiver([post_save, post_delete]",
    );
}

#[test]
fn unknown_options_list_the_valid_ones() {
    fails(
        quote!(post_save, priorty = 1),
        "unknown option `priorty` (did you mean `priority`?); expected one of `sender`, \
             `priority`, `dispatch_uid`, `name`, `on_commit`, `in_transaction`, `blocking`, \
             `crate`, `background`, `unique`, `queue`, `max_attempts`, `timeout_ms`, `delay_ms`, \
             `skip_raw`, `on`, `when_changed` or `changes`",
    );
    fails(
        quote!(post_save, weak = false),
        "unknown option `weak`; expected one of",
    );
}

#[test]
fn a_background_receiver_and_its_task_options() {
    let args = ok(quote!(
        post_save,
        sender = Book,
        background,
        unique = "pk",
        queue = "search",
        max_attempts = 5,
        timeout_ms = 30_000,
        delay_ms = 0u64,
        skip_raw,
        priority = 3,
        name = "reindex",
    ));
    assert!(args.background.is_some());
    assert!(args.task.unique_pk.is_some());
    assert_eq!(
        args.task.queue.map(|l| l.value()).as_deref(),
        Some("search")
    );
    assert_eq!(args.task.max_attempts, Some(5));
    assert_eq!(args.task.timeout_ms, Some(30_000));
    assert_eq!(args.task.delay_ms, Some(0));
    assert!(args.task.skip_raw.is_some());
    assert_eq!(args.priority, Some(3));
    let keys: Vec<String> = args.task.keys.iter().map(ToString::to_string).collect();
    assert_eq!(
        keys,
        [
            "unique",
            "queue",
            "max_attempts",
            "timeout_ms",
            "delay_ms",
            "skip_raw"
        ]
    );

    let bare = ok(quote!(post_delete, sender = Book, background));
    assert!(bare.background.is_some());
    assert!(bare.task.keys.is_empty() && bare.task.unique_pk.is_none());
    assert!(bare.task.queue.is_none() && bare.task.max_attempts.is_none());
    assert!(bare.task.timeout_ms.is_none() && bare.task.delay_ms.is_none());
}

#[test]
fn task_options_are_well_formed() {
    fails(
        quote!(post_save, background = true),
        "`background` is a flag: write `background`, without a value",
    );
    fails(
        quote!(post_save, background, background),
        "`background` is given twice",
    );
    fails(
        quote!(post_save, unique = "id"),
        "`unique` takes \"pk\" only, not \"id\"",
    );
    fails(
        quote!(post_save, unique = true),
        "expected `unique = \"pk\"`",
    );
    fails(quote!(post_save, unique = pk), "expected `unique = \"pk\"`");
    fails(
        quote!(post_save, unique = "pk", unique = "pk"),
        "`unique` is given twice",
    );
    fails(
        quote!(post_save, queue = ""),
        "a queue's name cannot be empty",
    );
    fails(
        quote!(post_save, queue = search),
        "expected a string literal: `queue = \"...\"`",
    );
    fails(
        quote!(post_save, max_attempts = 0),
        "`max_attempts` is at least 1",
    );
    fails(
        quote!(post_save, max_attempts = -1),
        "`max_attempts` cannot be negative",
    );
    fails(
        quote!(post_save, max_attempts = 4294967296),
        "`max_attempts` is a `u32`, and 4294967296 does not fit",
    );
    fails(
        quote!(post_save, max_attempts = 5u8),
        "`max_attempts` is a `u32`: write it without a suffix",
    );
    assert_eq!(
        ok(quote!(post_save, max_attempts = 5u32)).task.max_attempts,
        Some(5)
    );
    fails(
        quote!(post_save, max_attempts = "5"),
        "expected an integer: `max_attempts = 5`",
    );
    fails(
        quote!(post_save, timeout_ms = 0),
        "`timeout_ms` is at least 1",
    );
    fails(
        quote!(post_save, timeout_ms = 1.5),
        "expected an integer: `timeout_ms = 30_000`",
    );
    fails(
        quote!(post_save, delay_ms = 18446744073709551616),
        "`delay_ms` is a `u64`, and 18446744073709551616 does not fit",
    );
    fails(
        quote!(post_save, delay_ms = 1, delay_ms = 2),
        "`delay_ms` is given twice",
    );
    fails(
        quote!(post_save, timeout = 10),
        "unknown option `timeout` (did you mean `timeout_ms`?)",
    );
    fails(
        quote!(post_save, delay = 10),
        "unknown option `delay` (did you mean `delay_ms`?)",
    );
    fails(quote!(background), "expected the signal first");
    fails(quote!(queue = "mail"), "expected the signal first");
}

#[test]
fn options_are_given_once_and_well_formed() {
    fails(
        quote!(post_save, priority = 1, priority = 2),
        "`priority` is given twice",
    );
    fails(
        quote!(post_save, on_commit, on_commit),
        "`on_commit` is given twice",
    );
    fails(quote!(post_save, on_commit = true), "`on_commit` is a flag");
    fails(
        quote!(post_save, name = audit),
        "expected a string literal: `name = \"...\"`",
    );
    fails(quote!(post_save, name = ""), "cannot be empty");
    fails(
        quote!(post_save, dispatch_uid = 3),
        "expected a string literal",
    );
    fails(quote!(post_save sender = Book), "expected `,`");
}

#[test]
fn did_you_mean_needs_a_close_candidate() {
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(did_you_mean("sendr", &OPTIONS), " (did you mean `sender`?)");
    assert_eq!(did_you_mean("zzz", &OPTIONS), "");
}

#[test]
fn conditions_parse_and_their_values_are_checked() {
    let args = parse(quote!(
        post_save,
        on = "update",
        when_changed = ["price_cents", "title"],
        changes
    ))
    .expect("valid conditions parse");
    assert_eq!(
        args.condition.on.as_ref().map(|(create, _)| *create),
        Some(false)
    );
    let names: Vec<String> = args
        .condition
        .when_changed
        .iter()
        .map(|n| n.value())
        .collect();
    assert_eq!(names, ["price_cents", "title"]);
    assert!(args.condition.changes.is_some());
    fails(
        quote!(post_save, on = "delete"),
        "`on` takes \"create\" or \"update\", not \"delete\"",
    );
    fails(
        quote!(post_save, when_changed = []),
        "`when_changed` needs at least one field name",
    );
    fails(
        quote!(post_save, when_changed = "title"),
        "expected a list of field names",
    );
    fails(
        quote!(post_save, when_changed = ["a", "a"]),
        "`a` is listed twice",
    );
}
