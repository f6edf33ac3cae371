//! The `[output]` and `[queue]` sections: where results are written and how
//! shards reach the workers.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{Checker, ConfigError};
use crate::queue::redact_url;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// The result store, as [`crate::store::Store::open`] takes it: a folder,
    /// `file:///absolute/path`, `s3://bucket/prefix` or `memory://prefix`.
    pub store: String,
    /// Samples per shard, the unit of work a worker leases, at least 1.
    #[serde(default = "default_samples_per_shard")]
    pub samples_per_shard: u32,
}

fn default_samples_per_shard() -> u32 {
    100
}

impl OutputConfig {
    /// Returns the URL to open the store with: `store` as written, except
    /// that a relative folder path is joined onto `base`.
    pub fn store_url(&self, base: &Path) -> String {
        if self.store.contains("://") {
            return self.store.clone();
        }
        super::join_lexically(base, Path::new(&self.store))
            .to_string_lossy()
            .into_owned()
    }

    pub(crate) fn validate(&self, check: &Checker) -> Result<(), ConfigError> {
        check_store_url(&self.store).map_err(|reason| {
            check.invalid(
                "output.store",
                format!("{:?}", redact_url(&self.store)),
                reason,
            )
        })?;
        if self.samples_per_shard == 0 {
            return Err(check.invalid("output.samples_per_shard", 0, "set it to at least 1"));
        }
        Ok(())
    }
}

/// Checks the form of a store URL without opening it (opening a folder
/// creates it). [`crate::store::Store::open`] checks the rest, such as
/// credentials written into an `s3://` URL.
pub(crate) fn check_store_url(text: &str) -> Result<(), String> {
    let Some((scheme, rest)) = text.split_once("://") else {
        return match text.is_empty() {
            true => Err(
                "set it to a folder, file:///absolute/path, s3://bucket/prefix or memory://".into(),
            ),
            false => Ok(()),
        };
    };
    match scheme {
        "memory" => Ok(()),
        "file" if rest.starts_with('/') => Ok(()),
        "file" => Err(
            "a file:// URL needs an absolute path, as in file:///data/gaze; write a plain relative path instead"
                .into(),
        ),
        "s3" if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
        "s3" => Err("name the bucket, as in s3://my-bucket/studies".into()),
        _ => Err(format!(
            "the scheme {scheme}:// is not supported; use a folder, file://, s3:// or memory://"
        )),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// `"embedded"` for the in-process queue, or a `redis://` / `rediss://` URL.
    #[serde(default = "default_queue_url")]
    pub url: String,
}

fn default_queue_url() -> String {
    "embedded".to_string()
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            url: default_queue_url(),
        }
    }
}

/// Location of the shard queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueLocation {
    /// In the coordinator's process; workers run as its tasks.
    Embedded,
    /// A Redis server; the URL may carry credentials, so never log it whole.
    Redis(String),
}

impl QueueConfig {
    pub fn location(&self) -> Result<QueueLocation, String> {
        parse_queue_url(&self.url)
    }

    pub(crate) fn validate(&self, check: &Checker) -> Result<(), ConfigError> {
        self.location().map(|_| ()).map_err(|reason| {
            check.invalid("queue.url", format!("{:?}", redact_url(&self.url)), reason)
        })
    }
}

pub(crate) fn parse_queue_url(url: &str) -> Result<QueueLocation, String> {
    if url == "embedded" {
        return Ok(QueueLocation::Embedded);
    }
    let is_redis = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"));
    match is_redis {
        Some(rest) if !rest.is_empty() => Ok(QueueLocation::Redis(url.to_string())),
        _ => Err(
            "write \"embedded\", or a Redis URL such as redis://127.0.0.1:6379 (rediss:// for TLS)"
                .into(),
        ),
    }
}
