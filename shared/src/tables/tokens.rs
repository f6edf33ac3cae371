//! The `tokens` table: one row per prompt token of each sample that
//! collects attention, mapping positions to text, regions and fields.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::columns::{
    Columns, boolean, int32, int64, optional_int32, optional_utf8, sorted_by, utf8,
};
use super::{Table, TableError};
use crate::layout::Region;

/// One prompt token of one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    pub sample_id: i64,
    pub model: String,
    /// Position in the prompt, from 0 (the BOS token when the template has one).
    pub position: i32,
    pub token_id: i32,
    /// The vocabulary entry, as the tokenizer spells it (such as `Ġthe`).
    pub token: String,
    /// The prompt text that the token covers.
    pub text: String,
    /// First character offset into the prompt (characters, not bytes).
    pub start: i32,
    /// End character offset into the prompt, exclusive.
    pub end: i32,
    /// Index of the whitespace-separated word the token belongs to, or
    /// `None` for tokens outside any word (such as special tokens).
    pub word: Option<i32>,
    pub region: Region,
    /// The template field whose value the token overlaps, if any.
    pub field: Option<String>,
    /// A special token of the tokenizer (BOS, role headers, end of turn).
    pub special: bool,
}

/// Builds the `tokens` batch, sorted by `sample_id` and `position`.
pub fn tokens_batch(records: &[TokenRecord]) -> Result<RecordBatch, TableError> {
    let rows = sorted_by(records, |r| (r.sample_id, r.position));

    let mut columns = Columns::new(Table::Tokens);
    columns
        .required("sample_id", int64(rows.iter().map(|r| r.sample_id)))
        .required("model", utf8(rows.iter().map(|r| r.model.as_str())))
        .required("position", int32(rows.iter().map(|r| r.position)))
        .required("token_id", int32(rows.iter().map(|r| r.token_id)))
        .required("token", utf8(rows.iter().map(|r| r.token.as_str())))
        .required("text", utf8(rows.iter().map(|r| r.text.as_str())))
        .required("start", int32(rows.iter().map(|r| r.start)))
        .required("end", int32(rows.iter().map(|r| r.end)))
        .optional("word", optional_int32(rows.iter().map(|r| r.word)))
        .required("region", utf8(rows.iter().map(|r| r.region.as_str())))
        .optional(
            "field",
            optional_utf8(rows.iter().map(|r| r.field.as_deref())),
        )
        .required("special", boolean(rows.iter().map(|r| r.special)));
    columns.finish()
}

/// Returns the schema of the `tokens` table.
pub fn tokens_schema() -> SchemaRef {
    tokens_batch(&[])
        .expect("an empty tokens batch always builds")
        .schema()
}
