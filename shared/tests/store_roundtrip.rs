//! Writing a shard's tables and commit marker, listing committed shards and
//! reading the tables back, on the in-memory store and on a local folder.

mod common;

use std::collections::BTreeSet;

use arrow::compute::concat_batches;
use arrow::record_batch::RecordBatch;
use common::{marker, model, shard_fixture, study};
use gaze_shared::store::{
    Store, committed_shard_keys, committed_shards, pending_shards, read_commit_marker, write_shard,
    write_table,
};
use gaze_shared::tables::{Table, read_table};

async fn write_fixture_shard(
    store: &Store,
    model_name: &str,
    shard: u32,
    samples: i64,
) -> Vec<(Table, Vec<RecordBatch>)> {
    let batches = shard_fixture(model_name, shard as i32, samples).batches();
    let tables: Vec<(Table, &[RecordBatch])> =
        batches.iter().map(|(t, b)| (*t, b.as_slice())).collect();
    write_shard(store, &tables, marker("study-1", model_name, shard))
        .await
        .unwrap();
    batches
}

fn one_batch(batches: &[RecordBatch]) -> RecordBatch {
    concat_batches(&batches[0].schema(), batches).unwrap()
}

async fn roundtrip(store: Store) {
    let study = study("study-1");
    let shard_3 = write_fixture_shard(&store, "llama", 3, 4).await;
    let shard_1 = write_fixture_shard(&store, "llama", 1, 3).await;

    assert_eq!(
        committed_shards(&store, &study, &model("llama"))
            .await
            .unwrap(),
        BTreeSet::from([1, 3])
    );
    assert!(
        committed_shards(&store, &study, &model("qwen"))
            .await
            .unwrap()
            .is_empty()
    );

    for (index, table) in Table::ALL.into_iter().enumerate() {
        let read = read_table(&store, &study, table).await.unwrap();
        let expected = one_batch(&[shard_1[index].1.clone(), shard_3[index].1.clone()].concat());
        assert_eq!(
            one_batch(&read),
            expected,
            "table {table} differs after the round trip"
        );
    }
}

#[tokio::test]
async fn memory_store_roundtrip() {
    roundtrip(Store::open("memory://root").unwrap()).await;
}

#[tokio::test]
async fn local_folder_roundtrip() {
    let folder = tempfile::tempdir().unwrap();
    let root = folder.path().join("store");
    roundtrip(Store::open(root.to_str().unwrap()).unwrap()).await;

    let file = root
        .join("study-1")
        .join("attention_topk")
        .join("llama-shard-00003.parquet");
    assert!(file.is_file(), "expected {} on disk", file.display());
    assert!(
        root.join("study-1/commits/llama-shard-00003.json")
            .is_file()
    );
}

#[tokio::test]
async fn fresh_local_folder_has_no_commits() {
    let folder = tempfile::tempdir().unwrap();
    let store = Store::open(folder.path().join("store").to_str().unwrap()).unwrap();

    assert!(
        committed_shards(&store, &study("study-1"), &model("llama"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        read_table(&store, &study("study-1"), Table::Samples)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn file_url_opens_local_folder() {
    let folder = tempfile::tempdir().unwrap();
    let url = format!("file://{}/nested/store", folder.path().display());
    let store = Store::open(&url).unwrap();
    write_fixture_shard(&store, "llama", 0, 1).await;
    assert!(
        folder
            .path()
            .join("nested/store/study-1/samples/llama-shard-00000.parquet")
            .is_file()
    );
}

#[tokio::test]
async fn rerun_of_shard_replaces_its_files() {
    let store = Store::open("memory://").unwrap();
    let study = study("study-1");
    write_fixture_shard(&store, "llama", 2, 4).await;
    let keys_before = store
        .list_keys(&object_store::path::Path::from("study-1"))
        .await
        .unwrap();

    let rerun = write_fixture_shard(&store, "llama", 2, 4).await;
    let keys_after = store
        .list_keys(&object_store::path::Path::from("study-1"))
        .await
        .unwrap();

    assert_eq!(keys_before, keys_after);
    let samples = read_table(&store, &study, Table::Samples).await.unwrap();
    assert_eq!(
        one_batch(&samples),
        one_batch(&rerun[0].1),
        "samples duplicated by the rerun"
    );
}

#[tokio::test]
async fn uncommitted_shard_is_not_read() {
    let store = Store::open("memory://").unwrap();
    let study = study("study-1");
    write_fixture_shard(&store, "llama", 0, 2).await;
    let orphan = shard_fixture("llama", 1, 2).batches();
    let shard_key = gaze_shared::store::StudyKeys::new(study.clone()).shard(model("llama"), 1);
    write_table(&store, &shard_key, Table::Samples, &orphan[0].1)
        .await
        .unwrap();

    let samples = one_batch(&read_table(&store, &study, Table::Samples).await.unwrap());
    assert_eq!(
        samples.num_rows(),
        2,
        "rows of the uncommitted shard 1 were read"
    );
    assert_eq!(
        committed_shards(&store, &study, &model("llama"))
            .await
            .unwrap(),
        BTreeSet::from([0])
    );
}

#[tokio::test]
async fn commit_marker_records_rows_per_table() {
    let store = Store::open("memory://").unwrap();
    write_fixture_shard(&store, "llama", 7, 4).await;
    let key = gaze_shared::store::StudyKeys::new(study("study-1")).shard(model("llama"), 7);

    let marker = read_commit_marker(&store, &key)
        .await
        .unwrap()
        .expect("marker written");
    // 4 samples, 2 of which collect attention over 4 tokens, 2 steps x 2 layers x 2 heads.
    assert_eq!(marker.rows[&Table::Samples], 4);
    assert_eq!(marker.rows[&Table::Tokens], 2 * 4);
    assert_eq!(marker.rows[&Table::AttentionTopk], 2 * 8 * 2);
    assert_eq!(marker.rows[&Table::AttentionFields], 2 * 8 * 4);
    assert_eq!(marker.rows[&Table::AttentionRows], 2 * 8);
    assert_eq!(marker.worker, "worker-a");
}

#[tokio::test]
async fn committed_keys_span_models() {
    let store = Store::open("memory://").unwrap();
    write_fixture_shard(&store, "llama", 0, 1).await;
    write_fixture_shard(&store, "llama-shard-9", 4, 1).await;

    let keys = committed_shard_keys(&store, &study("study-1"))
        .await
        .unwrap();
    let listed: Vec<(String, u32)> = keys
        .iter()
        .map(|k| (k.model.to_string(), k.shard))
        .collect();
    assert_eq!(
        listed,
        vec![("llama".to_string(), 0), ("llama-shard-9".to_string(), 4)]
    );
    assert_eq!(
        committed_shards(&store, &study("study-1"), &model("llama"))
            .await
            .unwrap(),
        BTreeSet::from([0])
    );
}

#[tokio::test]
async fn corrupt_marker_is_an_error_naming_it() {
    let store = Store::open("memory://").unwrap();
    let key = gaze_shared::store::StudyKeys::new(study("study-1")).shard(model("llama"), 5);
    store
        .put(
            &key.commit_marker(),
            bytes::Bytes::from_static(b"{\"study\": \"study-1\", trunc"),
        )
        .await
        .unwrap();

    let message = read_commit_marker(&store, &key)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("study-1/commits/llama-shard-00005.json"),
        "{message}"
    );
    assert!(message.contains("delete it"), "{message}");
}

#[tokio::test]
async fn marker_naming_another_shard_is_corrupt() {
    let store = Store::open("memory://").unwrap();
    let key = gaze_shared::store::StudyKeys::new(study("study-1")).shard(model("llama"), 5);
    let other = serde_json::to_vec(&marker("study-1", "llama", 6)).unwrap();
    store.put(&key.commit_marker(), other.into()).await.unwrap();

    let message = read_commit_marker(&store, &key)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("it names shard study-1/llama-shard-00006"),
        "{message}"
    );
}

#[tokio::test]
async fn missing_marker_reads_as_none() {
    let store = Store::open("memory://").unwrap();
    let key = gaze_shared::store::StudyKeys::new(study("study-1")).shard(model("llama"), 5);
    assert_eq!(read_commit_marker(&store, &key).await.unwrap(), None);
}

#[test]
fn pending_shards_are_planned_minus_committed() {
    assert_eq!(
        pending_shards([4, 0, 1, 2, 3, 1], &BTreeSet::from([1, 3, 9])),
        vec![0, 2, 4]
    );
    assert_eq!(pending_shards(0..3, &BTreeSet::new()), vec![0, 1, 2]);
    assert!(pending_shards(0..2, &BTreeSet::from([0, 1])).is_empty());
}
