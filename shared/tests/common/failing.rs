//! An in-memory object store that fails every write to keys containing a
//! given text, to test what a failed write leaves behind.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, UploadPart,
};

#[derive(Debug)]
pub struct FailingStore {
    pub inner: InMemory,
    /// Writes to keys containing this text fail.
    pub fail_on: String,
    /// Multipart uploads that were aborted.
    pub aborts: Arc<AtomicUsize>,
}

impl FailingStore {
    pub fn new(fail_on: &str) -> Self {
        Self {
            inner: InMemory::new(),
            fail_on: fail_on.to_string(),
            aborts: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn fails(&self, location: &Path) -> bool {
        location.as_ref().contains(&self.fail_on)
    }
}

fn injected(location: &Path) -> object_store::Error {
    object_store::Error::Generic {
        store: "FailingStore",
        source: format!("injected failure writing {location}").into(),
    }
}

impl fmt::Display for FailingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FailingStore({})", self.fail_on)
    }
}

#[async_trait]
impl ObjectStore for FailingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        if self.fails(location) {
            return Err(injected(location));
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        if !self.fails(location) {
            return Ok(upload);
        }
        Ok(Box::new(FailingUpload {
            location: location.clone(),
            aborts: Arc::clone(&self.aborts),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// A multipart upload whose every part fails.
#[derive(Debug)]
struct FailingUpload {
    location: Path,
    aborts: Arc<AtomicUsize>,
}

#[async_trait]
impl MultipartUpload for FailingUpload {
    fn put_part(&mut self, _data: PutPayload) -> UploadPart {
        let error = injected(&self.location);
        Box::pin(async move { Err(error) })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        Err(injected(&self.location))
    }

    async fn abort(&mut self) -> Result<()> {
        self.aborts.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}
