//! The Parquet tables of a study: one record struct, one Arrow schema and one
//! batch builder per table, plus the reader and the export.
//!
//! Every table has a `model` column, and a column has the same name and
//! meaning in every table that has it. Columns use only types that pandas,
//! pyarrow, polars and DuckDB all read: Utf8, Int32, Int64, Float32, Float64,
//! Boolean and List<Float32>. Strings are dictionary-encoded by Parquet, not
//! stored as Arrow dictionary arrays, so every reader sees plain strings.
//! Builders sort rows by sample, step, layer, head and then position or rank,
//! which keeps neighbouring rows alike and the files small.

mod attention_fields;
mod attention_rows;
mod attention_topk;
mod columns;
pub mod export;
mod properties;
mod read;
mod samples;
mod tokens;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use attention_fields::{
    AttentionFieldRecord, TargetKind, attention_fields_batch, attention_fields_schema,
};
pub use attention_rows::{AttentionRowRecord, attention_rows_batch, attention_rows_schema};
pub use attention_topk::{AttentionTopkRecord, attention_topk_batch, attention_topk_schema};
pub use export::{ExportError, ExportFormat, ExportSummary, export_table};
pub use properties::{MAX_ROW_GROUP_BYTES, MAX_ROW_GROUP_ROWS, writer_properties};
pub use read::{committed_table_objects, read_parquet_object, read_table};
pub use samples::{FIXED_COLUMNS, SampleRecord, SamplesSchema, label_column, reserved_columns};
pub use tokens::{TokenRecord, tokens_batch, tokens_schema};

/// Errors of building a table's record batch.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("column name {name:?} of {table} is invalid: {reason}")]
    InvalidColumn {
        table: Table,
        name: String,
        reason: String,
    },
    #[error(
        "sample {sample_id} has template field {field:?}, which the study does not declare; declared fields: {declared}"
    )]
    UnknownField {
        sample_id: i64,
        field: String,
        declared: String,
    },
    #[error(
        "sample {sample_id} has a probability for label {label:?}, which the study does not declare; declared labels: {declared}"
    )]
    UnknownLabel {
        sample_id: i64,
        label: String,
        declared: String,
    },
    #[error("sample {sample_id} has seed {seed}, above the largest Int64 ({max}); derive seeds below 2^63", max = i64::MAX)]
    SeedOutOfRange { sample_id: i64, seed: u64 },
    #[error("building the {table} batch failed: {source}")]
    Arrow {
        table: Table,
        source: arrow::error::ArrowError,
    },
}

/// The tables of a study. The names are the folder names in the store and
/// the values that `--table` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// One row per sample: the vignette, the response, the decision.
    Samples,
    /// One row per prompt token of each sample that collects attention.
    Tokens,
    /// The top-k attended prompt tokens per sample, decode step, layer, head.
    AttentionTopk,
    /// Attention mass per region and template field, per sample, decode
    /// step, layer and head.
    AttentionFields,
    /// The full attention row per sample, decode step, layer and head
    /// (written only when the study enables it).
    AttentionRows,
}

impl Table {
    pub const ALL: [Table; 5] = [
        Table::Samples,
        Table::Tokens,
        Table::AttentionTopk,
        Table::AttentionFields,
        Table::AttentionRows,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Table::Samples => "samples",
            Table::Tokens => "tokens",
            Table::AttentionTopk => "attention_topk",
            Table::AttentionFields => "attention_fields",
            Table::AttentionRows => "attention_rows",
        }
    }

    /// Joins the table names with commas, for error messages and help text.
    pub fn names() -> String {
        Table::ALL.map(|t| t.as_str()).join(", ")
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A table name that is not one of [`Table::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown table {name:?}; valid tables: {valid}", valid = Table::names())]
pub struct UnknownTable {
    pub name: String,
}

impl FromStr for Table {
    type Err = UnknownTable;

    fn from_str(name: &str) -> Result<Self, UnknownTable> {
        Table::ALL
            .into_iter()
            .find(|t| t.as_str() == name)
            .ok_or_else(|| UnknownTable {
                name: name.to_string(),
            })
    }
}
