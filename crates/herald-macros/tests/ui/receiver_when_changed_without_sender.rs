use herald::ReceiverResult;
use herald::dispatch::PostSaveAny;
use herald_macros::receiver;

#[receiver(post_save, when_changed = ["title"])]
fn any_title(event: &PostSaveAny<'_>) -> ReceiverResult {
    let _ = event;
    Ok(())
}

fn main() {}
