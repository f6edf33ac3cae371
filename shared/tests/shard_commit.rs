//! The shard commit protocol: racing attempts (one of them stale) leave the
//! final keys with one attempt's bytes and one marker naming it, and a claim
//! left without a marker is finished by the next attempt.

mod common;

use std::collections::BTreeMap;

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use common::{model, shard_fixture, study};
use gaze_shared::store::{
    AttemptToken, CommitOutcome, ShardClaim, ShardKey, ShardTimings, StagedShard, Store,
    claim_shard, committed_shard_keys, finish_claimed, read_commit_marker, shard_staging_folder,
    stage_shard, staged_table_key,
};
use gaze_shared::tables::{Table, committed_table_objects};

const SHARD: u32 = 3;

fn key() -> ShardKey {
    ShardKey::new(study("study-1"), model("llama"), SHARD)
}

/// Builds an attempt's claim draft; `worker` and `attempt` tell attempts apart.
fn draft(worker: &str, attempt: u32) -> ShardClaim {
    ShardClaim {
        study: study("study-1"),
        model: model("llama"),
        shard: SHARD,
        token: AttemptToken::with_nonce(worker, u64::from(attempt), 7),
        fingerprint: "f1ngerpr1nt".into(),
        attempt,
        worker: worker.into(),
        rows: BTreeMap::new(),
        timings: ShardTimings::default(),
        gaze_version: "0.1.0".into(),
    }
}

/// Stages a shard of `samples` samples: attempts with other sample counts
/// write other bytes.
async fn stage(store: &Store, worker: &str, attempt: u32, samples: i64) -> StagedShard {
    let batches = shard_fixture("llama", SHARD as i32, samples).batches();
    let tables: Vec<(Table, &[RecordBatch])> =
        batches.iter().map(|(t, b)| (*t, b.as_slice())).collect();
    stage_shard(store, draft(worker, attempt), &tables)
        .await
        .unwrap()
}

async fn final_bytes(store: &Store) -> BTreeMap<Table, Bytes> {
    let mut files = BTreeMap::new();
    for table in Table::ALL {
        if let Some(bytes) = store.get(&key().table_object(table)).await.unwrap() {
            files.insert(table, bytes);
        }
    }
    files
}

async fn staged_bytes(store: &Store, staged: &StagedShard) -> BTreeMap<Table, Bytes> {
    let mut files = BTreeMap::new();
    for table in staged.claim.rows.keys() {
        let staged_key = staged_table_key(&key(), &staged.claim.token, *table);
        files.insert(*table, store.get(&staged_key).await.unwrap().unwrap());
    }
    files
}

#[tokio::test]
async fn stale_attempt_after_the_commit_changes_no_byte() {
    let store = Store::open("memory://root").unwrap();
    let stale = stage(&store, "worker-a", 1, 4).await;
    let fresh = stage(&store, "worker-b", 2, 6).await;
    let expected = staged_bytes(&store, &fresh).await;

    // worker-a was paused past its lease; worker-b commits first.
    let won = fresh.commit(&store).await.unwrap();
    assert!(matches!(won, CommitOutcome::Won(_)));
    let after_winner = final_bytes(&store).await;
    assert_eq!(after_winner, expected);

    let lost = stale.commit(&store).await.unwrap();
    assert!(matches!(lost, CommitOutcome::Lost(_)));
    assert_eq!(final_bytes(&store).await, expected);
    let marker = read_commit_marker(&store, &key()).await.unwrap().unwrap();
    assert_eq!((marker.worker.as_str(), marker.attempt), ("worker-b", 2));
    assert_eq!(marker.rows[&Table::Samples], 6);
}

#[tokio::test]
async fn interleaved_attempts_publish_the_first_claim() {
    let store = Store::open("memory://root").unwrap();
    let first = stage(&store, "worker-a", 1, 4).await;
    let second = stage(&store, "worker-b", 2, 6).await;
    let expected = staged_bytes(&store, &first).await;

    // worker-a claims but stalls before copying; worker-b loses the claim
    // and publishes worker-a's tables; then worker-a wakes up and publishes
    // them again.
    claim_shard(&store, &first.claim).await.unwrap();
    let outcome = second.commit(&store).await.unwrap();
    assert!(matches!(outcome, CommitOutcome::Lost(_)));
    assert_eq!(final_bytes(&store).await, expected);

    let outcome = first.commit(&store).await.unwrap();
    assert!(matches!(outcome, CommitOutcome::Won(_)));
    assert_eq!(final_bytes(&store).await, expected);

    let marker = read_commit_marker(&store, &key()).await.unwrap().unwrap();
    assert_eq!((marker.worker.as_str(), marker.attempt), ("worker-a", 1));
    assert_eq!(marker.rows[&Table::Samples], 4);
    assert_eq!(
        committed_shard_keys(&store, &study("study-1"))
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn claim_without_marker_finished_next() {
    let store = Store::open("memory://root").unwrap();
    let crashed = stage(&store, "worker-a", 1, 4).await;
    let expected = staged_bytes(&store, &crashed).await;
    // The attempt dies right after its claim.
    claim_shard(&store, &crashed.claim).await.unwrap();

    // Nothing is visible yet: no marker, and readers list no shard file.
    assert!(read_commit_marker(&store, &key()).await.unwrap().is_none());
    let listed = committed_table_objects(&store, &study("study-1"), Table::Samples)
        .await
        .unwrap();
    assert!(listed.is_empty());

    let marker = finish_claimed(&store, &key()).await.unwrap().unwrap();
    assert_eq!((marker.worker.as_str(), marker.attempt), ("worker-a", 1));
    assert_eq!(final_bytes(&store).await, expected);
    assert_eq!(
        read_commit_marker(&store, &key()).await.unwrap(),
        Some(marker)
    );
    // The staging is cleaned once the marker exists.
    let left = store
        .list_keys(&shard_staging_folder(&key()))
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn unclaimed_shard_is_left_to_run() {
    let store = Store::open("memory://root").unwrap();
    // Staged but never claimed: the attempt died while uploading.
    stage(&store, "worker-a", 1, 4).await;
    assert_eq!(finish_claimed(&store, &key()).await.unwrap(), None);
    assert!(final_bytes(&store).await.is_empty());
}

#[test]
fn attempt_tokens_are_one_safe_key_segment() {
    let token = AttemptToken::with_nonce("host.example:cuda:0/w", 3, 0xabc);
    assert_eq!(token.as_str(), "host_example_cuda_0_w-3-0000000000000abc");
    assert_ne!(
        AttemptToken::new("w", 1).as_str(),
        AttemptToken::new("w", 1).as_str()
    );
}

#[tokio::test]
async fn local_commit_leaves_no_staging_folders() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path().to_str().unwrap()).unwrap();
    let loser = stage(&store, "worker-a", 1, 4).await;
    let winner = stage(&store, "worker-b", 2, 6).await;

    assert!(matches!(
        winner.commit(&store).await.unwrap(),
        CommitOutcome::Won(_)
    ));
    assert!(matches!(
        loser.commit(&store).await.unwrap(),
        CommitOutcome::Lost(_)
    ));

    let study_folder = root.path().join("study-1");
    assert!(study_folder.join("commits").is_dir());
    assert!(study_folder.join("samples").is_dir());
    // The study's staging folder itself may stay, empty: removing it could
    // race with another shard's writer creating a folder inside it.
    let staging = study_folder.join("staging");
    let left: Vec<_> = std::fs::read_dir(&staging)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "staging folders stay behind: {left:?}");
}
