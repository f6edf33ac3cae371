//! One module per `gaze` subcommand, and the plain-text tables they print.

pub mod export;
pub mod plan;
pub mod run;
pub mod run_summary;
pub mod status;
pub mod study;
pub mod submit;
pub mod table;

#[cfg(test)]
mod queue_tests;
