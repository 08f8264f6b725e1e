use herald_dispatch::{PostSave, Result};
use herald_macros::receiver;
include!("support/senders.rs");

#[receiver([post_save, post_delete], sender = Book, crate = herald_dispatch)]
fn invalidate(event: &PostSave<'_, Book>) -> Result {
    let _ = event;
    Ok(())
}

fn main() {}
