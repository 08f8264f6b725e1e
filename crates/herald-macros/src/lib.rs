//! Herald's macros (placeholder until the receiver attribute lands).
