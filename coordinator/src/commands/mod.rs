//! One module per `gaze` subcommand.

pub mod export;
pub mod plan;
pub mod run;
pub mod run_summary;
