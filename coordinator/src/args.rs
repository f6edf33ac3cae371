//! Command-line flags shared by the subcommands that read a study config.

use std::path::Path;

use gaze_shared::config::{Overrides, StudyConfig};

/// Flags that override the study config. Each falls back to its `GAZE_*`
/// environment variable, and a flag wins over the variable.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OverrideArgs {
    /// Result store, replacing output.store: a folder, file:///path,
    /// s3://bucket/prefix or memory://prefix.
    #[arg(long, env = "GAZE_STORE", value_name = "URL")]
    pub store: Option<String>,

    /// Model folder, replacing a model's path: PATH when the study has one
    /// model, ID=PATH to pick a model by id (required with several models).
    #[arg(long, env = "GAZE_MODEL", value_name = "[ID=]PATH")]
    pub model: Option<String>,

    /// Use only the first N samples of the plan. The plan and its
    /// fingerprint stay the same, so a later run can do the rest. `gaze run`
    /// rounds N up to whole shards (output.samples_per_shard).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,

    /// Devices for every model, replacing models[].device: cpu, cuda:N, or a
    /// comma-separated list such as cuda:0,cuda:1 (one worker per device).
    #[arg(long, env = "GAZE_DEVICE", value_name = "DEVICES")]
    pub device: Option<String>,

    /// Prompts per forward pass, at least 1, replacing generation.batch_size.
    #[arg(long, env = "GAZE_BATCH_SIZE", value_name = "N")]
    pub batch_size: Option<usize>,

    /// Redis URL of the shard queue, replacing queue.url: redis://HOST:PORT,
    /// or rediss:// for TLS. `gaze run` does not use it: it always runs an
    /// in-process queue.
    #[arg(long, env = "GAZE_REDIS", value_name = "URL", hide_env_values = true)]
    pub redis: Option<String>,
}

impl OverrideArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            store: self.store.clone(),
            model: self.model.clone(),
            limit: self.limit,
            device: self.device.clone(),
            batch_size: self.batch_size,
            redis: self.redis.clone(),
        }
    }
}

/// Loads the study config at `path` and applies the overrides. The errors
/// name the file or the flag, so they carry no extra context.
pub fn load_config(path: &Path, overrides: &Overrides) -> anyhow::Result<StudyConfig> {
    let mut config = StudyConfig::load(path)?;
    overrides.apply(&mut config)?;
    Ok(config)
}
