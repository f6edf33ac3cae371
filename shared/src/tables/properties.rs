//! Parquet writer settings shared by every table.

use arrow::datatypes::Schema;
use parquet::arrow::ArrowSchemaConverter;
use parquet::basic::{Compression, Type as PhysicalType, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::Table;

/// Maximum rows per row group: large enough for DuckDB and pyarrow to read
/// in long runs, small enough that one shard file still has several groups
/// to read in parallel.
pub const MAX_ROW_GROUP_ROWS: usize = 128 * 1024;

/// Maximum encoded size of a row group, which bounds the writer's memory
/// for tables with long rows (`attention_rows`).
pub const MAX_ROW_GROUP_BYTES: usize = 64 * 1024 * 1024;

/// Zstandard level: 3 is zstd's own default, a good ratio at a high speed.
const ZSTD_LEVEL: i32 = 3;

/// Returns the columns each table is sorted by, in order.
fn sort_columns(table: Table) -> &'static [&'static str] {
    match table {
        Table::Samples => &["sample_id"],
        Table::Tokens => &["sample_id", "position"],
        Table::AttentionTopk => &["sample_id", "step", "layer", "head", "rank"],
        Table::AttentionFields => &[
            "sample_id",
            "step",
            "layer",
            "head",
            "target_kind",
            "target",
        ],
        Table::AttentionRows => &["sample_id", "step", "layer", "head"],
    }
}

/// Writer settings for `table`: zstd, Parquet dictionary encoding for every
/// column but floating point ones (scores rarely repeat), page statistics,
/// bounded row groups, and the sort order recorded in the file metadata.
pub fn writer_properties(table: Table, schema: &Schema) -> WriterProperties {
    let zstd = ZstdLevel::try_new(ZSTD_LEVEL).expect("zstd level 3 is valid");
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(zstd))
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
        .set_max_row_group_bytes(Some(MAX_ROW_GROUP_BYTES));

    let descriptor = ArrowSchemaConverter::new()
        .convert(schema)
        .expect("table schemas use only types that Parquet stores");
    let mut sorting = Vec::new();
    for (index, column) in descriptor.columns().iter().enumerate() {
        if matches!(
            column.physical_type(),
            PhysicalType::FLOAT | PhysicalType::DOUBLE
        ) {
            builder = builder.set_column_dictionary_enabled(column.path().clone(), false);
        }
        if let Some(order) = sort_columns(table)
            .iter()
            .position(|c| column.path().string() == *c)
        {
            sorting.push((
                order,
                SortingColumn {
                    column_idx: index as i32,
                    descending: false,
                    nulls_first: false,
                },
            ));
        }
    }
    sorting.sort_by_key(|(order, _)| *order);
    builder
        .set_sorting_columns(Some(sorting.into_iter().map(|(_, c)| c).collect()))
        .build()
}
