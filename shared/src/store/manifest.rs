//! The study manifest: what a study was started with, so that a resumed or
//! extended run can prove it computes the same thing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use bytes::Bytes;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use super::error::StoreError;
use super::keys::{StudyId, StudyKeys};
use super::open::Store;

/// The contents of `<study>/manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub study: StudyId,
    /// Hash over every input that changes the results, as hex.
    pub fingerprint: String,
    /// The inputs behind `fingerprint`, each hashed on its own (such as a
    /// config section, the vignettes or a model), so that a mismatch can
    /// name the one that changed.
    pub fingerprint_parts: BTreeMap<String, String>,
    /// The study config as the run read it.
    pub config: serde_json::Value,
    /// A summary of the sample plan: counts per model, stratum and shard.
    pub plan: serde_json::Value,
    /// Version of gaze that started the study.
    pub gaze_version: String,
    /// Each model id with the fingerprint of its weights, config and tokenizer.
    pub models: BTreeMap<String, String>,
    /// The vignette file's text, so that a worker on another machine can
    /// rebuild the plan from the manifest alone. `None` in manifests
    /// written before it was recorded.
    #[serde(default)]
    pub vignettes: Option<String>,
    /// When the study started, as `YYYY-MM-DDTHH:MM:SSZ` (UTC). Its date is
    /// the one chat templates' `strftime_now` formats, so that prompts do
    /// not change from one day to the next. `None` in older manifests.
    #[serde(default)]
    pub created_at: Option<String>,
}

/// One difference between a study's stored manifest and a new run's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestChange {
    /// A fingerprint part has another value, or exists on one side only
    /// (`None` on the side that lacks it).
    Part {
        part: String,
        existing: Option<String>,
        new: Option<String>,
    },
    /// A model's identity changed, or the model was added or removed.
    Model {
        model: String,
        existing: Option<String>,
        new: Option<String>,
    },
    /// The overall fingerprint differs although every part matches.
    Fingerprint { existing: String, new: String },
    /// A top-level config section differs (reported only alongside a
    /// fingerprint change, as a pointer to what to compare).
    ConfigSection { section: String },
}

impl fmt::Display for ManifestChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestChange::Part {
                part,
                existing,
                new,
            } => {
                write!(
                    f,
                    "{part} changed ({} -> {})",
                    short_optional(existing),
                    short_optional(new)
                )
            }
            ManifestChange::Model {
                model,
                existing: None,
                ..
            } => write!(f, "model {model} was added"),
            ManifestChange::Model {
                model, new: None, ..
            } => write!(f, "model {model} was removed"),
            ManifestChange::Model {
                model,
                existing,
                new,
            } => {
                let (existing, new) = (short_optional(existing), short_optional(new));
                write!(
                    f,
                    "model {model} has other weights, config or tokenizer ({existing} -> {new})"
                )
            }
            ManifestChange::Fingerprint { existing, new } => {
                write!(
                    f,
                    "the fingerprint changed ({} -> {})",
                    short(existing),
                    short(new)
                )
            }
            ManifestChange::ConfigSection { section } => {
                write!(f, "config section [{section}] differs")
            }
        }
    }
}

/// Returns the first 12 characters of a hash, enough to tell two apart in a message.
fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

fn short_optional(hash: &Option<String>) -> &str {
    hash.as_deref().map_or("absent", short)
}

/// A new run's manifest that does not match the study's stored one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "study {study} was started with other inputs: {changes}. Its results cannot be mixed with this run's; \
     set study.name to a new name (such as {study}-2), or restore the inputs it was started with",
    changes = self.changes_text()
)]
pub struct ManifestMismatch {
    pub study: StudyId,
    pub changes: Vec<ManifestChange>,
}

impl ManifestMismatch {
    /// Lists the changes in one line, separated by semicolons.
    pub fn changes_text(&self) -> String {
        let changes: Vec<String> = self.changes.iter().map(ToString::to_string).collect();
        changes.join("; ")
    }
}

/// Compares a study's stored manifest with a new run's.
///
/// Fingerprint parts and model identities decide. The gaze version and the
/// config snapshot do not, because the fingerprint covers whatever in them
/// changes results. When the fingerprint differs, the differing top-level
/// config sections are listed as well.
pub fn check_manifest(existing: &Manifest, new: &Manifest) -> Result<(), ManifestMismatch> {
    let mut changes = Vec::new();

    for part in union_keys(&existing.fingerprint_parts, &new.fingerprint_parts) {
        let (old, current) = (
            existing.fingerprint_parts.get(part),
            new.fingerprint_parts.get(part),
        );
        if old != current {
            changes.push(ManifestChange::Part {
                part: part.clone(),
                existing: old.cloned(),
                new: current.cloned(),
            });
        }
    }
    for model in union_keys(&existing.models, &new.models) {
        let (old, current) = (existing.models.get(model), new.models.get(model));
        if old != current {
            changes.push(ManifestChange::Model {
                model: model.clone(),
                existing: old.cloned(),
                new: current.cloned(),
            });
        }
    }
    if changes.is_empty() && existing.fingerprint != new.fingerprint {
        changes.push(ManifestChange::Fingerprint {
            existing: existing.fingerprint.clone(),
            new: new.fingerprint.clone(),
        });
    }

    if changes.is_empty() {
        return Ok(());
    }
    changes.extend(
        differing_sections(
            &without_local_settings(&existing.config),
            &without_local_settings(&new.config),
        )
        .into_iter()
        .map(|section| ManifestChange::ConfigSection { section }),
    );
    Err(ManifestMismatch {
        study: existing.study.clone(),
        changes,
    })
}

fn union_keys<'a, V>(
    a: &'a BTreeMap<String, V>,
    b: &'a BTreeMap<String, V>,
) -> BTreeSet<&'a String> {
    a.keys().chain(b.keys()).collect()
}

/// Returns `config` without the settings that may differ between machines
/// and runs of one study, because they never change a result: file paths,
/// devices, the store and queue URLs and the batch size.
fn without_local_settings(config: &serde_json::Value) -> serde_json::Value {
    let mut config = config.clone();
    let local = [
        "/study/vignettes",
        "/output/store",
        "/queue/url",
        "/generation/batch_size",
    ];
    for pointer in local {
        remove_pointer(&mut config, pointer);
    }
    if let Some(models) = config.get_mut("models").and_then(|m| m.as_array_mut()) {
        for model in models {
            if let Some(model) = model.as_object_mut() {
                model.remove("path");
                model.remove("device");
            }
        }
    }
    config
}

/// Removes the object key that the JSON pointer `pointer` names, if present.
fn remove_pointer(value: &mut serde_json::Value, pointer: &str) {
    let Some((parent, key)) = pointer.rsplit_once('/') else {
        return;
    };
    if let Some(object) = value.pointer_mut(parent).and_then(|p| p.as_object_mut()) {
        object.remove(key);
    }
}

fn differing_sections(existing: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    let (Some(existing), Some(new)) = (existing.as_object(), new.as_object()) else {
        return if existing == new {
            Vec::new()
        } else {
            vec!["(whole config)".into()]
        };
    };
    let sections: BTreeSet<&String> = existing.keys().chain(new.keys()).collect();
    sections
        .into_iter()
        .filter(|s| existing.get(*s) != new.get(*s))
        .cloned()
        .collect()
}

/// Outcome of [`write_or_check_manifest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestStatus {
    /// The study is new, and its manifest was written.
    Created,
    /// The study exists, and its manifest matches.
    Matches,
}

/// Writes the manifest of a new study, or checks it against the stored one.
///
/// Safe when two coordinators start the same study at once: the write only
/// succeeds if no manifest exists, and the loser compares with the winner's.
pub async fn write_or_check_manifest(
    store: &Store,
    manifest: &Manifest,
) -> Result<ManifestStatus, StoreError> {
    let key = StudyKeys::new(manifest.study.clone()).manifest();
    let json = serde_json::to_vec_pretty(manifest).expect("a manifest always serializes to JSON");

    if store.put_if_absent(&key, Bytes::from(json)).await? {
        tracing::info!(study = %manifest.study, fingerprint = %manifest.fingerprint, "wrote study manifest");
        return Ok(ManifestStatus::Created);
    }

    let existing = read_manifest(store, &manifest.study)
        .await?
        .ok_or_else(|| StoreError::CorruptManifest {
            key: key.to_string(),
            url: store.url.clone(),
            reason:
                "it was there when written and gone when read; it may have been deleted meanwhile"
                    .into(),
        })?;
    check_manifest(&existing, manifest).map_err(|m| StoreError::ManifestMismatch(Box::new(m)))?;
    Ok(ManifestStatus::Matches)
}

/// Replaces a study's manifest when the study has no results yet: no commit
/// marker and no claim. Returns `false`, and writes nothing, otherwise.
///
/// A run that fails after writing its manifest (a model that does not load,
/// say) leaves a study with a manifest and nothing else; this lets the
/// corrected inputs start it under the same name. A claim counts as a result
/// because the next attempt would publish its staged tables.
/// NOTE: only for one process that owns the study, as `gaze run` does; a
/// worker of another process could claim a shard between the listing and the
/// write.
pub async fn replace_manifest_without_results(
    store: &Store,
    manifest: &Manifest,
) -> Result<bool, StoreError> {
    let keys = StudyKeys::new(manifest.study.clone());
    let claims = Path::from_iter([manifest.study.as_str(), super::shard_commit::CLAIMS_FOLDER]);
    if !store.list_names(&keys.commits_folder()).await?.is_empty()
        || !store.list_names(&claims).await?.is_empty()
    {
        return Ok(false);
    }

    let json = serde_json::to_vec_pretty(manifest).expect("a manifest always serializes to JSON");
    store.put(&keys.manifest(), Bytes::from(json)).await?;
    tracing::warn!(
        study = %manifest.study, fingerprint = %manifest.fingerprint,
        "replaced the manifest of a study that had no committed or claimed shards"
    );
    Ok(true)
}

/// Reads a study's manifest, or `None` for a study that was never started.
pub async fn read_manifest(store: &Store, study: &StudyId) -> Result<Option<Manifest>, StoreError> {
    let key = StudyKeys::new(study.clone()).manifest();
    let Some(bytes) = store.get(&key).await? else {
        return Ok(None);
    };
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| StoreError::CorruptManifest {
            key: key.to_string(),
            url: store.url.clone(),
            reason: e.to_string(),
        })?;
    if &manifest.study != study {
        return Err(StoreError::CorruptManifest {
            key: key.to_string(),
            url: store.url.clone(),
            reason: format!("it names study {}", manifest.study),
        });
    }
    Ok(Some(manifest))
}
