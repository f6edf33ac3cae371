//! A model's identity for the study fingerprint: hashes of its config and
//! tokenizer files and of its safetensors headers, never of the weights, so
//! a 16 GB folder is identified in milliseconds.
//!
//! A safetensors header lists every tensor's name, dtype, shape and byte
//! offsets, so any change of architecture or layout changes it. A change of
//! weight values alone that keeps the layout is not detected.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Files hashed whole; the first two must exist.
const REQUIRED_FILES: [&str; 2] = ["config.json", "tokenizer.json"];
const OPTIONAL_FILES: [&str; 2] = ["tokenizer_config.json", "generation_config.json"];
const SINGLE_WEIGHTS: &str = "model.safetensors";
const SHARD_INDEX: &str = "model.safetensors.index.json";

/// Largest safetensors header accepted (the format's own readers cap it at 100 MB).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// The hashes that identify a model folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelIdentity {
    /// SHA-256 over every entry of `files`, lowercase hex.
    pub digest: String,
    /// The hashed inputs with the SHA-256 of their bytes, sorted by name. A
    /// name is a file name, or `header:NAME` for the JSON header of the
    /// safetensors file NAME.
    pub files: Vec<(String, String)>,
}

/// A model folder's identity, or the fact that the folder does not exist yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ModelStatus {
    Present(ModelIdentity),
    Missing { path: PathBuf },
}

#[derive(Debug, thiserror::Error)]
pub enum ModelIdentityError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "model folder {folder} has no {file}; gaze needs a Hugging Face folder with config.json, tokenizer.json and safetensors weights"
    )]
    MissingFile { folder: PathBuf, file: String },
    #[error(
        "model folder {folder} has no {SINGLE_WEIGHTS} or {SHARD_INDEX}; convert the weights to safetensors"
    )]
    MissingWeights { folder: PathBuf },
    #[error("invalid safetensors file {path}: {reason}")]
    InvalidSafetensors { path: PathBuf, reason: String },
    #[error("invalid shard index {path}: {reason}")]
    InvalidIndex { path: PathBuf, reason: String },
}

/// Returns [`ModelStatus::Missing`] when `folder` does not exist, and the
/// folder's identity otherwise. A folder that exists but lacks a needed file
/// is an error.
pub fn model_status(folder: &Path) -> Result<ModelStatus, ModelIdentityError> {
    if !folder.exists() {
        return Ok(ModelStatus::Missing {
            path: folder.to_path_buf(),
        });
    }
    model_identity(folder).map(ModelStatus::Present)
}

/// Hashes the config and tokenizer files of `folder` and the headers of its
/// safetensors files (all shards listed in `model.safetensors.index.json`
/// when present, else `model.safetensors`).
pub fn model_identity(folder: &Path) -> Result<ModelIdentity, ModelIdentityError> {
    let mut files = Vec::new();
    for name in REQUIRED_FILES {
        let path = folder.join(name);
        if !path.is_file() {
            return Err(ModelIdentityError::MissingFile {
                folder: folder.to_path_buf(),
                file: name.into(),
            });
        }
        files.push((name.to_string(), hash_file(&path)?));
    }
    for name in OPTIONAL_FILES {
        let path = folder.join(name);
        if path.is_file() {
            files.push((name.to_string(), hash_file(&path)?));
        }
    }

    let index = folder.join(SHARD_INDEX);
    let weight_files = if index.is_file() {
        files.push((SHARD_INDEX.to_string(), hash_file(&index)?));
        shard_names(&index)?
    } else if folder.join(SINGLE_WEIGHTS).is_file() {
        vec![SINGLE_WEIGHTS.to_string()]
    } else {
        return Err(ModelIdentityError::MissingWeights {
            folder: folder.to_path_buf(),
        });
    };
    for name in weight_files {
        let header = read_safetensors_header(&folder.join(&name))?;
        files.push((
            format!("header:{name}"),
            hex::encode(Sha256::digest(&header)),
        ));
    }

    files.sort();
    let mut hasher = Sha256::new();
    for (name, digest) in &files {
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update(digest.as_bytes());
    }
    Ok(ModelIdentity {
        digest: hex::encode(hasher.finalize()),
        files,
    })
}

fn hash_file(path: &Path) -> Result<String, ModelIdentityError> {
    let bytes = std::fs::read(path).map_err(|source| ModelIdentityError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// Returns the distinct shard file names in the index's `weight_map`, sorted.
fn shard_names(index: &Path) -> Result<Vec<String>, ModelIdentityError> {
    let invalid = |reason: String| ModelIdentityError::InvalidIndex {
        path: index.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(index).map_err(|source| ModelIdentityError::Io {
        path: index.to_path_buf(),
        source,
    })?;
    let json: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|err| invalid(err.to_string()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| invalid("no \"weight_map\" object".into()))?;

    let mut names = Vec::new();
    for (tensor, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| invalid(format!("weight_map[{tensor:?}] is not a file name")))?;
        if file.contains('/') || file.contains('\\') || file == ".." {
            return Err(invalid(format!(
                "weight_map[{tensor:?}] = {file:?} is not a file in the model folder"
            )));
        }
        names.push(file.to_string());
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// Reads the JSON header of a safetensors file: an 8-byte little-endian
/// length, then that many bytes.
fn read_safetensors_header(path: &Path) -> Result<Vec<u8>, ModelIdentityError> {
    let io_error = |source| ModelIdentityError::Io {
        path: path.to_path_buf(),
        source,
    };
    let invalid = |reason: String| ModelIdentityError::InvalidSafetensors {
        path: path.to_path_buf(),
        reason,
    };

    let mut file = File::open(path).map_err(io_error)?;
    let file_len = file.metadata().map_err(io_error)?.len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes).map_err(|_| {
        invalid(format!(
            "the file is {file_len} bytes, shorter than the 8-byte header length"
        ))
    })?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_BYTES || 8 + header_len > file_len {
        return Err(invalid(format!(
            "the header length {header_len} does not fit the file of {file_len} bytes; the file is truncated or not safetensors"
        )));
    }

    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(io_error)?;
    Ok(header)
}
