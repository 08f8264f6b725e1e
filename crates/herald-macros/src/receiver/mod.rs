//! `#[receiver]`: parse the arguments (`args`), check them and the function (`validate`), write the
//! registration (`expand`). An ordinary library: the proc-macro entry point only calls [`expand`].

mod args;
mod expand;
mod validate;

use proc_macro2::TokenStream;

/// Expand `#[receiver(attr)] item`: the function as written, then its link-time registration (one
/// per signal; for a background receiver, the enqueuing receiver and the task runner). An `Err` is
/// a spanned error for the caller to turn into `compile_error!`.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let args = syn::parse2::<args::ReceiverArgs>(attr)?;
    let function = syn::parse2::<syn::ItemFn>(item.clone()).map_err(|error| {
        syn::Error::new(
            error.span(),
            "`#[receiver]` goes on a free function with a body: `fn` or `async fn`",
        )
    })?;
    if args.background.is_some() {
        let checked = validate::check_background(&args, &function.sig)?;
        return Ok(expand::background(&args, &checked, item));
    }
    let checked = validate::check(&args, &function.sig)?;
    validate::check_connection_use(&args, &function)?;
    Ok(expand::expand(&args, &checked, item))
}
