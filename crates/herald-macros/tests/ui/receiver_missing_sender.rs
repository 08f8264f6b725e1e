use herald_dispatch::{PostSave, Result};
use herald_macros::receiver;
include!("support/senders.rs");

#[receiver(post_save, crate = herald_dispatch)]
fn index(event: &PostSave<'_, Book>) -> Result {
    let _ = event;
    Ok(())
}

fn main() {}
