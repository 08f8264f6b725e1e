use herald::ReceiverResult;
use herald::tasks::TaskContext;
use herald_macros::receiver;
include!("support/models.rs");

#[receiver(post_save, sender = Book, background)]
async fn reindex(book: Book, ctx: TaskContext) -> ReceiverResult {
    let shared = std::rc::Rc::new(book);
    ctx.progress(serde_json::json!({ "title": shared.title })).await?;
    drop(shared);
    Ok(())
}

fn main() {}
