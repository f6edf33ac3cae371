//! Helpers shared by the integration tests: random checkpoints in
//! temporary folders and engine settings.

#![allow(dead_code)]

use candle_core::{DType, Device};
use gaze_worker::Engine;
use gaze_worker::capture::CaptureSpec;
use gaze_worker::generate::{GenerationRequest, GenerationSettings, SamplingParams};
use gaze_worker::model::random::RandomModel;
use gaze_worker::model::{Architecture, DTypeChoice};
use tempfile::TempDir;

/// Returns a tiny random Llama model whose vocabulary includes two
/// decision labels.
pub fn tiny_llama() -> RandomModel {
    RandomModel {
        words: vec!["GRANT".into(), "REFUSE".into()],
        ..RandomModel::tiny(Architecture::Llama)
    }
}

/// Writes `spec` into a new temporary folder.
pub fn write(spec: &RandomModel) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    spec.write(dir.path()).unwrap();
    dir
}

/// Makes a quarter of the vocabulary end generation, so samples of one
/// batch stop at different steps.
pub fn write_frequent_eos(dir: &TempDir, vocab_size: u32) {
    let eos: Vec<u32> = std::iter::once(2)
        .chain(vocab_size * 3 / 4..vocab_size)
        .collect();
    let config = serde_json::json!({ "eos_token_id": eos });
    std::fs::write(
        dir.path().join("generation_config.json"),
        config.to_string(),
    )
    .unwrap();
}

pub fn load(dir: &TempDir) -> Engine {
    Engine::load(dir.path(), DTypeChoice::Fixed(DType::F32), &Device::Cpu).unwrap()
}

pub fn greedy(max_new_tokens: usize) -> GenerationSettings {
    GenerationSettings {
        max_new_tokens,
        sampling: SamplingParams {
            temperature: 0.0,
            top_p: None,
            top_k: None,
        },
        stop_strings: Vec::new(),
        decision: None,
    }
}

pub fn sampled(max_new_tokens: usize) -> GenerationSettings {
    GenerationSettings {
        sampling: SamplingParams {
            temperature: 1.0,
            top_p: Some(0.95),
            top_k: Some(40),
        },
        ..greedy(max_new_tokens)
    }
}

/// Captures every layer and head at the first `steps` steps.
pub fn capture_all(engine: &Engine, steps: usize) -> CaptureSpec {
    CaptureSpec {
        layers: (0..engine.config().num_hidden_layers).collect(),
        heads: (0..engine.config().num_attention_heads).collect(),
        first_steps: steps,
        decision_step: false,
    }
}

/// Requests with prompts of different lengths made of ids from 4 up.
pub fn requests(lengths: &[usize], vocab_size: u32) -> Vec<GenerationRequest> {
    lengths
        .iter()
        .enumerate()
        .map(|(index, &len)| GenerationRequest {
            prompt_ids: (0..len)
                .map(|i| 4 + ((i * 7 + index * 13) as u32 % (vocab_size / 2)))
                .collect(),
            seed: 100 + index as u64,
            capture: true,
        })
        .collect()
}
