//! Stores that cannot be written: a clear error, and no shard marked
//! committed after a failed write.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::record_batch::RecordBatch;
use common::failing::FailingStore;
use common::{marker, model, rows_larger_than_one_part, shard_fixture, study};
use gaze_shared::store::{
    Store, StoreError, StoreOptions, StudyKeys, UPLOAD_PART_BYTES, committed_shards, write_shard,
    write_table,
};
use gaze_shared::tables::{Table, read_table};
use object_store::path::Path;

#[test]
fn folder_under_a_file_is_a_clear_error() {
    // Tests run as root, which ignores permission bits, so the folder is made
    // unwritable by putting it under a regular file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let folder = file.join("store");

    let error = Store::open(folder.to_str().unwrap()).unwrap_err();
    assert!(matches!(error, StoreError::CreateFolder { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains(&format!(
            "cannot create the store folder {}",
            folder.display()
        )),
        "{message}"
    );
    assert!(
        message.contains("choose a folder that you can write to"),
        "{message}"
    );
}

#[test]
fn store_path_that_is_a_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();

    let error = Store::open(file.to_str().unwrap()).unwrap_err();

    assert!(matches!(error, StoreError::NotAFolder { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        format!(
            "the store path {} is a file, not a folder; pass a folder for the tables, such as gaze-output",
            file.display()
        )
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"x", "the file is untouched");
}

#[test]
fn missing_folder_without_create_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("absent");
    let options = StoreOptions {
        create: false,
        ..StoreOptions::default()
    };

    let message = Store::open_with(folder.to_str().unwrap(), &options)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains(&format!(
            "the store folder {} does not exist",
            folder.display()
        )),
        "{message}"
    );
    assert!(!folder.exists(), "a read-only open created the folder");
}

fn failing_store(fail_on: &str) -> (Store, Arc<FailingStore>) {
    let failing = Arc::new(FailingStore::new(fail_on));
    (
        Store::new(failing.clone(), Path::default(), "failing://test"),
        failing,
    )
}

#[tokio::test]
async fn failed_table_write_leaves_shard_uncommitted() {
    let (store, _) = failing_store("attention_topk");
    let batches = shard_fixture("llama", 0, 4).batches();
    let tables: Vec<(Table, &[RecordBatch])> =
        batches.iter().map(|(t, b)| (*t, b.as_slice())).collect();

    let error = write_shard(&store, &tables, marker("study-1", "llama", 0))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("writing study-1/attention_topk/llama-shard-00000.parquet in store failing://test failed"), "{message}");
    assert!(message.contains("injected failure"), "{message}");

    assert!(
        committed_shards(&store, &study("study-1"), &model("llama"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        read_table(&store, &study("study-1"), Table::Samples)
            .await
            .unwrap(),
        Vec::<RecordBatch>::new()
    );
}

#[tokio::test]
async fn failed_marker_write_leaves_shard_uncommitted() {
    let (store, _) = failing_store("commits");
    let batches = shard_fixture("llama", 0, 2).batches();
    let tables: Vec<(Table, &[RecordBatch])> =
        batches.iter().map(|(t, b)| (*t, b.as_slice())).collect();

    assert!(
        write_shard(&store, &tables, marker("study-1", "llama", 0))
            .await
            .is_err()
    );
    assert!(
        committed_shards(&store, &study("study-1"), &model("llama"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn failed_multipart_upload_is_aborted() {
    let (store, failing) = failing_store("attention_rows");
    let shard = StudyKeys::new(study("study-1")).shard(model("llama"), 0);

    let error = write_table(
        &store,
        &shard,
        Table::AttentionRows,
        &[rows_larger_than_one_part()],
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("injected failure"), "{error}");
    assert_eq!(
        failing.aborts.load(Ordering::SeqCst),
        1,
        "the multipart upload was not aborted"
    );
    assert_eq!(
        store
            .get(&shard.table_object(Table::AttentionRows))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn large_table_uploads_in_parts() {
    let store = Store::open("memory://").unwrap();
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
    let read =
        gaze_shared::tables::read_parquet_object(&store, &shard.table_object(Table::AttentionRows))
            .await
            .unwrap();
    let read = arrow::compute::concat_batches(&batch.schema(), &read).unwrap();
    assert_eq!(read, batch);
}

#[tokio::test]
async fn empty_batch_list_is_rejected() {
    let store = Store::open("memory://").unwrap();
    let shard = StudyKeys::new(study("study-1")).shard(model("llama"), 0);
    let message = write_table(&store, &shard, Table::Tokens, &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("no record batch was given for study-1/tokens/llama-shard-00000.parquet"),
        "{message}"
    );
}
