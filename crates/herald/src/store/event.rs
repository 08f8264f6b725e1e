//! How receivers reach the connection their write runs on.

use herald_dispatch::{PostDelete, PostSave, PreDelete, PreSave};

use crate::error::{Error, Result};
use crate::store::conn::Conn;

/// The connection a store write lends its receivers: `event.conn()?` in a receiver gives the
/// [`Conn`] whose transaction the write is in; what the receiver writes with it commits or rolls
/// back with the write. (`on_commit` receivers get the connection after the commit, in autocommit
/// mode.)
pub trait EventConn {
    /// The connection, or [`Error::NoConnection`] for an event no store write sent.
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
