//! Shard processing: the tables of a shard do not depend on the batch size
//! or on the prompt-length order that batches are cut in, except for float
//! rounding of attention values.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use arrow::array::{ArrayRef, Float32Array, ListArray};
use arrow::record_batch::RecordBatch;
use gaze_shared::config::StudyConfig;
use gaze_shared::plan::Plan;
use gaze_shared::tables::Table;
use gaze_shared::vignettes::VignetteSet;
use gaze_worker::Engine;
use gaze_worker::model::DTypeChoice;
use gaze_worker::prompt::Date;
use gaze_worker::shard::{AttemptInfo, ShardError, StudyContext, generate_shard};

/// Timing columns of `samples`, the only ones allowed to differ.
const TIMING_COLUMNS: [&str; 3] = ["prefill_ms", "decode_ms", "total_ms"];

fn config(model: &Path, batch_size: usize) -> StudyConfig {
    let vignettes = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/vignettes/uk-immigration.json")
        .canonicalize()
        .unwrap();
    let text = format!(
        r#"
[study]
name = "uk-demo"
vignettes = "{vignettes}"

[[models]]
id = "test-model"
path = "{model}"

[prompt]
system = "You are a caseworker."
user = "Decide this case.\n\n{{vignette}}\n\nAnswer GRANTED or REFUSED."
assistant_prefix = "DECISION:"

[design]
total_samples = 25000
stratify = ["gender", "religion", "country"]
seed = 7

[generation]
max_new_tokens = 10
temperature = 0.8
batch_size = {batch_size}

[decision]
labels = ["GRANTED", "REFUSED"]

[attention]
sample_rate = 0.5
steps = 2
top_k = 4
store_rows = true

[output]
store = "memory://test"
samples_per_shard = 9
"#,
        vignettes = vignettes.display(),
        model = model.display(),
    );
    StudyConfig::parse(&text, Path::new("study.toml")).unwrap()
}

/// Generates shard 0 with `batch_size` and returns its tables.
fn shard_tables(model: &Path, batch_size: usize) -> Vec<(Table, Vec<RecordBatch>)> {
    let config = config(model, batch_size);
    let vignettes = VignetteSet::load(&config.study.vignettes).unwrap();
    let plan = Plan::build(&config, &vignettes).unwrap();
    let engine = Engine::load(model, DTypeChoice::Auto, &candle_core::Device::Cpu).unwrap();
    let date = Date::from_ymd(2026, 1, 2).unwrap();
    let context =
        StudyContext::new(&config, &vignettes, "test-model", &engine, "fp", date).unwrap();
    let attempt = AttemptInfo {
        worker: "w".into(),
        attempt: 1,
    };
    let samples = plan.shard_samples(&plan.shards[0]);
    let mut batches = 0;
    let tables = generate_shard(
        &engine,
        &context,
        samples,
        &attempt,
        &AtomicBool::new(false),
        &mut |_| batches += 1,
    )
    .unwrap();
    assert_eq!(batches, samples.len().div_ceil(batch_size));
    tables.tables
}

/// Returns the values of a Float32 or List<Float32> column, flattened.
fn float_values(column: &ArrayRef) -> Option<Vec<f32>> {
    if let Some(values) = column.as_any().downcast_ref::<Float32Array>() {
        return Some(values.values().to_vec());
    }
    let list = column.as_any().downcast_ref::<ListArray>()?;
    let values = list.values().as_any().downcast_ref::<Float32Array>()?;
    Some(values.values().to_vec())
}

/// Attention probabilities agree to float rounding: a padded batch runs
/// matmuls of other shapes, which sum in another order.
fn assert_close(a: &[f32], b: &[f32], name: &str) {
    assert_eq!(a.len(), b.len(), "{name}");
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= 1e-5, "{name}: {x} vs {y}");
    }
}

fn without_timings(batch: &RecordBatch) -> RecordBatch {
    let keep: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| !TIMING_COLUMNS.contains(&batch.schema().field(i).name().as_str()))
        .collect();
    batch.project(&keep).unwrap()
}

#[test]
fn shard_tables_do_not_depend_on_batch_size() {
    let dir = tempfile::tempdir().unwrap();
    gaze_worker::testmodel::write_test_model(dir.path()).unwrap();

    let single = shard_tables(dir.path(), 1);
    let batched = shard_tables(dir.path(), 4);

    let tables: Vec<Table> = single.iter().map(|(t, _)| *t).collect();
    assert_eq!(tables, Table::ALL.to_vec());
    for ((table, one), (_, four)) in single.iter().zip(&batched) {
        let (one, four) = (&one[0], &four[0]);
        assert!(one.num_rows() > 0, "{table} is empty");
        if *table == Table::Samples {
            assert_eq!(without_timings(one), without_timings(four), "{table}");
            continue;
        }
        for i in 0..one.num_columns() {
            let name = format!("{table}.{}", one.schema().field(i).name());
            match (float_values(one.column(i)), float_values(four.column(i))) {
                (Some(a), Some(b)) => assert_close(&a, &b, &name),
                _ => assert_eq!(one.column(i), four.column(i), "{name}"),
            }
        }
    }
}

#[test]
fn cancelled_shard_stops_between_batches() {
    let dir = tempfile::tempdir().unwrap();
    gaze_worker::testmodel::write_test_model(dir.path()).unwrap();
    let config = config(dir.path(), 2);
    let vignettes = VignetteSet::load(&config.study.vignettes).unwrap();
    let plan = Plan::build(&config, &vignettes).unwrap();
    let engine = Engine::load(dir.path(), DTypeChoice::Auto, &candle_core::Device::Cpu).unwrap();
    let date = Date::from_ymd(2026, 1, 2).unwrap();
    let context =
        StudyContext::new(&config, &vignettes, "test-model", &engine, "fp", date).unwrap();
    let cancel = AtomicBool::new(false);
    let mut batches = 0;

    let result = generate_shard(
        &engine,
        &context,
        plan.shard_samples(&plan.shards[0]),
        &AttemptInfo {
            worker: "w".into(),
            attempt: 1,
        },
        &cancel,
        &mut |_| {
            batches += 1;
            cancel.store(true, std::sync::atomic::Ordering::Relaxed);
        },
    );

    assert!(matches!(result, Err(ShardError::Cancelled)));
    assert_eq!(batches, 1);
}
