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

use proc_macro2::{Delimiter, Group, Literal, Punct, Spacing, Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::Path;

use super::args::{ReceiverArgs, Signal};
use super::validate::Checked;

/// The path to `herald-dispatch` when the attribute does not name one.
const DEFAULT_CRATE: &str = "::herald::dispatch";

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
                    .#connect(__herald_receiver)
                    .name(#name)
                    #priority
                    #dispatch_uid
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
    fn errors_keep_the_function_out_of_the_expansion() {
        // `lib.rs` emits the function as written next to the error; `expand` only reports.
        let error = expand_attribute(
            quote!(pre_save, sender = Book, background),
            quote!(
                fn slug(e: &mut PreSave<'_, Book>) -> Result {
                    Ok(())
                }
            ),
        )
        .expect_err("background is reserved");
        assert!(
            error
                .to_string()
                .contains("`background` is not supported yet")
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
