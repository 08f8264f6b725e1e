//! Writing a validated [`Model`] out as the `AnyModel`, `Sender` and `Model` impls.
//!
//! Every field's type is used only through `<T as herald::Field>`, spanned at the type as written,
//! so a type that is not a `Field` is a compile error at that field's type and nowhere else.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;

use super::Model;

/// Where the generated `to_json` finds `serde_json`: through `herald`, so the crate deriving
/// `Model` need not depend on it.
fn serde_json_path(krate: &TokenStream) -> TokenStream {
    quote!(#krate::__private::serde_json)
}

/// The three impls, plus a compile-time check of an explicit `auto` key's type.
pub(super) fn impls(model: &Model) -> TokenStream {
    let Model {
        ident,
        vis,
        name,
        table,
        krate,
        fields,
        pk,
        auto_pk,
        auto_span,
    } = model;
    let json = serde_json_path(&quote!(#krate));
    let n = fields.len();

    // `<T as herald::Field>`, spanned at `T`.
    let field_trait: Vec<TokenStream> = fields
        .iter()
        .map(|f| {
            let ty = &f.ty;
            quote_spanned!(ty.span()=> <#ty as #krate::Field>)
        })
        .collect();
    let members: Vec<_> = fields.iter().map(|f| &f.member).collect();
    let columns: Vec<_> = fields.iter().map(|f| f.column.as_str()).collect();
    let indices: Vec<_> = (0..n).collect();

    let pk_trait = &field_trait[*pk];
    let pk_member = members[*pk];

    let values: Vec<_> = (0..n).map(|i| format_ident!("__value_{i}")).collect();
    let expected = format!(
        "expected {n} column{}, got {{}}",
        if n == 1 { "" } else { "s" }
    );

    let auto_check = auto_span.map(|span| auto_check(model, &field_trait[*pk], span));
    let column_consts = column_consts(model, vis);

    quote! {
        #[automatically_derived]
        impl #krate::dispatch::AnyModel for #ident {
            fn model_name(&self) -> &'static str {
                <Self as #krate::dispatch::Sender>::NAME
            }

            fn pk_string(&self) -> ::core::option::Option<::std::string::String> {
                #krate::Model::pk_value(self).map(|key| ::std::string::ToString::to_string(&key))
            }

            fn to_json(&self) -> #json::Value {
                let mut object = #json::Map::with_capacity(#n);
                #(
                    object.insert(
                        ::std::string::String::from(#columns),
                        #krate::Value::into_json(#field_trait::to_value(&self.#members)),
                    );
                )*
                #json::Value::Object(object)
            }
        }

        #[automatically_derived]
        impl #krate::dispatch::Sender for #ident {
            const NAME: &'static str = #name;
            const FIELD_NAMES: &'static [&'static str] = &[#(#columns),*];

            fn sender_key() -> &'static #krate::dispatch::SenderKey {
                static KEY: #krate::dispatch::SenderKey = #krate::dispatch::SenderKey::new();
                &KEY
            }
        }

        #[automatically_derived]
        impl #krate::Model for #ident {
            const TABLE: &'static str = #table;
            const COLUMNS: &'static [#krate::Column] = &[
                #(
                    #krate::Column {
                        name: #columns,
                        sql_type: #field_trait::SQL_TYPE,
                        nullable: #field_trait::NULLABLE,
                    },
                )*
            ];
            const PK: usize = #pk;
            const AUTO_PK: bool = #auto_pk;

            fn pk_value(&self) -> ::core::option::Option<#krate::Value> {
                match #pk_trait::to_value(&self.#pk_member) {
                    #krate::Value::Null => ::core::option::Option::None,
                    key => ::core::option::Option::Some(key),
                }
            }

            fn set_pk_value(
                &mut self,
                key: #krate::Value,
            ) -> ::core::result::Result<(), ::std::string::String> {
                if ::core::matches!(key, #krate::Value::Null) {
                    return ::core::result::Result::Err(::std::string::String::from(
                        "a primary key cannot be NULL",
                    ));
                }
                self.#pk_member = #pk_trait::from_value(key)?;
                ::core::result::Result::Ok(())
            }

            /// The value of column `index`; `Value::Null` past the last column.
            fn value(&self, index: usize) -> #krate::Value {
                match index {
                    #( #indices => #field_trait::to_value(&self.#members), )*
                    _ => #krate::Value::Null,
                }
            }

            fn from_values(
                values: ::std::vec::Vec<#krate::Value>,
            ) -> ::core::result::Result<Self, (usize, ::std::string::String)> {
                let [#(#values),*] = <[#krate::Value; #n] as ::core::convert::TryFrom<
                    ::std::vec::Vec<#krate::Value>,
                >>::try_from(values)
                .map_err(|values| (values.len().min(#n), ::std::format!(#expected, values.len())))?;
                ::core::result::Result::Ok(Self {
                    #(
                        #members: #field_trait::from_value(#values)
                            .map_err(|reason| (#indices, reason))?,
                    )*
                })
            }

            fn statements() -> &'static #krate::Statements {
                static STATEMENTS: ::std::sync::OnceLock<#krate::Statements> =
                    ::std::sync::OnceLock::new();
                #krate::Statements::cached::<Self>(&STATEMENTS)
            }
        }

        #column_consts

        #auto_check
    }
}

/// One typed column constant per field, named after the field upper-cased (`price_cents` →
/// `Book::PRICE_CENTS`), with the struct's visibility: what queries name columns by, so that a
/// misspelt column does not compile.
fn column_consts(model: &Model, vis: &syn::Visibility) -> TokenStream {
    let ident = &model.ident;
    let krate = &model.krate;
    let consts = model.fields.iter().enumerate().map(|(index, field)| {
        let member = field.member.unraw();
        let name = format_ident!("{}", member.to_string().to_uppercase(), span = member.span());
        let ty = &field.ty;
        let column = field.column.as_str();
        let doc = format!(
            "The `{column}` column (`{ident}.{member}`), for queries: `{ident}::query().filter({ident}::{name}.eq(..))`."
        );
        quote! {
            #[doc = #doc]
            #[allow(dead_code)]
            #vis const #name: #krate::query::Col<#ident, #ty> =
                #krate::query::Col::new(#index, #column);
        }
    });
    quote! {
        #[automatically_derived]
        impl #ident {
            #( #consts )*
        }
    }
}

/// `#[model(primary_key, auto)]` promises a key the database assigns: `None` until the first save,
/// then an integer. Checked at compile time, pointing at `auto`, since only `Field` knows the type.
fn auto_check(model: &Model, pk_trait: &TokenStream, span: Span) -> TokenStream {
    let krate = &model.krate;
    let message = format!(
        "`{}.{}` is `#[model(auto)]`, so its type must be an `Option` of an integer type \
         (`None` until the database assigns the key)",
        model.ident, model.fields[model.pk].member
    );
    quote_spanned! {span=>
        const _: () = ::core::assert!(
            #pk_trait::NULLABLE
                && ::core::matches!(#pk_trait::SQL_TYPE, #krate::SqlType::Int),
            #message
        );
    }
}
