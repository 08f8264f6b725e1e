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
use super::validate::{Checked, CheckedTask, type_text};

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

    let (condition, checks) = condition(args, &dispatch);

    quote! {
        #item
        const _: () = {
            const __HERALD_KIND: &str = #kind;
            #checks

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
                    #condition
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
    let (condition, checks) = condition(args, &krate.to_token_stream());

    quote! {
        const _: () = {
            #typed_receiver
            #checks

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
                    #condition
                    .location(#location)
                    .connect()
            }

            #krate::__private::inventory::submit! {
                #krate::StaticReceiver::new(__herald_connect)
            }
        };
    }
}

/// A condition's builder calls (`.on_create()`, `.when_changed([..])`, `.changes()`), and a
/// compile-time check that each `when_changed` name is a field of `sender`: a `const` that fails
/// to evaluate, pointing at the misspelt name, with a message naming it and the model.
fn condition(args: &ReceiverArgs, krate: &TokenStream) -> (TokenStream, TokenStream) {
    let condition = &args.condition;
    let on = condition.on.as_ref().map(|(create, _)| {
        if *create {
            quote!(.on_create())
        } else {
            quote!(.on_update())
        }
    });
    let names = &condition.when_changed;
    let when_changed = (!names.is_empty()).then(|| quote!(.when_changed([#(#names),*])));
    let changes = condition.changes.map(|_| quote!(.changes()));
    let checks = match &args.sender {
        Some(sender) => {
            let model = type_text(sender);
            names
                .iter()
                .map(|name| {
                    let message = format!(
                        "when_changed names `{}`, which `{model}` does not have",
                        name.value()
                    );
                    quote_spanned! {name.span()=>
                        const _: () = if !#krate::__private::has_field(
                            <#sender as #krate::Sender>::FIELD_NAMES,
                            #name,
                        ) {
                            ::core::panic!(#message)
                        };
                    }
                })
                .collect()
        }
        None => TokenStream::new(),
    };
    (quote!(#on #when_changed #changes), checks)
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
mod tests;
