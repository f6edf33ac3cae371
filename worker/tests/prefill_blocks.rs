//! A prefill computed in blocks of query rows gives the same tokens and
//! attention as one computed whole, against the transformers records.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{GOLDEN_MODELS, golden_dir};
use gaze_worker::Engine;
use gaze_worker::golden::{GoldenRecord, compare_with_golden};
use gaze_worker::model::DTypeChoice;
use gaze_worker::model::decoder::CaptureLayers;
use gaze_worker::model::loader::LoadedModel;
use gaze_worker::model::mask::{AttentionMasks, MaskLayout};

#[test]
fn small_blocks_match_transformers() {
    for name in GOLDEN_MODELS {
        let dir = golden_dir(name);
        let mut model =
            LoadedModel::load(&dir, DTypeChoice::Fixed(DType::F32), &Device::Cpu).unwrap();
        // A budget of one score leaves one query row per block.
        model.decoder.set_score_budget(1);
        let engine = Engine::from_model(model);

        let comparison = compare_with_golden(&engine, &GoldenRecord::read(&dir).unwrap()).unwrap();
        assert!(comparison.all_tokens_match, "{name}: {comparison:?}");
        assert!(
            comparison.max_attention_diff < 1e-5,
            "{name}: attention differs by {}",
            comparison.max_attention_diff
        );
        assert!(
            comparison.max_batch_diff < 1e-5,
            "{name}: batch rows differ by {}",
            comparison.max_batch_diff
        );
        assert_eq!(comparison.batch_token_mismatches, 0, "{name}");
    }
}

/// Runs one prefill of the golden batch's padded prompts and returns the
/// last position's logits and every layer's last-row attention.
fn prefill(model: &LoadedModel, prompts: &[Vec<u32>]) -> (Vec<f32>, Vec<f32>) {
    let decoder = &model.decoder;
    let device = Device::Cpu;
    let width = prompts.iter().map(Vec::len).max().unwrap();
    let pads: Vec<usize> = prompts.iter().map(|p| width - p.len()).collect();
    let mut ids = Vec::new();
    let mut positions = Vec::new();
    for (prompt, pad) in prompts.iter().zip(&pads) {
        ids.extend(std::iter::repeat_n(0, *pad).chain(prompt.iter().copied()));
        positions.push(
            (0..width as u32)
                .map(|p| p.saturating_sub(*pad as u32))
                .collect(),
        );
    }

    let layout = MaskLayout {
        pads,
        past_len: 0,
        new_len: width,
    };
    let masks = AttentionMasks::new(&layout, &decoder.sliding_windows(), &device).unwrap();
    let input = Tensor::from_vec(ids, (prompts.len(), width), &device).unwrap();
    let config = decoder.config();
    let capture = CaptureLayers {
        layers: (0..config.num_hidden_layers).collect(),
        heads: Tensor::arange(0, config.num_attention_heads as u32, &device).unwrap(),
    };

    let mut cache = decoder.new_cache(width);
    let out = decoder
        .forward(&input, &positions, &masks, &mut cache, Some(&capture))
        .unwrap();
    let logits = out.logits.flatten_all().unwrap().to_vec1().unwrap();
    let attention = out
        .attention
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    (logits, attention)
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn block_size_leaves_prefill_unchanged() {
    let dir = golden_dir("llama3");
    let golden = GoldenRecord::read(&dir).unwrap();
    let prompts: Vec<Vec<u32>> = golden
        .batch
        .rows
        .iter()
        .map(|row| row.input_ids.clone())
        .collect();
    let load = || LoadedModel::load(&dir, DTypeChoice::Fixed(DType::F32), &Device::Cpu).unwrap();
    let (whole_logits, whole_attention) = prefill(&load(), &prompts);

    let width = prompts.iter().map(Vec::len).max().unwrap();
    let heads = load().decoder.config().num_attention_heads;
    // One row per block, blocks of 3 (a shorter last block unless 3
    // divides the width), and one block of all rows but the last.
    for rows in [1, 3, width - 1] {
        let mut model = load();
        model
            .decoder
            .set_score_budget(prompts.len() * heads * width * rows);
        let (logits, attention) = prefill(&model, &prompts);
        let logit_diff = max_difference(&logits, &whole_logits);
        let attention_diff = max_difference(&attention, &whole_attention);
        assert!(
            logit_diff < 1e-5,
            "blocks of {rows} rows: logits differ by {logit_diff}"
        );
        // Other matmul shapes round differently in f32 (1.5e-6 seen with
        // one row per block), so the bound is the golden tests' 1e-5.
        assert!(
            attention_diff < 1e-5,
            "blocks of {rows} rows: attention differs by {attention_diff}"
        );
    }
}
