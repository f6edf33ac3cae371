//! The `[study]` section: the study's name and its vignette file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::{Checker, ConfigError};
use crate::store::MAX_ID_LEN;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudySection {
    /// Identifier used in object keys: `[A-Za-z0-9_-]+`.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The vignette file (JSON, or TOML when the name ends in `.toml`).
    /// Relative paths are resolved against the config file's folder.
    pub vignettes: PathBuf,
}

impl StudySection {
    pub(crate) fn validate(&self, check: &Checker) -> Result<(), ConfigError> {
        check_identifier(check, "study.name", &self.name)
    }
}

/// Returns whether `text` is 1 to [`MAX_ID_LEN`] ASCII letters, digits, `_`
/// and `-`: one safe segment of an object key, and a safe column name. The
/// store's [`crate::store::StudyId`] and [`crate::store::ModelId`] accept
/// the same.
pub fn is_identifier(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_ID_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub(crate) fn check_identifier(check: &Checker, key: &str, value: &str) -> Result<(), ConfigError> {
    if is_identifier(value) {
        return Ok(());
    }
    let suggestion: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(MAX_ID_LEN)
        .collect();
    let suggestion = if suggestion.is_empty() {
        "my-study".to_string()
    } else {
        suggestion
    };
    Err(check.invalid(
        key,
        format!("{value:?}"),
        format!("use 1 to {MAX_ID_LEN} ASCII letters, digits, '_' and '-', such as {suggestion:?}"),
    ))
}
