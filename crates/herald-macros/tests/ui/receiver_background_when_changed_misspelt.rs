use herald::ReceiverResult;
use herald::tasks::TaskContext;
use herald_macros::receiver;
include!("support/models.rs");

#[receiver(post_save, sender = Book, background, when_changed = ["nmae"])]
async fn renamed(book: Book, ctx: TaskContext) -> ReceiverResult {
    let _ = (book, ctx);
    Ok(())
}

fn main() {}
