use herald::prelude::*;
use herald::dispatch::Result;
include!("support/models.rs");

// A caller-side receiver runs away from the connection: `e.conn()` is for `in_transaction` ones.
#[receiver(post_save, sender = Book)]
fn audit(e: &PostSave<'_, Book>) -> Result {
    let _ = e.conn()?;
    Ok(())
}

fn main() {}
