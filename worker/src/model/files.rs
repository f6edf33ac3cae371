//! The files of a Hugging Face model folder: which exist, which are
//! optional, and the safetensors shards named by an index.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::{ModelError, Result};

/// The paths of a model folder's files, checked to exist.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub tokenizer: PathBuf,
    pub tokenizer_config: Option<PathBuf>,
    pub generation_config: Option<PathBuf>,
    /// A chat template saved apart from `tokenizer_config.json`, as
    /// transformers 4.43 and later do.
    pub chat_template: Option<PathBuf>,
    /// `model.safetensors`, or the shards listed in
    /// `model.safetensors.index.json` in name order.
    pub weights: Vec<PathBuf>,
}

#[derive(Deserialize)]
struct SafetensorsIndex {
    weight_map: std::collections::HashMap<String, String>,
}

impl ModelFiles {
    /// Finds the files of the model in `dir`. Fails naming the first
    /// required file that is missing.
    pub fn locate(dir: &Path) -> Result<Self> {
        let required = |name: &str| {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(ModelError::MissingFile { path })
            }
        };
        let optional = |name: &str| Some(dir.join(name)).filter(|path| path.is_file());

        let config = required("config.json")?;
        let tokenizer = required("tokenizer.json")?;
        let weights = Self::locate_weights(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            tokenizer,
            tokenizer_config: optional("tokenizer_config.json"),
            generation_config: optional("generation_config.json"),
            chat_template: optional("chat_template.jinja"),
            weights,
        })
    }

    fn locate_weights(dir: &Path) -> Result<Vec<PathBuf>> {
        let single = dir.join("model.safetensors");
        if single.is_file() {
            return Ok(vec![single]);
        }
        let index_path = dir.join("model.safetensors.index.json");
        if !index_path.is_file() {
            return Err(ModelError::MissingFile { path: single });
        }
        let index: SafetensorsIndex = read_json(&index_path)?;
        let shards: BTreeSet<&String> = index.weight_map.values().collect();
        if shards.is_empty() {
            return Err(ModelError::InvalidFile {
                path: index_path,
                message: "weight_map lists no shards".to_string(),
            });
        }
        shards
            .into_iter()
            .map(|name| {
                let path = dir.join(name);
                if path.is_file() {
                    Ok(path)
                } else {
                    Err(ModelError::MissingFile { path })
                }
            })
            .collect()
    }
}

/// Reads and parses a JSON file, naming the path in any error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|source| ModelError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a text file, naming the path in any error.
pub fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ModelError::MissingFile {
            path: path.to_path_buf(),
        },
        _ => ModelError::Read {
            path: path.to_path_buf(),
            source,
        },
    })
}
