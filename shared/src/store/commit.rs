//! Commit markers: the object written last for a shard, whose presence alone
//! makes the shard done.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::error::StoreError;
use super::keys::{ModelId, ShardKey, StudyId, StudyKeys};
use super::open::Store;
use crate::tables::Table;

/// Wall-clock times of a shard's attempt, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardTimings {
    /// When the worker took the shard, as milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// When the last table was written, as milliseconds since the Unix epoch.
    pub finished_unix_ms: u64,
    /// Time spent in prefill and decode steps over all samples.
    pub generate_ms: u64,
    /// Time spent encoding and writing the tables.
    pub write_ms: u64,
}

/// The contents of `<study>/commits/<model>-shard-<id>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitMarker {
    pub study: StudyId,
    pub model: ModelId,
    pub shard: u32,
    /// The study fingerprint the shard was computed under.
    pub fingerprint: String,
    /// 1 for the first attempt at the shard, counting up on each retry.
    pub attempt: u32,
    /// Id of the worker that wrote the shard.
    pub worker: String,
    /// Rows written per table; a table absent here was not written.
    pub rows: BTreeMap<Table, u64>,
    pub timings: ShardTimings,
    pub gaze_version: String,
}

impl CommitMarker {
    pub fn key(&self) -> ShardKey {
        ShardKey::new(self.study.clone(), self.model.clone(), self.shard)
    }
}

/// Writes a shard's commit marker, replacing one left by an earlier attempt.
///
/// Call it only after every table of the shard was written: the marker is
/// what makes the shard count as done.
pub async fn write_commit_marker(store: &Store, marker: &CommitMarker) -> Result<(), StoreError> {
    let key = marker.key().commit_marker();
    let json =
        serde_json::to_vec_pretty(marker).expect("a commit marker always serializes to JSON");
    store.put(&key, Bytes::from(json)).await?;

    // Callers log the commit with their own counts, so this is debug.
    tracing::debug!(
        study = %marker.study, model = %marker.model, shard = marker.shard,
        attempt = marker.attempt, worker = %marker.worker, "wrote commit marker"
    );
    Ok(())
}

/// Reads a shard's commit marker, or `None` when the shard is not committed.
///
/// A marker that does not parse, or that names another shard, is an error:
/// it is never taken as "not committed", because that would hide a fault.
pub async fn read_commit_marker(
    store: &Store,
    shard: &ShardKey,
) -> Result<Option<CommitMarker>, StoreError> {
    let key = shard.commit_marker();
    let Some(bytes) = store.get(&key).await? else {
        return Ok(None);
    };
    let corrupt = |reason: String| StoreError::CorruptMarker {
        key: key.to_string(),
        url: store.url.clone(),
        reason,
    };

    let marker: CommitMarker =
        serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if &marker.key() != shard {
        return Err(corrupt(format!("it names shard {}", marker.key())));
    }
    Ok(Some(marker))
}

/// Lists the committed shards of every model in a study, from the names in
/// `<study>/commits/`. Objects there with other names are skipped.
pub async fn committed_shard_keys(
    store: &Store,
    study: &StudyId,
) -> Result<BTreeSet<ShardKey>, StoreError> {
    let folder = StudyKeys::new(study.clone()).commits_folder();
    let mut keys = BTreeSet::new();
    for name in store.list_names(&folder).await? {
        match ShardKey::parse_object_name(study, &name, "json") {
            Some(key) => {
                keys.insert(key);
            }
            None => {
                tracing::warn!(study = %study, object = %name, "skipped an object that is not a commit marker")
            }
        }
    }
    Ok(keys)
}

/// Lists the ids of one model's committed shards.
pub async fn committed_shards(
    store: &Store,
    study: &StudyId,
    model: &ModelId,
) -> Result<BTreeSet<u32>, StoreError> {
    let keys = committed_shard_keys(store, study).await?;
    Ok(keys
        .into_iter()
        .filter(|k| &k.model == model)
        .map(|k| k.shard)
        .collect())
}

/// Returns the planned shards that are not committed, in ascending order.
pub fn pending_shards(
    planned: impl IntoIterator<Item = u32>,
    committed: &BTreeSet<u32>,
) -> Vec<u32> {
    let planned: BTreeSet<u32> = planned.into_iter().collect();
    planned.difference(committed).copied().collect()
}
