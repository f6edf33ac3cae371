//! Subcommands of `gaze-worker` that have a file of their own.

pub mod serve;
