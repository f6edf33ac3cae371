//! The gaze worker: loads a Hugging Face-format Llama-family model with
//! candle, generates decisions in batches and captures attention from
//! generated tokens to prompt tokens.

pub mod capture;
pub mod engine;
pub mod generate;
pub mod golden;
pub mod model;
pub mod probe;
pub mod prompt;
pub mod serve;
pub mod shard;
pub mod testmodel;

pub use engine::Engine;
