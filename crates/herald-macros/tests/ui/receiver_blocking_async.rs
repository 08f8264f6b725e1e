use herald_dispatch::{PostSave, Result};
use herald_macros::receiver;
include!("support/senders.rs");

#[receiver(post_save, sender = Book, blocking, crate = herald_dispatch)]
async fn notify(event: &PostSave<'_, Book>) -> Result {
    let _ = event;
    Ok(())
}

fn main() {}
