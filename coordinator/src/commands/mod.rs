//! One module per `gaze` subcommand.

pub mod export;
pub mod plan;
