use herald_dispatch::{PreSave, Result};
use herald_macros::receiver;
include!("support/senders.rs");

#[receiver(pre_save, sender = Book, crate = herald_dispatch)]
fn slugify(event: &PreSave<'_, Book>) -> Result {
    let _ = event;
    Ok(())
}

fn main() {}
