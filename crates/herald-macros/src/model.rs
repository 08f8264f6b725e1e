//! `#[derive(Model)]`: parse the struct and its `#[model(...)]` options, validate them into a
//! [`Model`], expand that to the `AnyModel`, `Sender` and `Model` impls.
//!
//! - [`attrs`] reads the options as written (syntax only);
//! - [`validate`] decides everything the impls need: the shape of the struct, the table, model and
//!   column names (checked identifiers), which field is the key and whether the database assigns it;
//! - [`expand`](mod@expand) writes the impls, and knows nothing about attributes.
//!
//! Every mistake is a spanned `syn::Error` pointing at what to change; independent mistakes (two bad
//! column names, a bad column name and a missing key) are reported together.

mod attrs;
mod expand;

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{
    Data, DeriveInput, Fields, FieldsNamed, GenericArgument, Generics, Ident, LitStr,
    PathArguments, PathSegment, Type,
};

use attrs::FieldAttrs;

/// The derive's entry point: tokens of the struct in, the impls out.
pub(crate) fn expand(input: TokenStream) -> syn::Result<TokenStream> {
    let input: DeriveInput = syn::parse2(input)?;
    let model = validate(&input)?;
    Ok(expand::impls(&model))
}

/// A struct that can be a model, with every decision made.
struct Model {
    /// The struct.
    ident: Ident,
    /// The struct's visibility, which its column constants share.
    vis: syn::Visibility,
    /// `Sender::NAME` (default: the struct's name).
    name: String,
    /// `Model::TABLE`, a checked identifier (default: the struct's name in snake_case).
    table: String,
    /// Where `herald` is (default: `::herald`).
    krate: TokenStream,
    /// Every field, in declaration (= column) order.
    fields: Vec<ModelField>,
    /// The key's index in `fields`.
    pk: usize,
    /// `Model::AUTO_PK`.
    auto_pk: bool,
    /// Where an explicit `#[model(auto)]` was written: its type is then checked at compile time
    /// (an `Option<i64>` key needs no check).
    auto_span: Option<Span>,
}

/// One field, which is one column.
struct ModelField {
    member: Ident,
    ty: Type,
    /// A checked identifier (default: the field's name).
    column: String,
}

/// Mistakes found so far, reported together.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// `result`'s value, or (having kept its error) a placeholder to go on checking with.
    fn or_default<T: Default>(&mut self, result: syn::Result<T>) -> T {
        result.unwrap_or_else(|e| {
            self.push(e);
            T::default()
        })
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// Every decision the impls need, or every mistake found (except that a struct of the wrong shape
/// or with generics stops at that).
fn validate(input: &DeriveInput) -> syn::Result<Model> {
    let named = named_fields(input)?;
    reject_generics(&input.generics)?;
    let mut errors = Errors::default();
    let options = attrs::struct_attrs(&input.attrs, &mut errors);
    let table = errors.or_default(table_name(&input.ident, options.table.as_ref()));
    let name = errors.or_default(model_name(&input.ident, options.name.as_ref()));
    let krate = match &options.krate {
        Some(path) => quote!(#path),
        None => quote!(::herald),
    };

    let mut fields = Vec::with_capacity(named.named.len());
    let mut field_options = Vec::with_capacity(named.named.len());
    for field in &named.named {
        let options = attrs::field_attrs(&field.attrs, &mut errors);
        let member = field
            .ident
            .clone()
            .expect("the fields of a struct with named fields have names");
        fields.push(ModelField {
            column: errors.or_default(column_name(&member, options.column.as_ref())),
            member,
            ty: field.ty.clone(),
        });
        field_options.push(options);
    }
    check_unique_columns(&fields, &field_options, &mut errors);
    let (pk, auto_pk, auto_span) = primary_key(input, &fields, &field_options, &mut errors);

    errors.finish()?;
    Ok(Model {
        ident: input.ident.clone(),
        vis: input.vis.clone(),
        name,
        table,
        krate,
        fields,
        pk,
        auto_pk,
        auto_span,
    })
}

/// `table = ".."`, or the struct's name in snake_case; a checked identifier either way.
fn table_name(ident: &Ident, option: Option<&LitStr>) -> syn::Result<String> {
    match option {
        Some(lit) => {
            sql_ident(lit.value(), "table").map_err(|reason| syn::Error::new(lit.span(), reason))
        }
        None => {
            let struct_name = ident.unraw().to_string();
            sql_ident(snake_case(&struct_name), "table").map_err(|reason| {
                let how = "so set one with `#[model(table = \"...\")]`";
                let message =
                    format!("{reason}; it comes from the struct's name `{struct_name}`, {how}");
                syn::Error::new(ident.span(), message)
            })
        }
    }
}

/// `name = ".."`, or the struct's name.
fn model_name(ident: &Ident, option: Option<&LitStr>) -> syn::Result<String> {
    match option {
        Some(lit) if lit.value().trim().is_empty() => Err(syn::Error::new(
            lit.span(),
            "the model's name cannot be empty",
        )),
        Some(lit) => Ok(lit.value()),
        None => Ok(ident.unraw().to_string()),
    }
}

/// `column = ".."`, or the field's name; a checked identifier either way.
fn column_name(member: &Ident, option: Option<&LitStr>) -> syn::Result<String> {
    match option {
        Some(lit) => {
            sql_ident(lit.value(), "column").map_err(|reason| syn::Error::new(lit.span(), reason))
        }
        None => sql_ident(member.unraw().to_string(), "column").map_err(|reason| {
            let how = "so set one with `#[model(column = \"...\")]`";
            let message = format!("{reason}; it comes from the field's name, {how}");
            syn::Error::new(member.span(), message)
        }),
    }
}

/// An error at each column name already used by an earlier field. (Columns that failed their own
/// check are empty, and skipped.)
fn check_unique_columns(fields: &[ModelField], options: &[FieldAttrs], errors: &mut Errors) {
    let mut seen: HashMap<&str, &Ident> = HashMap::new();
    for (field, options) in fields.iter().zip(options) {
        if field.column.is_empty() {
            continue;
        }
        if let Some(other) = seen.insert(&field.column, &field.member) {
            let span = options
                .column
                .as_ref()
                .map_or(field.member.span(), LitStr::span);
            errors.push(syn::Error::new(
                span,
                format!(
                    "duplicate column `{}`: field `{}` already uses it",
                    field.column,
                    other.unraw()
                ),
            ));
        }
    }
}

/// (`PK`, `AUTO_PK`, where an explicit `auto` was written): the one field marked `primary_key`,
/// else the field named `id`.
fn primary_key(
    input: &DeriveInput,
    fields: &[ModelField],
    options: &[FieldAttrs],
    errors: &mut Errors,
) -> (usize, bool, Option<Span>) {
    let mut marked = options
        .iter()
        .enumerate()
        .filter_map(|(index, o)| Some((index, o.primary_key?)));
    let pk = match marked.next() {
        Some((first, _)) => {
            for (_, span) in marked {
                errors.push(syn::Error::new(
                    span,
                    format!(
                        "a second primary key: `{}` is already the key, and a model has exactly \
                         one (composite keys are not supported)",
                        fields[first].member.unraw()
                    ),
                ));
            }
            first
        }
        None => fields
            .iter()
            .position(|f| f.member.unraw() == "id")
            .unwrap_or_else(|| {
                errors.push(syn::Error::new(
                    input.ident.span(),
                    format!(
                        "`{}` has no primary key: mark its key field `#[model(primary_key)]`, \
                         or name it `id`",
                        input.ident.unraw()
                    ),
                ));
                0
            }),
    };

    let mut auto_pk = fields.get(pk).is_some_and(|f| is_option_i64(&f.ty));
    let mut auto_span = None;
    for (index, options) in options.iter().enumerate() {
        let Some((on, span)) = options.auto else {
            continue;
        };
        if index == pk {
            auto_pk = on;
            auto_span = on.then_some(span);
        } else {
            errors.push(syn::Error::new(
                span,
                "`auto` applies to the primary key only: add `primary_key` here, or remove `auto`",
            ));
        }
    }
    (pk, auto_pk, auto_span)
}

/// The struct's named fields, or an error saying what else it is.
fn named_fields(input: &DeriveInput) -> syn::Result<&FieldsNamed> {
    const NEED: &str = "`#[derive(Model)]` needs a struct with named fields, one per column";
    match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => Ok(named),
            Fields::Unnamed(unnamed) => Err(syn::Error::new(
                unnamed.span(),
                format!("{NEED}: a tuple struct's fields have no names to use as columns"),
            )),
            Fields::Unit => Err(syn::Error::new(
                input.ident.span(),
                format!("{NEED}: a unit struct has no columns"),
            )),
        },
        Data::Enum(data) => Err(syn::Error::new(
            data.enum_token.span,
            format!("{NEED}, not an enum"),
        )),
        Data::Union(data) => Err(syn::Error::new(
            data.union_token.span,
            format!("{NEED}, not a union"),
        )),
    }
}

fn reject_generics(generics: &Generics) -> syn::Result<()> {
    const WHY: &str = "`#[derive(Model)]` does not support generic parameters or where clauses: \
                       a model is one concrete type stored in one table";
    if !generics.params.is_empty() {
        return Err(syn::Error::new_spanned(generics, WHY));
    }
    if let Some(clause) = &generics.where_clause {
        return Err(syn::Error::new_spanned(clause, WHY));
    }
    Ok(())
}

/// `name` if it is a table or column name Herald accepts: `[a-z_][a-z0-9_]*`. The SQL quotes it
/// anyway; the check keeps names portable and free of anything that would need escaping.
fn sql_ident(name: String, what: &str) -> Result<String, String> {
    let problem = match name.chars().next() {
        None => "it is empty".to_owned(),
        Some(c) if c.is_ascii_digit() => "it starts with a digit".to_owned(),
        Some(_) => match name
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
        {
            None => return Ok(name),
            Some(c) => format!("it contains {c:?}"),
        },
    };
    Err(format!(
        "invalid {what} name `{name}`: {problem}; table and column names are lowercase ASCII \
         letters, digits and `_`, not starting with a digit"
    ))
}

/// `BookAuthor` → `book_author`, `HTTPRequest` → `http_request`, `Isbn13Code` → `isbn13_code`.
fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let boundary = prev.is_some_and(|p| {
                p.is_lowercase() || p.is_ascii_digit() || (p.is_uppercase() && next_is_lower)
            });
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `ty` is written `Option<i64>` (also `std::option::Option<i64>`, `core::...`): the
/// syntax of a key the database assigns. A type alias is not seen through; use
/// `#[model(primary_key, auto)]` for it.
fn is_option_i64(ty: &Type) -> bool {
    let Some((prefix, last)) = plain_path(ty) else {
        return false;
    };
    let option_path =
        prefix.is_empty() || prefix == ["std", "option"] || prefix == ["core", "option"];
    if !option_path || last.ident != "Option" {
        return false;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return false;
    };
    match args.args.iter().collect::<Vec<_>>().as_slice() {
        [GenericArgument::Type(inner)] => plain_path(inner).is_some_and(|(prefix, last)| {
            last.ident == "i64"
                && last.arguments.is_none()
                && (prefix.is_empty()
                    || prefix == ["std", "primitive"]
                    || prefix == ["core", "primitive"])
        }),
        _ => false,
    }
}

/// A path type without a `qself` and without generic arguments before its last segment, as (the
/// names of the segments before the last, the last segment).
fn plain_path(ty: &Type) -> Option<(Vec<String>, &PathSegment)> {
    match ty {
        Type::Group(group) => plain_path(&group.elem),
        Type::Paren(paren) => plain_path(&paren.elem),
        Type::Path(path) if path.qself.is_none() => {
            let mut segments: Vec<&PathSegment> = path.path.segments.iter().collect();
            let last = segments.pop()?;
            if segments.iter().any(|s| !s.arguments.is_none()) {
                return None;
            }
            Some((segments.iter().map(|s| s.ident.to_string()).collect(), last))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
