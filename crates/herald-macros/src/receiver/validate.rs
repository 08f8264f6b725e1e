//! What can be known about a receiver before type checking: that the options fit the signals, and
//! that the function's signature has the shape its signals call ([`check`]), or, for a durable
//! background receiver, the shape a worker calls ([`check_background`]). Every mistake is a spanned
//! error, all of them reported at once.
//!
//! What only the type checker knows (that the event's model is the sender, that the return type is
//! the dispatcher's `Result`, that a generic receiver accepts every listed event, that a background
//! receiver's instance is the sender and its second argument the task context) is left to it; the
//! expansion arranges for those errors to point at the function.

use quote::ToTokens;
use syn::{FnArg, GenericArgument, GenericParam, PathArguments, ReturnType, Signature, Type};

use super::args::{ReceiverArgs, Signal};

mod background;
pub(crate) use background::check_background;

/// The parts of a validated receiver function that the expansion uses.
#[derive(Debug)]
pub(crate) struct Checked<'f> {
    pub(crate) ident: &'f syn::Ident,
    pub(crate) is_async: bool,
    /// The argument's type: `&mut PreSave<'_, Book>`, or `&E` for several signals.
    pub(crate) arg: &'f Type,
    /// The return type.
    pub(crate) output: &'f Type,
}

/// The parts of a validated background receiver that the expansion uses.
#[derive(Debug)]
pub(crate) struct CheckedTask<'f> {
    pub(crate) ident: &'f syn::Ident,
    /// The model: `sender`.
    pub(crate) sender: &'f Type,
    /// The signal: `post_save` or `post_delete`.
    pub(crate) signal: Signal,
    /// The first argument's type: the instance (`Book`).
    pub(crate) instance: &'f Type,
    /// The second argument's type: the task context.
    pub(crate) context: &'f Type,
    /// The return type.
    pub(crate) output: &'f Type,
}

/// Errors gathered so that one compile shows every mistake.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(first) => first.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn spanned(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    fn finish<T>(self, value: T) -> syn::Result<T> {
        self.0.map_or(Ok(value), Err)
    }
}

/// Check the attribute's arguments against each other and the function's signature against the
/// signals it receives.
pub(crate) fn check<'f>(args: &ReceiverArgs, sig: &'f Signature) -> syn::Result<Checked<'f>> {
    let mut errors = Errors::default();
    check_on_commit(args, &mut errors);
    check_condition(args, &mut errors);
    check_placement(args, sig, &mut errors);
    check_task_options(args, &mut errors);
    check_qualifiers(sig, &mut errors);
    check_generics(args, sig, &mut errors);
    let arg = check_inputs(args, sig, &mut errors);
    let output = match &sig.output {
        ReturnType::Type(_, ty) => Some(&**ty),
        ReturnType::Default => {
            errors.spanned(
                sig,
                format!(
                    "a receiver returns the dispatcher's `Result`: \
                     `{} -> Result {{ ... Ok(()) }}` (`Err` reports a failure)",
                    example_fn(args)
                ),
            );
            None
        }
    };
    match (arg, output) {
        (Some(arg), Some(output)) => errors.finish(Checked {
            ident: &sig.ident,
            is_async: sig.asyncness.is_some(),
            arg,
            output,
        }),
        _ => Err(errors
            .0
            .expect("a missing argument or return type was reported")),
    }
}

fn check_on_commit(args: &ReceiverArgs, errors: &mut Errors) {
    let Some(span) = args.on_commit else { return };
    let without: Vec<&str> = args
        .signals
        .iter()
        .filter(|s| !s.has_on_commit())
        .map(Signal::name)
        .collect();
    if let Some(first) = without.first() {
        errors.push(syn::Error::new(
            span,
            format!(
                "`on_commit` applies to `post_save` and `post_delete` only, not `{first}`: \
                 receivers of `pre_save` and `pre_delete` run before the write"
            ),
        ));
    }
}

/// `on`, `when_changed` and `changes`: `post_save` alone; `when_changed` names fields of one model
/// (whose names are checked against the model in the expansion, at compile time); and a create is
/// not a change, so `on = "create"` and `when_changed` exclude each other.
pub(crate) fn check_condition(args: &ReceiverArgs, errors: &mut Errors) {
    let condition = &args.condition;
    let Some(first) = condition.first_span() else {
        return;
    };
    let others: Vec<&str> = args
        .signals
        .iter()
        .filter(|s| *s != Signal::PostSave)
        .map(Signal::name)
        .collect();
    if let Some(other) = others.first() {
        errors.push(syn::Error::new(
            first,
            format!(
                "`on`, `when_changed` and `changes` apply to `post_save` only, not `{other}`: \
                 they are about what a save did (created a row, or changed some fields)"
            ),
        ));
    }
    if let Some(span) = condition.when_changed_span {
        if args.sender.is_none() {
            errors.push(syn::Error::new(
                span,
                "`when_changed` names fields of one model: add `sender = Book` (a receiver for \
                 every sender has no fields to name)",
            ));
        }
        if let Some((true, lit)) = &condition.on {
            errors.push(syn::Error::new(
                lit.span(),
                "`on = \"create\"` and `when_changed` exclude each other: a create is not a \
                 change, so the receiver would never be called (use `on = \"create\"` alone, or \
                 connect the receiver twice)",
            ));
        }
    }
}

/// `in_transaction` and `blocking`: where the receiver runs, and how.
fn check_placement(args: &ReceiverArgs, sig: &Signature, errors: &mut Errors) {
    if let (Some(in_tx), Some(_)) = (args.in_transaction, args.on_commit) {
        errors.push(syn::Error::new(
            in_tx,
            "`in_transaction` and `on_commit` exclude each other: an `in_transaction` receiver \
             runs inside the write's transaction, an `on_commit` one after it commits",
        ));
    }
    let Some(blocking) = args.blocking else {
        return;
    };
    if sig.asyncness.is_some() {
        errors.push(syn::Error::new(
            blocking,
            "`blocking` applies to synchronous receivers (it runs them through \
             `block_in_place`); an async receiver awaits instead of blocking: remove `blocking`",
        ));
    }
    if args.in_transaction.is_some() {
        errors.push(syn::Error::new(
            blocking,
            "`blocking` applies to receivers that run on the caller's task; an \
             `in_transaction` receiver runs on the write's connection, where anything slow holds \
             that connection (on SQLite, every write): move the slow work out of the transaction",
        ));
    }
}

/// `e.conn()` in a receiver that does not run in the write's transaction: an error at the call,
/// since only `in_transaction` receivers are lent the connection.
pub(crate) fn check_connection_use(args: &ReceiverArgs, function: &syn::ItemFn) -> syn::Result<()> {
    if args.in_transaction.is_some() || args.background.is_some() {
        return Ok(());
    }
    let Some(FnArg::Typed(first)) = function.sig.inputs.first() else {
        return Ok(());
    };
    let syn::Pat::Ident(event) = &*first.pat else {
        return Ok(());
    };
    let mut finder = ConnCalls {
        event: &event.ident,
        found: Vec::new(),
    };
    syn::visit::Visit::visit_block(&mut finder, &function.block);
    let mut errors = Errors::default();
    for call in finder.found {
        errors.push(syn::Error::new(
            call,
            format!(
                "`{}.conn()` is lent only to receivers that run inside the write's transaction: \
                 add `in_transaction` (`#[receiver({}, .., in_transaction)]`), or write through a \
                 `Db` after the write instead",
                event.ident,
                args.signals.list[0].0.name()
            ),
        ));
    }
    errors.finish(())
}

/// Finds `event.conn()` calls in a function body.
struct ConnCalls<'a> {
    event: &'a syn::Ident,
    found: Vec<proc_macro2::Span>,
}

impl<'ast> syn::visit::Visit<'ast> for ConnCalls<'_> {
    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        if call.method == "conn"
            && call.args.is_empty()
            && matches!(&*call.receiver, syn::Expr::Path(p) if p.path.is_ident(self.event))
        {
            self.found.push(call.method.span());
        }
        syn::visit::visit_expr_method_call(self, call);
    }
}

/// Task options without `background`.
fn check_task_options(args: &ReceiverArgs, errors: &mut Errors) {
    for key in &args.task.keys {
        errors.spanned(
            key,
            format!(
                "`{key}` is a task option: it applies to background receivers only; add \
                 `background` to run this receiver in a worker after the commit"
            ),
        );
    }
}

fn check_qualifiers(sig: &Signature, errors: &mut Errors) {
    if let syn::Safety::Unsafe(unsafety) = &sig.safety {
        errors.spanned(unsafety, "a receiver cannot be an `unsafe fn`");
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(abi, "a receiver uses the Rust ABI: remove the `extern`");
    }
}

fn check_generics(args: &ReceiverArgs, sig: &Signature, errors: &mut Errors) {
    for param in &sig.generics.params {
        match param {
            GenericParam::Lifetime(_) => {}
            GenericParam::Type(_) if args.signals.is_several() => {}
            GenericParam::Type(_) => errors.spanned(
                param,
                format!(
                    "a receiver of one signal cannot be generic: it takes that signal's event, `{}`",
                    expected_arg(args.signals.list[0].0, args.sender.as_ref())
                ),
            ),
            GenericParam::Const(_) => {
                errors.spanned(param, "a receiver cannot have const parameters")
            }
        }
    }
}

/// The argument's type, if there is exactly one typed argument (whether or not it is right: its
/// errors go to `errors`).
fn check_inputs<'f>(
    args: &ReceiverArgs,
    sig: &'f Signature,
    errors: &mut Errors,
) -> Option<&'f Type> {
    let mut typed = None;
    for (index, input) in sig.inputs.iter().enumerate() {
        match input {
            FnArg::Receiver(receiver) => errors.spanned(
                receiver,
                "a receiver is a free function, not a method: remove `self`",
            ),
            FnArg::Typed(pat) if index == 0 => typed = Some(&*pat.ty),
            FnArg::Typed(_) => {}
        }
    }
    if sig.inputs.len() > 1 {
        let extra: proc_macro2::TokenStream = sig
            .inputs
            .iter()
            .skip(1)
            .map(ToTokens::to_token_stream)
            .collect();
        errors.spanned(
            extra,
            format!(
                "a receiver takes exactly one argument, the event: `{}`; remove the others",
                example_fn(args)
            ),
        );
        return None;
    }
    if sig.inputs.is_empty() {
        errors.push(syn::Error::new(
            sig.paren_token.span.join(),
            format!(
                "a receiver takes one argument, the event: `{}`",
                example_fn(args)
            ),
        ));
    }
    let ty = typed?;
    if args.signals.is_several() {
        check_shared_arg(args, ty, errors);
    } else {
        check_event_arg(args, args.signals.list[0].0, ty, errors);
    }
    Some(ty)
}

/// The argument of a receiver of one signal: a reference (`&mut` for `pre_save`) to that signal's
/// event.
fn check_event_arg(args: &ReceiverArgs, signal: Signal, ty: &Type, errors: &mut Errors) {
    let sender = args.sender.as_ref();
    let expected = expected_arg(signal, sender);
    let Type::Reference(reference) = peel(ty) else {
        let by = if signal.lends_mut() {
            "mutable reference"
        } else {
            "reference"
        };
        errors.spanned(
            ty,
            format!(
                "a `{}` receiver takes its event by {by}: `{expected}`",
                signal.name()
            ),
        );
        return;
    };
    match (signal.lends_mut(), reference.mutability.is_some()) {
        (true, false) => {
            errors.spanned(
                ty,
                format!(
                    "a `pre_save` receiver takes its event by mutable reference, `{expected}`: \
                     it may change the instance before it is written"
                ),
            );
            return;
        }
        (false, true) => {
            errors.spanned(
                ty,
                format!(
                    "a `{}` receiver takes its event by shared reference, `{expected}`, not `&mut`: \
                     only `pre_save` receivers may change the instance",
                    signal.name()
                ),
            );
            return;
        }
        _ => {}
    }
    let event = peel(&reference.elem);
    if let Type::ImplTrait(_) = event {
        errors.spanned(
            event,
            format!(
                "a receiver of one signal takes that signal's event, `{expected}`, not `impl Trait`"
            ),
        );
        return;
    }
    let Some(named) = EventName::of(event) else {
        // An alias or a path this check does not know: the type checker decides.
        return;
    };
    if named.signal != signal {
        errors.spanned(
            event,
            format!(
                "a `{}` receiver takes `{expected}`, not `{}`",
                signal.name(),
                named.written
            ),
        );
    } else if let (true, Some(sender)) = (named.every_sender, sender) {
        errors.spanned(
            event,
            format!(
                "`{}` is the event of receivers for every sender, but this receiver has \
                 `sender = {}`: take `{expected}`, or remove `sender` to receive every model",
                named.written,
                type_text(sender)
            ),
        );
    } else if let (false, None, Some(model)) = (named.every_sender, sender, named.model) {
        errors.spanned(
            event,
            format!(
                "this receiver takes `{}<'_, {model}>` but has no `sender`, so it would be \
                 connected for every model: add `sender = {model}` to the attribute, or take `{}` \
                 to receive every model",
                named.written,
                expected_arg(signal, None)
            ),
        );
    }
}

/// The argument of a receiver of several signals: `&E`, where no listed signal's event is named.
fn check_shared_arg(args: &ReceiverArgs, ty: &Type, errors: &mut Errors) {
    let list = signal_list(args);
    let reference = match peel(ty) {
        Type::Reference(reference) if reference.mutability.is_none() => reference,
        _ => {
            errors.spanned(
                ty,
                format!(
                    "a receiver of several signals takes the event by shared reference, `&E`, \
                     with `E` a type parameter: every signal of `{list}` lends it shared \
                     (`pre_save` too, when it is listed with others)"
                ),
            );
            return;
        }
    };
    let event = peel(&reference.elem);
    if let Some(named) = EventName::of(event) {
        errors.spanned(
            event,
            format!(
                "each signal of `{list}` sends its own event type, so a receiver of all of them \
                 cannot take `{}`: make it generic over the event \
                 (`fn audit<E: std::fmt::Debug>(event: &E)`, or a trait of yours implemented by \
                 each event), or declare one receiver per signal",
                named.written
            ),
        );
    }
}

/// An event type recognised by its name (`PostSave<'_, Book>`, `PostSaveAny<'_>`).
struct EventName {
    signal: Signal,
    /// `PreSaveAny` / `PostSaveAny`, or an explicit `dyn ...` model.
    every_sender: bool,
    /// The name as written (`PostSave`).
    written: String,
    /// The model, when it is a plain path (`Book` in `PostSave<'_, Book>`).
    model: Option<String>,
}

impl EventName {
    fn of(ty: &Type) -> Option<EventName> {
        let Type::Path(path) = ty else { return None };
        if path.qself.is_some() {
            return None;
        }
        let last = path.path.segments.last()?;
        let written = last.ident.to_string();
        let (signal, alias) = match written.as_str() {
            "PreSaveAny" => (Signal::PreSave, true),
            "PostSaveAny" => (Signal::PostSave, true),
            name => (Signal::ALL.into_iter().find(|s| s.event() == name)?, false),
        };
        let model_arg = match &last.arguments {
            PathArguments::AngleBracketed(generics) => generics.args.iter().find_map(|a| match a {
                GenericArgument::Type(ty) => Some(peel(ty)),
                _ => None,
            }),
            _ => None,
        };
        let (every_sender, model) = match model_arg {
            _ if alias => (true, None),
            Some(Type::TraitObject(_)) => (true, None),
            Some(model @ Type::Path(_)) => (false, Some(type_text(model))),
            _ => (false, None),
        };
        Some(EventName {
            signal,
            every_sender,
            written,
            model,
        })
    }
}

/// `ty` without invisible groups and parentheses.
fn peel(ty: &Type) -> &Type {
    match ty {
        Type::Group(group) => peel(&group.elem),
        Type::Paren(paren) => peel(&paren.elem),
        other => other,
    }
}

/// The argument a receiver of `signal` takes, as an error message shows it.
pub(crate) fn expected_arg(signal: Signal, sender: Option<&Type>) -> String {
    let by = if signal.lends_mut() { "&mut " } else { "&" };
    let event = signal.event();
    match (sender, signal) {
        (Some(sender), _) => format!("{by}{event}<'_, {}>", type_text(sender)),
        (None, Signal::PreSave | Signal::PostSave) => format!("{by}{event}Any<'_>"),
        (None, _) => format!("{by}{event}<'_, dyn AnyModel>"),
    }
}

/// A receiver's signature, as an error message shows it.
fn example_fn(args: &ReceiverArgs) -> String {
    if args.signals.is_several() {
        "fn audit<E: std::fmt::Debug>(event: &E)".to_owned()
    } else {
        format!(
            "fn receiver(event: {})",
            expected_arg(args.signals.list[0].0, args.sender.as_ref())
        )
    }
}

fn signal_list(args: &ReceiverArgs) -> String {
    let names: Vec<&str> = args.signals.iter().map(Signal::name).collect();
    format!("[{}]", names.join(", "))
}

/// A type as source text (`crate::models::Book`, not `crate :: models :: Book`).
pub(crate) fn type_text(ty: &Type) -> String {
    let text = ty.to_token_stream().to_string();
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let glued = match c {
            ' ' => {
                let prev = out.chars().last();
                let next = chars.peek().copied();
                matches!(prev, Some(':' | '<' | '&' | '\''))
                    || matches!(next, Some(':' | '<' | '>' | ',' | ')'))
            }
            _ => false,
        };
        if !glued {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests;
