use herald_dispatch::{PostSave, Result};
use herald_macros::receiver;
include!("support/senders.rs");

#[receiver(post_save, sender = Book, in_transaction, on_commit, crate = herald_dispatch)]
fn audit(event: &PostSave<'_, Book>) -> Result {
    let _ = event;
    Ok(())
}

fn main() {}
