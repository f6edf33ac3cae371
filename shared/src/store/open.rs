//! Opening a store from its URL, and the object operations that every other
//! part of the store builds on.

use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::error::{Operation, StoreError};

/// How to open a store. [`Default`] creates a missing local folder and
/// takes every S3 setting from the `AWS_*` environment variables.
#[derive(Clone)]
pub struct StoreOptions {
    /// Create a missing local folder. Read-only commands turn this off so
    /// that a mistyped path fails instead of leaving an empty folder.
    pub create: bool,
    /// S3 endpoint URL, such as `http://127.0.0.1:9000`; overrides
    /// `AWS_ENDPOINT_URL`. A `http://` endpoint allows plain HTTP unless
    /// `s3_allow_http` is false.
    pub s3_endpoint: Option<String>,
    /// Allow plain HTTP to the S3 endpoint; overrides `AWS_ALLOW_HTTP`.
    pub s3_allow_http: Option<bool>,
    /// Further `object_store` S3 settings by their config key name (such as
    /// `aws_region` or `aws_access_key_id`), applied last. `Debug` shows
    /// only the keys.
    pub s3_config: Vec<(String, String)>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            create: true,
            s3_endpoint: None,
            s3_allow_http: None,
            s3_config: Vec::new(),
        }
    }
}

impl fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self.s3_config.iter().map(|(key, _)| key.as_str()).collect();
        f.debug_struct("StoreOptions")
            .field("create", &self.create)
            .field("s3_endpoint", &self.s3_endpoint)
            .field("s3_allow_http", &self.s3_allow_http)
            .field("s3_config_keys", &keys)
            .finish()
    }
}

/// An object store and the prefix under which the studies live.
///
/// Cloning is cheap and shares the connection pool.
#[derive(Clone, Debug)]
pub struct Store {
    pub inner: Arc<dyn ObjectStore>,
    /// Root of the studies inside `inner`; empty for a local folder.
    pub prefix: Path,
    /// The URL the store was opened with, for messages. It never contains
    /// credentials, because [`Store::open`] rejects URLs that carry them.
    pub url: String,
    /// The folder of a local store, whose empty folders
    /// [`Store::remove_empty_folders`] removes.
    local_root: Option<PathBuf>,
}

impl Store {
    /// Opens the store at `url` with the default [`StoreOptions`].
    ///
    /// - a plain path or `file:///path`: a local folder, created if missing;
    /// - `s3://bucket/prefix`: S3 or an S3-compatible server, configured by
    ///   the usual `AWS_*` variables (`AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`,
    ///   `AWS_REGION`, which defaults to `us-east-1`, `AWS_ACCESS_KEY_ID`,
    ///   `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`);
    /// - `memory://prefix`: an empty in-memory store for tests. Each open
    ///   makes a new one, so nothing is shared between two opens.
    pub fn open(url: &str) -> Result<Store, StoreError> {
        Store::open_with(url, &StoreOptions::default())
    }

    pub fn open_with(url: &str, options: &StoreOptions) -> Result<Store, StoreError> {
        let store = match url.split_once("://") {
            None => open_local(url, FsPath::new(url), options)?,
            Some(("file", _)) => {
                let path = parse_url(url)?
                    .to_file_path()
                    .map_err(|()| StoreError::InvalidUrl {
                        url: url.to_string(),
                        reason: "a file URL needs an absolute local path, as in file:///data/gaze"
                            .into(),
                    })?;
                open_local(url, &path, options)?
            }
            Some(("s3", _)) => open_s3(url, options)?,
            Some(("memory", rest)) => {
                Store::new(Arc::new(InMemory::new()), parse_prefix(url, rest)?, url)
            }
            Some((scheme, _)) => {
                return Err(StoreError::InvalidUrl {
                    url: redact(url),
                    reason: format!(
                        "scheme {scheme:?} is not supported; use a folder path, file://, s3:// or memory://"
                    ),
                });
            }
        };
        tracing::debug!(store = %store.url, prefix = %store.prefix, "opened store");
        Ok(store)
    }

    /// Wraps any object store, such as one a test builds.
    pub fn new(inner: Arc<dyn ObjectStore>, prefix: Path, url: &str) -> Store {
        Store {
            inner,
            prefix,
            url: url.to_string(),
            local_root: None,
        }
    }

    /// Removes `folder` and the empty folders below it, deepest first, in a
    /// local store; folders that still contain files stay. Object stores
    /// have no folders, so elsewhere this does nothing.
    ///
    /// Deleting objects from a local store leaves their folders behind.
    /// object_store's automatic cleanup would remove them too, but it walks
    /// up to the root and can remove a parent folder that another writer
    /// has just created and is about to write into.
    pub fn remove_empty_folders(&self, folder: &Path) {
        let Some(root) = &self.local_root else {
            return;
        };
        let mut path = root.clone();
        for part in self.location(folder).parts() {
            path.push(part.as_ref());
        }
        remove_empty_dirs(&path);
    }

    /// Returns the location of `key` inside `inner`: the prefix joined with the key.
    pub fn location(&self, key: &Path) -> Path {
        Path::from_iter(self.prefix.parts().chain(key.parts()))
    }

    fn object_error(
        &self,
        operation: Operation,
        key: &Path,
        source: object_store::Error,
    ) -> StoreError {
        StoreError::Object {
            operation,
            key: key.to_string(),
            url: self.url.clone(),
            source,
        }
    }

    /// Writes `bytes` to `key`, replacing any object there.
    pub async fn put(&self, key: &Path, bytes: Bytes) -> Result<(), StoreError> {
        self.inner
            .put(&self.location(key), PutPayload::from(bytes))
            .await
            .map_err(|e| self.object_error(Operation::Write, key, e))?;
        Ok(())
    }

    /// Writes `bytes` to `key` only if no object is there. Returns false,
    /// writing nothing, when one is.
    pub async fn put_if_absent(&self, key: &Path, bytes: Bytes) -> Result<bool, StoreError> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .inner
            .put_opts(&self.location(key), PutPayload::from(bytes), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.object_error(Operation::Write, key, e)),
        }
    }

    /// Reads the object at `key`, or `None` when it does not exist.
    pub async fn get(&self, key: &Path) -> Result<Option<Bytes>, StoreError> {
        let result = match self.inner.get(&self.location(key)).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.object_error(Operation::Read, key, e)),
        };
        let bytes = result
            .bytes()
            .await
            .map_err(|e| self.object_error(Operation::Read, key, e))?;
        Ok(Some(bytes))
    }

    /// Lists the names of the objects directly inside `folder`, sorted.
    /// A folder that does not exist has no objects.
    pub async fn list_names(&self, folder: &Path) -> Result<Vec<String>, StoreError> {
        let location = self.location(folder);
        let listing = self
            .inner
            .list_with_delimiter(Some(&location))
            .await
            .map_err(|e| self.object_error(Operation::List, folder, e))?;
        let mut names: Vec<String> = listing
            .objects
            .iter()
            .filter_map(|meta| meta.location.filename().map(String::from))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Checks that the store can be reached and listed with the configured
    /// credentials, so that a missing bucket or a wrong key fails at start
    /// instead of after a shard's work. Writes nothing.
    pub async fn check_access(&self) -> Result<(), StoreError> {
        self.inner
            .list_with_delimiter(Some(&self.prefix))
            .await
            .map_err(|e| self.object_error(Operation::List, &Path::default(), e))?;
        Ok(())
    }

    /// Lists the names of every object under `folder`, at any depth, as keys
    /// relative to the store's prefix.
    pub async fn list_keys(&self, folder: &Path) -> Result<Vec<Path>, StoreError> {
        let location = self.location(folder);
        let metas: Vec<_> = self
            .inner
            .list(Some(&location))
            .try_collect()
            .await
            .map_err(|e| self.object_error(Operation::List, folder, e))?;
        let skip = self.prefix.parts_count();
        let mut keys: Vec<Path> = metas
            .iter()
            .map(|meta| Path::from_iter(meta.location.parts().skip(skip)))
            .collect();
        keys.sort();
        Ok(keys)
    }
}

fn open_local(url: &str, path: &FsPath, options: &StoreOptions) -> Result<Store, StoreError> {
    let path: PathBuf = std::path::absolute(path).map_err(|source| StoreError::CreateFolder {
        path: path.to_path_buf(),
        source,
    })?;
    if path.exists() && !path.is_dir() {
        return Err(StoreError::NotAFolder { path });
    }
    if options.create {
        std::fs::create_dir_all(&path).map_err(|source| StoreError::CreateFolder {
            path: path.clone(),
            source,
        })?;
    } else if !path.is_dir() {
        return Err(StoreError::MissingFolder { path });
    }

    // fsync makes a commit marker durable only after the files it vouches
    // for.
    let local = LocalFileSystem::new_with_prefix(&path)
        .map_err(|source| StoreError::Configure {
            url: url.to_string(),
            source,
        })?
        .with_fsync(true);
    let mut store = Store::new(Arc::new(local), Path::default(), url);
    store.local_root = Some(path);
    Ok(store)
}

/// Removes the empty folders under `path` and then `path` itself. Errors
/// are ignored: a folder that is not empty, or already gone, stays as it is.
fn remove_empty_dirs(path: &FsPath) {
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                remove_empty_dirs(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(path);
}

fn open_s3(url: &str, options: &StoreOptions) -> Result<Store, StoreError> {
    let parsed = parse_url(url)?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(StoreError::InvalidUrl {
            url: redact(url),
            reason: "credentials in the URL are not supported; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
        });
    }
    let bucket =
        parsed
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| StoreError::InvalidUrl {
                url: url.to_string(),
                reason: "the URL names no bucket; write s3://bucket/prefix".into(),
            })?;
    let prefix = parse_prefix(url, parsed.path())?;

    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    let endpoint = options
        .s3_endpoint
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .or_else(|| std::env::var("AWS_ENDPOINT").ok());
    if let Some(endpoint) = &options.s3_endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    let allow_http = options.s3_allow_http.or_else(|| {
        // Writing an http:// endpoint is the request for plain HTTP.
        endpoint
            .as_deref()
            .filter(|e| e.starts_with("http://"))
            .map(|_| true)
    });
    if let Some(allow_http) = allow_http {
        builder = builder.with_allow_http(allow_http);
    }
    for (key, value) in &options.s3_config {
        let key: AmazonS3ConfigKey = key.parse().map_err(|_| StoreError::InvalidUrl {
            url: url.to_string(),
            reason: format!(
                "unknown S3 option {key:?}; use an object_store AmazonS3ConfigKey name"
            ),
        })?;
        builder = builder.with_config(key, value);
    }

    let s3 = builder.build().map_err(|source| StoreError::Configure {
        url: url.to_string(),
        source,
    })?;
    Ok(Store::new(Arc::new(s3), prefix, url))
}

fn parse_url(url: &str) -> Result<url::Url, StoreError> {
    url::Url::parse(url).map_err(|e| StoreError::InvalidUrl {
        url: redact(url),
        reason: e.to_string(),
    })
}

/// Parses the part of a URL after the bucket into an object path, rejecting
/// `.` and `..` segments that would name another folder.
fn parse_prefix(url: &str, raw: &str) -> Result<Path, StoreError> {
    let trimmed = raw.trim_matches('/');
    Path::parse(trimmed).map_err(|e| StoreError::InvalidUrl {
        url: redact(url),
        reason: format!("invalid prefix {trimmed:?}: {e}"),
    })
}

/// Replaces anything between `://` and `@` so that a URL written with
/// credentials can be shown.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://<redacted>{}", &url[..scheme_end], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_user_and_password() {
        assert_eq!(
            redact("s3://key:secret@bucket/p"),
            "s3://<redacted>@bucket/p"
        );
        assert_eq!(redact("s3://bucket/p"), "s3://bucket/p");
    }

    #[test]
    fn s3_url_credentials_are_rejected() {
        let err = Store::open("s3://AKIAEXAMPLE:topsecret@bucket/prefix").unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("credentials in the URL are not supported"),
            "{message}"
        );
        assert!(!message.contains("topsecret"), "{message}");
        assert!(!message.contains("AKIAEXAMPLE"), "{message}");
    }

    #[test]
    fn options_debug_hides_s3_config_values() {
        let options = StoreOptions {
            s3_config: vec![("aws_secret_access_key".to_string(), "topsecret".to_string())],
            ..StoreOptions::default()
        };
        let shown = format!("{options:?}");
        assert!(shown.contains("aws_secret_access_key"), "{shown}");
        assert!(!shown.contains("topsecret"), "{shown}");
    }

    #[test]
    fn unknown_scheme_lists_supported_ones() {
        let message = Store::open("gs://bucket/x").unwrap_err().to_string();
        assert!(message.contains("\"gs\" is not supported"), "{message}");
        assert!(message.contains("s3://"), "{message}");
    }

    #[test]
    fn memory_url_prefix_is_parsed() {
        let store = Store::open("memory://root/sub").unwrap();
        assert_eq!(store.prefix.as_ref(), "root/sub");
        assert_eq!(store.location(&Path::from("a/b")).as_ref(), "root/sub/a/b");
    }

    #[test]
    fn prefix_with_dot_dot_is_rejected() {
        let message = Store::open("memory://root/../other")
            .unwrap_err()
            .to_string();
        assert!(message.contains("invalid prefix"), "{message}");
    }
}
