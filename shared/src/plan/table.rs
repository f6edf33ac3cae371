//! The plan as an Arrow table, one row per sample, for writing to Parquet.
//!
//! Columns: `sample_id` (Int64), `shard_id` (Int32), `topic` (Utf8), one
//! Utf8 column per sampled field (null where the sample's topic does not
//! draw it), `prompt` (Utf8, the user message), `seed` (Int64) and
//! `collect_attention` (Boolean). No unsigned or dictionary types, so every
//! Parquet reader takes it as it is.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::error::ArrowError;

use super::{Plan, Sample};

/// Returns the plan's samples as one record batch, field columns sorted by name.
pub fn plan_record_batch(plan: &Plan) -> Result<RecordBatch, ArrowError> {
    let field_names: BTreeSet<&str> = plan
        .samples
        .iter()
        .flat_map(|s| s.fields.keys().map(String::as_str))
        .collect();

    let samples = &plan.samples;
    let int64 = |value: fn(&Sample) -> i64| -> ArrayRef {
        Arc::new(samples.iter().map(value).collect::<Int64Array>())
    };
    let text = |value: &dyn Fn(&Sample) -> Option<&str>| -> ArrayRef {
        Arc::new(samples.iter().map(value).collect::<StringArray>())
    };

    let mut columns: Vec<(Field, ArrayRef)> = vec![
        (
            Field::new("sample_id", DataType::Int64, false),
            int64(|s| s.sample_id as i64),
        ),
        (
            Field::new("shard_id", DataType::Int32, false),
            Arc::new(
                samples
                    .iter()
                    .map(|s| s.shard_id as i32)
                    .collect::<Int32Array>(),
            ),
        ),
        (
            Field::new("topic", DataType::Utf8, false),
            text(&|s| Some(s.topic.as_str())),
        ),
    ];
    for name in &field_names {
        columns.push((
            Field::new(*name, DataType::Utf8, true),
            text(&|s| s.fields.get(*name).map(String::as_str)),
        ));
    }
    columns.extend([
        (
            Field::new("prompt", DataType::Utf8, false),
            text(&|s| Some(s.user_message.as_str())),
        ),
        (
            Field::new("seed", DataType::Int64, false),
            int64(|s| s.seed as i64),
        ),
        (
            Field::new("collect_attention", DataType::Boolean, false),
            Arc::new(
                samples
                    .iter()
                    .map(|s| Some(s.collect_attention))
                    .collect::<BooleanArray>(),
            ),
        ),
    ]);

    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = columns.into_iter().unzip();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
}
