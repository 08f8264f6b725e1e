//! Herald's macros: `#[receiver]`, which declares a model-signal receiver that
//! `Signals::builder().autodiscover()` connects at start-up.
//!
//! Applications use them through the `herald` facade (`herald::receiver`); this crate is the thin
//! proc-macro layer. Each entry point only hands its tokens to an ordinary module (`receiver/` for
//! `#[receiver]`: `args.rs` parses, `validate.rs` checks, `expand.rs` writes the registration) that
//! is unit-tested like any library. Every mistake is a spanned compile error pointing at it, never a
//! panic; `tests/ui` pins the messages.
//!
//! See [`macro@receiver`] for the attribute's grammar, the receiver signatures it accepts, the
//! rule for several signals and what it expands to.

#![warn(missing_docs)]

use proc_macro::TokenStream;

mod model;
mod receiver;

#[doc = include_str!("docs/receiver.md")]
#[proc_macro_attribute]
pub fn receiver(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    match receiver::expand(attr.into(), item.clone()) {
        Ok(expanded) => expanded.into(),
        // Keep the function as written so that the only errors are ours (no "cannot find function"
        // at every direct call of it).
        Err(error) => {
            let mut out = item;
            out.extend(error.to_compile_error());
            out.into()
        }
    }
}

#[doc = include_str!("docs/model.md")]
#[proc_macro_derive(Model, attributes(model))]
pub fn derive_model(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    model::expand(input.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
