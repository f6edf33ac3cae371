//! The tiny Llama-architecture test checkpoint that tests and the demo use.
//!
//! TODO: placeholder; the test-model work replaces the body.

use std::path::Path;

/// Writes `config.json`, `tokenizer.json`, `tokenizer_config.json`,
/// `generation_config.json` and `model.safetensors` into `dir`.
/// The same call always writes the same bytes.
pub fn write_test_model(dir: &Path) -> anyhow::Result<()> {
    let _ = dir;
    todo!("write_test_model")
}
