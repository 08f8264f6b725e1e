use herald_dispatch::{PostSave, Result};
use herald_macros::receiver;
include!("support/senders.rs");

trait Described {
    fn describe(&self) -> String;
}

impl Described for PostSave<'_, Book> {
    fn describe(&self) -> String {
        "saved".to_owned()
    }
}

// `PostDelete<'_, Book>` does not implement `Described`.
#[receiver([post_save, post_delete], sender = Book, crate = herald_dispatch)]
fn invalidate<E: Described>(event: &E) -> Result {
    let _ = event.describe();
    Ok(())
}

fn main() {}
