//! Errors from reading a model folder and building the decoder from it.

use std::path::PathBuf;

/// The reasons a model folder fails to load or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "model file not found: {path}; a model folder needs config.json, tokenizer.json and model.safetensors (or model.safetensors.index.json with its shards)"
    )]
    MissingFile { path: PathBuf },

    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("invalid JSON in {path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },

    #[error("invalid {path}: {message}")]
    InvalidFile { path: PathBuf, message: String },

    #[error("unsupported architecture {found:?} in config.json; supported: {}", supported.join(", "))]
    UnsupportedArchitecture {
        found: String,
        supported: &'static [&'static str],
    },

    #[error("unsupported RoPE scaling type {found:?} in config.json; supported: {}", supported.join(", "))]
    UnsupportedRopeScaling {
        found: String,
        supported: &'static [&'static str],
    },

    #[error("invalid config.json: {message}")]
    InvalidConfig { message: String },

    #[error(
        "cannot read the safetensors weights in {dir}: {message}; a file is truncated or damaged, so copy or download the model again"
    )]
    Weights { dir: PathBuf, message: String },

    #[error("tensor {name} not found in the safetensors files of {dir}")]
    MissingTensor { name: String, dir: PathBuf },

    #[error("tensor {name} has shape {found:?}, expected {expected:?} from config.json")]
    TensorShape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    #[error("cannot load tokenizer {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },

    #[error("invalid device {value:?}: {message}")]
    Device { value: String, message: String },

    #[error("invalid dtype {value:?}; use one of auto, f32, f16, bf16")]
    DType { value: String },

    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
