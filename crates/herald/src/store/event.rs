//! How receivers reach the connection their write runs on.

use herald_dispatch::{PostDelete, PostSave, PreDelete, PreSave};

use crate::error::{Error, Result};
use crate::store::conn::Conn;

/// The connection a store write lends its `in_transaction` receivers: `event.conn()?` in one gives
/// the [`Conn`] whose transaction the write is in; what the receiver writes with it commits or
/// rolls back with the write. Receivers of the other phases run away from the connection (on the
/// caller's task, or after the commit) and get [`Error::NoConnection`], which says to declare the
/// receiver `in_transaction`.
pub trait EventConn {
    /// The connection, or [`Error::NoConnection`] for an event not sent inside a write's
    /// transaction.
    fn conn(&self) -> Result<&Conn>;
}

macro_rules! event_conn {
    ($($event:ident),*) => {$(
        impl<M: ?Sized> EventConn for $event<'_, M> {
            fn conn(&self) -> Result<&Conn> {
                self.store::<Conn>().ok_or(Error::NoConnection)
            }
        }
    )*};
}
event_conn!(PreSave, PostSave, PreDelete, PostDelete);
