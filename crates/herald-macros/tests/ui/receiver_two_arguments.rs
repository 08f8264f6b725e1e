use herald_dispatch::{PostSave, Result};
use herald_macros::receiver;
include!("support/senders.rs");

#[receiver(post_save, sender = Book, crate = herald_dispatch)]
fn index(event: &PostSave<'_, Book>, index: &mut Vec<String>) -> Result {
    let _ = (event, index);
    Ok(())
}

fn main() {}
