//! Object keys of a study, built only from validated ids so that no key can
//! leave its study's folder.

use std::fmt;
use std::str::FromStr;

use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::tables::Table;

/// Maximum length of a study or model id, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Minimum number of digits in a shard id inside a key, so that keys of
/// shards 0 to 99999 sort in shard order.
pub const SHARD_ID_DIGITS: usize = 5;

/// Folder of a study that contains the commit markers.
pub const COMMITS_FOLDER: &str = "commits";

/// Object name of a study's manifest.
pub const MANIFEST_NAME: &str = "manifest.json";

/// An id that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid {kind} {value:?}: {reason}; use 1 to {MAX_ID_LEN} ASCII letters, digits, '_' or '-'"
)]
pub struct InvalidId {
    /// Kind of id: `study id` or `model id`.
    pub kind: &'static str,
    pub value: String,
    pub reason: &'static str,
}

fn validate_id(kind: &'static str, value: &str) -> Result<(), InvalidId> {
    let invalid = |reason| InvalidId {
        kind,
        value: value.to_string(),
        reason,
    };
    if value.is_empty() {
        return Err(invalid("it is empty"));
    }
    if value.len() > MAX_ID_LEN {
        return Err(invalid("it is too long"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(invalid(
            "it contains a character other than A-Z, a-z, 0-9, '_' and '-'",
        ));
    }
    Ok(())
}

macro_rules! validated_id {
    ($name:ident, $kind:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `value`: 1 to [`MAX_ID_LEN`] characters from
            /// `[A-Za-z0-9_-]`, so the id is one safe path segment.
            pub fn new(value: &str) -> Result<Self, InvalidId> {
                validate_id($kind, value)?;
                Ok(Self(value.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            fn from_str(value: &str) -> Result<Self, InvalidId> {
                Self::new(value)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;

            fn try_from(value: String) -> Result<Self, InvalidId> {
                Self::new(&value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

validated_id!(StudyId, "study id");
validated_id!(ModelId, "model id");

/// The keys of one study's objects, relative to the store's root.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StudyKeys {
    pub study: StudyId,
}

impl StudyKeys {
    pub fn new(study: StudyId) -> Self {
        Self { study }
    }

    /// `<study>/manifest.json`.
    pub fn manifest(&self) -> Path {
        Path::from_iter([self.study.as_str(), MANIFEST_NAME])
    }

    /// `<study>/<table>/`, the folder of every shard file of `table`.
    pub fn table_folder(&self, table: Table) -> Path {
        Path::from_iter([self.study.as_str(), table.as_str()])
    }

    /// `<study>/commits/`, the folder of every commit marker.
    pub fn commits_folder(&self) -> Path {
        Path::from_iter([self.study.as_str(), COMMITS_FOLDER])
    }

    pub fn shard(&self, model: ModelId, shard: u32) -> ShardKey {
        ShardKey {
            study: self.study.clone(),
            model,
            shard,
        }
    }
}

/// One shard of one model in one study: the unit that a worker writes and
/// commits as a whole.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardKey {
    pub study: StudyId,
    pub model: ModelId,
    pub shard: u32,
}

impl ShardKey {
    pub fn new(study: StudyId, model: ModelId, shard: u32) -> Self {
        Self {
            study,
            model,
            shard,
        }
    }

    /// `<model>-shard-<id>`, the id zero-padded to [`SHARD_ID_DIGITS`] digits.
    pub fn file_stem(&self) -> String {
        format!(
            "{}-shard-{:0width$}",
            self.model,
            self.shard,
            width = SHARD_ID_DIGITS
        )
    }

    /// `<study>/<table>/<model>-shard-<id>.parquet`.
    pub fn table_object(&self, table: Table) -> Path {
        let name = format!("{}.parquet", self.file_stem());
        Path::from_iter([self.study.as_str(), table.as_str(), &name])
    }

    /// `<study>/commits/<model>-shard-<id>.json`.
    pub fn commit_marker(&self) -> Path {
        let name = format!("{}.json", self.file_stem());
        Path::from_iter([self.study.as_str(), COMMITS_FOLDER, &name])
    }

    /// Parses an object name `<model>-shard-<digits>.<extension>` back into
    /// a key of `study`. Returns `None` for any other name.
    ///
    /// Model ids may contain `-shard-`: the last occurrence separates the
    /// model from the shard id, because the shard id holds only digits.
    pub fn parse_object_name(study: &StudyId, name: &str, extension: &str) -> Option<ShardKey> {
        let stem = name.strip_suffix(extension)?.strip_suffix('.')?;
        let (model, digits) = stem.rsplit_once("-shard-")?;
        if digits.len() < SHARD_ID_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let shard = digits.parse().ok()?;
        let model = ModelId::new(model).ok()?;
        let key = ShardKey::new(study.clone(), model, shard);

        // A name with extra leading zeros would map two objects to one shard.
        (key.file_stem() == stem).then_some(key)
    }
}

impl fmt::Display for ShardKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.study, self.file_stem())
    }
}
