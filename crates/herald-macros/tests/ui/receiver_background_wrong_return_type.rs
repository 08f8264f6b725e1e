use herald::tasks::TaskContext;
use herald_macros::receiver;
include!("support/models.rs");

#[receiver(post_delete, sender = Book, background)]
async fn forget(book: Book, ctx: TaskContext) -> Result<(), String> {
    let _ = (book, ctx);
    Ok(())
}

fn main() {}
