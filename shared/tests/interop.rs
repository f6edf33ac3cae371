//! The tables as pandas, polars, pyarrow and DuckDB read them: a Python
//! script reads every table of a study written here and checks row counts
//! and column types. GAZE_TEST_PYTHON names a Python with those packages
//! (`pip install pandas polars duckdb pyarrow`); without it the test skips,
//! or fails when GAZE_REQUIRE_SERVICES=1.

mod common;

use std::path::Path;
use std::process::Command;

use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use common::{marker, service_env, shard_fixture};
use gaze_shared::store::{Store, write_shard};
use gaze_shared::tables::Table;
use serde_json::{Value, json};

fn type_name(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Utf8 => "utf8",
        DataType::Int32 => "int32",
        DataType::Int64 => "int64",
        DataType::Float32 => "float32",
        DataType::Float64 => "float64",
        DataType::Boolean => "boolean",
        DataType::List(item) if item.data_type() == &DataType::Float32 => "list<float32>",
        other => panic!("a table has type {other}, which the interop check does not expect"),
    }
}

/// Writes two committed shards and returns the expectation for the script.
async fn write_study(root: &Path) -> Value {
    let store = Store::open(root.to_str().unwrap()).unwrap();
    let shards = [shard_fixture("llama", 0, 3), shard_fixture("llama", 1, 4)];
    let mut rows = [0usize; Table::ALL.len()];
    let mut schemas = Vec::new();

    for (shard, fixture) in shards.iter().enumerate() {
        let batches = fixture.batches();
        let tables: Vec<(Table, &[RecordBatch])> =
            batches.iter().map(|(t, b)| (*t, b.as_slice())).collect();
        write_shard(&store, &tables, marker("study-1", "llama", shard as u32))
            .await
            .unwrap();
        for (index, (_, table_batches)) in batches.iter().enumerate() {
            rows[index] += table_batches
                .iter()
                .map(RecordBatch::num_rows)
                .sum::<usize>();
        }
        schemas = batches.iter().map(|(_, b)| b[0].schema()).collect();
    }

    let mut expectation = serde_json::Map::new();
    for (index, table) in Table::ALL.into_iter().enumerate() {
        let folder = root.join("study-1").join(table.as_str());
        let columns: Vec<Value> = schemas[index]
            .fields()
            .iter()
            .map(|f| json!({"name": f.name(), "type": type_name(f.data_type()), "nullable": f.is_nullable()}))
            .collect();
        expectation.insert(
            table.as_str().to_string(),
            json!({
                "folder": folder.to_str().unwrap(),
                "glob": folder.join("*.parquet").to_str().unwrap(),
                "rows": rows[index],
                "columns": columns,
            }),
        );
    }
    Value::Object(expectation)
}

#[tokio::test]
async fn python_readers_read_every_table() {
    let Some(python) = service_env(
        "GAZE_TEST_PYTHON",
        "point it to a Python with pandas, polars, duckdb and pyarrow",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let expectation = write_study(&dir.path().join("store")).await;
    let expectation_file = dir.path().join("expectation.json");
    std::fs::write(
        &expectation_file,
        serde_json::to_vec_pretty(&expectation).unwrap(),
    )
    .unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/read_tables.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(&expectation_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the Python readers disagree:\n{stdout}\n{stderr}"
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        4 * Table::ALL.len(),
        "{stdout}"
    );
}
