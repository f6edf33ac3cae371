//! The store: where studies keep their manifest, Parquet tables and commit
//! markers, on a local folder, S3 (or an S3-compatible server) or in memory.
//!
//! # Layout
//!
//! ```text
//! <root>/<study>/manifest.json
//! <root>/<study>/<table>/<model>-shard-<id>.parquet
//! <root>/<study>/commits/<model>-shard-<id>.json
//! <root>/<study>/claims/<model>-shard-<id>.json
//! <root>/<study>/staging/<model>-shard-<id>/<attempt>/<table>.parquet
//! ```
//!
//! - `<root>` is the store URL: a folder, `s3://bucket/prefix` or
//!   `memory://prefix`.
//! - `manifest.json` is written once, when the study starts: the
//!   fingerprint and its parts, the config, a plan summary, the gaze version
//!   and each model's identity. A later run of the same study must match it
//!   ([`check_manifest`]), so that results computed from other inputs are
//!   never mixed into one study.
//! - `<table>` is one of `samples`, `tokens`, `attention_topk`,
//!   `attention_fields` and `attention_rows`. One folder per table lets a
//!   reader take a whole table at once, as in DuckDB's
//!   `read_parquet('<root>/<study>/attention_topk/*.parquet')`.
//! - `<id>` is the shard id, zero-padded to five digits (`00042`).
//! - `commits/<model>-shard-<id>.json` is the shard's commit marker, written
//!   after all its tables. **A shard without its marker is not done**,
//!   whatever else exists; readers skip its files, and the coordinator runs
//!   it again. A retry writes the same keys, so it replaces the files of a
//!   failed attempt instead of adding to them.
//! - `claims/` and `staging/` belong to the exactly-once commit of
//!   `gaze run` ([`StagedShard::commit`]): each attempt stages its tables
//!   under its own prefix, the first to create the claim wins, and only the
//!   winner's bytes are copied to the final keys before the marker.
//!
//! Study and model ids are limited to `[A-Za-z0-9_-]` and table names come
//! from a closed enum, so every key stays inside its study's folder.

mod commit;
mod error;
mod keys;
mod manifest;
mod open;
mod shard_commit;
mod write;

pub use commit::{
    CommitMarker, ShardTimings, committed_shard_keys, committed_shards, pending_shards,
    read_commit_marker, write_commit_marker,
};
pub use error::{Operation, StoreError};
pub use keys::{
    COMMITS_FOLDER, InvalidId, MANIFEST_NAME, MAX_ID_LEN, ModelId, SHARD_ID_DIGITS, ShardKey,
    StudyId, StudyKeys,
};
pub use manifest::{
    Manifest, ManifestChange, ManifestMismatch, ManifestStatus, check_manifest, read_manifest,
    replace_manifest_without_results, write_or_check_manifest,
};
pub use open::{Store, StoreOptions};
pub use shard_commit::{
    AttemptToken, CLAIMS_FOLDER, CommitOutcome, STAGING_FOLDER, ShardClaim, StagedShard, claim_key,
    claim_shard, finish_claimed, read_claim, shard_staging_folder, stage_shard, staged_table_key,
};
pub use write::{TableWritten, UPLOAD_PART_BYTES, write_shard, write_table, write_table_at};
