//! One module per `gaze` subcommand, and the plain-text tables they print.

pub mod export;
pub mod plan;
pub mod run;
pub mod run_summary;
// TODO: drop the allow once main.rs offers `gaze submit` and `gaze status`.
#[allow(dead_code, unused_imports)]
pub mod status;
#[allow(dead_code)]
pub mod submit;
pub mod table;

#[cfg(test)]
mod queue_tests;
