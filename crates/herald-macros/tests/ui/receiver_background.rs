use herald_dispatch::{PostSave, Result};
use herald_macros::receiver;
include!("support/senders.rs");

#[receiver(post_save, sender = Book, background, queue = "mail", crate = herald_dispatch)]
fn send_welcome_mail(event: &PostSave<'_, Book>) -> Result {
    let _ = event;
    Ok(())
}

fn main() {}
