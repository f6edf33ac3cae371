//! The `[output]` and `[queue]` sections: where results are written and how
//! shards reach the workers.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::{Checker, ConfigError};
use crate::queue::redact_url;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Location of the result tables, parsed by [`StoreLocation::parse`].
    pub store: String,
    /// Samples per shard, the unit of work a worker leases, at least 1.
    #[serde(default = "default_samples_per_shard")]
    pub samples_per_shard: u32,
}

fn default_samples_per_shard() -> u32 {
    100
}

impl OutputConfig {
    /// Returns the store location, with a relative local path joined onto `base`.
    pub fn store_location(&self, base: &Path) -> Result<StoreLocation, String> {
        StoreLocation::parse(&self.store, base)
    }

    pub(crate) fn validate(&self, base: &Path, check: &Checker) -> Result<(), ConfigError> {
        self.store_location(base)
            .map_err(|reason| check.invalid("output.store", format!("{:?}", self.store), reason))?;
        if self.samples_per_shard == 0 {
            return Err(check.invalid("output.samples_per_shard", 0, "set it to at least 1"));
        }
        Ok(())
    }
}

/// A result store: a local folder, an S3 bucket and prefix, or memory (for tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
    Memory,
}

impl StoreLocation {
    /// Parses a local path, `file:///abs/path`, `s3://bucket/prefix` or
    /// `memory://`. A relative local path is joined onto `base`. The error
    /// lists the accepted forms.
    pub fn parse(text: &str, base: &Path) -> Result<StoreLocation, String> {
        if text.is_empty() {
            return Err(
                "set it to a folder, file:///absolute/path, s3://bucket/prefix or memory://".into(),
            );
        }
        if text == "memory://" {
            return Ok(StoreLocation::Memory);
        }
        if let Some(path) = text.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err("a file:// URL needs an absolute path, as in file:///data/gaze; write a plain relative path instead".into());
            }
            return Ok(StoreLocation::Local(PathBuf::from(path)));
        }
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err("name the bucket, as in s3://my-bucket/studies".into());
            }
            return Ok(StoreLocation::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(format!(
                "the scheme {scheme}:// is not supported; use a folder, file://, s3:// or memory://"
            ));
        }
        Ok(StoreLocation::Local(super::join_lexically(
            base,
            Path::new(text),
        )))
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
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
