//! Exporting one table of a study as CSV or JSON lines, from the committed
//! shards only. Export reads the store and never writes to it.

use std::fmt;
use std::io::Write;
use std::str::FromStr;

use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;

use super::Table;
use super::read::{committed_table_objects, read_parquet_object};
use crate::store::{Store, StoreError, StudyId, read_manifest};

/// The text formats that [`export_table`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// Comma-separated values with a header row. Lists (the `scores` of
    /// `attention_rows`) have no CSV form.
    Csv,
    /// One JSON object per line; null values are left out of the object.
    Jsonl,
}

impl ExportFormat {
    pub fn as_str(&self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Jsonl => "jsonl",
        }
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExportFormat {
    type Err = ExportError;

    fn from_str(name: &str) -> Result<Self, ExportError> {
        match name {
            "csv" => Ok(ExportFormat::Csv),
            "jsonl" => Ok(ExportFormat::Jsonl),
            _ => Err(ExportError::UnknownFormat {
                name: name.to_string(),
            }),
        }
    }
}

/// Errors of [`export_table`].
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("unknown export format {name:?}; valid formats: csv, jsonl")]
    UnknownFormat { name: String },
    #[error(
        "column {column} of {table} is a list, which CSV cannot hold; export it with --format jsonl"
    )]
    ListInCsv { table: Table, column: String },
    #[error(
        "shard file {key} has another schema than the earlier files of {table}; \
         the study mixes outputs of two setups, so check its manifest and commit markers"
    )]
    SchemaChanged { table: Table, key: String },
    #[error("study {study} has no manifest in store {url}; check the store URL and the study id")]
    UnknownStudy { study: StudyId, url: String },
    #[error(
        "study {study} does not record attention_rows, because it ran with \
         attention.store_rows = false; export attention_topk or attention_fields, or run a \
         new study with store_rows = true to keep full rows"
    )]
    RowsNotStored { study: StudyId },
    #[error(transparent)]
    Store(Box<StoreError>),
    #[error("writing the {format} output failed: {source}")]
    Write {
        format: ExportFormat,
        source: ArrowError,
    },
}

impl From<StoreError> for ExportError {
    fn from(error: StoreError) -> Self {
        ExportError::Store(Box::new(error))
    }
}

/// Shard files and rows that [`export_table`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportSummary {
    /// Committed shard files read.
    pub shards: usize,
    pub rows: u64,
}

/// Writes every row of `table` from the study's committed shards to `out`,
/// one shard file at a time, in key order (model, then shard id).
///
/// Shards without a commit marker are skipped. A study without a manifest
/// is an error, and so is `attention_rows` of a study whose config has
/// `attention.store_rows = false`. A study with no committed shard writes nothing, not even a CSV header, because the schema of a
/// table with study-specific columns is only known from its files.
pub async fn export_table(
    store: &Store,
    study: &StudyId,
    table: Table,
    format: ExportFormat,
    out: impl Write,
) -> Result<ExportSummary, ExportError> {
    let Some(manifest) = read_manifest(store, study).await? else {
        return Err(ExportError::UnknownStudy {
            study: study.clone(),
            url: store.url.clone(),
        });
    };
    // Older manifests or hand-written ones may lack the key: only an
    // explicit false rejects the export.
    let store_rows = manifest.config.pointer("/attention/store_rows");
    if table == Table::AttentionRows && store_rows == Some(&serde_json::Value::Bool(false)) {
        return Err(ExportError::RowsNotStored {
            study: study.clone(),
        });
    }
    let objects = committed_table_objects(store, study, table).await?;
    let mut writer = TableWriter::new(format, out);
    let mut schema: Option<SchemaRef> = None;
    let mut summary = ExportSummary { shards: 0, rows: 0 };

    for (shard, key) in &objects {
        let batches = read_parquet_object(store, key).await?;
        for batch in &batches {
            match &schema {
                None => {
                    check_format(table, format, &batch.schema())?;
                    schema = Some(batch.schema());
                }
                Some(first) if first != &batch.schema() => {
                    return Err(ExportError::SchemaChanged {
                        table,
                        key: key.to_string(),
                    });
                }
                Some(_) => {}
            }
            writer
                .write(batch)
                .map_err(|source| ExportError::Write { format, source })?;
            summary.rows += batch.num_rows() as u64;
        }
        summary.shards += 1;
        tracing::debug!(shard = %shard, table = %table, "exported shard");
    }

    writer
        .finish()
        .map_err(|source| ExportError::Write { format, source })?;
    Ok(summary)
}

fn check_format(table: Table, format: ExportFormat, schema: &SchemaRef) -> Result<(), ExportError> {
    if format != ExportFormat::Csv {
        return Ok(());
    }
    let list = schema
        .fields()
        .iter()
        .find(|f| matches!(f.data_type(), DataType::List(_) | DataType::LargeList(_)));
    match list {
        Some(field) => Err(ExportError::ListInCsv {
            table,
            column: field.name().clone(),
        }),
        None => Ok(()),
    }
}

/// The arrow writer for the chosen format.
enum TableWriter<W: Write> {
    Csv(Box<arrow::csv::Writer<W>>),
    Jsonl(arrow::json::LineDelimitedWriter<W>),
}

impl<W: Write> TableWriter<W> {
    fn new(format: ExportFormat, out: W) -> Self {
        match format {
            ExportFormat::Csv => TableWriter::Csv(Box::new(
                arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(out),
            )),
            ExportFormat::Jsonl => TableWriter::Jsonl(arrow::json::LineDelimitedWriter::new(out)),
        }
    }

    fn write(&mut self, batch: &arrow::record_batch::RecordBatch) -> Result<(), ArrowError> {
        match self {
            TableWriter::Csv(writer) => writer.write(batch),
            TableWriter::Jsonl(writer) => writer.write(batch),
        }
    }

    fn finish(self) -> Result<(), ArrowError> {
        match self {
            TableWriter::Csv(writer) => {
                let mut out = writer.into_inner();
                out.flush().map_err(ArrowError::from)
            }
            TableWriter::Jsonl(mut writer) => {
                writer.finish()?;
                writer.into_inner().flush().map_err(ArrowError::from)
            }
        }
    }
}
