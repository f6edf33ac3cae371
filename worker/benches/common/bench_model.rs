//! The benchmark checkpoint and batch, shared by the `generate` bench and the
//! `write_bench_model` example so that gaze and the transformers reference
//! script run the same weights, prompts and settings.

use std::path::Path;

use anyhow::Context;
use gaze_worker::generate::GenerationRequest;
use gaze_worker::model::Architecture;
use gaze_worker::model::random::RandomModel;
use serde_json::json;

pub const BATCH: usize = 4;
/// Length of the longest prompt; each further row is 8 tokens shorter.
pub const PROMPT_LEN: usize = 64;
pub const NEW_TOKENS: usize = 16;
pub const TEMPERATURE: f64 = 1.0;
pub const TOP_P: f64 = 0.95;

/// 12 layers, hidden 768, 12 query heads on 4 KV heads, MLP 2048, vocab
/// 32000, tied embeddings: 24.6M embedding + 12 x 6.3M layer parameters.
pub fn model() -> RandomModel {
    RandomModel {
        hidden_size: 768,
        intermediate_size: 2048,
        num_hidden_layers: 12,
        num_attention_heads: 12,
        num_key_value_heads: 4,
        vocab_size: 32_000,
        tie_word_embeddings: true,
        rope_theta: 500_000.0,
        std: 0.02,
        ..RandomModel::tiny(Architecture::Llama)
    }
}

/// Returns the batch: prompts of 64, 56, 48 and 40 tokens, seeded by row.
pub fn requests() -> Vec<GenerationRequest> {
    (0..BATCH)
        .map(|row| GenerationRequest {
            prompt_ids: (0..PROMPT_LEN - row * 8)
                .map(|i| 4 + ((i * 31 + row * 7) % 30_000) as u32)
                .collect(),
            seed: row as u64,
            capture: true,
        })
        .collect()
}

/// Writes the checkpoint into `dir` (which must exist) with EOS disabled, so
/// every sample generates `NEW_TOKENS` tokens, and `bench.json` holding the
/// batch and the sampling settings for other implementations to replay.
pub fn write(dir: &Path) -> anyhow::Result<()> {
    model().write(dir)?;
    std::fs::write(
        dir.join("generation_config.json"),
        r#"{"eos_token_id": []}"#,
    )
    .context("writing generation_config.json")?;

    let prompts: Vec<Vec<u32>> = requests().into_iter().map(|r| r.prompt_ids).collect();
    let bench = json!({
        "prompt_ids": prompts,
        "pad_token_id": 3,
        "padding_side": "left",
        "max_new_tokens": NEW_TOKENS,
        "temperature": TEMPERATURE,
        "top_p": TOP_P,
        "top_k": null,
    });
    std::fs::write(
        dir.join("bench.json"),
        serde_json::to_string_pretty(&bench)?,
    )
    .context("writing bench.json")
}
