//! Reading a table back from the store: only the files of committed shards.

use arrow::record_batch::RecordBatch;
use object_store::path::Path;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::Table;
use crate::store::{
    Operation, ShardKey, Store, StoreError, StudyId, StudyKeys, committed_shard_keys,
};

/// Lists the Parquet objects of `table` whose shard is committed, in key
/// order (model, then shard id). Files of uncommitted shards are skipped:
/// they may be partial or from a failed attempt.
pub async fn committed_table_objects(
    store: &Store,
    study: &StudyId,
    table: Table,
) -> Result<Vec<(ShardKey, Path)>, StoreError> {
    let committed = committed_shard_keys(store, study).await?;
    let folder = StudyKeys::new(study.clone()).table_folder(table);

    let mut objects = Vec::new();
    for name in store.list_names(&folder).await? {
        let Some(shard) = ShardKey::parse_object_name(study, &name, "parquet") else {
            tracing::warn!(study = %study, table = %table, object = %name, "skipped an object that is not a shard file");
            continue;
        };
        if committed.contains(&shard) {
            let key = shard.table_object(table);
            objects.push((shard, key));
        } else {
            tracing::debug!(shard = %shard, table = %table, "skipped the file of an uncommitted shard");
        }
    }
    objects.sort();
    Ok(objects)
}

/// Reads one Parquet object whole and decodes its record batches.
///
/// NOTE: the object is held in memory while it is decoded; shard files are
/// sized so that this is cheap.
pub async fn read_parquet_object(
    store: &Store,
    key: &Path,
) -> Result<Vec<RecordBatch>, StoreError> {
    let parquet_error = |source| StoreError::Parquet {
        operation: Operation::Read,
        key: key.to_string(),
        url: store.url.clone(),
        source,
    };
    let bytes = store.get(key).await?.ok_or_else(|| StoreError::Object {
        operation: Operation::Read,
        key: key.to_string(),
        url: store.url.clone(),
        source: object_store::Error::NotFound {
            path: key.to_string(),
            source: "listed but gone".into(),
        },
    })?;

    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(parquet_error)?
        .build()
        .map_err(parquet_error)?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| parquet_error(parquet::errors::ParquetError::from(e)))
}

/// Reads every committed shard of `table`, in key order (model, then shard
/// id). Each shard's rows keep the order they were written in.
pub async fn read_table(
    store: &Store,
    study: &StudyId,
    table: Table,
) -> Result<Vec<RecordBatch>, StoreError> {
    let mut batches = Vec::new();
    for (_, key) in committed_table_objects(store, study, table).await? {
        batches.extend(read_parquet_object(store, &key).await?);
    }
    Ok(batches)
}
