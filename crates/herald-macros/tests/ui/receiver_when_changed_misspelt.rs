use herald::ReceiverResult;
use herald::dispatch::PostSave;
use herald_macros::receiver;
include!("support/models.rs");

#[receiver(post_save, sender = Book, when_changed = ["title", "titel"])]
fn retitled(event: &PostSave<'_, Book>) -> ReceiverResult {
    let _ = event;
    Ok(())
}

fn main() {}
