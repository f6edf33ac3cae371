//! Errors from generating a batch.

use crate::capture::CaptureError;

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("invalid generation settings: {message}")]
    InvalidSettings { message: String },

    #[error("invalid request {index} of the batch: {message}")]
    InvalidRequest { index: usize, message: String },

    #[error("tokenizer failed: {0}")]
    Tokenizer(String),

    #[error(transparent)]
    Capture(#[from] CaptureError),

    #[error("model computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}
