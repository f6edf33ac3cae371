//! One module per `gaze` subcommand.

pub mod plan;
