//! The model: a Hugging Face Llama-family checkpoint (Llama 2 and 3,
//! Mistral, Qwen2) loaded with candle and run as a decoder with a KV cache,
//! left-padded batches and attention capture.

pub mod attention;
pub mod block;
pub mod config;
pub mod decoder;
pub mod device;
pub mod error;
pub mod files;
pub mod kv_cache;
pub mod loader;
pub mod mask;
pub mod mlp;
pub mod random;
pub mod rope;
pub mod special_tokens;

pub use config::{Architecture, ModelConfig};
pub use decoder::{CaptureLayers, Decoder, ForwardOutput};
pub use device::{DTypeChoice, parse_device};
pub use error::ModelError;
pub use loader::LoadedModel;
