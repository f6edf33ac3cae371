//! Errors of the store: each names the store, the object key and the fix.

use std::io;
use std::path::PathBuf;

use super::keys::InvalidId;
use super::manifest::ManifestMismatch;

/// Kind of object operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Read,
    Write,
    List,
    Copy,
    Delete,
}

impl Operation {
    fn as_str(&self) -> &'static str {
        match self {
            Operation::Read => "reading",
            Operation::Write => "writing",
            Operation::List => "listing",
            Operation::Copy => "copying",
            Operation::Delete => "deleting",
        }
    }
}

/// Errors of opening a store and of reading and writing a study's objects.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error(
        "cannot create the store folder {}: {source}; choose a folder that you can write to",
        path.display()
    )]
    CreateFolder { path: PathBuf, source: io::Error },

    #[error(
        "the store path {} is a file, not a folder; pass a folder for the tables, such as gaze-output",
        path.display()
    )]
    NotAFolder { path: PathBuf },

    #[error("the store folder {} does not exist; check the path or run the study first", path.display())]
    MissingFolder { path: PathBuf },

    #[error("cannot configure the store {url}: {source}")]
    Configure {
        url: String,
        source: object_store::Error,
    },

    #[error(transparent)]
    InvalidId(#[from] InvalidId),

    #[error("{} {} in store {url} failed: {source}{}", operation.as_str(), key_name(key), hint(*operation, source))]
    Object {
        operation: Operation,
        key: String,
        url: String,
        source: object_store::Error,
    },

    #[error("{} Parquet object {key} in store {url} failed: {source}", operation.as_str())]
    Parquet {
        operation: Operation,
        key: String,
        url: String,
        source: parquet::errors::ParquetError,
    },

    #[error(
        "no record batch was given for {key}; pass at least one, even with zero rows, so the file has a schema"
    )]
    NoBatches { key: String },

    #[error(
        "commit marker {key} in store {url} is corrupt: {reason}; delete it so that the shard is run again"
    )]
    CorruptMarker {
        key: String,
        url: String,
        reason: String,
    },

    #[error(
        "manifest {key} in store {url} is corrupt: {reason}; restore it from a backup, or name a new study"
    )]
    CorruptManifest {
        key: String,
        url: String,
        reason: String,
    },

    #[error(
        "the claim {key} in store {url} is unreadable ({reason}); delete it and its shard runs again"
    )]
    CorruptClaim {
        key: String,
        url: String,
        reason: String,
    },

    #[error(
        "the claim {claim} in store {url} names staged tables that are gone ({staged}); \
         delete the claim and its shard runs again"
    )]
    StagingMissing {
        claim: String,
        staged: String,
        url: String,
    },

    #[error(transparent)]
    ManifestMismatch(Box<ManifestMismatch>),
}

/// S3 error codes and HTTP statuses that mean the credentials were refused.
/// Some S3 requests (listing) report them only in the message text.
const CREDENTIAL_ERRORS: [&str; 6] = [
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "AccessDenied",
    "ExpiredToken",
    "403 Forbidden",
    "401 Unauthorized",
];

/// Suggests the usual cause of an object store failure. Credentials are
/// named by their variable, never shown.
fn hint(operation: Operation, source: &object_store::Error) -> &'static str {
    let text = source.to_string();
    let missing_bucket = text.contains("NoSuchBucket")
        || (matches!(operation, Operation::Write | Operation::List)
            && matches!(source, object_store::Error::NotFound { .. }));
    let refused = matches!(
        source,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) || CREDENTIAL_ERRORS.iter().any(|code| text.contains(code));

    if missing_bucket {
        "; check that the bucket exists and that the URL names it"
    } else if refused {
        "; check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) \
         and that they may access this bucket, or the folder's permissions"
    } else {
        ""
    }
}

/// Shows an empty key, the store's root, by name.
fn key_name(key: &str) -> &str {
    if key.is_empty() {
        "the store root"
    } else {
        key
    }
}

impl StoreError {
    /// Returns true when the error is an object that does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            StoreError::Object {
                source: object_store::Error::NotFound { .. },
                ..
            }
        )
    }
}
