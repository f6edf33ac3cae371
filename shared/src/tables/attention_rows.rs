//! The `attention_rows` table: the full attention row of each query, for
//! studies that keep every score instead of the top-k.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float32Builder, ListBuilder};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::columns::{Columns, int32, int64, sorted_by, utf8};
use super::{Table, TableError};

/// The attention probabilities of one query row over all its keys.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionRowRecord {
    pub sample_id: i64,
    pub model: String,
    pub step: i32,
    pub layer: i32,
    pub head: i32,
    /// One score per key position: the prompt tokens, then the tokens
    /// generated before this step. Sums to 1 up to float rounding.
    pub scores: Vec<f32>,
}

/// Builds the `attention_rows` batch, sorted by `sample_id`, `step`,
/// `layer` and `head`. `scores` is a List<Float32> column.
pub fn attention_rows_batch(records: &[AttentionRowRecord]) -> Result<RecordBatch, TableError> {
    let rows = sorted_by(records, |r| (r.sample_id, r.step, r.layer, r.head));

    let value_count = rows.iter().map(|r| r.scores.len()).sum();
    let mut scores =
        ListBuilder::with_capacity(Float32Builder::with_capacity(value_count), rows.len())
            .with_field(Arc::new(arrow::datatypes::Field::new(
                "item",
                arrow::datatypes::DataType::Float32,
                false,
            )));
    for row in &rows {
        scores.values().append_slice(&row.scores);
        scores.append(true);
    }
    let scores: ArrayRef = Arc::new(scores.finish());

    let mut columns = Columns::new(Table::AttentionRows);
    columns
        .required("sample_id", int64(rows.iter().map(|r| r.sample_id)))
        .required("model", utf8(rows.iter().map(|r| r.model.as_str())))
        .required("step", int32(rows.iter().map(|r| r.step)))
        .required("layer", int32(rows.iter().map(|r| r.layer)))
        .required("head", int32(rows.iter().map(|r| r.head)))
        .required("scores", scores);
    columns.finish()
}

/// Returns the schema of the `attention_rows` table.
pub fn attention_rows_schema() -> SchemaRef {
    attention_rows_batch(&[])
        .expect("an empty attention_rows batch always builds")
        .schema()
}
