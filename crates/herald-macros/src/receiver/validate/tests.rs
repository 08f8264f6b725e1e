//! Tests of the receiver checks.

use super::*;
use quote::quote;

/// Checks `attr` against the function `item` (as a background receiver with `background`); the
/// error's messages, or `"ok"`.
fn check_messages(attr: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> Vec<String> {
    let args: ReceiverArgs = syn::parse2(attr).expect("the attribute parses");
    let function: syn::ItemFn = syn::parse2(item).expect("the function parses");
    // As `mod.rs` chooses.
    let checked = match args.background {
        Some(_) => check_background(&args, &function.sig).map(drop),
        None => check(&args, &function.sig).map(drop),
    };
    match checked {
        Ok(()) => vec!["ok".to_owned()],
        Err(errors) => errors.into_iter().map(|e| e.to_string()).collect(),
    }
}

/// Exactly one error, containing `expected`.
fn fails(attr: proc_macro2::TokenStream, item: proc_macro2::TokenStream, expected: &str) {
    let messages = check_messages(attr, item);
    assert!(
        messages.len() == 1 && messages[0].contains(expected),
        "expected one error containing {expected:?}, got {messages:#?}"
    );
}

fn passes(attr: proc_macro2::TokenStream, item: proc_macro2::TokenStream) {
    assert_eq!(check_messages(attr, item), ["ok"]);
}

#[test]
fn the_four_signals_with_their_events() {
    passes(
        quote!(pre_save, sender = Book),
        quote!(
            fn r(e: &mut PreSave<'_, Book>) -> Result {
                Ok(())
            }
        ),
    );
    passes(
        quote!(post_save, sender = Book),
        quote!(
            fn r(e: &herald::dispatch::PostSave<'_, Book>) -> Result {
                Ok(())
            }
        ),
    );
    passes(
        quote!(pre_delete, sender = Book),
        quote!(
            async fn r(_: &PreDelete<'_, Book>) -> Result {
                Ok(())
            }
        ),
    );
    passes(
        quote!(post_delete, sender = Book, on_commit),
        quote!(
            fn r<'a>(e: &'a PostDelete<'a, Book>) -> Result {
                Ok(())
            }
        ),
    );
    passes(
        quote!(post_save),
        quote!(
            fn r(e: &PostSaveAny<'_>) -> Result {
                Ok(())
            }
        ),
    );
    passes(
        quote!(pre_delete),
        quote!(
            fn r(e: &PreDelete<'_, dyn AnyModel>) -> Result {
                Ok(())
            }
        ),
    );
    // Names the check does not know are left to the type checker.
    passes(
        quote!(post_save, sender = Book),
        quote!(
            fn r(e: &BookSaved<'_>) -> Result {
                Ok(())
            }
        ),
    );
}

#[test]
fn the_argument_count() {
    fails(
        quote!(post_save, sender = Book),
        quote!(
            fn r(e: &PostSave<'_, Book>, extra: u8) -> Result {
                Ok(())
            }
        ),
        "a receiver takes exactly one argument, the event: \
             `fn receiver(event: &PostSave<'_, Book>)`; remove the others",
    );
    fails(
        quote!(pre_save),
        quote!(
            fn r() -> Result {
                Ok(())
            }
        ),
        "a receiver takes one argument, the event: `fn receiver(event: &mut PreSaveAny<'_>)`",
    );
    fails(
        quote!(post_save),
        quote!(
            fn r(&self) -> Result {
                Ok(())
            }
        ),
        "not a method: remove `self`",
    );
}

#[test]
fn the_reference_kind() {
    fails(
        quote!(pre_save, sender = Book),
        quote!(
            fn r(e: &PreSave<'_, Book>) -> Result {
                Ok(())
            }
        ),
        "a `pre_save` receiver takes its event by mutable reference, `&mut PreSave<'_, Book>`: \
             it may change the instance before it is written",
    );
    fails(
        quote!(post_save, sender = models::Book),
        quote!(
            fn r(e: &mut PostSave<'_, models::Book>) -> Result {
                Ok(())
            }
        ),
        "a `post_save` receiver takes its event by shared reference, \
             `&PostSave<'_, models::Book>`, not `&mut`",
    );
    fails(
        quote!(pre_delete, sender = Book),
        quote!(
            fn r(e: PreDelete<'_, Book>) -> Result {
                Ok(())
            }
        ),
        "a `pre_delete` receiver takes its event by reference: `&PreDelete<'_, Book>`",
    );
}

#[test]
fn the_event_type_names_the_signal() {
    fails(
        quote!(post_save, sender = Book),
        quote!(
            fn r(e: &PostDelete<'_, Book>) -> Result {
                Ok(())
            }
        ),
        "a `post_save` receiver takes `&PostSave<'_, Book>`, not `PostDelete`",
    );
    fails(
        quote!(post_save, sender = Book),
        quote!(
            fn r(e: &PostSaveAny<'_>) -> Result {
                Ok(())
            }
        ),
        "`PostSaveAny` is the event of receivers for every sender, but this receiver has \
             `sender = Book`: take `&PostSave<'_, Book>`, or remove `sender`",
    );
    fails(
        quote!(post_save),
        quote!(
            fn r(e: &PostSave<'_, Book>) -> Result {
                Ok(())
            }
        ),
        "this receiver takes `PostSave<'_, Book>` but has no `sender`, so it would be \
             connected for every model: add `sender = Book` to the attribute, or take \
             `&PostSaveAny<'_>`",
    );
    fails(
        quote!(post_delete, sender = Book),
        quote!(
            fn r(e: &impl Debug) -> Result {
                Ok(())
            }
        ),
        "not `impl Trait`",
    );
}

#[test]
fn generics() {
    fails(
        quote!(post_save, sender = Book),
        quote!(
            fn r<E: Debug>(e: &E) -> Result {
                Ok(())
            }
        ),
        "a receiver of one signal cannot be generic: it takes that signal's event, \
             `&PostSave<'_, Book>`",
    );
    fails(
        quote!([post_save, post_delete]),
        quote!(
            fn r<const N: usize, E>(e: &E) -> Result {
                Ok(())
            }
        ),
        "cannot have const parameters",
    );
    passes(
        quote!([post_save, post_delete], sender = Book),
        quote!(
            fn r<E: Debug>(e: &E) -> Result {
                Ok(())
            }
        ),
    );
    passes(
        quote!([pre_save, post_delete]),
        quote!(
            async fn r(e: &impl Debug) -> Result {
                Ok(())
            }
        ),
    );
}

#[test]
fn several_signals_take_a_generic_shared_event() {
    fails(
        quote!([pre_save, post_save], sender = Book),
        quote!(
            fn r<E>(e: &mut E) -> Result {
                Ok(())
            }
        ),
        "a receiver of several signals takes the event by shared reference, `&E`, with `E` \
             a type parameter: every signal of `[pre_save, post_save]` lends it shared",
    );
    fails(
        quote!([post_save, post_delete], sender = Book),
        quote!(
            fn r(e: &PostSave<'_, Book>) -> Result {
                Ok(())
            }
        ),
        "each signal of `[post_save, post_delete]` sends its own event type, so a receiver \
             of all of them cannot take `PostSave`: make it generic over the event",
    );
}

#[test]
fn on_commit_needs_a_post_signal() {
    fails(
        quote!(pre_save, sender = Book, on_commit),
        quote!(
            fn r(e: &mut PreSave<'_, Book>) -> Result {
                Ok(())
            }
        ),
        "`on_commit` applies to `post_save` and `post_delete` only, not `pre_save`",
    );
    fails(
        quote!([post_save, pre_delete], on_commit),
        quote!(
            fn r<E>(e: &E) -> Result {
                Ok(())
            }
        ),
        "not `pre_delete`",
    );
    passes(
        quote!([post_save, post_delete], on_commit),
        quote!(
            fn r<E>(e: &E) -> Result {
                Ok(())
            }
        ),
    );
}

#[test]
fn qualifiers_and_return_type() {
    fails(
        quote!(post_save, sender = Book),
        quote!(
            fn r(e: &PostSave<'_, Book>) {}
        ),
        "a receiver returns the dispatcher's `Result`",
    );
    fails(
        quote!(post_save, sender = Book),
        quote!(
            unsafe fn r(e: &PostSave<'_, Book>) -> Result {
                Ok(())
            }
        ),
        "cannot be an `unsafe fn`",
    );
    fails(
        quote!(post_save, sender = Book),
        quote!(
            extern "C" fn r(e: &PostSave<'_, Book>) -> Result {
                Ok(())
            }
        ),
        "Rust ABI",
    );
}

#[test]
fn every_mistake_is_reported_at_once() {
    let messages = check_messages(
        quote!(pre_save, sender = Book, on_commit),
        quote!(
            unsafe fn r(e: &PreSave<'_, Book>) {}
        ),
    );
    assert_eq!(messages.len(), 4, "{messages:#?}");
}

/// A well-formed background receiver, to check attributes against.
fn reindex() -> proc_macro2::TokenStream {
    quote!(
        async fn reindex(book: Book, ctx: TaskContext) -> ReceiverResult {
            Ok(())
        }
    )
}

#[test]
fn a_background_receiver() {
    passes(
        quote!(
            post_save,
            sender = Book,
            background,
            unique = "pk",
            queue = "search",
            max_attempts = 5,
            timeout_ms = 30_000,
            delay_ms = 0,
            priority = 3,
            name = "reindex"
        ),
        reindex(),
    );
    passes(
        quote!(
            post_delete,
            sender = models::Book,
            background,
            crate = app::herald
        ),
        quote!(
            async fn forget<'a>(_: models::Book, _: herald::tasks::TaskContext) -> Result {
                Ok(())
            }
        ),
    );
    // The instance's type is left to the type checker (an alias of `Book` is fine).
    passes(
        quote!(post_save, sender = Book, background),
        quote!(
            async fn r(book: Novel, ctx: TaskContext) -> ReceiverResult {
                Ok(())
            }
        ),
    );
}

#[test]
fn a_background_receiver_runs_on_one_post_signal_of_a_sender() {
    fails(
        quote!(pre_save, sender = Book, background),
        reindex(),
        "a background receiver runs on `post_save` or `post_delete`, not `pre_save`",
    );
    fails(
        quote!(pre_delete, sender = Book, background),
        reindex(),
        "not `pre_delete`",
    );
    fails(
        quote!([post_save, post_delete], sender = Book, background),
        reindex(),
        "a background receiver has one signal, `post_save` or `post_delete`, not \
             `[post_save, post_delete]`: declare one background receiver per signal",
    );
    fails(
        quote!(post_save, background),
        reindex(),
        "a background receiver needs `sender = Type`: its task rebuilds an instance of that \
             model from the task row (`#[receiver(post_save, sender = Book, background)]`)",
    );
}

#[test]
fn options_a_background_receiver_does_not_take() {
    fails(
        quote!(post_save, sender = Book, background, on_commit),
        reindex(),
        "`on_commit` does not apply to a background receiver: its task already runs after \
             the commit",
    );
    fails(
        quote!(post_save, sender = Book, background, dispatch_uid = "x"),
        reindex(),
        "`dispatch_uid` does not apply to a background receiver",
    );
    for krate in [quote!(herald_dispatch), quote!(::herald::dispatch)] {
        fails(
            quote!(post_save, sender = Book, background, crate = #krate),
            reindex(),
            "for a background receiver, `crate` names the `herald` crate",
        );
    }
}

#[test]
fn task_options_need_background() {
    let messages = check_messages(
        quote!(post_save, sender = Book, queue = "mail", max_attempts = 3),
        quote!(
            fn r(e: &PostSave<'_, Book>) -> Result {
                Ok(())
            }
        ),
    );
    assert_eq!(
        messages,
        [
            "`queue` is a task option: it applies to background receivers only; add \
                 `background` to run this receiver in a worker after the commit",
            "`max_attempts` is a task option: it applies to background receivers only; add \
                 `background` to run this receiver in a worker after the commit",
        ]
    );
}

#[test]
fn a_background_receiver_is_an_async_fn_of_the_instance_and_the_context() {
    let background = || quote!(post_save, sender = Book, background);
    fails(
        background(),
        quote!(
            fn reindex(book: Book, ctx: TaskContext) -> ReceiverResult {
                Ok(())
            }
        ),
        "a background receiver is an `async fn`: `async fn receiver(instance: Book, ctx: \
             TaskContext) -> ReceiverResult`",
    );
    fails(
        background(),
        quote!(
            async fn reindex(book: &Book, ctx: TaskContext) -> ReceiverResult {
                Ok(())
            }
        ),
        "a background receiver takes the instance by value (it is rebuilt from the task \
             row): `Book`, not `&Book`",
    );
    fails(
        background(),
        quote!(
            async fn reindex(book: impl Model, ctx: TaskContext) -> ReceiverResult {
                Ok(())
            }
        ),
        "`Book`, not `impl Trait`",
    );
    fails(
        background(),
        quote!(
            async fn reindex(book: Book, ctx: &TaskContext) -> ReceiverResult {
                Ok(())
            }
        ),
        "a background receiver takes the task context by value: `ctx: TaskContext`",
    );
    fails(
        background(),
        quote!(
            async fn reindex(book: Book) -> ReceiverResult {
                Ok(())
            }
        ),
        "a background receiver takes two arguments, the instance and the task context: \
             `async fn receiver(instance: Book, ctx: TaskContext) -> ReceiverResult`",
    );
    fails(
        background(),
        quote!(
            async fn reindex() -> ReceiverResult {
                Ok(())
            }
        ),
        "takes two arguments",
    );
    fails(
        background(),
        quote!(
            async fn reindex(book: Book, ctx: TaskContext, extra: u8) -> ReceiverResult {
                Ok(())
            }
        ),
        "takes two arguments",
    );
    fails(
        background(),
        quote!(
            async fn reindex(self, ctx: TaskContext) -> ReceiverResult {
                Ok(())
            }
        ),
        "not a method: remove `self`",
    );
    fails(
        background(),
        quote!(
            async fn reindex<M: Model>(book: M, ctx: TaskContext) -> ReceiverResult {
                Ok(())
            }
        ),
        "a background receiver cannot be generic: it takes the instance of its sender by \
             value, `Book`",
    );
    fails(
        background(),
        quote!(
            async fn reindex(book: Book, ctx: TaskContext) {}
        ),
        "a background receiver returns `ReceiverResult`",
    );
}

#[test]
fn an_event_receiver_marked_background_is_told_what_a_background_receiver_takes() {
    let messages = check_messages(
        quote!(post_save, sender = Book, background, queue = "mail"),
        quote!(
            fn mail(event: &PostSave<'_, Book>) -> Result {
                Ok(())
            }
        ),
    );
    assert_eq!(
        messages,
        [
            "a background receiver is an `async fn`: `async fn receiver(instance: Book, ctx: \
                 TaskContext) -> ReceiverResult`",
            "a background receiver takes the instance by value (it is rebuilt from the task \
                 row): `Book`, not the event, `PostSave`",
            "a background receiver takes two arguments, the instance and the task context: \
                 `async fn receiver(instance: Book, ctx: TaskContext) -> ReceiverResult`",
        ]
    );
}

#[test]
fn type_text_reads_like_source() {
    let text = |ty: Type| type_text(&ty);
    assert_eq!(
        text(syn::parse_quote!(crate::models::Book)),
        "crate::models::Book"
    );
    assert_eq!(
        text(syn::parse_quote!(&mut PreSave<'_, Vec<(u8, u16)>>)),
        "&mut PreSave<'_, Vec<(u8, u16)>>"
    );
    assert_eq!(text(syn::parse_quote!(dyn AnyModel)), "dyn AnyModel");
}
