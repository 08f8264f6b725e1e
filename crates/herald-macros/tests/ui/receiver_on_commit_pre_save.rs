use herald_dispatch::{PreSave, Result};
use herald_macros::receiver;
include!("support/senders.rs");

#[receiver(pre_save, sender = Book, on_commit, crate = herald_dispatch)]
fn slugify(event: &mut PreSave<'_, Book>) -> Result {
    let _ = event;
    Ok(())
}

fn main() {}
