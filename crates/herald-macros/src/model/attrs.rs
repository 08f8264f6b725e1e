//! Reading `#[model(...)]` attributes as written. Syntax only: what the values mean (valid names,
//! which field is the key) is decided in [`validate`](super::validate).
//!
//! ```text
//! on the struct:  #[model( struct_opt ( "," struct_opt )* ","? )]
//! struct_opt  := "table" "=" STRING | "name" "=" STRING | "crate" "=" Path
//! on a field:     #[model( field_opt ( "," field_opt )* ","? )]
//! field_opt   := "primary_key" | "auto" ( "=" BOOL )? | "column" "=" STRING
//! ```
//!
//! Each option may be given once per item, across any number of `#[model]` attributes.

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Attribute, LitBool, LitStr, Path, Token};

use super::Errors;

const STRUCT_KEYS: &str = "`table`, `name` or `crate`";
const FIELD_KEYS: &str = "`primary_key`, `auto` or `column`";

/// The options on the struct.
#[derive(Default)]
pub(super) struct StructAttrs {
    /// `table = ".."`.
    pub(super) table: Option<LitStr>,
    /// `name = ".."`.
    pub(super) name: Option<LitStr>,
    /// `crate = path`: where `herald` is.
    pub(super) krate: Option<Path>,
}

/// The options on one field.
#[derive(Default)]
pub(super) struct FieldAttrs {
    /// `primary_key`, with the span of the word.
    pub(super) primary_key: Option<Span>,
    /// `auto` (true) or `auto = <bool>`, with the span of the word.
    pub(super) auto: Option<(bool, Span)>,
    /// `column = ".."`.
    pub(super) column: Option<LitStr>,
}

/// The struct's `#[model(...)]` options. A malformed option is kept in `errors`, and so are the
/// options before it in its attribute.
pub(super) fn struct_attrs(attrs: &[Attribute], errors: &mut Errors) -> StructAttrs {
    let mut out = StructAttrs::default();
    for attr in model_attrs(attrs) {
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("table") {
                set_once(&mut out.table, meta.value()?.parse()?, &meta)
            } else if meta.path.is_ident("name") {
                set_once(&mut out.name, meta.value()?.parse()?, &meta)
            } else if meta.path.is_ident("crate") {
                let path = meta.value()?.call(Path::parse_mod_style)?;
                set_once(&mut out.krate, path, &meta)
            } else if is_any(&meta, &["primary_key", "auto", "column"]) {
                Err(meta.error(format_args!(
                    "`{}` goes on a field, not on the struct; the struct takes {STRUCT_KEYS}",
                    path_text(&meta.path)
                )))
            } else {
                Err(meta.error(format_args!(
                    "unknown `model` option `{}`: expected {STRUCT_KEYS}",
                    path_text(&meta.path)
                )))
            }
        });
        if let Err(e) = parsed {
            errors.push(e);
        }
    }
    out
}

/// One field's `#[model(...)]` options. A malformed option is kept in `errors`, and so are the
/// options before it in its attribute (a `primary_key` before a typo still marks the key).
pub(super) fn field_attrs(attrs: &[Attribute], errors: &mut Errors) -> FieldAttrs {
    let mut out = FieldAttrs::default();
    for attr in model_attrs(attrs) {
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("primary_key") {
                no_value(&meta)?;
                set_once(&mut out.primary_key, meta.path.span(), &meta)
            } else if meta.path.is_ident("auto") {
                let on = if meta.input.peek(Token![=]) {
                    meta.value()?.parse::<LitBool>()?.value
                } else {
                    true
                };
                set_once(&mut out.auto, (on, meta.path.span()), &meta)
            } else if meta.path.is_ident("column") {
                set_once(&mut out.column, meta.value()?.parse()?, &meta)
            } else if is_any(&meta, &["table", "name", "crate"]) {
                Err(meta.error(format_args!(
                    "`{}` goes on the struct, not on a field; a field takes {FIELD_KEYS}",
                    path_text(&meta.path)
                )))
            } else {
                Err(meta.error(format_args!(
                    "unknown `model` option `{}`: expected {FIELD_KEYS}",
                    path_text(&meta.path)
                )))
            }
        });
        if let Err(e) = parsed {
            errors.push(e);
        }
    }
    out
}

fn model_attrs(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs.iter().filter(|a| a.path().is_ident("model"))
}

fn set_once<T>(slot: &mut Option<T>, value: T, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if slot.is_some() {
        return Err(meta.error(format_args!("`{}` is given twice", path_text(&meta.path))));
    }
    *slot = Some(value);
    Ok(())
}

fn no_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) || !(meta.input.is_empty() || meta.input.peek(Token![,])) {
        return Err(meta.error(format_args!(
            "`{}` takes no value: write `#[model({})]`",
            path_text(&meta.path),
            path_text(&meta.path)
        )));
    }
    Ok(())
}

fn is_any(meta: &ParseNestedMeta<'_>, keys: &[&str]) -> bool {
    keys.iter().any(|k| meta.path.is_ident(k))
}

fn path_text(path: &Path) -> String {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    let joined = segments.join("::");
    if path.leading_colon.is_some() {
        format!("::{joined}")
    } else {
        joined
    }
}
