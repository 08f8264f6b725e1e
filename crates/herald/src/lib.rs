//! Herald.
pub use herald_dispatch as dispatch;
