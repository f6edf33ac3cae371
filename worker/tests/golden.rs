//! The engine against transformers: greedy tokens and captured attention of
//! the reference checkpoints in `tests/golden/`, recorded by
//! `tests/reference/make_golden.py` with eager attention in f32.

mod common;

use candle_core::{DType, Device, Tensor};
use common::golden_dir;
use gaze_worker::Engine;
use gaze_worker::capture::{CaptureSpec, CapturedStep};
use gaze_worker::generate::{GenerationRequest, GenerationSettings, SamplingParams, StopReason};
use gaze_worker::model::DTypeChoice;
use gaze_worker::model::decoder::CaptureLayers;
use gaze_worker::model::mask::{AttentionMasks, MaskLayout};
use serde::Deserialize;

/// Attention rows match transformers within this absolute difference.
const TOLERANCE: f32 = 1e-5;

/// `[step][layer][head][key]`.
type Rows = Vec<Vec<Vec<Vec<f32>>>>;

#[derive(Deserialize)]
struct Golden {
    new_tokens: usize,
    cases: Vec<Case>,
    batch: Batch,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    input_ids: Vec<u32>,
    generated_ids: Vec<u32>,
    first_step_logits: Vec<f32>,
    attentions: Rows,
}

#[derive(Deserialize)]
struct Batch {
    padded_input_ids: Vec<Vec<u32>>,
    attention_mask: Vec<Vec<u32>>,
    rows: Vec<BatchRow>,
}

#[derive(Deserialize)]
struct BatchRow {
    input_ids: Vec<u32>,
    padding: usize,
    generated_ids: Vec<u32>,
    attentions: Rows,
}

fn read_golden(name: &str) -> Golden {
    let text = std::fs::read_to_string(golden_dir(name).join("golden.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Loads the engine for golden record `name`: its checkpoint folder, or
/// for `test-model` the test model written into `scratch`.
fn engine_for(name: &str, scratch: &tempfile::TempDir) -> Engine {
    let dir = match name {
        "test-model" => {
            gaze_worker::testmodel::write_test_model(scratch.path()).unwrap();
            scratch.path().to_path_buf()
        }
        _ => golden_dir(name),
    };
    Engine::load(&dir, DTypeChoice::Fixed(DType::F32), &Device::Cpu).unwrap()
}

/// Greedy decoding of `new_tokens` tokens with every layer and head
/// captured at every step.
fn greedy(engine: &Engine, prompts: &[Vec<u32>], new_tokens: usize) -> Vec<(Vec<u32>, Rows)> {
    let config = engine.config();
    let settings = GenerationSettings {
        max_new_tokens: new_tokens,
        sampling: SamplingParams {
            temperature: 0.0,
            top_p: None,
            top_k: None,
        },
        stop_strings: Vec::new(),
        decision: None,
    };
    let capture = CaptureSpec {
        layers: (0..config.num_hidden_layers).collect(),
        heads: (0..config.num_attention_heads).collect(),
        first_steps: new_tokens,
        decision_step: false,
    };
    let requests: Vec<GenerationRequest> = prompts
        .iter()
        .map(|ids| GenerationRequest {
            prompt_ids: ids.clone(),
            seed: 0,
            capture: true,
        })
        .collect();
    let outputs = engine
        .generate_batch(&requests, &settings, &capture)
        .unwrap();
    outputs
        .into_iter()
        .map(|output| {
            assert_eq!(output.stop_reason, StopReason::MaxNewTokens);
            (
                output.token_ids,
                nest(
                    &output.captured,
                    config.num_hidden_layers,
                    config.num_attention_heads,
                ),
            )
        })
        .collect()
}

/// Regroups captured steps into `[step][layer][head][key]`.
fn nest(steps: &[CapturedStep], layers: usize, heads: usize) -> Rows {
    steps
        .iter()
        .enumerate()
        .map(|(index, step)| {
            assert_eq!(step.step, index, "captured steps are in order");
            assert_eq!(step.rows.len(), layers * heads);
            step.rows
                .chunks(heads)
                .map(|layer| layer.iter().map(|row| row.scores.clone()).collect())
                .collect()
        })
        .collect()
}

/// Computes the first step's logits straight from the decoder.
fn first_step_logits(engine: &Engine, ids: &[u32]) -> Vec<f32> {
    let decoder = &engine.model().decoder;
    let device = Device::Cpu;
    let mut cache = decoder.new_cache(ids.len());
    let layout = MaskLayout {
        pads: vec![0],
        past_len: 0,
        new_len: ids.len(),
    };
    let masks = AttentionMasks::new(&layout, &decoder.sliding_windows(), &device).unwrap();
    let input = Tensor::new(ids, &device).unwrap().unsqueeze(0).unwrap();
    let positions = vec![(0..ids.len() as u32).collect()];
    let capture: Option<&CaptureLayers> = None;
    let out = decoder
        .forward(&input, &positions, &masks, &mut cache, capture)
        .unwrap();
    out.logits.squeeze(0).unwrap().to_vec1().unwrap()
}

fn max_difference(got: &[Vec<Vec<Vec<f32>>>], want: &[Vec<Vec<Vec<f32>>>]) -> f32 {
    assert_eq!(got.len(), want.len(), "steps");
    let mut max = 0.0_f32;
    for (step, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "layers at step {step}");
        for (layer, (g, w)) in g.iter().zip(w).enumerate() {
            assert_eq!(g.len(), w.len(), "heads at step {step} layer {layer}");
            for (head, (g, w)) in g.iter().zip(w).enumerate() {
                assert_eq!(
                    g.len(),
                    w.len(),
                    "keys at step {step} layer {layer} head {head}"
                );
                for (a, b) in g.iter().zip(w) {
                    max = max.max((a - b).abs());
                }
            }
        }
    }
    max
}

fn check_single_prompts(name: &str) {
    let golden = read_golden(name);
    let scratch = tempfile::tempdir().unwrap();
    let engine = engine_for(name, &scratch);
    for case in &golden.cases {
        let (tokens, rows) = greedy(
            &engine,
            std::slice::from_ref(&case.input_ids),
            golden.new_tokens,
        )
        .remove(0);
        assert_eq!(
            tokens, case.generated_ids,
            "{name}/{}: greedy tokens",
            case.name
        );
        let diff = max_difference(&rows, &case.attentions);
        assert!(
            diff < TOLERANCE,
            "{name}/{}: attention differs by {diff}",
            case.name
        );

        let logits = first_step_logits(&engine, &case.input_ids);
        let logit_diff = logits
            .iter()
            .zip(&case.first_step_logits)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0_f32, f32::max);
        assert!(
            logit_diff < 1e-4,
            "{name}/{}: first-step logits differ by {logit_diff}",
            case.name
        );
    }
}

fn check_padded_batch(name: &str) {
    let golden = read_golden(name);
    let scratch = tempfile::tempdir().unwrap();
    let engine = engine_for(name, &scratch);
    let batch = &golden.batch;
    for (row, (padded, mask)) in batch
        .rows
        .iter()
        .zip(batch.padded_input_ids.iter().zip(&batch.attention_mask))
    {
        assert_eq!(
            &padded[row.padding..],
            row.input_ids.as_slice(),
            "golden rows are left-padded"
        );
        assert_eq!(mask.iter().filter(|&&m| m == 0).count(), row.padding);
    }
    let prompts: Vec<Vec<u32>> = batch.rows.iter().map(|row| row.input_ids.clone()).collect();
    let results = greedy(&engine, &prompts, golden.new_tokens);
    for (index, (row, (tokens, rows))) in batch.rows.iter().zip(results).enumerate() {
        assert_eq!(
            tokens, row.generated_ids,
            "{name} batch row {index}: greedy tokens"
        );
        let diff = max_difference(&rows, &row.attentions);
        assert!(
            diff < TOLERANCE,
            "{name} batch row {index}: attention differs by {diff}"
        );
    }
}

#[test]
fn llama3_single_prompts_match_transformers() {
    check_single_prompts("llama3");
}

#[test]
fn llama2_single_prompts_match_transformers() {
    check_single_prompts("llama2");
}

#[test]
fn qwen2_single_prompts_match_transformers() {
    check_single_prompts("qwen2");
}

#[test]
fn llama3_padded_batch_matches_transformers() {
    check_padded_batch("llama3");
}

#[test]
fn llama2_padded_batch_matches_transformers() {
    check_padded_batch("llama2");
}

#[test]
fn qwen2_padded_batch_matches_transformers() {
    check_padded_batch("qwen2");
}

#[test]
fn test_model_single_prompts_match_transformers() {
    check_single_prompts("test-model");
}

#[test]
fn test_model_padded_batch_matches_transformers() {
    check_padded_batch("test-model");
}
