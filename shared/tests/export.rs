//! Exporting a table as CSV or JSON lines: committed shards only, and the
//! store left as it was.

mod common;

use arrow::record_batch::RecordBatch;
use common::{manifest, marker, model, shard_fixture, study};
use gaze_shared::store::{Store, StudyKeys, write_or_check_manifest, write_shard, write_table};
use gaze_shared::tables::{ExportError, ExportFormat, ExportSummary, Table, export_table};
use object_store::path::Path;

async fn write_fixture_shard(store: &Store, shard: u32, samples: i64) {
    write_or_check_manifest(store, &manifest("study-1"))
        .await
        .unwrap();
    let batches = shard_fixture("llama", shard as i32, samples).batches();
    let tables: Vec<(Table, &[RecordBatch])> =
        batches.iter().map(|(t, b)| (*t, b.as_slice())).collect();
    write_shard(store, &tables, marker("study-1", "llama", shard))
        .await
        .unwrap();
}

async fn export(
    store: &Store,
    table: Table,
    format: ExportFormat,
) -> Result<(String, ExportSummary), ExportError> {
    let mut out = Vec::new();
    let summary = export_table(store, &study("study-1"), table, format, &mut out).await?;
    Ok((String::from_utf8(out).unwrap(), summary))
}

#[tokio::test]
async fn tokens_export_as_csv() {
    let store = Store::open("memory://").unwrap();
    write_fixture_shard(&store, 0, 1).await;

    let (csv, summary) = export(&store, Table::Tokens, ExportFormat::Csv)
        .await
        .unwrap();
    assert_eq!(
        csv,
        "sample_id,model,position,token_id,token,text,start,end,word,region,field,special\n\
         0,llama,0,1000,<|begin_of_text|>,<|begin_of_text|>,0,3,,chat_template,,true\n\
         0,llama,1,1001,Ali,Ali,3,6,0,vignette,nationality,false\n\
         0,llama,2,1002,Ġis, is,6,9,1,vignette,,false\n\
         0,llama,3,1003,Ġ34, 34,9,12,2,vignette,age,false\n"
    );
    assert_eq!(summary, ExportSummary { shards: 1, rows: 4 });
}

#[tokio::test]
async fn tokens_export_as_json_lines() {
    let store = Store::open("memory://").unwrap();
    write_fixture_shard(&store, 0, 1).await;

    let (jsonl, _) = export(&store, Table::Tokens, ExportFormat::Jsonl)
        .await
        .unwrap();
    let lines: Vec<&str> = jsonl.lines().collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(
        lines[0],
        r#"{"sample_id":0,"model":"llama","position":0,"token_id":1000,"token":"<|begin_of_text|>","text":"<|begin_of_text|>","start":0,"end":3,"region":"chat_template","special":true}"#
    );
    assert_eq!(
        lines[3],
        r#"{"sample_id":0,"model":"llama","position":3,"token_id":1003,"token":"Ġ34","text":" 34","start":9,"end":12,"word":2,"region":"vignette","field":"age","special":false}"#
    );
}

#[tokio::test]
async fn csv_quotes_commas_and_quotes() {
    let store = Store::open("memory://").unwrap();
    write_fixture_shard(&store, 0, 1).await;

    let (csv, _) = export(&store, Table::Samples, ExportFormat::Csv)
        .await
        .unwrap();
    assert!(csv.contains(r#","Syrian, ""Aleppo""","#), "{csv}");
    assert!(csv.contains("\"Decide case 0.\nApplicant: Ali\""), "{csv}");
}

#[tokio::test]
async fn export_skips_uncommitted_shards() {
    let store = Store::open("memory://").unwrap();
    write_fixture_shard(&store, 0, 2).await;
    write_fixture_shard(&store, 1, 3).await;
    let orphan = shard_fixture("llama", 2, 5).batches();
    let key = StudyKeys::new(study("study-1")).shard(model("llama"), 2);
    write_table(&store, &key, Table::Samples, &orphan[0].1)
        .await
        .unwrap();

    let (jsonl, summary) = export(&store, Table::Samples, ExportFormat::Jsonl)
        .await
        .unwrap();
    assert_eq!(summary, ExportSummary { shards: 2, rows: 5 });
    assert_eq!(jsonl.lines().count(), 5);
    assert!(
        !jsonl.contains("\"shard_id\":2"),
        "rows of the uncommitted shard were exported"
    );
}

#[tokio::test]
async fn csv_header_is_written_once() {
    let store = Store::open("memory://").unwrap();
    write_fixture_shard(&store, 0, 2).await;
    write_fixture_shard(&store, 1, 2).await;

    let (csv, _) = export(&store, Table::AttentionTopk, ExportFormat::Csv)
        .await
        .unwrap();
    assert_eq!(csv.matches("sample_id,model,topic").count(), 1, "{csv}");
}

#[tokio::test]
async fn attention_rows_need_json_lines() {
    let store = Store::open("memory://").unwrap();
    write_fixture_shard(&store, 0, 1).await;

    let message = export(&store, Table::AttentionRows, ExportFormat::Csv)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "column scores of attention_rows is a list, which CSV cannot hold; export it with --format jsonl"
    );

    let (jsonl, _) = export(&store, Table::AttentionRows, ExportFormat::Jsonl)
        .await
        .unwrap();
    assert!(
        jsonl
            .lines()
            .next()
            .unwrap()
            .ends_with(r#""scores":[0.5,0.25,0.125,0.125]}"#),
        "{jsonl}"
    );
}

#[tokio::test]
async fn unknown_study_is_an_error() {
    let store = Store::open("memory://root").unwrap();
    let message = export(&store, Table::Samples, ExportFormat::Csv)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "study study-1 has no manifest in store memory://root; check the store URL and the study id"
    );
}

#[tokio::test]
async fn study_without_committed_shards_exports_nothing() {
    let store = Store::open("memory://").unwrap();
    write_or_check_manifest(&store, &manifest("study-1"))
        .await
        .unwrap();
    let (csv, summary) = export(&store, Table::Samples, ExportFormat::Csv)
        .await
        .unwrap();
    assert_eq!(csv, "");
    assert_eq!(summary, ExportSummary { shards: 0, rows: 0 });
}

#[tokio::test]
async fn export_leaves_store_unchanged() {
    let store = Store::open("memory://").unwrap();
    write_fixture_shard(&store, 0, 2).await;
    let before = store.list_keys(&Path::default()).await.unwrap();

    for table in Table::ALL {
        export(&store, table, ExportFormat::Jsonl).await.unwrap();
    }
    assert_eq!(store.list_keys(&Path::default()).await.unwrap(), before);
}

#[test]
fn format_names_parse() {
    assert_eq!("csv".parse::<ExportFormat>().unwrap(), ExportFormat::Csv);
    assert_eq!(
        "jsonl".parse::<ExportFormat>().unwrap(),
        ExportFormat::Jsonl
    );
    assert_eq!(
        "xml".parse::<ExportFormat>().unwrap_err().to_string(),
        "unknown export format \"xml\"; valid formats: csv, jsonl"
    );
}

#[tokio::test]
async fn rows_of_a_study_without_them_are_rejected() {
    let store = Store::open("memory://").unwrap();
    let mut without_rows = manifest("study-1");
    without_rows.config = serde_json::json!({
        "study": {"name": "study-1"},
        "attention": {"store_rows": false},
    });
    write_or_check_manifest(&store, &without_rows)
        .await
        .unwrap();

    let message = export(&store, Table::AttentionRows, ExportFormat::Jsonl)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("does not record attention_rows"),
        "{message}"
    );
    assert!(message.contains("store_rows = true"), "{message}");

    // The other tables of that study still export.
    let (csv, summary) = export(&store, Table::AttentionTopk, ExportFormat::Csv)
        .await
        .unwrap();
    assert_eq!(csv, "");
    assert_eq!(summary, ExportSummary { shards: 0, rows: 0 });
}
