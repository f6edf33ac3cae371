//! TODO: not yet written.
pub mod export;
