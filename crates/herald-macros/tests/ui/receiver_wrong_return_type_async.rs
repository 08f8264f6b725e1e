use herald_dispatch::PostSave;
use herald_macros::receiver;
include!("support/senders.rs");

#[receiver(post_save, sender = Book, crate = herald_dispatch)]
async fn index(event: &PostSave<'_, Book>) -> std::result::Result<(), String> {
    let _ = event;
    Ok(())
}

fn main() {}
