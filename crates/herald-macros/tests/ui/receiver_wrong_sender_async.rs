use herald_dispatch::{PostSave, Result};
use herald_macros::receiver;
include!("support/senders.rs");

#[receiver(post_save, sender = Book, crate = herald_dispatch)]
async fn index(event: &PostSave<'_, Author>) -> Result {
    let _ = event;
    Ok(())
}

fn main() {}
