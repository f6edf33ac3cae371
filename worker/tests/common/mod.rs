//! Helpers shared by the integration tests: the reference golden files
//! under `tests/golden/` (written by `tests/reference/make_golden.py`).

#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;
use tokenizers::Tokenizer;

/// The reference checkpoints with golden records.
pub const GOLDEN_MODELS: [&str; 3] = ["llama3", "llama2", "qwen2"];

/// Every golden tokenizer: the checkpoints' and `llama2-legacy`, the Llama 2
/// tokenizer in the older form that adds `▁` with a normalizer.
pub const GOLDEN_TOKENIZERS: [&str; 4] = ["llama3", "llama2", "llama2-legacy", "qwen2"];

pub fn golden_dir(model: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/golden")
        .join(model)
}

pub fn golden(model: &str) -> Value {
    let path = golden_dir(model).join("golden.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    serde_json::from_str(&text).expect("golden.json parses")
}

pub fn golden_tokenizer(model: &str) -> Tokenizer {
    Tokenizer::from_file(golden_dir(model).join("tokenizer.json")).expect("golden tokenizer loads")
}

pub fn case<'a>(golden: &'a Value, name: &str) -> &'a Value {
    golden["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
}

pub fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

pub fn pairs(value: &Value) -> Vec<(usize, usize)> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_u64().unwrap() as usize,
                p[1].as_u64().unwrap() as usize,
            )
        })
        .collect()
}

pub fn strings(value: &Value) -> Vec<Option<String>> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect()
}
