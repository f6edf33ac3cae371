//! The tables that `gaze run` writes, as pandas, polars, pyarrow and DuckDB
//! read them, with the shared interop script. GAZE_TEST_PYTHON names a
//! Python with those packages; without it the test skips, or fails when
//! GAZE_REQUIRE_SERVICES=1.

mod run_support;

use std::path::Path;
use std::process::Command;

use arrow::datatypes::DataType;
use gaze_shared::tables::Table;
use run_support::{Settings, StudyDir, service_env, text};
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

#[test]
fn python_readers_read_every_table_of_a_run() {
    let Some(python) = service_env(
        "GAZE_TEST_PYTHON",
        "point it to a Python with pandas, polars, duckdb and pyarrow",
    ) else {
        return;
    };
    let study = StudyDir::new(&Settings {
        store_rows: true,
        ..Settings::default()
    });
    let output = study.run(&["--limit", "16"]);
    assert!(output.status.success(), "{}", text(&output.stderr));

    // The expectation comes from the Rust reader: rows and column types.
    let mut expectation = serde_json::Map::new();
    for table in Table::ALL {
        let batches = study.table("uk-demo", table);
        assert!(!batches.is_empty(), "gaze run wrote no {table} table");
        let folder = study.store().join("uk-demo").join(table.as_str());
        let columns: Vec<Value> = batches[0]
            .schema()
            .fields()
            .iter()
            .map(|f| json!({"name": f.name(), "type": type_name(f.data_type()), "nullable": f.is_nullable()}))
            .collect();
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        expectation.insert(
            table.as_str().to_string(),
            json!({
                "folder": folder.to_str().unwrap(),
                "glob": folder.join("*.parquet").to_str().unwrap(),
                "rows": rows,
                "columns": columns,
            }),
        );
    }
    let expectation_file = study.dir.path().join("expectation.json");
    std::fs::write(
        &expectation_file,
        serde_json::to_vec_pretty(&Value::Object(expectation)).unwrap(),
    )
    .unwrap();

    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tests/interop/read_tables.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(&expectation_file)
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the Python readers disagree:\n{stdout}\n{}",
        text(&output.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        4 * Table::ALL.len(),
        "{stdout}"
    );
}
