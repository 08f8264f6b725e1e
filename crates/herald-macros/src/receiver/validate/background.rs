//! The checks of a durable background receiver (`#[receiver(post_save, background)]`): its
//! signal, its task options, and the `async fn(Model, TaskContext) -> ReceiverResult` shape a
//! worker calls.

use syn::{FnArg, GenericParam, ReturnType, Signature, Type};

use super::super::args::{ReceiverArgs, Signal};
use super::{CheckedTask, Errors, EventName, check_qualifiers, peel, signal_list, type_text};

/// Check a background receiver (`background` is given): its signal, its options, and that the
/// function is `async fn(Model, TaskContext) -> ReceiverResult` in shape.
pub(crate) fn check_background<'a>(
    args: &'a ReceiverArgs,
    sig: &'a Signature,
) -> syn::Result<CheckedTask<'a>> {
    let mut errors = Errors::default();
    let signal = check_background_signal(args, &mut errors);
    check_background_options(args, &mut errors);
    if signal.is_some() {
        super::check_condition(args, &mut errors);
    }
    check_qualifiers(sig, &mut errors);
    if sig.asyncness.is_none() {
        errors.spanned(
            sig.fn_token,
            format!(
                "a background receiver is an `async fn`: `{}`",
                example_task(args)
            ),
        );
    }
    for param in &sig.generics.params {
        match param {
            GenericParam::Lifetime(_) => {}
            GenericParam::Type(_) | GenericParam::Const(_) => errors.spanned(
                param,
                format!(
                    "a background receiver cannot be generic: it takes the instance of its \
                     sender by value, `{}`",
                    instance_text(args)
                ),
            ),
        }
    }
    let inputs = check_task_inputs(args, sig, &mut errors);
    let output = match &sig.output {
        ReturnType::Type(_, ty) => Some(&**ty),
        ReturnType::Default => {
            errors.spanned(
                sig,
                format!(
                    "a background receiver returns `ReceiverResult`: `{} {{ ... Ok(()) }}` \
                     (`Ok` completes the task; `Err` fails the attempt, retried until \
                     `max_attempts`)",
                    example_task(args)
                ),
            );
            None
        }
    };
    match (signal, args.sender.as_ref(), inputs, output) {
        (Some(signal), Some(sender), Some((instance, context)), Some(output)) => {
            errors.finish(CheckedTask {
                ident: &sig.ident,
                sender,
                signal,
                instance,
                context,
                output,
            })
        }
        _ => Err(errors
            .0
            .expect("a wrong signal, a missing sender, argument or return type was reported")),
    }
}

/// The one signal of a background receiver, if it is `post_save` or `post_delete`.
fn check_background_signal(args: &ReceiverArgs, errors: &mut Errors) -> Option<Signal> {
    if args.signals.is_several() {
        let span = args.signals.brackets.unwrap_or(args.signals.list[0].1);
        errors.push(syn::Error::new(
            span,
            format!(
                "a background receiver has one signal, `post_save` or `post_delete`, not `{}`: \
                 declare one background receiver per signal (each writes its own tasks)",
                signal_list(args)
            ),
        ));
        return None;
    }
    let (signal, span) = args.signals.list[0];
    if !signal.has_on_commit() {
        errors.push(syn::Error::new(
            span,
            format!(
                "a background receiver runs on `post_save` or `post_delete`, not `{}`: its task \
                 runs in a worker after the commit, when the write can no longer be changed or \
                 vetoed",
                signal.name()
            ),
        ));
        return None;
    }
    Some(signal)
}

/// The options a background receiver needs (`sender`) and those it does not take.
fn check_background_options(args: &ReceiverArgs, errors: &mut Errors) {
    if args.sender.is_none() {
        let background = args.background.unwrap_or_else(proc_macro2::Span::call_site);
        errors.push(syn::Error::new(
            background,
            format!(
                "a background receiver needs `sender = Type`: its task rebuilds an instance of \
                 that model from the task row (`#[receiver({}, sender = Book, background)]`)",
                args.signals.list[0].0.name()
            ),
        ));
    }
    if let Some(on_commit) = args.on_commit {
        errors.push(syn::Error::new(
            on_commit,
            "`on_commit` does not apply to a background receiver: its task already runs after \
             the commit, in a worker",
        ));
    }
    if let Some(in_tx) = args.in_transaction {
        errors.push(syn::Error::new(
            in_tx,
            "`in_transaction` does not apply to a background receiver: its task row is already \
             written in the write's transaction, and the task runs in a worker after the commit",
        ));
    }
    if let Some(blocking) = args.blocking {
        errors.push(syn::Error::new(
            blocking,
            "`blocking` does not apply to a background receiver: its task runs in a worker, not \
             on the caller's task",
        ));
    }
    if let Some(uid) = &args.dispatch_uid {
        errors.spanned(
            uid,
            "`dispatch_uid` does not apply to a background receiver: its task kind (`name`, by \
             default the function's name) identifies it",
        );
    }
    if let Some(krate) = &args.krate {
        let last = krate.segments.last().map(|s| s.ident.to_string());
        if matches!(last.as_deref(), Some("dispatch" | "herald_dispatch")) {
            errors.spanned(
                krate,
                "for a background receiver, `crate` names the `herald` crate (its tasks need \
                 the store), not `herald-dispatch`: `crate = herald`, or leave it out for \
                 `::herald`",
            );
        }
    }
}

/// The instance by value, then the task context. The two arguments' types, if there are exactly
/// two typed arguments (whether or not they are right: their errors go to `errors`).
fn check_task_inputs<'f>(
    args: &ReceiverArgs,
    sig: &'f Signature,
    errors: &mut Errors,
) -> Option<(&'f Type, &'f Type)> {
    let mut typed = Vec::with_capacity(2);
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => errors.spanned(
                receiver,
                "a receiver is a free function, not a method: remove `self`",
            ),
            FnArg::Typed(pat) => typed.push(&*pat.ty),
        }
    }
    if let Some(instance) = typed.first() {
        check_instance_arg(args, instance, errors);
    }
    if let Some(Type::Reference(_)) = typed.get(1).map(|ty| peel(ty)) {
        errors.spanned(
            typed[1],
            "a background receiver takes the task context by value: `ctx: TaskContext`",
        );
    }
    if sig.inputs.len() != 2 {
        let message = format!(
            "a background receiver takes two arguments, the instance and the task context: `{}`",
            example_task(args)
        );
        if sig.inputs.is_empty() {
            errors.push(syn::Error::new(sig.paren_token.span.join(), message));
        } else {
            errors.spanned(&sig.inputs, message);
        }
    }
    match typed.as_slice() {
        [instance, context] => Some((instance, context)),
        _ => None,
    }
}

fn check_instance_arg(args: &ReceiverArgs, ty: &Type, errors: &mut Errors) {
    let instance = instance_text(args);
    match peel(ty) {
        Type::Reference(reference) => {
            let what = match EventName::of(peel(&reference.elem)) {
                Some(event) => format!("the event, `{}`", event.written),
                None => format!("`{}`", type_text(ty)),
            };
            errors.spanned(
                ty,
                format!(
                    "a background receiver takes the instance by value (it is rebuilt from the \
                     task row): `{instance}`, not {what}"
                ),
            );
        }
        Type::ImplTrait(_) => errors.spanned(
            ty,
            format!(
                "a background receiver takes the instance by value (it is rebuilt from the task \
                 row): `{instance}`, not `impl Trait`"
            ),
        ),
        _ => {}
    }
}

/// The instance type a background receiver takes, as an error message shows it.
fn instance_text(args: &ReceiverArgs) -> String {
    args.sender
        .as_ref()
        .map_or_else(|| "Book".to_owned(), type_text)
}

/// A background receiver's signature, as an error message shows it.
fn example_task(args: &ReceiverArgs) -> String {
    format!(
        "async fn receiver(instance: {}, ctx: TaskContext) -> ReceiverResult",
        instance_text(args)
    )
}
