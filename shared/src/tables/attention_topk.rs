//! The `attention_topk` table: for each decode step, layer and head, the
//! prompt tokens with the largest attention scores.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::columns::{Columns, float32, int32, int64, optional_utf8, sorted_by, utf8};
use super::{Table, TableError};
use crate::layout::Region;

/// One of the top-k attended prompt tokens of one query row.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionTopkRecord {
    pub sample_id: i64,
    pub model: String,
    pub topic: String,
    /// Decode step, from 0: step 0 is the query row of the last prompt
    /// token in prefill, which produced the first generated token.
    pub step: i32,
    /// Text of the token generated at this step.
    pub generated_token: String,
    pub generated_token_id: i32,
    pub layer: i32,
    /// Query head.
    pub head: i32,
    /// Key/value head that the query head reads under GQA.
    pub kv_head: i32,
    /// 0 for the highest score; ties keep the lower position first.
    pub rank: i32,
    /// Prompt position of the attended token.
    pub position: i32,
    /// Vocabulary entry of the attended token.
    pub token: String,
    /// Prompt text of the attended token.
    pub text: String,
    /// Attention probability after softmax, in [0, 1].
    pub score: f32,
    pub region: Region,
    pub field: Option<String>,
}

/// Builds the `attention_topk` batch, sorted by `sample_id`, `step`,
/// `layer`, `head` and `rank`.
pub fn attention_topk_batch(records: &[AttentionTopkRecord]) -> Result<RecordBatch, TableError> {
    let rows = sorted_by(records, |r| (r.sample_id, r.step, r.layer, r.head, r.rank));

    let mut columns = Columns::new(Table::AttentionTopk);
    columns
        .required("sample_id", int64(rows.iter().map(|r| r.sample_id)))
        .required("model", utf8(rows.iter().map(|r| r.model.as_str())))
        .required("topic", utf8(rows.iter().map(|r| r.topic.as_str())))
        .required("step", int32(rows.iter().map(|r| r.step)))
        .required(
            "generated_token",
            utf8(rows.iter().map(|r| r.generated_token.as_str())),
        )
        .required(
            "generated_token_id",
            int32(rows.iter().map(|r| r.generated_token_id)),
        )
        .required("layer", int32(rows.iter().map(|r| r.layer)))
        .required("head", int32(rows.iter().map(|r| r.head)))
        .required("kv_head", int32(rows.iter().map(|r| r.kv_head)))
        .required("rank", int32(rows.iter().map(|r| r.rank)))
        .required("position", int32(rows.iter().map(|r| r.position)))
        .required("token", utf8(rows.iter().map(|r| r.token.as_str())))
        .required("text", utf8(rows.iter().map(|r| r.text.as_str())))
        .required("score", float32(rows.iter().map(|r| r.score)))
        .required("region", utf8(rows.iter().map(|r| r.region.as_str())))
        .optional(
            "field",
            optional_utf8(rows.iter().map(|r| r.field.as_deref())),
        );
    columns.finish()
}

/// Returns the schema of the `attention_topk` table.
pub fn attention_topk_schema() -> SchemaRef {
    attention_topk_batch(&[])
        .expect("an empty attention_topk batch always builds")
        .schema()
}
