//! Writing the registration of a validated receiver.
//!
//! For each signal, in a `const _: () = { ... };` block (so nothing leaks into the module):
//!
//! 1. a typed receiver, `__herald_receiver`, whose argument is exactly the event the signal lends.
//!    It is where a mismatch between the function and the signal surfaces, with the error pointing
//!    at the function's argument (or return type):
//!    - a synchronous function of one signal is first coerced to the fn pointer type the signal
//!      calls (`const __HERALD_RECEIVER: fn(&mut PreSave<'_, Book>) -> Result = slug;`), and the
//!      typed receiver calls that constant. The error reads "expected fn pointer `fn(&mut
//!      PreSave<'_, Book>) -> ..`, found fn item `fn(&mut PreSave<'_, Author>) -> .. {slug}`".
//!    - an async function, or a generic function of several signals, is called by the typed
//!      receiver; a mismatch is an error on that call's argument, which carries the span of the
//!      function's argument.
//!
//!    Either way the code that connects it is well typed whatever the function is, so a mismatch is
//!    one error, not two.
//! 2. `__herald_connect(&Signals) -> Connection`, which connects the typed receiver with its name,
//!    priority, dispatch_uid and location (the function name's `file!()`/`line!()`/`column!()`).
//! 3. an `inventory::submit!` of a `StaticReceiver` holding `__herald_connect`, which
//!    `Signals::builder().autodiscover()` calls.
//!
//! A background receiver ([`background`]) has one signal and one block, with:
//!
//! 1. `__herald_connect(&Signals) -> Connection`, which connects the enqueuing receiver,
//!    `signals.post_save::<Book>().background(KIND, TaskOptions::default()..)`, located at the
//!    function's name, submitted as a `StaticReceiver`;
//! 2. a typed task, `__herald_task(Book, TaskContext) -> ReceiverResult`, an `async fn` that awaits
//!    the function: a mismatch (another model than `sender`, another return type) is an error on
//!    its call, pointing at the function's argument or return type, as for async receivers above;
//! 3. `__herald_register(Worker) -> Worker`, which registers it as the runner of `KIND` tasks,
//!    `worker.model_task::<Book, _, _>(KIND, __herald_task)`, submitted as a `StaticTask` for
//!    `Worker::autodiscover`. `model_task` requires the future to be `Send`: a function whose
//!    future is not is an error there, naming the function's non-`Send` local.

use proc_macro2::{Delimiter, Group, Literal, Punct, Spacing, Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::Path;
use syn::ext::IdentExt;

use super::args::{ReceiverArgs, Signal};
use super::validate::{Checked, CheckedTask};

/// The path to `herald-dispatch` when the attribute does not name one.
const DEFAULT_CRATE: &str = "::herald::dispatch";

/// The path to `herald` when the attribute of a background receiver does not name one.
const DEFAULT_HERALD: &str = "::herald";

/// `item` followed by the registration of a background receiver: the enqueuing receiver and the
/// task runner.
pub(crate) fn background(
    args: &ReceiverArgs,
    checked: &CheckedTask<'_>,
    item: TokenStream,
) -> TokenStream {
    let herald = match &args.krate {
        Some(path) => path.clone(),
        None => syn::parse_str::<Path>(DEFAULT_HERALD).expect("the default crate path parses"),
    };
    let dispatch = quote!(#herald::dispatch);
    let tasks = quote!(#herald::tasks);
    let sender = checked.sender;
    let function = checked.ident;
    let method = format_ident!("{}", checked.signal.name());
    // The kind is persisted in task rows: the function's name, not its module path, so that moving
    // the function does not strand the tasks already queued.
    let kind = match &args.name {
        Some(name) => name.clone(),
        None => syn::LitStr::new(&function.unraw().to_string(), function.span()),
    };

    let task = &args.task;
    let queue = task.queue.as_ref().map(|queue| quote!(.queue(#queue)));
    let priority = args.priority.map(|priority| quote!(.priority(#priority)));
    let max_attempts = task
        .max_attempts
        .map(|attempts| quote!(.max_attempts(#attempts)));
    let timeout = task
        .timeout_ms
        .map(|ms| quote!(.timeout(::core::time::Duration::from_millis(#ms))));
    let delay = task
        .delay_ms
        .map(|ms| quote!(.delay(::core::time::Duration::from_millis(#ms))));
    let unique = task.unique_pk.map(|_| quote!(.unique_pk()));
    let skip_raw = task.skip_raw.map(|_| quote!(.skip_raw()));
    let location = quote_spanned! {function.span()=>
        #dispatch::SourceLocation {
            file: ::core::file!(),
            line: ::core::line!(),
            column: ::core::column!(),
        }
    };
    // Typed exactly as the worker calls it; a mismatch is an error on the call's argument (or
    // result), which carries the span of the function's argument (or return type).
    let instance = spanning_value("__instance", first_and_last_span(checked.instance));
    let context = spanning_value("__context", first_and_last_span(checked.context));
    let result = spanning_value("__herald_result", first_and_last_span(checked.output));
    let typed_task = quote! {
        async fn __herald_task(
            __instance: #sender,
            __context: #tasks::TaskContext,
        ) -> #herald::ReceiverResult {
            let __herald_result = #function(#instance, #context).await;
            #result
        }
    };

    quote! {
        #item
        const _: () = {
            const __HERALD_KIND: &str = #kind;

            fn __herald_connect(signals: &#dispatch::Signals) -> #dispatch::Connection {
                use #tasks::Background as _;
                signals
                    .#method::<#sender>()
                    .background(
                        __HERALD_KIND,
                        #tasks::TaskOptions::default()
                            #queue
                            #priority
                            #max_attempts
                            #timeout
                            #delay
                            #unique
                            #skip_raw,
                    )
                    .location(#location)
                    .connect()
            }

            #dispatch::__private::inventory::submit! {
                #dispatch::StaticReceiver::new(__herald_connect)
            }

            #typed_task

            fn __herald_register(worker: #tasks::Worker) -> #tasks::Worker {
                worker.model_task::<#sender, _, _>(__HERALD_KIND, __herald_task)
            }

            #dispatch::__private::inventory::submit! {
                #tasks::StaticTask::new(__herald_register)
            }
        };
    }
}

/// `item` followed by one registration per signal.
pub(crate) fn expand(args: &ReceiverArgs, checked: &Checked<'_>, item: TokenStream) -> TokenStream {
    let krate = match &args.krate {
        Some(path) => path.clone(),
        None => syn::parse_str::<Path>(DEFAULT_CRATE).expect("the default crate path parses"),
    };
    let registrations = args
        .signals
        .iter()
        .map(|signal| registration(args, checked, &krate, signal));
    quote! {
        #item
        #(#registrations)*
    }
}

fn registration(
    args: &ReceiverArgs,
    checked: &Checked<'_>,
    krate: &Path,
    signal: Signal,
) -> TokenStream {
    let model = match &args.sender {
        Some(sender) => sender.to_token_stream(),
        None => quote!(dyn #krate::AnyModel),
    };
    let event = format_ident!("{}", signal.event());
    let borrow = if signal.lends_mut() {
        quote!(&mut)
    } else {
        quote!(&)
    };
    let event_ty = quote!(#borrow #krate::#event<'_, #model>);

    let typed_receiver = typed_receiver(args, checked, krate, &event_ty);

    let handle = match &args.sender {
        Some(sender) => {
            let method = format_ident!("{}", signal.name());
            quote!(#method::<#sender>())
        }
        None => {
            let method = format_ident!("{}_any", signal.name());
            quote!(#method())
        }
    };
    let on_commit = args.on_commit.map(|_| quote!(.on_commit()));
    let in_transaction = args.in_transaction.map(|_| quote!(.in_transaction()));
    let blocking = args.blocking.map(|_| quote!(.blocking()));
    let connect = if checked.is_async {
        quote!(receiver_async)
    } else {
        quote!(receiver)
    };
    let name = match &args.name {
        Some(name) => name.to_token_stream(),
        None => {
            let ident = checked.ident.to_string();
            quote!(::core::concat!(::core::module_path!(), "::", #ident))
        }
    };
    let priority = args.priority.map(|priority| quote!(.priority(#priority)));
    let dispatch_uid = args
        .dispatch_uid
        .as_ref()
        .map(|uid| quote!(.dispatch_uid(#uid)));
    // `file!()`/`line!()`/`column!()` report where the tokens that invoke them are written: give
    // them the function name's span (as is, not `located_at`, which would report the attribute).
    let location = quote_spanned! {checked.ident.span()=>
        #krate::SourceLocation {
            file: ::core::file!(),
            line: ::core::line!(),
            column: ::core::column!(),
        }
    };

    quote! {
        const _: () = {
            #typed_receiver

            fn __herald_connect(signals: &#krate::Signals) -> #krate::Connection {
                signals
                    .#handle
                    #on_commit
                    #in_transaction
                    .#connect(__herald_receiver)
                    .name(#name)
                    #priority
                    #dispatch_uid
                    #blocking
                    .location(#location)
                    .connect()
            }

            #krate::__private::inventory::submit! {
                #krate::StaticReceiver::new(__herald_connect)
            }
        };
    }
}

/// `__herald_receiver`, typed as the signal calls it, calling the user's function.
fn typed_receiver(
    args: &ReceiverArgs,
    checked: &Checked<'_>,
    krate: &Path,
    event_ty: &TokenStream,
) -> TokenStream {
    if !checked.is_async && !args.signals.is_several() {
        // `slug::<>`: a path expression spanning the argument's type, so that the coercion error
        // underlines all of it.
        let function = spanning_path(checked.ident, first_and_last_span(checked.arg));
        return quote! {
            const __HERALD_RECEIVER: fn(#event_ty) -> #krate::Result = #function;
            fn __herald_receiver(__event: #event_ty) -> #krate::Result {
                __HERALD_RECEIVER(__event)
            }
        };
    }

    let function = checked.ident;
    let argument = spanning_value("__event", first_and_last_span(checked.arg));
    let result = spanning_value("__herald_result", first_and_last_span(checked.output));
    if checked.is_async {
        quote! {
            async fn __herald_receiver(__event: #event_ty) -> #krate::Result {
                let __herald_result = #function(#argument).await;
                #result
            }
        }
    } else {
        quote! {
            fn __herald_receiver(__event: #event_ty) -> #krate::Result {
                let __herald_result = #function(#argument);
                #result
            }
        }
    }
}

/// A span that resolves like the macro's own tokens but is reported at `location`: errors point at
/// the user's code, lints (clippy's included) see generated code.
fn at(location: Span) -> Span {
    Span::call_site().located_at(location)
}

/// The spans of the first and last tokens of `tokens`.
fn first_and_last_span(tokens: &impl ToTokens) -> (Span, Span) {
    let mut tokens = tokens.to_token_stream().into_iter();
    let first = tokens.next().map_or_else(Span::call_site, |t| t.span());
    let last = tokens.last().map_or(first, |t| match t {
        TokenTree::Group(group) => group.span_close(),
        other => other.span(),
    });
    (first, last)
}

/// `ident::<>`, its first tokens at `first` and its closing `>` at `last`: an expression naming the
/// function whose span, in errors, runs from `first` to `last`.
fn spanning_path(ident: &syn::Ident, (first, last): (Span, Span)) -> TokenStream {
    let function = syn::Ident::new(&ident.to_string(), at(first));
    let open = quote_spanned!(at(first)=> #function::<);
    let close = quote_spanned!(at(last)=> >);
    quote!(#open #close)
}

/// `(name,).0`: the local `name`, as an expression whose span, in errors, runs from `first` to
/// `last` (a lone identifier can only point at one token).
fn spanning_value(name: &str, (first, last): (Span, Span)) -> TokenStream {
    let ident = syn::Ident::new(name, at(first));
    let mut tuple = Group::new(Delimiter::Parenthesis, quote!(#ident,));
    tuple.set_span(at(first));
    let mut dot = Punct::new('.', Spacing::Alone);
    dot.set_span(at(last));
    let mut field = Literal::usize_unsuffixed(0);
    field.set_span(at(last));
    quote!(#tuple #dot #field)
}

#[cfg(test)]
mod tests {
    use super::super::expand as expand_attribute;
    use proc_macro2::TokenStream;
    use quote::quote;

    /// Expands, or fails the test with the error.
    fn expand(attr: TokenStream, item: TokenStream) -> String {
        expand_attribute(attr, item)
            .unwrap_or_else(|e| panic!("expected an expansion, got: {e}"))
            .to_string()
    }

    /// The expansion of `attr` on `item` is `item` followed by `registrations`.
    fn check(attr: TokenStream, item: TokenStream, registrations: TokenStream) {
        let expected = quote!(#item #registrations).to_string();
        assert_eq!(expand(attr, item), expected);
    }

    #[test]
    fn a_sync_receiver_for_one_sender() {
        check(
            quote!(
                pre_save,
                sender = Book,
                priority = -3,
                dispatch_uid = "slug",
                crate = herald_dispatch
            ),
            quote!(
                fn slug(e: &mut PreSave<'_, Book>) -> Result {
                    Ok(())
                }
            ),
            quote! {
                const _: () = {
                    const __HERALD_RECEIVER: fn(&mut herald_dispatch::PreSave<'_, Book>) -> herald_dispatch::Result = slug::<>;
                    fn __herald_receiver(__event: &mut herald_dispatch::PreSave<'_, Book>) -> herald_dispatch::Result {
                        __HERALD_RECEIVER(__event)
                    }

                    fn __herald_connect(signals: &herald_dispatch::Signals) -> herald_dispatch::Connection {
                        signals
                            .pre_save::<Book>()
                            .receiver(__herald_receiver)
                            .name(::core::concat!(::core::module_path!(), "::", "slug"))
                            .priority(-3i32)
                            .dispatch_uid("slug")
                            .location(herald_dispatch::SourceLocation {
                                file: ::core::file!(),
                                line: ::core::line!(),
                                column: ::core::column!(),
                            })
                            .connect()
                    }

                    herald_dispatch::__private::inventory::submit! {
                        herald_dispatch::StaticReceiver::new(__herald_connect)
                    }
                };
            },
        );
    }

    #[test]
    fn an_async_on_commit_receiver_for_every_sender() {
        check(
            quote!(post_save, on_commit, name = "mail"),
            quote!(
                async fn notify(e: &PostSaveAny<'_>) -> Result {
                    Ok(())
                }
            ),
            quote! {
                const _: () = {
                    async fn __herald_receiver(__event: &::herald::dispatch::PostSave<'_, dyn ::herald::dispatch::AnyModel>) -> ::herald::dispatch::Result {
                        let __herald_result = notify((__event,).0).await;
                        (__herald_result,).0
                    }

                    fn __herald_connect(signals: &::herald::dispatch::Signals) -> ::herald::dispatch::Connection {
                        signals
                            .post_save_any()
                            .on_commit()
                            .receiver_async(__herald_receiver)
                            .name("mail")
                            .location(::herald::dispatch::SourceLocation {
                                file: ::core::file!(),
                                line: ::core::line!(),
                                column: ::core::column!(),
                            })
                            .connect()
                    }

                    ::herald::dispatch::__private::inventory::submit! {
                        ::herald::dispatch::StaticReceiver::new(__herald_connect)
                    }
                };
            },
        );
    }

    #[test]
    fn a_list_registers_each_signal_with_its_own_event() {
        let expanded = expand(
            quote!([pre_save, post_delete], sender = Book),
            quote!(
                fn audit<E: Debug>(e: &E) -> Result {
                    Ok(())
                }
            ),
        );
        let registrations: Vec<&str> = expanded.matches("StaticReceiver :: new").collect();
        assert_eq!(registrations.len(), 2);
        let pre_save = quote!(&mut ::herald::dispatch::PreSave<'_, Book>);
        let post_delete = quote!(&::herald::dispatch::PostDelete<'_, Book>);
        for expected in [
            quote!(fn __herald_receiver(__event: #pre_save)),
            quote!(fn __herald_receiver(__event: #post_delete)),
            quote!(let __herald_result = audit((__event,).0);),
            quote!(.pre_save::<Book>().receiver(__herald_receiver)),
            quote!(.post_delete::<Book>().receiver(__herald_receiver)),
        ] {
            let expected = expected.to_string();
            assert!(
                expanded.contains(&expected),
                "{expected}\nnot in\n{expanded}"
            );
        }
        let pre = expanded
            .find("pre_save ::")
            .expect("pre_save is registered");
        let post = expanded
            .find("post_delete ::")
            .expect("post_delete is registered");
        assert!(pre < post, "registrations follow the list's order");
    }

    #[test]
    fn a_background_receiver_with_every_task_option() {
        check(
            quote!(
                post_save,
                sender = Book,
                background,
                unique = "pk",
                queue = "search",
                max_attempts = 5,
                timeout_ms = 30_000,
                delay_ms = 0,
                skip_raw,
                priority = 3,
                name = "reindex"
            ),
            quote!(
                async fn reindex_book(book: Book, ctx: TaskContext) -> ReceiverResult {
                    Ok(())
                }
            ),
            quote! {
                const _: () = {
                    const __HERALD_KIND: &str = "reindex";

                    fn __herald_connect(signals: &::herald::dispatch::Signals) -> ::herald::dispatch::Connection {
                        use ::herald::tasks::Background as _;
                        signals
                            .post_save::<Book>()
                            .background(
                                __HERALD_KIND,
                                ::herald::tasks::TaskOptions::default()
                                    .queue("search")
                                    .priority(3i32)
                                    .max_attempts(5u32)
                                    .timeout(::core::time::Duration::from_millis(30000u64))
                                    .delay(::core::time::Duration::from_millis(0u64))
                                    .unique_pk()
                                    .skip_raw(),
                            )
                            .location(::herald::dispatch::SourceLocation {
                                file: ::core::file!(),
                                line: ::core::line!(),
                                column: ::core::column!(),
                            })
                            .connect()
                    }

                    ::herald::dispatch::__private::inventory::submit! {
                        ::herald::dispatch::StaticReceiver::new(__herald_connect)
                    }

                    async fn __herald_task(
                        __instance: Book,
                        __context: ::herald::tasks::TaskContext,
                    ) -> ::herald::ReceiverResult {
                        let __herald_result = reindex_book((__instance,).0, (__context,).0).await;
                        (__herald_result,).0
                    }

                    fn __herald_register(worker: ::herald::tasks::Worker) -> ::herald::tasks::Worker {
                        worker.model_task::<Book, _, _>(__HERALD_KIND, __herald_task)
                    }

                    ::herald::dispatch::__private::inventory::submit! {
                        ::herald::tasks::StaticTask::new(__herald_register)
                    }
                };
            },
        );
    }

    #[test]
    fn a_background_receiver_with_the_defaults_is_its_functions_name_in_the_named_crate() {
        check(
            quote!(
                post_delete,
                sender = models::Book,
                background,
                crate = app::db
            ),
            quote!(
                async fn r#forget(book: models::Book, ctx: TaskContext) -> ReceiverResult {
                    Ok(())
                }
            ),
            quote! {
                const _: () = {
                    const __HERALD_KIND: &str = "forget";

                    fn __herald_connect(signals: &app::db::dispatch::Signals) -> app::db::dispatch::Connection {
                        use app::db::tasks::Background as _;
                        signals
                            .post_delete::<models::Book>()
                            .background(__HERALD_KIND, app::db::tasks::TaskOptions::default(),)
                            .location(app::db::dispatch::SourceLocation {
                                file: ::core::file!(),
                                line: ::core::line!(),
                                column: ::core::column!(),
                            })
                            .connect()
                    }

                    app::db::dispatch::__private::inventory::submit! {
                        app::db::dispatch::StaticReceiver::new(__herald_connect)
                    }

                    async fn __herald_task(
                        __instance: models::Book,
                        __context: app::db::tasks::TaskContext,
                    ) -> app::db::ReceiverResult {
                        let __herald_result = r#forget((__instance,).0, (__context,).0).await;
                        (__herald_result,).0
                    }

                    fn __herald_register(worker: app::db::tasks::Worker) -> app::db::tasks::Worker {
                        worker.model_task::<models::Book, _, _>(__HERALD_KIND, __herald_task)
                    }

                    app::db::dispatch::__private::inventory::submit! {
                        app::db::tasks::StaticTask::new(__herald_register)
                    }
                };
            },
        );
    }

    #[test]
    fn errors_keep_the_function_out_of_the_expansion() {
        // `lib.rs` emits the function as written next to the error; `expand` only reports.
        let error = expand_attribute(
            quote!(pre_save, sender = Book, background),
            quote!(
                async fn slug(book: Book, ctx: TaskContext) -> Result {
                    Ok(())
                }
            ),
        )
        .expect_err("background receivers run after the write");
        assert!(
            error
                .to_string()
                .contains("a background receiver runs on `post_save` or `post_delete`")
        );

        let error = expand_attribute(
            quote!(post_save),
            quote!(
                struct Book;
            ),
        )
        .expect_err("only functions take the attribute");
        assert_eq!(
            error.to_string(),
            "`#[receiver]` goes on a free function with a body: `fn` or `async fn`"
        );
    }
}
