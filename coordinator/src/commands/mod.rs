//! One module per `gaze` subcommand, and the plain-text tables they print.

pub mod status;
pub mod submit;
pub mod table;
