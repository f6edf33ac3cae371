//! The engine against transformers: greedy tokens and captured attention of
//! the reference checkpoints in `tests/golden/`, recorded by
//! `tests/reference/make_golden.py` with eager attention in f32.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use gaze_worker::model::decoder::CaptureLayers;
use gaze_worker::model::mask::{AttentionMasks, MaskLayout};
use gaze_worker::model::{DTypeChoice, LoadedModel};
use serde::Deserialize;

/// Attention rows match transformers within this absolute difference.
const TOLERANCE: f32 = 1e-5;

#[derive(Deserialize)]
struct Golden {
    new_tokens: usize,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    input_ids: Vec<u32>,
    generated_ids: Vec<u32>,
    first_step_logits: Vec<f32>,
    /// `[step][layer][head][key]`.
    attentions: Vec<Vec<Vec<Vec<f32>>>>,
}

fn golden_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden").join(name)
}

fn read_golden(name: &str) -> Golden {
    let text = std::fs::read_to_string(golden_dir(name).join("golden.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn load(name: &str) -> LoadedModel {
    LoadedModel::load(&golden_dir(name), DTypeChoice::Fixed(DType::F32), &Device::Cpu).unwrap()
}

/// Greedy decoding straight on the decoder, one prompt, every layer and head
/// captured: returns the tokens, the first step's logits and
/// `[step][layer][head][key]` rows.
fn greedy(model: &LoadedModel, ids: &[u32], steps: usize) -> (Vec<u32>, Vec<f32>, Vec<Vec<Vec<Vec<f32>>>>) {
    let decoder = &model.decoder;
    let config = decoder.config();
    let device = Device::Cpu;
    let capture = CaptureLayers {
        layers: (0..config.num_hidden_layers).collect(),
        heads: Tensor::arange(0u32, config.num_attention_heads as u32, &device).unwrap(),
    };
    let mut cache = decoder.new_cache(ids.len() + steps);
    let mut input = ids.to_vec();
    let mut positions: Vec<u32> = (0..ids.len() as u32).collect();
    let mut tokens = Vec::new();
    let mut rows = Vec::new();
    let mut first_logits = Vec::new();
    for _ in 0..steps {
        let layout = MaskLayout { pads: vec![0], past_len: cache.visible_len(), new_len: input.len() };
        let masks = AttentionMasks::new(&layout, &decoder.sliding_windows(), &device).unwrap();
        let input_ids = Tensor::new(input.as_slice(), &device).unwrap().unsqueeze(0).unwrap();
        let out = decoder
            .forward(&input_ids, &[positions.clone()], &masks, &mut cache, Some(&capture))
            .unwrap();
        let logits = out.logits.squeeze(0).unwrap().to_vec1::<f32>().unwrap();
        if first_logits.is_empty() {
            first_logits = logits.clone();
        }
        let token = argmax(&logits);
        let attention = out.attention.unwrap().squeeze(1).unwrap().to_vec3::<f32>().unwrap();
        rows.push(attention);
        tokens.push(token);
        positions = vec![*positions.last().unwrap() + 1];
        input = vec![token];
    }
    (tokens, first_logits, rows)
}

fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u32
}

fn max_difference(got: &[Vec<Vec<Vec<f32>>>], want: &[Vec<Vec<Vec<f32>>>]) -> f32 {
    assert_eq!(got.len(), want.len(), "steps");
    let mut max = 0.0_f32;
    for (step, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "layers at step {step}");
        for (layer, (g, w)) in g.iter().zip(w).enumerate() {
            assert_eq!(g.len(), w.len(), "heads at step {step} layer {layer}");
            for (head, (g, w)) in g.iter().zip(w).enumerate() {
                assert_eq!(g.len(), w.len(), "keys at step {step} layer {layer} head {head}");
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
    let model = load(name);
    for case in &golden.cases {
        let (tokens, logits, rows) = greedy(&model, &case.input_ids, golden.new_tokens);
        assert_eq!(tokens, case.generated_ids, "{name}/{}: greedy tokens", case.name);
        let logit_diff = logits
            .iter()
            .zip(&case.first_step_logits)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0_f32, f32::max);
        assert!(logit_diff < 1e-4, "{name}/{}: first-step logits differ by {logit_diff}", case.name);
        let diff = max_difference(&rows, &case.attentions);
        assert!(diff < TOLERANCE, "{name}/{}: attention differs by {diff}", case.name);
    }
}

#[test]
fn llama3_decoder_matches_transformers() {
    check_single_prompts("llama3");
}

#[test]
fn llama2_decoder_matches_transformers() {
    check_single_prompts("llama2");
}

#[test]
fn qwen2_decoder_matches_transformers() {
    check_single_prompts("qwen2");
}
