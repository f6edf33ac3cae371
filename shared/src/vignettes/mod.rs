//! Vignettes: case templates per topic (an immigration route) and the pools
//! of values their `{field}` placeholders are drawn from.
//!
//! [`VignetteSet::load`] reads the JSON (or TOML) file described by
//! [`VignetteFile`] and validates it into topics whose pools are already
//! narrowed by the topic's restrictions.

mod agreement;
mod error;
mod file;
mod template;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use agreement::{Agreement, FieldRef, agrees};
pub use error::VignetteError;
pub use file::{Category, FieldSpec, PoolValue, Restriction, TopicSpec, VignetteFile};
pub use template::{Segment, Template, TemplateError, is_field_name};

/// Column names of the plan table that a field may not take.
pub const RESERVED_FIELD_NAMES: [&str; 8] = [
    "sample_id",
    "shard_id",
    "topic",
    "route",
    "cell",
    "prompt",
    "seed",
    "collect_attention",
];

/// A validated vignette file.
#[derive(Debug, Clone, PartialEq)]
pub struct VignetteSet {
    /// The file it was read from, for messages.
    pub source: PathBuf,
    /// SHA-256 of the file's bytes, lowercase hex.
    pub sha256: String,
    /// Topics in file order.
    pub topics: Vec<Topic>,
}

/// One topic with its template and every pool it may draw from.
#[derive(Debug, Clone, PartialEq)]
pub struct Topic {
    pub id: String,
    pub route: String,
    pub template: Template,
    /// Shared pools narrowed by the topic's restrictions, plus the topic's
    /// own pools, by field name. No pool is empty.
    pub pools: BTreeMap<String, Pool>,
}

/// The values one field may take in one topic, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub category: Category,
    pub values: Vec<PoolValue>,
    /// Empty unless the field must agree with other fields.
    pub agree: Vec<Agreement>,
}

impl VignetteSet {
    /// Reads and validates the vignette file at `path`: TOML when the name
    /// ends in `.toml`, JSON otherwise.
    pub fn load(path: &Path) -> Result<VignetteSet, VignetteError> {
        let bytes = std::fs::read(path).map_err(|source| VignetteError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let is_toml = path.extension().is_some_and(|ext| ext == "toml");
        VignetteSet::parse(&bytes, is_toml, path)
    }

    /// Parses and validates `bytes` as if read from `path`, which names the
    /// file in messages.
    pub fn parse(bytes: &[u8], is_toml: bool, path: &Path) -> Result<VignetteSet, VignetteError> {
        let parse_error = |message: String| VignetteError::Parse {
            path: path.to_path_buf(),
            message,
        };
        let file: VignetteFile = if is_toml {
            let text = std::str::from_utf8(bytes)
                .map_err(|err| parse_error(format!("not UTF-8: {err}")))?;
            toml::from_str(text)
                .map_err(|err| parse_error(err.to_string().trim_end().to_string()))?
        } else {
            serde_json::from_slice(bytes).map_err(|err| parse_error(err.to_string()))?
        };

        let topics = validate::validate(&file).map_err(|message| VignetteError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(VignetteSet {
            source: path.to_path_buf(),
            sha256: hex::encode(Sha256::digest(bytes)),
            topics,
        })
    }

    pub fn topic(&self, id: &str) -> Option<&Topic> {
        self.topics.iter().find(|t| t.id == id)
    }
}
