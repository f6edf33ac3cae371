//! Settings that a command line or the environment can change without
//! editing the study config: the store, a model's path, the devices, the
//! batch size, the Redis URL and a sample limit.

use std::path::PathBuf;

use super::StudyConfig;
use super::error::ConfigError;
use super::model::DeviceList;
use super::output::{check_store_url, parse_queue_url};
use crate::queue::redact_url;

/// Environment variables read by [`Overrides::from_env`], in field order.
pub const ENV_STORE: &str = "GAZE_STORE";
pub const ENV_MODEL: &str = "GAZE_MODEL";
pub const ENV_DEVICE: &str = "GAZE_DEVICE";
pub const ENV_BATCH_SIZE: &str = "GAZE_BATCH_SIZE";
pub const ENV_REDIS: &str = "GAZE_REDIS";

/// Values that replace the config's own. `None` keeps the config's value.
///
/// The `gaze` command fills this from flags that fall back to the
/// `GAZE_*` environment variables, so a flag wins over the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Replaces `output.store`. A relative local path is taken as relative
    /// to the current folder, not the config file's.
    pub store: Option<String>,
    /// Replaces a model's `path`: `PATH` for a study with one model, or
    /// `ID=PATH` to pick one model by id (required when there are several).
    /// A relative path is taken as relative to the current folder.
    pub model: Option<String>,
    /// Runs only the first `limit` samples of the plan. It does not change
    /// the plan or its fingerprint, so a later run can go on to the rest.
    pub limit: Option<u64>,
    /// Replaces every model's `device`: one device or a comma-separated list
    /// such as `cuda:0,cuda:1`.
    pub device: Option<String>,
    /// Replaces `generation.batch_size`.
    pub batch_size: Option<usize>,
    /// Replaces `queue.url` with a `redis://` or `rediss://` URL.
    pub redis: Option<String>,
}

impl Overrides {
    /// Reads the `GAZE_*` variables. `limit` has no variable. An unset or
    /// empty variable means no override.
    pub fn from_env() -> Result<Overrides, ConfigError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let batch_size = match var(ENV_BATCH_SIZE) {
            None => None,
            Some(text) => Some(text.parse().map_err(|_| ConfigError::InvalidOverride {
                source_name: ENV_BATCH_SIZE,
                value: text.clone(),
                reason: "write a whole number of prompts per batch, at least 1".into(),
            })?),
        };
        Ok(Overrides {
            store: var(ENV_STORE),
            model: var(ENV_MODEL),
            limit: None,
            device: var(ENV_DEVICE),
            batch_size,
            redis: var(ENV_REDIS),
        })
    }

    /// Applies the overrides to `config` and validates the result. On error
    /// `config` may be partly changed; callers drop it.
    pub fn apply(&self, config: &mut StudyConfig) -> Result<(), ConfigError> {
        if let Some(store) = &self.store {
            check_store_url(store).map_err(|reason| ConfigError::InvalidOverride {
                source_name: "--store / GAZE_STORE",
                value: redact_url(store),
                reason,
            })?;
            config.output.store = absolute_if_local(store);
        }
        if let Some(model) = &self.model {
            self.apply_model(model, config)?;
        }
        if let Some(device) = &self.device {
            let devices: DeviceList = device.parse().map_err(|err: super::InvalidDevice| {
                ConfigError::InvalidOverride {
                    source_name: "--device / GAZE_DEVICE",
                    value: device.clone(),
                    reason: err.to_string(),
                }
            })?;
            for model in &mut config.models {
                model.device = devices.clone();
            }
        }
        if let Some(batch_size) = self.batch_size {
            if batch_size == 0 {
                return Err(ConfigError::InvalidOverride {
                    source_name: "--batch-size / GAZE_BATCH_SIZE",
                    value: "0".into(),
                    reason: "set it to at least 1".into(),
                });
            }
            config.generation.batch_size = batch_size;
        }
        if let Some(redis) = &self.redis {
            match parse_queue_url(redis) {
                Ok(super::QueueLocation::Redis(_)) => config.queue.url = redis.clone(),
                _ => {
                    return Err(ConfigError::InvalidOverride {
                        source_name: "--redis / GAZE_REDIS",
                        value: redact_url(redis),
                        reason:
                            "write a Redis URL such as redis://127.0.0.1:6379 (rediss:// for TLS)"
                                .into(),
                    });
                }
            }
        }

        config.validate()
    }

    fn apply_model(&self, value: &str, config: &mut StudyConfig) -> Result<(), ConfigError> {
        let ids: Vec<&str> = config.models.iter().map(|m| m.id.as_str()).collect();
        let by_id = value.split_once('=').filter(|(id, _)| ids.contains(id));
        let (index, path) = match by_id {
            Some((id, path)) => (
                ids.iter().position(|i| *i == id).expect("id is in ids"),
                path,
            ),
            None if ids.len() == 1 => (0, value),
            None => {
                return Err(ConfigError::InvalidOverride {
                    source_name: "--model / GAZE_MODEL",
                    value: value.to_string(),
                    reason: format!(
                        "the study has {} models ({}); write ID=PATH to say which one, such as {}=/models/llama",
                        ids.len(),
                        ids.join(", "),
                        ids[0]
                    ),
                });
            }
        };
        if path.is_empty() {
            return Err(ConfigError::InvalidOverride {
                source_name: "--model / GAZE_MODEL",
                value: value.to_string(),
                reason: "give the model folder's path".into(),
            });
        }
        config.models[index].path = PathBuf::from(path);
        Ok(())
    }
}

/// Keeps URLs as they are and makes a local path absolute against the
/// current folder, so it no longer depends on the config file's folder.
fn absolute_if_local(store: &str) -> String {
    if store.contains("://") {
        return store.to_string();
    }
    match std::path::absolute(store) {
        Ok(path) => path.to_string_lossy().into_owned(),
        Err(_) => store.to_string(),
    }
}
