//! The `samples` table: one row per sampled decision, with one column per
//! template field and one probability column per decision label.

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::ArrayRef;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::columns::{
    Columns, boolean, float32, float64, int32, int64, optional_float32, optional_int32,
    optional_utf8, sorted_by, utf8,
};
use super::{
    Table, TableError, attention_fields_schema, attention_rows_schema, attention_topk_schema,
    tokens_schema,
};

/// Columns of `samples` that do not depend on the study.
pub const FIXED_COLUMNS: [&str; 24] = [
    "sample_id",
    "shard_id",
    "model",
    "topic",
    "route",
    "prompt",
    "response",
    "decision",
    "decision_status",
    "decision_step",
    "label_mass",
    "prompt_tokens",
    "generated_tokens",
    "stop_reason",
    "seed",
    "temperature",
    "top_p",
    "top_k",
    "worker",
    "attempt",
    "prefill_ms",
    "decode_ms",
    "total_ms",
    "collect_attention",
];

/// Column names that template fields and `p_<label>` columns may not take:
/// the fixed `samples` columns and every other table's columns, so that a
/// join never meets two columns of one name with two meanings.
pub fn reserved_columns() -> BTreeSet<String> {
    let others = [
        tokens_schema(),
        attention_topk_schema(),
        attention_fields_schema(),
        attention_rows_schema(),
    ];
    let other_columns = others
        .iter()
        .flat_map(|schema| schema.fields().iter().map(|f| f.name().clone()));
    FIXED_COLUMNS
        .iter()
        .map(|c| c.to_string())
        .chain(other_columns)
        .collect()
}

/// One sampled decision.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRecord {
    pub sample_id: i64,
    pub shard_id: i32,
    pub model: String,
    pub topic: String,
    pub route: String,
    /// Template field values by field name. A field the sample's template
    /// does not use may be absent, and its column is null.
    pub fields: BTreeMap<String, String>,
    /// The rendered prompt, after the chat template.
    pub prompt: String,
    pub response: String,
    /// The decision label parsed from the response, if any.
    pub decision: Option<String>,
    /// Outcome of the decision parse, such as `parsed`, `no_label` or `truncated`.
    pub decision_status: String,
    /// The decode step that produced the decision label's first token.
    pub decision_step: Option<i32>,
    /// Probability of each label's first token at `decision_step`, by label.
    pub label_probabilities: BTreeMap<String, f32>,
    /// Sum of the label probabilities: how much of the distribution the
    /// labels cover.
    pub label_mass: Option<f32>,
    pub prompt_tokens: i32,
    pub generated_tokens: i32,
    /// Reason decoding stopped, such as `eos` or `max_new_tokens`.
    pub stop_reason: String,
    /// Sampling seed; must be below 2^63 because Parquet readers do not all
    /// read unsigned integers.
    pub seed: u64,
    pub temperature: f32,
    pub top_p: f32,
    /// `None` when top-k filtering is off.
    pub top_k: Option<i32>,
    pub worker: String,
    pub attempt: i32,
    /// Prefill time, in milliseconds.
    pub prefill_ms: f64,
    /// Time of all decode steps, in milliseconds.
    pub decode_ms: f64,
    /// Time from the start of prefill to the last token, in milliseconds.
    pub total_ms: f64,
    /// Whether the sample records attention (`tokens` and the attention
    /// tables have rows for it).
    pub collect_attention: bool,
}

/// The `samples` schema of one study: its template fields and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplesSchema {
    fields: Vec<String>,
    labels: Vec<String>,
}

impl SamplesSchema {
    /// Checks that every template field and `p_<label>` column name is
    /// valid and unique, and not one of [`reserved_columns`]. Field columns
    /// take the field names as they are, in the order given.
    pub fn new(fields: &[String], labels: &[String]) -> Result<Self, TableError> {
        let mut taken = reserved_columns();
        for field in fields {
            claim_column(&mut taken, field, "template field")?;
        }
        for label in labels {
            claim_column(&mut taken, &label_column(label), "label")?;
        }
        Ok(Self {
            fields: fields.to_vec(),
            labels: labels.to_vec(),
        })
    }

    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Returns the Arrow schema of the study's `samples` table.
    pub fn schema(&self) -> SchemaRef {
        self.batch(&[])
            .expect("an empty samples batch always builds")
            .schema()
    }

    /// Builds the `samples` batch, sorted by `sample_id`.
    pub fn batch(&self, records: &[SampleRecord]) -> Result<RecordBatch, TableError> {
        self.check_records(records)?;
        let rows = sorted_by(records, |r| r.sample_id);
        let seeds: Vec<i64> = rows.iter().map(|r| r.seed as i64).collect();

        let mut columns = Columns::new(Table::Samples);
        columns
            .required("sample_id", int64(rows.iter().map(|r| r.sample_id)))
            .required("shard_id", int32(rows.iter().map(|r| r.shard_id)))
            .required("model", utf8(rows.iter().map(|r| r.model.as_str())))
            .required("topic", utf8(rows.iter().map(|r| r.topic.as_str())))
            .required("route", utf8(rows.iter().map(|r| r.route.as_str())));
        for field in &self.fields {
            columns.optional(
                field,
                optional_utf8(rows.iter().map(|r| r.fields.get(field).map(String::as_str))),
            );
        }
        columns
            .required("prompt", utf8(rows.iter().map(|r| r.prompt.as_str())))
            .required("response", utf8(rows.iter().map(|r| r.response.as_str())))
            .optional(
                "decision",
                optional_utf8(rows.iter().map(|r| r.decision.as_deref())),
            )
            .required(
                "decision_status",
                utf8(rows.iter().map(|r| r.decision_status.as_str())),
            )
            .optional(
                "decision_step",
                optional_int32(rows.iter().map(|r| r.decision_step)),
            );
        for label in &self.labels {
            let probabilities: ArrayRef = optional_float32(
                rows.iter()
                    .map(|r| r.label_probabilities.get(label).copied()),
            );
            columns.optional(&label_column(label), probabilities);
        }
        columns
            .optional(
                "label_mass",
                optional_float32(rows.iter().map(|r| r.label_mass)),
            )
            .required("prompt_tokens", int32(rows.iter().map(|r| r.prompt_tokens)))
            .required(
                "generated_tokens",
                int32(rows.iter().map(|r| r.generated_tokens)),
            )
            .required(
                "stop_reason",
                utf8(rows.iter().map(|r| r.stop_reason.as_str())),
            )
            .required("seed", int64(seeds.into_iter()))
            .required("temperature", float32(rows.iter().map(|r| r.temperature)))
            .required("top_p", float32(rows.iter().map(|r| r.top_p)))
            .optional("top_k", optional_int32(rows.iter().map(|r| r.top_k)))
            .required("worker", utf8(rows.iter().map(|r| r.worker.as_str())))
            .required("attempt", int32(rows.iter().map(|r| r.attempt)))
            .required("prefill_ms", float64(rows.iter().map(|r| r.prefill_ms)))
            .required("decode_ms", float64(rows.iter().map(|r| r.decode_ms)))
            .required("total_ms", float64(rows.iter().map(|r| r.total_ms)))
            .required(
                "collect_attention",
                boolean(rows.iter().map(|r| r.collect_attention)),
            );
        columns.finish()
    }

    /// Rejects fields and labels the study does not declare, which would
    /// otherwise be dropped without a word, and seeds above `i64::MAX`.
    fn check_records(&self, records: &[SampleRecord]) -> Result<(), TableError> {
        for record in records {
            if let Some(field) = record.fields.keys().find(|f| !self.fields.contains(f)) {
                return Err(TableError::UnknownField {
                    sample_id: record.sample_id,
                    field: field.clone(),
                    declared: self.fields.join(", "),
                });
            }
            if let Some(label) = record
                .label_probabilities
                .keys()
                .find(|l| !self.labels.contains(l))
            {
                return Err(TableError::UnknownLabel {
                    sample_id: record.sample_id,
                    label: label.clone(),
                    declared: self.labels.join(", "),
                });
            }
            if i64::try_from(record.seed).is_err() {
                return Err(TableError::SeedOutOfRange {
                    sample_id: record.sample_id,
                    seed: record.seed,
                });
            }
        }
        Ok(())
    }
}

/// Returns the column name of a label's probability: `p_<label>`.
pub fn label_column(label: &str) -> String {
    format!("p_{label}")
}

fn claim_column(taken: &mut BTreeSet<String>, name: &str, what: &str) -> Result<(), TableError> {
    let invalid = |reason: String| TableError::InvalidColumn {
        table: Table::Samples,
        name: name.to_string(),
        reason,
    };
    if name.is_empty() || name == label_column("") {
        return Err(invalid(format!("the {what} name is empty")));
    }
    if name.trim() != name || name.chars().any(|c| c.is_control() || c == '.') {
        return Err(invalid(format!(
            "a {what} name may not contain '.', control characters, or leading or trailing spaces"
        )));
    }
    if !taken.insert(name.to_string()) {
        return Err(invalid(format!(
            "the {what} column would collide with another column of the same name; rename the {what}"
        )));
    }
    Ok(())
}
