//! The store against a real S3-compatible server (s3s-fs), started by
//! `scripts/services.sh`. Without GAZE_TEST_S3_ENDPOINT these tests skip,
//! or fail when GAZE_REQUIRE_SERVICES=1.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::compute::concat_batches;
use arrow::record_batch::RecordBatch;
use common::{marker, model, rows_larger_than_one_part, service_env, shard_fixture, study};
use gaze_shared::store::{
    ManifestStatus, Store, StoreError, StoreOptions, StudyKeys, UPLOAD_PART_BYTES,
    committed_shards, write_or_check_manifest, write_shard, write_table,
};
use gaze_shared::tables::{Table, read_parquet_object, read_table};

const HOW: &str = "run the tests through scripts/services.sh";

/// Opens a store over a fresh prefix of the test bucket, so tests do not meet.
fn s3_store(bucket: Option<&str>, extra: &[(&str, &str)]) -> Option<Store> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let endpoint = service_env("GAZE_TEST_S3_ENDPOINT", HOW)?;
    let bucket = match bucket {
        Some(bucket) => bucket.to_string(),
        None => std::env::var("GAZE_TEST_S3_BUCKET").unwrap_or_else(|_| "gaze-test".to_string()),
    };
    let prefix = format!(
        "run-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let options = StoreOptions {
        s3_endpoint: Some(endpoint),
        s3_config: extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..StoreOptions::default()
    };
    Some(Store::open_with(&format!("s3://{bucket}/{prefix}"), &options).unwrap())
}

async fn write_fixture_shard(
    store: &Store,
    shard: u32,
) -> Result<Vec<(Table, Vec<RecordBatch>)>, StoreError> {
    let batches = shard_fixture("llama", shard as i32, 4).batches();
    let tables: Vec<(Table, &[RecordBatch])> =
        batches.iter().map(|(t, b)| (*t, b.as_slice())).collect();
    write_shard(store, &tables, marker("study-1", "llama", shard)).await?;
    Ok(batches)
}

#[tokio::test]
async fn s3_tables_roundtrip() {
    let Some(store) = s3_store(None, &[]) else {
        return;
    };
    let written = write_fixture_shard(&store, 3).await.unwrap();

    assert_eq!(
        committed_shards(&store, &study("study-1"), &model("llama"))
            .await
            .unwrap(),
        BTreeSet::from([3])
    );
    for (table, batches) in &written {
        let read = read_table(&store, &study("study-1"), *table).await.unwrap();
        let read = concat_batches(&batches[0].schema(), &read).unwrap();
        assert_eq!(
            read, batches[0],
            "table {table} differs after the S3 round trip"
        );
    }
}

#[tokio::test]
async fn s3_large_table_goes_up_in_parts() {
    let Some(store) = s3_store(None, &[]) else {
        return;
    };
    let shard = StudyKeys::new(study("study-1")).shard(model("llama"), 0);
    let batch = rows_larger_than_one_part();

    let written = write_table(
        &store,
        &shard,
        Table::AttentionRows,
        std::slice::from_ref(&batch),
    )
    .await
    .unwrap();
    assert!(
        written.bytes > UPLOAD_PART_BYTES as u64,
        "only {} bytes written",
        written.bytes
    );
    let read = read_parquet_object(&store, &shard.table_object(Table::AttentionRows))
        .await
        .unwrap();
    assert_eq!(concat_batches(&batch.schema(), &read).unwrap(), batch);
}

#[tokio::test]
async fn s3_objects_land_at_layout_keys() {
    let Some(store) = s3_store(None, &[]) else {
        return;
    };
    let Some(root) = service_env("GAZE_TEST_S3_ROOT", HOW) else {
        return;
    };
    write_fixture_shard(&store, 0).await.unwrap();

    let bucket_folder =
        std::path::Path::new(&root).join(std::env::var("GAZE_TEST_S3_BUCKET").unwrap());
    let study_folder = bucket_folder.join(store.prefix.as_ref()).join("study-1");
    assert!(
        study_folder
            .join("attention_topk/llama-shard-00000.parquet")
            .is_file()
    );
    assert!(
        study_folder
            .join("commits/llama-shard-00000.json")
            .is_file()
    );
}

#[tokio::test]
async fn s3_manifest_is_created_once() {
    let Some(store) = s3_store(None, &[]) else {
        return;
    };
    let manifest = gaze_shared::store::Manifest {
        study: study("study-1"),
        fingerprint: "abc".to_string(),
        fingerprint_parts: Default::default(),
        config: serde_json::json!({}),
        plan: serde_json::json!({}),
        gaze_version: "0.1.0".to_string(),
        models: Default::default(),
        vignettes: None,
        created_at: None,
    };
    assert_eq!(
        write_or_check_manifest(&store, &manifest).await.unwrap(),
        ManifestStatus::Created
    );
    assert_eq!(
        write_or_check_manifest(&store, &manifest).await.unwrap(),
        ManifestStatus::Matches
    );

    let mut changed = manifest.clone();
    changed.fingerprint = "def".to_string();
    let error = write_or_check_manifest(&store, &changed).await.unwrap_err();
    assert!(matches!(error, StoreError::ManifestMismatch(_)), "{error}");
}

// s3s-fs creates a missing bucket's folder on a write, where S3 returns
// NoSuchBucket, so the missing bucket is detected by listing, as
// `check_access` and every reader do.
#[tokio::test]
async fn s3_missing_bucket_is_a_clear_error() {
    let Some(store) = s3_store(Some("no-such-bucket"), &[]) else {
        return;
    };

    let message = store.check_access().await.unwrap_err().to_string();
    assert!(
        message.contains("in store s3://no-such-bucket/"),
        "{message}"
    );
    assert!(
        message.contains("check that the bucket exists"),
        "{message}"
    );

    let message = committed_shards(&store, &study("study-1"), &model("llama"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("listing study-1/commits in store s3://no-such-bucket/"),
        "{message}"
    );
    assert!(
        message.contains("check that the bucket exists"),
        "{message}"
    );
}

#[tokio::test]
async fn s3_wrong_credentials_are_a_clear_error() {
    let secret = "wrong-secret-value";
    let Some(store) = s3_store(None, &[("aws_secret_access_key", secret)]) else {
        return;
    };

    let message = write_fixture_shard(&store, 0)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"),
        "{message}"
    );
    assert!(
        !message.contains(secret),
        "the secret leaked into: {message}"
    );

    let message = store.check_access().await.unwrap_err().to_string();
    assert!(message.contains("check the credentials"), "{message}");
    assert!(
        !message.contains(secret),
        "the secret leaked into: {message}"
    );
}

#[tokio::test]
async fn s3_check_access_passes_on_good_store() {
    let Some(store) = s3_store(None, &[]) else {
        return;
    };
    store.check_access().await.unwrap();
}

#[tokio::test]
async fn s3_nothing_committed_after_failed_write() {
    let Some(good) = s3_store(None, &[]) else {
        return;
    };
    let options = StoreOptions {
        s3_endpoint: good_endpoint(),
        s3_config: vec![("aws_secret_access_key".to_string(), "wrong".to_string())],
        ..StoreOptions::default()
    };
    let bad = Store::open_with(&good.url, &options).unwrap();

    assert!(write_fixture_shard(&bad, 0).await.is_err());
    assert!(
        committed_shards(&good, &study("study-1"), &model("llama"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        good.list_keys(&object_store::path::Path::from("study-1"))
            .await
            .unwrap()
            .is_empty()
    );
}

fn good_endpoint() -> Option<String> {
    std::env::var("GAZE_TEST_S3_ENDPOINT").ok()
}
