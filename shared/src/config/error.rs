//! Errors from loading and validating a study config.

use std::path::PathBuf;

/// Why a study config could not be loaded. Every message names the file,
/// the key and the value, and gives the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read study config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Invalid TOML, a missing key, a value of the wrong type, or a key that
    /// the schema does not have. `message` is the TOML parser's, which names
    /// the key, its line and column.
    #[error("invalid study config {path}: {message}")]
    Parse { path: PathBuf, message: String },

    #[error("invalid study config {path}: `{key}` = {value} is invalid: {reason}")]
    Invalid {
        path: PathBuf,
        key: String,
        value: String,
        reason: String,
    },

    /// A value from a command-line flag or an environment variable.
    #[error("invalid override {source_name} = {value}: {reason}")]
    InvalidOverride {
        /// The flag and its environment variable, such as `--batch-size / GAZE_BATCH_SIZE`.
        source_name: &'static str,
        value: String,
        reason: String,
    },
}

/// Collects the path and key of a config section so that each check can
/// build a [`ConfigError::Invalid`] in one line.
pub(crate) struct Checker<'a> {
    pub path: &'a std::path::Path,
}

impl Checker<'_> {
    /// Returns an error for `key` holding `value` (written as TOML would show it).
    pub fn invalid(
        &self,
        key: impl Into<String>,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            key: key.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}
