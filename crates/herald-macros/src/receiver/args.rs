//! Parsing `#[receiver(...)]`'s arguments into [`ReceiverArgs`]. Syntax, and what each option's
//! value may be on its own (`unique = "pk"`, `max_attempts >= 1`); how the options fit each other
//! and the function they sit on is checked in `validate.rs`.
//!
//! ```text
//! args    := signal ( "," option )* ","?
//! signal  := SIGNAL | "[" SIGNAL ( "," SIGNAL )* ","? "]"
//! SIGNAL  := "pre_save" | "post_save" | "pre_delete" | "post_delete"
//! option  := "sender" "=" Type
//!          | "priority" "=" "-"? INT              an i32
//!          | "dispatch_uid" "=" STRING
//!          | "name" "=" STRING                    not empty
//!          | "on_commit"
//!          | "in_transaction"
//!          | "blocking"
//!          | "crate" "=" Path
//!          | "background"
//!          | "unique" "=" "\"pk\""
//!          | "queue" "=" STRING                   not empty
//!          | "max_attempts" "=" INT               a u32, at least 1
//!          | "timeout_ms" "=" INT                 a u64, at least 1
//!          | "delay_ms" "=" INT                   a u64
//!          | "skip_raw"
//!          | "on" "=" ( "\"create\"" | "\"update\"" )
//!          | "when_changed" "=" "[" STRING ( "," STRING )* ","? "]"   not empty, no repeats
//!          | "changes"
//! ```
//!
//! Each option may be given once. `unique`, `queue`, `max_attempts`, `timeout_ms`, `delay_ms` and
//! `skip_raw` are the task options of a durable background receiver (`background`); `validate.rs` rejects them
//! without it.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Ident, LitInt, LitStr, Path, Token, Type, bracketed};

/// One of the four model signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    PreSave,
    PostSave,
    PreDelete,
    PostDelete,
}

impl Signal {
    pub(crate) const ALL: [Signal; 4] = [
        Signal::PreSave,
        Signal::PostSave,
        Signal::PreDelete,
        Signal::PostDelete,
    ];

    /// The signal's name, as written in the attribute and as `Signals` names its method.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Signal::PreSave => "pre_save",
            Signal::PostSave => "post_save",
            Signal::PreDelete => "pre_delete",
            Signal::PostDelete => "post_delete",
        }
    }

    /// The event type the signal carries (`PreSave`, ...).
    pub(crate) fn event(self) -> &'static str {
        match self {
            Signal::PreSave => "PreSave",
            Signal::PostSave => "PostSave",
            Signal::PreDelete => "PreDelete",
            Signal::PostDelete => "PostDelete",
        }
    }

    /// Whether receivers get the event by `&mut` (they may change the instance before the write).
    pub(crate) fn lends_mut(self) -> bool {
        self == Signal::PreSave
    }

    /// Whether the signal has an on-commit phase.
    pub(crate) fn has_on_commit(self) -> bool {
        matches!(self, Signal::PostSave | Signal::PostDelete)
    }

    fn from_name(name: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// The signal argument: one signal, or a bracketed list of them.
#[derive(Debug)]
pub(crate) struct Signals {
    /// The signals in the order written, each with the span of its name. Never empty, no repeats.
    /// `[post_save]` is the same as `post_save`.
    pub(crate) list: Vec<(Signal, Span)>,
    /// The span of the whole list, brackets included, when the signals are bracketed.
    pub(crate) brackets: Option<Span>,
}

impl Signals {
    /// True when the function is declared for several signals (so it must take every one's event).
    pub(crate) fn is_several(&self) -> bool {
        self.list.len() > 1
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = Signal> + '_ {
        self.list.iter().map(|(signal, _)| *signal)
    }
}

/// `#[receiver(...)]`'s arguments, as written.
#[derive(Debug)]
pub(crate) struct ReceiverArgs {
    pub(crate) signals: Signals,
    /// `sender = Type`; `None`: every sender.
    pub(crate) sender: Option<Type>,
    /// `priority = N`.
    pub(crate) priority: Option<i32>,
    pub(crate) dispatch_uid: Option<LitStr>,
    pub(crate) name: Option<LitStr>,
    /// The span of `on_commit`, when given.
    pub(crate) on_commit: Option<Span>,
    /// The span of `in_transaction`, when given: the receiver runs on the write's connection,
    /// inside its transaction, and may use `e.conn()`.
    pub(crate) in_transaction: Option<Span>,
    /// The span of `blocking`, when given: a synchronous receiver that blocks its thread.
    pub(crate) blocking: Option<Span>,
    /// `crate = path`: where `herald-dispatch` is (`None`: `::herald::dispatch`); for a background
    /// receiver, where `herald` is (`None`: `::herald`).
    pub(crate) krate: Option<Path>,
    /// The span of `background`, when given: a durable background receiver.
    pub(crate) background: Option<Span>,
    /// The task options, which only a background receiver takes.
    pub(crate) task: TaskArgs,
    /// The condition (`post_save` only, checked in `validate.rs`).
    pub(crate) condition: ConditionArgs,
}

/// A `post_save` receiver's condition, as written.
#[derive(Debug, Default)]
pub(crate) struct ConditionArgs {
    /// `on = "create"` (true) or `on = "update"` (false), with the literal.
    pub(crate) on: Option<(bool, LitStr)>,
    /// `when_changed = [..]`: the field names, each with its span.
    pub(crate) when_changed: Vec<LitStr>,
    /// The span of `when_changed`'s brackets, when given.
    pub(crate) when_changed_span: Option<Span>,
    /// The span of `changes`, when given.
    pub(crate) changes: Option<Span>,
}

impl ConditionArgs {
    /// The first key of a condition given, for errors on signals that take none.
    pub(crate) fn first_span(&self) -> Option<Span> {
        self.on
            .as_ref()
            .map(|(_, lit)| lit.span())
            .or(self.when_changed_span)
            .or(self.changes)
    }
}

/// A background receiver's task options, as written; `None`: `TaskOptions`' default.
#[derive(Debug, Default)]
pub(crate) struct TaskArgs {
    /// The span of `"pk"` in `unique = "pk"`, when given.
    pub(crate) unique_pk: Option<Span>,
    /// `queue = "..."`, never empty.
    pub(crate) queue: Option<LitStr>,
    /// `max_attempts = N`, at least 1.
    pub(crate) max_attempts: Option<u32>,
    /// `timeout_ms = N`, at least 1.
    pub(crate) timeout_ms: Option<u64>,
    /// `delay_ms = N`.
    pub(crate) delay_ms: Option<u64>,
    /// The span of `skip_raw`, when given: raw saves (fixtures) enqueue nothing.
    pub(crate) skip_raw: Option<Span>,
    /// The key of each task option given, in the order written (for errors when `background` is
    /// missing).
    pub(crate) keys: Vec<Ident>,
}

/// The options the attribute accepts, as error messages list them.
const OPTIONS: [&str; 18] = [
    "sender",
    "priority",
    "dispatch_uid",
    "name",
    "on_commit",
    "in_transaction",
    "blocking",
    "crate",
    "background",
    "unique",
    "queue",
    "max_attempts",
    "timeout_ms",
    "delay_ms",
    "skip_raw",
    "on",
    "when_changed",
    "changes",
];

const SIGNAL_FIRST: &str = "expected the signal first: `#[receiver(post_save, sender = Book)]`; \
     the signal is one of `pre_save`, `post_save`, `pre_delete`, `post_delete`, \
     or a list such as `[post_save, post_delete]`";

impl Parse for ReceiverArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.is_empty() {
            return Err(syn::Error::new(Span::call_site(), SIGNAL_FIRST));
        }
        let signals = input.parse::<Signals>()?;
        let mut args = ReceiverArgs {
            signals,
            sender: None,
            priority: None,
            dispatch_uid: None,
            name: None,
            on_commit: None,
            in_transaction: None,
            blocking: None,
            krate: None,
            background: None,
            task: TaskArgs::default(),
            condition: ConditionArgs::default(),
        };
        while !input.is_empty() {
            input.parse::<Token![,]>()?;
            if input.is_empty() {
                break;
            }
            args.parse_option(input)?;
        }
        Ok(args)
    }
}

impl Parse for Signals {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(syn::token::Bracket) {
            let content;
            let brackets = bracketed!(content in input);
            let names = Punctuated::<Ident, Token![,]>::parse_terminated(&content)?;
            if names.is_empty() {
                return Err(syn::Error::new(
                    brackets.span.join(),
                    "expected at least one signal in the list: `[post_save, post_delete]`",
                ));
            }
            let mut list: Vec<(Signal, Span)> = Vec::with_capacity(names.len());
            for name in &names {
                let signal = signal_named(name)?;
                if list.iter().any(|(s, _)| *s == signal) {
                    return Err(syn::Error::new(
                        name.span(),
                        format!("`{}` is listed twice", signal.name()),
                    ));
                }
                list.push((signal, name.span()));
            }
            return Ok(Signals {
                list,
                brackets: Some(brackets.span.join()),
            });
        }
        if !input.peek(Ident::peek_any) {
            return Err(input.error(SIGNAL_FIRST));
        }
        let name = input.call(Ident::parse_any)?;
        if input.peek(Token![=]) || is_option(&name) {
            return Err(syn::Error::new(name.span(), SIGNAL_FIRST));
        }
        let signal = signal_named(&name)?;
        Ok(Signals {
            list: vec![(signal, name.span())],
            brackets: None,
        })
    }
}

impl ReceiverArgs {
    fn parse_option(&mut self, input: ParseStream<'_>) -> syn::Result<()> {
        let key = input.call(Ident::parse_any)?;
        let name = key.to_string();
        match name.as_str() {
            "sender" => {
                input.parse::<Token![=]>()?;
                let ty = input.parse::<Type>()?;
                set_once(&mut self.sender, ty, &key)
            }
            "priority" => {
                input.parse::<Token![=]>()?;
                let priority = parse_priority(input)?;
                set_once(&mut self.priority, priority, &key)
            }
            "dispatch_uid" => {
                input.parse::<Token![=]>()?;
                let uid = parse_string(input, &key)?;
                set_once(&mut self.dispatch_uid, uid, &key)
            }
            "name" => {
                input.parse::<Token![=]>()?;
                let lit = parse_string(input, &key)?;
                if lit.value().is_empty() {
                    return Err(syn::Error::new(
                        lit.span(),
                        "a receiver's name cannot be empty; leave `name` out for the default",
                    ));
                }
                set_once(&mut self.name, lit, &key)
            }
            "on_commit" => {
                let span = parse_flag(input, &key)?;
                set_once(&mut self.on_commit, span, &key)
            }
            "in_transaction" => {
                let span = parse_flag(input, &key)?;
                set_once(&mut self.in_transaction, span, &key)
            }
            "blocking" => {
                let span = parse_flag(input, &key)?;
                set_once(&mut self.blocking, span, &key)
            }
            "crate" => {
                input.parse::<Token![=]>()?;
                let path = input.call(Path::parse_mod_style)?;
                set_once(&mut self.krate, path, &key)
            }
            "background" => {
                let span = parse_flag(input, &key)?;
                set_once(&mut self.background, span, &key)
            }
            "unique" => {
                input.parse::<Token![=]>()?;
                if !input.peek(LitStr) {
                    return Err(input.error(
                        "expected `unique = \"pk\"`: pending tasks for the same row run once",
                    ));
                }
                let lit = input.parse::<LitStr>()?;
                if lit.value() != "pk" {
                    return Err(syn::Error::new(
                        lit.span(),
                        format!(
                            "`unique` takes \"pk\" only, not {:?}: pending tasks of this receiver \
                             for the same primary key coalesce into one run",
                            lit.value()
                        ),
                    ));
                }
                set_once(&mut self.task.unique_pk, lit.span(), &key)?;
                self.task.keys.push(key);
                Ok(())
            }
            "queue" => {
                input.parse::<Token![=]>()?;
                let lit = parse_string(input, &key)?;
                if lit.value().is_empty() {
                    return Err(syn::Error::new(
                        lit.span(),
                        "a queue's name cannot be empty; leave `queue` out for `\"default\"`",
                    ));
                }
                set_once(&mut self.task.queue, lit, &key)?;
                self.task.keys.push(key);
                Ok(())
            }
            "max_attempts" => {
                input.parse::<Token![=]>()?;
                let (attempts, lit) = parse_unsigned::<u32>(input, &key, "u32", "5")?;
                if attempts == 0 {
                    return Err(syn::Error::new(
                        lit.span(),
                        "a task makes at least one attempt: `max_attempts` is at least 1",
                    ));
                }
                set_once(&mut self.task.max_attempts, attempts, &key)?;
                self.task.keys.push(key);
                Ok(())
            }
            "timeout_ms" => {
                input.parse::<Token![=]>()?;
                let (timeout, lit) = parse_unsigned::<u64>(input, &key, "u64", "30_000")?;
                if timeout == 0 {
                    return Err(syn::Error::new(
                        lit.span(),
                        "an attempt needs time to run: `timeout_ms` is at least 1 \
                         (leave it out for the default, 60 s)",
                    ));
                }
                set_once(&mut self.task.timeout_ms, timeout, &key)?;
                self.task.keys.push(key);
                Ok(())
            }
            "delay_ms" => {
                input.parse::<Token![=]>()?;
                let (delay, _) = parse_unsigned::<u64>(input, &key, "u64", "1_000")?;
                set_once(&mut self.task.delay_ms, delay, &key)?;
                self.task.keys.push(key);
                Ok(())
            }
            "skip_raw" => {
                let span = parse_flag(input, &key)?;
                set_once(&mut self.task.skip_raw, span, &key)?;
                self.task.keys.push(key);
                Ok(())
            }
            "on" => {
                input.parse::<Token![=]>()?;
                let lit = parse_string(input, &key)?;
                let create = match lit.value().as_str() {
                    "create" => true,
                    "update" => false,
                    other => {
                        return Err(syn::Error::new(
                            lit.span(),
                            format!(
                                "`on` takes \"create\" or \"update\", not {other:?}: the \
                                 receiver is called only for writes that inserted a row, or only \
                                 for writes that updated one"
                            ),
                        ));
                    }
                };
                set_once(&mut self.condition.on, (create, lit), &key)
            }
            "when_changed" => {
                input.parse::<Token![=]>()?;
                if !input.peek(syn::token::Bracket) {
                    return Err(input.error(
                        "expected a list of field names: `when_changed = [\"price_cents\"]`",
                    ));
                }
                let content;
                let brackets = bracketed!(content in input);
                let names = Punctuated::<LitStr, Token![,]>::parse_terminated(&content)?;
                if names.is_empty() {
                    return Err(syn::Error::new(
                        brackets.span.join(),
                        "`when_changed` needs at least one field name: \
                         `when_changed = [\"price_cents\"]`",
                    ));
                }
                let mut list: Vec<LitStr> = Vec::with_capacity(names.len());
                for name in names {
                    if list.iter().any(|n| n.value() == name.value()) {
                        return Err(syn::Error::new(
                            name.span(),
                            format!("`{}` is listed twice", name.value()),
                        ));
                    }
                    list.push(name);
                }
                set_once(
                    &mut self.condition.when_changed_span,
                    brackets.span.join(),
                    &key,
                )?;
                self.condition.when_changed = list;
                Ok(())
            }
            "changes" => {
                let span = parse_flag(input, &key)?;
                set_once(&mut self.condition.changes, span, &key)
            }
            signal if Signal::from_name(signal).is_some() => Err(syn::Error::new(
                key.span(),
                "a receiver has one signal argument, written first; \
                 to receive several signals, list them: `#[receiver([post_save, post_delete], ...)]`",
            )),
            unknown => Err(syn::Error::new(
                key.span(),
                format!(
                    "unknown option `{unknown}`{}; expected one of {}",
                    did_you_mean(unknown, &OPTIONS),
                    quoted_list(&OPTIONS)
                ),
            )),
        }
    }
}

fn is_option(name: &Ident) -> bool {
    OPTIONS.contains(&name.to_string().as_str())
}

fn signal_named(name: &Ident) -> syn::Result<Signal> {
    let text = name.to_string();
    Signal::from_name(&text).ok_or_else(|| {
        let names = Signal::ALL.map(Signal::name);
        syn::Error::new(
            name.span(),
            format!(
                "unknown signal `{text}`{}; expected one of {}, or a list such as `[post_save, post_delete]`",
                did_you_mean(&text, &names),
                quoted_list(&names)
            ),
        )
    })
}

fn set_once<T>(slot: &mut Option<T>, value: T, key: &Ident) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new(
            key.span(),
            format!("`{key}` is given twice"),
        ));
    }
    *slot = Some(value);
    Ok(())
}

/// A flag option (`on_commit`, `background`): no value. The key's span.
fn parse_flag(input: ParseStream<'_>, key: &Ident) -> syn::Result<Span> {
    if input.peek(Token![=]) {
        return Err(syn::Error::new(
            key.span(),
            format!("`{key}` is a flag: write `{key}`, without a value"),
        ));
    }
    Ok(key.span())
}

fn parse_string(input: ParseStream<'_>, key: &Ident) -> syn::Result<LitStr> {
    if input.peek(LitStr) {
        input.parse()
    } else {
        Err(input.error(format!("expected a string literal: `{key} = \"...\"`")))
    }
}

/// `-`? INT, as an `i32`.
fn parse_priority(input: ParseStream<'_>) -> syn::Result<i32> {
    let minus = input.parse::<Option<Token![-]>>()?;
    if !input.peek(LitInt) {
        return Err(input
            .error("expected an integer: `priority = 10` (higher runs first; the default is 0)"));
    }
    let lit = input.parse::<LitInt>()?;
    if !matches!(lit.suffix(), "" | "i32") {
        return Err(syn::Error::new(
            lit.span(),
            "a priority is an `i32`: write it without a suffix",
        ));
    }
    let text = format!(
        "{}{}",
        if minus.is_some() { "-" } else { "" },
        lit.base10_digits()
    );
    let value = text.parse::<i32>().map_err(|_| {
        syn::Error::new(
            lit.span(),
            format!(
                "a priority is an `i32`, between {} and {}",
                i32::MIN,
                i32::MAX
            ),
        )
    })?;
    Ok(value)
}

/// A non-negative INT of type `T` (named `type_name`; `example` is a valid value), and its literal.
fn parse_unsigned<T>(
    input: ParseStream<'_>,
    key: &Ident,
    type_name: &str,
    example: &str,
) -> syn::Result<(T, LitInt)>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    if input.peek(Token![-]) {
        return Err(input.error(format!("`{key}` cannot be negative")));
    }
    if !input.peek(LitInt) {
        return Err(input.error(format!("expected an integer: `{key} = {example}`")));
    }
    let lit = input.parse::<LitInt>()?;
    if !(lit.suffix().is_empty() || lit.suffix() == type_name) {
        return Err(syn::Error::new(
            lit.span(),
            format!("`{key}` is a `{type_name}`: write it without a suffix"),
        ));
    }
    let value = lit.base10_parse::<T>().map_err(|_| {
        syn::Error::new(
            lit.span(),
            format!(
                "`{key}` is a `{type_name}`, and {} does not fit",
                lit.base10_digits()
            ),
        )
    })?;
    Ok((value, lit))
}

/// "`a`, `b` or `c`".
fn quoted_list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.concat(),
    }
}

/// " (did you mean `x`?)" when a candidate is within two edits of `word`, or is `word` with a
/// unit (`timeout` for `timeout_ms`), else "".
fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    candidates
        .iter()
        .map(|c| {
            let with_unit = c.strip_suffix("_ms") == Some(word);
            (if with_unit { 0 } else { edit_distance(word, c) }, c)
        })
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map_or(String::new(), |(_, c)| format!(" (did you mean `{c}`?)"))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests;
