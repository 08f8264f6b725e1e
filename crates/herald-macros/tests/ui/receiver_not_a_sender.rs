use herald_dispatch::{PostSave, Result};
use herald_macros::receiver;

#[receiver(post_save, sender = String, crate = herald_dispatch)]
fn index(event: &PostSave<'_, String>) -> Result {
    let _ = event;
    Ok(())
}

fn main() {}
