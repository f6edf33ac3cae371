//! Streaming a table's record batches into one Parquet object.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use parquet::arrow::AsyncArrowWriter;
use parquet::arrow::async_writer::AsyncFileWriter;
use parquet::errors::ParquetError;
use tokio::io::AsyncWriteExt;

use super::commit::{CommitMarker, write_commit_marker};
use super::error::{Operation, StoreError};
use super::keys::ShardKey;
use super::open::Store;
use crate::tables::{Table, writer_properties};

/// Size of the buffer before an upload turns multipart, and of each part.
pub const UPLOAD_PART_BYTES: usize = 10 * 1024 * 1024;

/// Rows and size of the object that [`write_table`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableWritten {
    pub rows: u64,
    /// Size of the Parquet object.
    pub bytes: u64,
}

/// Writes `batches` as the Parquet object of `table` for one shard,
/// replacing what an earlier attempt left there.
///
/// The bytes stream through the object store's buffered writer, which
/// switches to a multipart upload past [`UPLOAD_PART_BYTES`]. On failure the
/// multipart upload is aborted, and no object appears at the key unless an
/// earlier attempt left one. Every batch must have the schema of the first,
/// and at least one batch (it may have no rows) is needed for the schema.
pub async fn write_table(
    store: &Store,
    shard: &ShardKey,
    table: Table,
    batches: &[RecordBatch],
) -> Result<TableWritten, StoreError> {
    write_table_at(store, &shard.table_object(table), table, batches).await
}

/// Writes `batches` as a Parquet object of `table` at `key`, as
/// [`write_table`] does at the shard's final key; the shard commit protocol
/// uses it for its staging keys.
pub async fn write_table_at(
    store: &Store,
    key: &Path,
    table: Table,
    batches: &[RecordBatch],
) -> Result<TableWritten, StoreError> {
    let key = key.clone();
    let first = batches.first().ok_or_else(|| StoreError::NoBatches {
        key: key.to_string(),
    })?;
    let parquet_error = |source| write_error(store, &key, source);

    let upload = Upload::new(BufWriter::with_capacity(
        Arc::clone(&store.inner),
        store.location(&key),
        UPLOAD_PART_BYTES,
    ));
    let properties = writer_properties(table, &first.schema());
    let mut writer = AsyncArrowWriter::try_new(upload, first.schema(), Some(properties))
        .map_err(parquet_error)?;

    match write_all(&mut writer, batches).await {
        Ok(rows) => {
            let bytes = writer.bytes_written() as u64;
            tracing::debug!(object = %key, table = %table, rows, bytes, "wrote table");
            Ok(TableWritten { rows, bytes })
        }
        Err(source) => {
            writer.into_inner().abort(key.as_ref()).await;
            Err(parquet_error(source))
        }
    }
}

/// Writes every table of a shard and then its commit marker, with
/// `marker.rows` replaced by the rows written per table. Returns the marker
/// as written.
///
/// If a table fails, the marker is not written and the shard stays
/// uncommitted, so a retry runs it again and overwrites the same keys.
pub async fn write_shard(
    store: &Store,
    tables: &[(Table, &[RecordBatch])],
    mut marker: CommitMarker,
) -> Result<CommitMarker, StoreError> {
    let shard = marker.key();
    marker.rows.clear();
    for (table, batches) in tables {
        let written = write_table(store, &shard, *table, batches).await?;
        marker.rows.insert(*table, written.rows);
    }
    write_commit_marker(store, &marker).await?;
    Ok(marker)
}

/// Reports a failure of the object store itself as [`StoreError::Object`],
/// so that its message carries the usual cause, and anything else as
/// [`StoreError::Parquet`].
fn write_error(store: &Store, key: &Path, source: ParquetError) -> StoreError {
    let source = match source {
        ParquetError::External(inner) => match inner.downcast::<object_store::Error>() {
            Ok(object_error) => {
                return StoreError::Object {
                    operation: Operation::Write,
                    key: key.to_string(),
                    url: store.url.clone(),
                    source: *object_error,
                };
            }
            Err(inner) => ParquetError::External(inner),
        },
        other => other,
    };
    StoreError::Parquet {
        operation: Operation::Write,
        key: key.to_string(),
        url: store.url.clone(),
        source,
    }
}

/// Unwraps the object store error that `BufWriter` packs into an I/O error.
fn upload_error(error: std::io::Error) -> ParquetError {
    match error.downcast::<object_store::Error>() {
        Ok(object_error) => ParquetError::External(Box::new(object_error)),
        Err(error) => ParquetError::External(Box::new(error)),
    }
}

async fn write_all(
    writer: &mut AsyncArrowWriter<Upload>,
    batches: &[RecordBatch],
) -> Result<u64, ParquetError> {
    let mut rows = 0;
    for batch in batches {
        writer.write(batch).await?;
        rows += batch.num_rows() as u64;
    }
    writer.finish().await?;
    Ok(rows)
}

/// A buffered object upload that remembers whether it began to complete.
///
/// `BufWriter::abort` panics once shutdown has started, and a multipart
/// upload that fails while completing aborts itself, so only an upload that
/// never began to complete needs an abort.
struct Upload {
    inner: BufWriter,
    completing: bool,
}

impl Upload {
    fn new(inner: BufWriter) -> Self {
        Self {
            inner,
            completing: false,
        }
    }

    /// Aborts a multipart upload in progress. Errors are logged, not
    /// returned, because the write error that led here is the one to report.
    async fn abort(mut self, key: &str) {
        if self.completing {
            return;
        }
        if let Err(e) = self.inner.abort().await {
            tracing::warn!(object = key, error = %e, "aborting the failed upload failed; the store may keep its parts");
        }
    }
}

impl AsyncFileWriter for Upload {
    fn write(&mut self, bytes: Bytes) -> BoxFuture<'_, parquet::errors::Result<()>> {
        async move {
            self.inner
                .put(bytes)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))?;
            Ok(())
        }
        .boxed()
    }

    fn complete(&mut self) -> BoxFuture<'_, parquet::errors::Result<()>> {
        async move {
            self.completing = true;
            self.inner.shutdown().await.map_err(upload_error)?;
            Ok(())
        }
        .boxed()
    }
}
