use herald::ReceiverResult;
use herald::dispatch::PreSave;
use herald_macros::receiver;
include!("support/models.rs");

#[receiver(pre_save, sender = Book, on = "update")]
fn before_update(event: &mut PreSave<'_, Book>) -> ReceiverResult {
    let _ = event;
    Ok(())
}

fn main() {}
