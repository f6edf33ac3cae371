//! A study loaded from its config file for the distributed commands: the
//! plan, the fingerprint and the manifest that carries the config and the
//! vignettes to the workers.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use gaze_shared::config::{Overrides, StudyConfig};
use gaze_shared::plan::{Fingerprint, ModelIdentity, ModelStatus, Plan, PlanSummary, model_status};
use gaze_shared::store::{Manifest, Store, StudyId, committed_shard_keys, read_commit_marker};
use gaze_shared::vignettes::VignetteSet;
use tracing::{info, warn};

use super::run::utc_timestamp;
use super::submit::{CommittedShard, PlannedModel, PlannedShard};
use crate::args::load_config;

/// A study read from its config, with the overrides applied.
pub struct LoadedStudy {
    pub config: StudyConfig,
    /// The vignette file's text, as the manifest records it.
    pub vignettes_text: String,
    pub vignettes: VignetteSet,
    /// The whole plan, which the manifest summarises.
    pub plan: Plan,
    /// `--limit`: only shards with samples below it are submitted.
    pub limit: Option<u64>,
    pub fingerprint: Fingerprint,
    /// The identity of each model of the config, in config order.
    pub identities: Vec<ModelIdentity>,
}

impl LoadedStudy {
    /// Loads the config at `path`, applies the overrides and builds the
    /// study with [`LoadedStudy::from_config`].
    pub fn load(path: &Path, overrides: &Overrides) -> anyhow::Result<LoadedStudy> {
        let config = load_config(path, overrides)?;
        LoadedStudy::from_config(config, overrides.limit)
    }

    /// Reads the vignettes and the models' identities of `config` and builds
    /// the plan. Fails when a model folder is missing, since the fingerprint
    /// that workers check covers every model's files, and when the attention
    /// layers or heads do not fit a model, so that a rejected study leaves no
    /// manifest behind.
    pub fn from_config(config: StudyConfig, limit: Option<u64>) -> anyhow::Result<LoadedStudy> {
        let vignettes_path = &config.study.vignettes;
        let vignettes_text = std::fs::read_to_string(vignettes_path).with_context(|| {
            format!(
                "reading the vignette file {} as UTF-8 text",
                vignettes_path.display()
            )
        })?;
        let vignettes = VignetteSet::parse(
            vignettes_text.as_bytes(),
            vignettes_path.extension().is_some_and(|ext| ext == "toml"),
            vignettes_path,
        )?;

        let plan = Plan::build(&config, &vignettes)?;

        let statuses = model_statuses(&config)?;
        let identities = statuses
            .iter()
            .filter_map(|status| match status {
                ModelStatus::Present(identity) => Some(identity.clone()),
                ModelStatus::Missing { .. } => None,
            })
            .collect();
        check_attention_fits(&config)?;
        let pairs: Vec<_> = config.models.iter().zip(&statuses).collect();
        let fingerprint = Fingerprint::compute(&config, &vignettes, &pairs);

        let empty_cells = plan.cells.iter().filter(|c| c.samples == 0).count();
        if empty_cells > 0 {
            warn!(
                study = %config.study.name,
                empty_cells,
                "some cells get no sample; raise design.total_samples to cover them all"
            );
        }
        Ok(LoadedStudy {
            config,
            vignettes_text,
            vignettes,
            plan,
            limit,
            fingerprint,
            identities,
        })
    }

    /// Returns the plan cut to `--limit`, rounded up to whole shards: a
    /// shard committed short would stay short when a later submit raises
    /// the limit, since committed shards are never run again.
    pub fn limited_plan(&self) -> Plan {
        let mut plan = self.plan.clone();
        if let Some(limit) = self.limit {
            let per_shard = u64::from(self.config.output.samples_per_shard);
            let rounded = limit.div_ceil(per_shard) * per_shard;
            if rounded != limit && rounded < plan.samples.len() as u64 {
                info!(
                    limit,
                    rounded, "rounded --limit up to whole shards, so that no shard is cut short"
                );
            }
            plan.limit(rounded);
        }
        plan
    }

    /// Returns the study's id in the store.
    pub fn store_id(&self) -> anyhow::Result<StudyId> {
        Ok(StudyId::new(&self.config.study.name)?)
    }

    /// Returns the study's id in the queue: its name and fingerprint.
    pub fn queue_id(&self) -> gaze_shared::queue::StudyId {
        gaze_shared::queue::StudyId::new(&self.config.study.name, &self.fingerprint.digest)
    }

    /// Builds the manifest that records this study, started at `now`.
    pub fn manifest(&self, now: SystemTime) -> anyhow::Result<Manifest> {
        let parts = &self.fingerprint.parts;
        let models = self
            .config
            .models
            .iter()
            .zip(&self.identities)
            .map(|(model, identity)| (model.id.clone(), identity.digest.clone()))
            .collect();
        Ok(Manifest {
            study: self.store_id()?,
            fingerprint: self.fingerprint.digest.clone(),
            fingerprint_parts: parts
                .iter()
                .map(|part| (part.name.clone(), part.digest.clone()))
                .collect(),
            config: serde_json::to_value(&self.config).context("encoding the config as JSON")?,
            plan: serde_json::to_value(PlanSummary::of(&self.plan, &self.vignettes))
                .context("encoding the plan summary as JSON")?,
            gaze_version: env!("CARGO_PKG_VERSION").to_owned(),
            models,
            vignettes: Some(self.vignettes_text.clone()),
            created_at: Some(utc_timestamp(now)),
        })
    }
}

/// Identifies every model folder. A missing one is an error, because the
/// fingerprint covers the weights and a run needs them.
fn model_statuses(config: &StudyConfig) -> anyhow::Result<Vec<ModelStatus>> {
    config
        .models
        .iter()
        .map(|model| {
            let status = model_status(&model.path)
                .with_context(|| format!("identifying model {:?}", model.id))?;
            if let ModelStatus::Missing { path } = &status {
                anyhow::bail!(
                    "the folder of model {:?} was not found at {}: put the Hugging Face folder \
                     there or pass --model ID=PATH with the folder the workers load (for the \
                     test model, write it with `gaze-worker make-test-model {}`)",
                    model.id,
                    path.display(),
                    path.display()
                );
            }
            Ok(status)
        })
        .collect()
}

/// Checks the attention layers and heads against each model's config.json.
fn check_attention_fits(config: &StudyConfig) -> anyhow::Result<()> {
    let attention = &config.attention;
    for model in &config.models {
        let path = model.path.join("config.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let model_config = gaze_worker::model::ModelConfig::from_json(&text)
            .with_context(|| format!("reading {}", path.display()))?;
        attention
            .resolve_layers(model_config.num_hidden_layers)
            .and_then(|_| attention.resolve_heads(model_config.num_attention_heads))
            .with_context(|| {
                format!("the attention selection does not fit model {:?}", model.id)
            })?;
    }
    Ok(())
}

/// Lists the shards every model of `config` runs, from `plan`.
pub fn planned_models(config: &StudyConfig, plan: &Plan) -> Vec<PlannedModel> {
    let shards: Vec<PlannedShard> = plan
        .shards
        .iter()
        .map(|shard| PlannedShard {
            shard_id: shard.shard_id,
            samples: (shard.samples.end - shard.samples.start) as u32,
        })
        .collect();
    config
        .models
        .iter()
        .map(|model| PlannedModel {
            model: model.id.clone(),
            shards: shards.clone(),
        })
        .collect()
}

/// Lists the committed shards of `study` from the commit markers. With
/// `read_times`, each marker is read for its commit time (one request per
/// shard); otherwise every `committed_at` is the Unix epoch.
pub async fn read_committed(
    store: &Store,
    study: &StudyId,
    read_times: bool,
) -> anyhow::Result<Vec<CommittedShard>> {
    let keys = committed_shard_keys(store, study)
        .await
        .with_context(|| format!("listing the commit markers of study {study}"))?;
    let mut committed = Vec::with_capacity(keys.len());
    for key in keys {
        let mut committed_at = UNIX_EPOCH;
        if read_times {
            let marker = read_commit_marker(store, &key)
                .await
                .with_context(|| format!("reading the commit marker of shard {key}"))?;
            if let Some(marker) = marker {
                committed_at += Duration::from_millis(marker.timings.finished_unix_ms);
            }
        }
        committed.push(CommittedShard {
            model: key.model.as_str().to_owned(),
            shard_id: key.shard,
            committed_at,
        });
    }
    Ok(committed)
}
