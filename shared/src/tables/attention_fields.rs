//! The `attention_fields` table: how much attention each query row gives to
//! each prompt region and template field, in long format.
//!
//! One row per sample, step, layer, head and target. Long format keeps the
//! column set fixed whatever the study's fields are, and lets pandas or
//! DuckDB group by `target` directly.
//!
//! For one (sample, step, layer, head), the `mass` of the rows whose
//! `target_kind` is `bos`, `region` or `generated` adds up to 1, up to float
//! rounding. Those targets split the keys: the BOS token, the other prompt
//! tokens by region, and the tokens generated before this step. `field`
//! rows overlap the `vignette` region and are not part of that sum.

use std::fmt;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use super::columns::{Columns, float32, int32, int64, utf8};
use super::{Table, TableError};

/// Kind of target that a row of `attention_fields` measures attention to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// The BOS token at position 0, which takes much of the mass in most
    /// heads; `target` is `bos`.
    Bos,
    /// The prompt tokens of one region other than the BOS token; `target`
    /// is the region name.
    Region,
    /// The tokens of one template field's value; `target` is the field name.
    Field,
    /// The tokens generated before this step; `target` is `generated`.
    Generated,
}

impl TargetKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            TargetKind::Bos => "bos",
            TargetKind::Region => "region",
            TargetKind::Field => "field",
            TargetKind::Generated => "generated",
        }
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The attention that one query row gives to one target.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionFieldRecord {
    pub sample_id: i64,
    pub model: String,
    pub step: i32,
    pub layer: i32,
    pub head: i32,
    pub target_kind: TargetKind,
    pub target: String,
    /// Sum of the attention probabilities over the target's tokens.
    pub mass: f32,
    /// `mass / token_count`, or 0 when the target has no tokens.
    pub mass_per_token: f32,
    pub token_count: i32,
}

/// Builds the `attention_fields` batch, sorted by `sample_id`, `step`,
/// `layer`, `head`, `target_kind` (bos, region, field, generated) and
/// `target`.
pub fn attention_fields_batch(records: &[AttentionFieldRecord]) -> Result<RecordBatch, TableError> {
    let mut rows: Vec<&AttentionFieldRecord> = records.iter().collect();
    rows.sort_by(|a, b| {
        let key = |r: &&AttentionFieldRecord| (r.sample_id, r.step, r.layer, r.head, r.target_kind);
        key(a).cmp(&key(b)).then_with(|| a.target.cmp(&b.target))
    });

    let mut columns = Columns::new(Table::AttentionFields);
    columns
        .required("sample_id", int64(rows.iter().map(|r| r.sample_id)))
        .required("model", utf8(rows.iter().map(|r| r.model.as_str())))
        .required("step", int32(rows.iter().map(|r| r.step)))
        .required("layer", int32(rows.iter().map(|r| r.layer)))
        .required("head", int32(rows.iter().map(|r| r.head)))
        .required(
            "target_kind",
            utf8(rows.iter().map(|r| r.target_kind.as_str())),
        )
        .required("target", utf8(rows.iter().map(|r| r.target.as_str())))
        .required("mass", float32(rows.iter().map(|r| r.mass)))
        .required(
            "mass_per_token",
            float32(rows.iter().map(|r| r.mass_per_token)),
        )
        .required("token_count", int32(rows.iter().map(|r| r.token_count)));
    columns.finish()
}

/// Returns the schema of the `attention_fields` table.
pub fn attention_fields_schema() -> SchemaRef {
    attention_fields_batch(&[])
        .expect("an empty attention_fields batch always builds")
        .schema()
}
