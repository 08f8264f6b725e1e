//! Tests of the receiver attribute's expansion.

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
