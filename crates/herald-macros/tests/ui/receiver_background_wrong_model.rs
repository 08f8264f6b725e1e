use herald::ReceiverResult;
use herald::tasks::TaskContext;
use herald_macros::receiver;
include!("support/models.rs");

#[receiver(post_save, sender = Book, background)]
async fn reindex(author: Author, ctx: TaskContext) -> ReceiverResult {
    let _ = (author, ctx);
    Ok(())
}

fn main() {}
