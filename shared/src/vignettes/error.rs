//! Errors from loading and validating a vignette file.

use std::path::PathBuf;

/// An error in a vignette file. Messages name the file, the topic and the
/// field where they apply, and give the fix.
#[derive(Debug, thiserror::Error)]
pub enum VignetteError {
    #[error("cannot read vignette file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Invalid JSON or TOML, a missing key or an unknown key; `message` is
    /// the parser's and names the key and its position.
    #[error("invalid vignette file {path}: {message}")]
    Parse { path: PathBuf, message: String },

    #[error("invalid vignette file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}
