use std::rc::Rc;

use herald_dispatch::{PreSave, Result};
use herald_macros::receiver;
include!("support/senders.rs");

// Caller-side receivers are awaited inside `db.save(..)`, which must stay `Send` (axum handlers,
// `tokio::spawn`): a receiver's future that holds an `Rc` across an `.await` cannot be one.
#[receiver(pre_save, sender = Book, crate = herald_dispatch)]
async fn counts(event: &mut PreSave<'_, Book>) -> Result {
    let shared = Rc::new(0);
    std::future::ready(()).await;
    let _ = (event, shared);
    Ok(())
}

fn main() {}
