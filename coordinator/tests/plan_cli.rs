//! `gaze plan` end to end: the demo study's summary, JSON output, the
//! Parquet plan read back, flags over environment variables, and errors.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Output};

use arrow::array::{Array, BooleanArray, Int32Array, Int64Array, StringArray};
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;

fn demo_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/uk-immigration.toml")
}

/// A model folder that does not exist, standing in for the demo's
/// models/test-model, which exists once scripts/demo.sh has run.
fn absent_model(dir: &tempfile::TempDir) -> String {
    dir.path()
        .join("absent-model")
        .to_str()
        .unwrap()
        .to_string()
}

/// Runs `gaze` with `args`, no `GAZE_*` variables from the caller, and `env` set.
fn gaze(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gaze"));
    command.args(args);
    for name in [
        "GAZE_STORE",
        "GAZE_MODEL",
        "GAZE_DEVICE",
        "GAZE_BATCH_SIZE",
        "GAZE_REDIS",
    ] {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    command.output().expect("gaze runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn plan_prints_demo_summary() {
    let config = demo_config();
    let dir = tempfile::tempdir().unwrap();
    let model = absent_model(&dir);

    let output = gaze(&["plan", config.to_str().unwrap(), "--model", &model], &[]);

    let stdout = text(&output.stdout);
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    for part in [
        "Study uk-immigration: 25000 samples, 2500 with attention",
        "Shards: 250 of up to 100 samples",
        "Cells: 1288 (topic x gender x religion x country), 1288 with samples, 19 to 20 samples per cell",
        "Samples per topic:",
        "gender: man: 12500, woman: 12500",
        "Fingerprint: ",
        "model:post-brexit",
    ] {
        assert!(stdout.contains(part), "stdout lacks {part:?}:\n{stdout}");
    }
    assert!(text(&output.stderr).contains("model folder not found"));
}

#[test]
fn plan_json_reports_counts_and_missing_model() {
    let config = demo_config();
    let dir = tempfile::tempdir().unwrap();
    let model = absent_model(&dir);

    let output = gaze(
        &[
            "plan",
            config.to_str().unwrap(),
            "--json",
            "--limit",
            "300",
            "--model",
            &model,
        ],
        &[],
    );

    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["summary"]["samples"], 300);
    assert_eq!(report["summary"]["shards"], 3);
    assert_eq!(report["summary"]["cells"], 1288);
    assert_eq!(report["summary"]["cells_with_samples"], 300);
    assert_eq!(report["summary"]["max_cell_samples"], 1);
    assert_eq!(report["models"][0]["identity"]["status"], "missing");
    assert_eq!(report["fingerprint"]["digest"].as_str().unwrap().len(), 64);
}

#[test]
fn plan_out_writes_parquet_with_expected_columns() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("plan.parquet");
    let config = demo_config();

    let output = gaze(
        &[
            "plan",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );

    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&out).unwrap()).unwrap();
    let column_compression = builder.metadata().row_group(0).column(0).compression();
    assert!(
        matches!(column_compression, Compression::ZSTD(_)),
        "{column_compression:?}"
    );
    let schema = builder.schema().clone();
    let expected_types = [
        ("sample_id", DataType::Int64),
        ("shard_id", DataType::Int32),
        ("topic", DataType::Utf8),
        ("name", DataType::Utf8),
        ("gender", DataType::Utf8),
        ("religion", DataType::Utf8),
        ("country", DataType::Utf8),
        ("prompt", DataType::Utf8),
        ("seed", DataType::Int64),
        ("collect_attention", DataType::Boolean),
    ];
    for (name, data_type) in expected_types {
        assert_eq!(
            schema.field_with_name(name).unwrap().data_type(),
            &data_type,
            "column {name}"
        );
    }

    let batches: Vec<_> = builder.build().unwrap().collect::<Result<_, _>>().unwrap();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 25_000);
    let first = &batches[0];
    let column = |name: &str| first.column(first.schema().index_of(name).unwrap()).clone();
    let ids = column("sample_id");
    let ids = ids.as_any().downcast_ref::<Int64Array>().unwrap();
    let shards = column("shard_id");
    let shards = shards.as_any().downcast_ref::<Int32Array>().unwrap();
    let prompts = column("prompt");
    let prompts = prompts.as_any().downcast_ref::<StringArray>().unwrap();
    let names = column("name");
    let names = names.as_any().downcast_ref::<StringArray>().unwrap();
    let attention = column("collect_attention");
    let attention = attention.as_any().downcast_ref::<BooleanArray>().unwrap();
    assert_eq!(ids.value(0), 0);
    assert_eq!(ids.value(150), 150);
    assert_eq!(shards.value(150), 1);
    assert!(prompts.value(0).contains(names.value(0)));
    assert!(prompts.value(0).starts_with("Read the case below"));
    assert_eq!(attention.null_count(), 0);
}

#[test]
fn flag_wins_over_environment_variable() {
    let config = demo_config();
    let path = config.to_str().unwrap();

    let from_env = gaze(
        &["plan", path, "--limit", "10"],
        &[("GAZE_BATCH_SIZE", "0")],
    );
    let with_flag = gaze(
        &["plan", path, "--limit", "10", "--batch-size", "4"],
        &[("GAZE_BATCH_SIZE", "0")],
    );

    assert!(!from_env.status.success());
    assert!(
        text(&from_env.stderr).contains("GAZE_BATCH_SIZE"),
        "{}",
        text(&from_env.stderr)
    );
    assert!(
        with_flag.status.success(),
        "stderr: {}",
        text(&with_flag.stderr)
    );
}

#[test]
fn help_lists_environment_variables() {
    let output = gaze(&["plan", "--help"], &[]);

    let help = text(&output.stdout);
    for variable in [
        "GAZE_STORE",
        "GAZE_MODEL",
        "GAZE_DEVICE",
        "GAZE_BATCH_SIZE",
        "GAZE_REDIS",
    ] {
        assert!(help.contains(variable), "help lacks {variable}:\n{help}");
    }
}

#[test]
fn unknown_config_key_fails_naming_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(demo_config()).unwrap();
    let broken = original.replace("temperature = 0.7", "temprature = 0.7");
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, broken).unwrap();

    let output = gaze(&["plan", path.to_str().unwrap()], &[]);

    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("temprature"), "{stderr}");
    assert!(stderr.contains(path.to_str().unwrap()), "{stderr}");
}

#[test]
fn zero_limit_is_rejected() {
    let config = demo_config();

    let output = gaze(&["plan", config.to_str().unwrap(), "--limit", "0"], &[]);

    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("--limit"),
        "{}",
        text(&output.stderr)
    );
}
