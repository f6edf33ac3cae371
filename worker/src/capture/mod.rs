//! TODO: not yet written.

pub mod summary;
