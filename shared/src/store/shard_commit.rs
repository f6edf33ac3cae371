//! Committing a shard exactly once, even when a stale worker (one that lost
//! its lease while paused, and then woke up) finishes the same shard.
//!
//! # Protocol
//!
//! Each attempt at a shard has an [`AttemptToken`] of its own: the worker
//! id, the lease's attempt number and a random nonce.
//!
//! 1. **Stage.** The attempt writes every table of the shard under a prefix
//!    that only it uses:
//!    `<study>/staging/<model>-shard-<id>/<token>/<table>.parquet`.
//! 2. **Claim.** Only once staging is complete, it creates
//!    `<study>/claims/<model>-shard-<id>.json` if absent (a conditional put),
//!    naming its token. If the claim exists already, the attempt it names
//!    is the winner, and its staging is complete by construction.
//! 3. **Publish.** The winner's staged tables are copied to the final keys
//!    `<study>/<table>/<model>-shard-<id>.parquet`. Whoever copies, the
//!    source is the winner's staging, so the final keys only ever receive
//!    the winner's bytes. Copying again is harmless.
//! 4. **Mark.** The commit marker is written last, built from the claim
//!    alone (winner's attempt, worker, rows, timings), so it records one
//!    attempt whoever writes it, and every writer writes the same bytes.
//! 5. **Clean.** A loser deletes its staging at once; after the marker, the
//!    shard's whole staging folder is deleted. Both are best effort.
//!
//! A crash before the claim leaves only staging objects, which no reader
//! looks at; the shard is pending and runs again. A crash between the
//! claim and the marker leaves a claim whose staging is complete: the next
//! attempt ([`finish_claimed`]) publishes it without generating anything.
//! Readers only read the final keys of shards that have a marker.
//!
//! NOTE: a winner's staging must outlive its claim until the marker exists.
//! Deleting a study's `staging/` folder by hand while a claim has no marker
//! makes that shard fail with [`StoreError::StagingMissing`]; delete the
//! claim too and the shard runs again.

use std::collections::BTreeMap;

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use super::commit::{CommitMarker, ShardTimings, read_commit_marker, write_commit_marker};
use super::error::{Operation, StoreError};
use super::keys::{InvalidId, ModelId, ShardKey, StudyId};
use super::open::Store;
use super::write::write_table_at;
use crate::tables::Table;

/// Folder of a study with the staged tables of every attempt.
pub const STAGING_FOLDER: &str = "staging";

/// Folder of a study with the claim of each shard.
pub const CLAIMS_FOLDER: &str = "claims";

/// Maximum length of the worker id in an [`AttemptToken`], in bytes.
const TOKEN_WORKER_LEN: usize = 64;

/// The name of one attempt at a shard: `<worker>-<attempt>-<nonce>`, from
/// `[A-Za-z0-9_-]` only, so that it is one safe key segment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AttemptToken(String);

impl AttemptToken {
    /// Builds the token of attempt `attempt` by `worker`, with a fresh
    /// random nonce. Characters of `worker` outside `[A-Za-z0-9_-]` become
    /// `_`, and it is cut to 64 bytes; the nonce keeps tokens distinct.
    pub fn new(worker: &str, attempt: u64) -> AttemptToken {
        Self::with_nonce(worker, attempt, rand::random())
    }

    /// As [`AttemptToken::new`], with the nonce given (for tests).
    pub fn with_nonce(worker: &str, attempt: u64, nonce: u64) -> AttemptToken {
        let worker: String = worker
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(TOKEN_WORKER_LEN)
            .collect();
        AttemptToken(format!("{worker}-{attempt}-{nonce:016x}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AttemptToken {
    type Error = InvalidId;

    fn try_from(value: String) -> Result<Self, InvalidId> {
        // The same rule as study and model ids, with room for the nonce.
        let valid = !value.is_empty()
            && value.len() <= TOKEN_WORKER_LEN + 48
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(AttemptToken(value))
        } else {
            Err(InvalidId {
                kind: "attempt token",
                value,
                reason: "it is empty, too long or has a character other than A-Z, a-z, 0-9, '_' and '-'",
            })
        }
    }
}

impl From<AttemptToken> for String {
    fn from(token: AttemptToken) -> String {
        token.0
    }
}

impl std::fmt::Display for AttemptToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The contents of `<study>/claims/<model>-shard-<id>.json`: the attempt
/// whose staged tables become the shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardClaim {
    pub study: StudyId,
    pub model: ModelId,
    pub shard: u32,
    pub token: AttemptToken,
    /// The study fingerprint the shard was computed under.
    pub fingerprint: String,
    /// The lease's attempt number (1 for the first claim of the shard).
    pub attempt: u32,
    pub worker: String,
    /// Rows staged per table; exactly these tables were staged.
    pub rows: BTreeMap<Table, u64>,
    pub timings: ShardTimings,
    pub gaze_version: String,
}

impl ShardClaim {
    pub fn key(&self) -> ShardKey {
        ShardKey::new(self.study.clone(), self.model.clone(), self.shard)
    }

    /// Returns the commit marker that this claim yields. Every worker that
    /// publishes the claim writes this marker, byte for byte.
    pub fn marker(&self) -> CommitMarker {
        CommitMarker {
            study: self.study.clone(),
            model: self.model.clone(),
            shard: self.shard,
            fingerprint: self.fingerprint.clone(),
            attempt: self.attempt,
            worker: self.worker.clone(),
            rows: self.rows.clone(),
            timings: self.timings.clone(),
            gaze_version: self.gaze_version.clone(),
        }
    }
}

/// `<study>/claims/<model>-shard-<id>.json`.
pub fn claim_key(shard: &ShardKey) -> Path {
    let name = format!("{}.json", shard.file_stem());
    Path::from_iter([shard.study.as_str(), CLAIMS_FOLDER, &name])
}

/// `<study>/staging/<model>-shard-<id>/`, the staging of every attempt.
pub fn shard_staging_folder(shard: &ShardKey) -> Path {
    Path::from_iter([shard.study.as_str(), STAGING_FOLDER, &shard.file_stem()])
}

/// `<study>/staging/<model>-shard-<id>/<token>/<table>.parquet`.
pub fn staged_table_key(shard: &ShardKey, token: &AttemptToken, table: Table) -> Path {
    let name = format!("{}.parquet", table.as_str());
    Path::from_iter(
        shard_staging_folder(shard)
            .parts()
            .chain([token.as_str().into(), name.as_str().into()]),
    )
}

/// The result of committing a shard: which attempt won.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// This attempt won the claim; the marker names it.
    Won(CommitMarker),
    /// Another attempt won the claim (or had committed already); this
    /// attempt's tables were discarded, and the marker names the winner.
    Lost(CommitMarker),
}

impl CommitOutcome {
    pub fn marker(&self) -> &CommitMarker {
        match self {
            CommitOutcome::Won(marker) | CommitOutcome::Lost(marker) => marker,
        }
    }
}

/// A shard whose tables are staged, ready to claim.
#[derive(Debug, Clone)]
pub struct StagedShard {
    pub claim: ShardClaim,
}

/// Stage step: writes `tables` under this attempt's staging prefix and
/// returns the claim to make, with `draft.rows` set to the rows written.
/// `draft.timings.write_ms` is set to the staging time.
pub async fn stage_shard(
    store: &Store,
    mut draft: ShardClaim,
    tables: &[(Table, &[RecordBatch])],
) -> Result<StagedShard, StoreError> {
    let shard = draft.key();
    let started = std::time::Instant::now();
    draft.rows.clear();
    for (table, batches) in tables {
        let key = staged_table_key(&shard, &draft.token, *table);
        let written = write_table_at(store, &key, *table, batches).await?;
        draft.rows.insert(*table, written.rows);
    }
    draft.timings.write_ms = started.elapsed().as_millis() as u64;
    tracing::debug!(shard = %shard, token = %draft.token, "staged shard");
    Ok(StagedShard { claim: draft })
}

impl StagedShard {
    /// Claim, publish, mark and clean: see the module documentation. Safe to
    /// run concurrently with any other attempt at the same shard.
    pub async fn commit(self, store: &Store) -> Result<CommitOutcome, StoreError> {
        let shard = self.claim.key();
        let winner = claim_shard(store, &self.claim).await?;
        let won = winner.token == self.claim.token;
        if !won {
            tracing::info!(
                shard = %shard, token = %self.claim.token, winner = %winner.token,
                "another attempt claimed the shard first; discarding this attempt's tables"
            );
            delete_folder(store, &attempt_folder(&shard, &self.claim.token)).await;
        }
        let marker = publish(store, &winner).await?;
        Ok(if won {
            CommitOutcome::Won(marker)
        } else {
            CommitOutcome::Lost(marker)
        })
    }
}

/// Creates the claim of `claim`'s shard if absent, and returns the claim
/// that is there afterwards: `claim` itself, or the earlier winner's.
pub async fn claim_shard(store: &Store, claim: &ShardClaim) -> Result<ShardClaim, StoreError> {
    let key = claim_key(&claim.key());
    let json = serde_json::to_vec_pretty(claim).expect("a claim always serializes to JSON");
    if store.put_if_absent(&key, Bytes::from(json)).await? {
        tracing::debug!(shard = %claim.key(), token = %claim.token, "claimed shard");
        return Ok(claim.clone());
    }
    read_claim(store, &claim.key())
        .await?
        .ok_or_else(|| StoreError::CorruptClaim {
            key: key.to_string(),
            url: store.url.clone(),
            reason: "it existed when this attempt tried to create it and was gone when read; \
                     claims are never deleted while their shard runs"
                .into(),
        })
}

/// Reads a shard's claim, or `None` when no attempt has claimed it.
pub async fn read_claim(store: &Store, shard: &ShardKey) -> Result<Option<ShardClaim>, StoreError> {
    let key = claim_key(shard);
    let Some(bytes) = store.get(&key).await? else {
        return Ok(None);
    };
    let corrupt = |reason: String| StoreError::CorruptClaim {
        key: key.to_string(),
        url: store.url.clone(),
        reason,
    };
    let claim: ShardClaim = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if &claim.key() != shard {
        return Err(corrupt(format!("it names shard {}", claim.key())));
    }
    Ok(Some(claim))
}

/// Finishes a shard that an earlier attempt claimed but did not mark: copies
/// the winner's staged tables and writes the marker. Returns the marker when
/// the shard is committed now (or was already), and `None` when it has no
/// claim, so it must run.
pub async fn finish_claimed(
    store: &Store,
    shard: &ShardKey,
) -> Result<Option<CommitMarker>, StoreError> {
    if let Some(marker) = read_commit_marker(store, shard).await? {
        return Ok(Some(marker));
    }
    let Some(claim) = read_claim(store, shard).await? else {
        return Ok(None);
    };
    tracing::info!(shard = %shard, winner = %claim.token, "finishing a shard claimed by an earlier attempt");
    publish(store, &claim).await.map(Some)
}

/// Publish, mark and clean for the winning claim. Idempotent.
async fn publish(store: &Store, winner: &ShardClaim) -> Result<CommitMarker, StoreError> {
    let shard = winner.key();
    if let Some(marker) = read_commit_marker(store, &shard).await? {
        return Ok(marker);
    }

    for table in winner.rows.keys() {
        let from = staged_table_key(&shard, &winner.token, *table);
        let to = shard.table_object(*table);
        if let Err(error) = copy(store, &from, &to).await {
            // The winner's staging goes only after its marker is written,
            // so a missing source means another worker finished the shard
            // meanwhile.
            if let Some(marker) = read_commit_marker(store, &shard).await? {
                return Ok(marker);
            }
            return Err(match error {
                StoreError::Object {
                    source: object_store::Error::NotFound { .. },
                    ..
                } => StoreError::StagingMissing {
                    claim: claim_key(&shard).to_string(),
                    staged: from.to_string(),
                    url: store.url.clone(),
                },
                other => other,
            });
        }
    }

    let marker = winner.marker();
    write_commit_marker(store, &marker).await?;
    delete_folder(store, &shard_staging_folder(&shard)).await;
    Ok(marker)
}

/// Copies `from` to `to` in the store, replacing `to`; falls back to a read
/// and a write when the backend does not copy.
async fn copy(store: &Store, from: &Path, to: &Path) -> Result<(), StoreError> {
    match store
        .inner
        .copy(&store.location(from), &store.location(to))
        .await
    {
        Ok(()) => Ok(()),
        Err(object_store::Error::NotImplemented { .. })
        | Err(object_store::Error::NotSupported { .. }) => {
            let bytes = store.get(from).await?.ok_or_else(|| StoreError::Object {
                operation: Operation::Copy,
                key: from.to_string(),
                url: store.url.clone(),
                source: object_store::Error::NotFound {
                    path: from.to_string(),
                    source: "the staged table is gone".into(),
                },
            })?;
            store.put(to, bytes).await
        }
        Err(source) => Err(StoreError::Object {
            operation: Operation::Copy,
            key: from.to_string(),
            url: store.url.clone(),
            source,
        }),
    }
}

fn attempt_folder(shard: &ShardKey, token: &AttemptToken) -> Path {
    Path::from_iter(
        shard_staging_folder(shard)
            .parts()
            .chain([token.as_str().into()]),
    )
}

/// Deletes every object under `folder`. Failures are logged, not returned:
/// staging objects that stay behind cost space, never correctness.
async fn delete_folder(store: &Store, folder: &Path) {
    let keys = match store.list_keys(folder).await {
        Ok(keys) => keys,
        Err(error) => {
            tracing::warn!(folder = %folder, cause = %error, "listing staging objects to delete failed; they stay in the store");
            return;
        }
    };
    for key in keys {
        if let Err(error) = store.inner.delete(&store.location(&key)).await {
            tracing::warn!(object = %key, cause = %error, "deleting a staging object failed; it stays in the store");
        }
    }
    store.remove_empty_folders(folder);
}
