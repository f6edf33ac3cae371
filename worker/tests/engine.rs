//! The engine on random checkpoints: invariants of captured rows, batch
//! invariance, stopping, decisions and retries.

mod random_models;

use candle_core::{DType, Device, Tensor};
use gaze_worker::capture::CaptureSpec;
use gaze_worker::generate::fallback::run_with_fallback;
use gaze_worker::generate::{
    DecisionSpec, DecisionStatus, GenerateError, GenerationOutput, GenerationRequest, StopReason,
};
use gaze_worker::model::mask::{AttentionMasks, MaskLayout};
use gaze_worker::model::random::RandomModel;
use gaze_worker::model::{Architecture, CaptureLayers, DTypeChoice};
use random_models::*;

const ROW_TOLERANCE: f32 = 1e-5;

fn assert_rows_close(a: &GenerationOutput, b: &GenerationOutput, context: &str) {
    assert_eq!(
        a.captured.len(),
        b.captured.len(),
        "{context}: captured steps"
    );
    for (x, y) in a.captured.iter().zip(&b.captured) {
        assert_eq!(x.step, y.step, "{context}: step");
        assert_eq!(
            x.token_id, y.token_id,
            "{context}: token at step {}",
            x.step
        );
        for (r, s) in x.rows.iter().zip(&y.rows) {
            assert_eq!((r.layer, r.head), (s.layer, s.head), "{context}: row order");
            assert_eq!(
                r.scores.len(),
                s.scores.len(),
                "{context}: keys at step {}",
                x.step
            );
            let diff = r
                .scores
                .iter()
                .zip(&s.scores)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f32::max);
            assert!(
                diff < ROW_TOLERANCE,
                "{context}: step {} layer {} head {} differs by {diff}",
                x.step,
                r.layer,
                r.head
            );
        }
    }
}

#[test]
fn captured_rows_are_distributions_over_prompt_and_steps() {
    let dir = write(&tiny_llama());
    let engine = load(&dir);
    let requests = requests(&[3, 11, 6], 64);
    let outputs = engine
        .generate(&requests, &sampled(6), &capture_all(&engine, 6))
        .unwrap();
    for (request, output) in requests.iter().zip(&outputs) {
        assert_eq!(output.captured.len(), output.token_ids.len().min(6));
        for step in &output.captured {
            assert_eq!(step.token_id, output.token_ids[step.step]);
            assert_eq!(step.rows.len(), 2 * 4, "every layer and head");
            for row in &step.rows {
                assert_eq!(row.scores.len(), request.prompt_ids.len() + step.step);
                assert!(row.scores.iter().all(|p| p.is_finite() && *p >= 0.0));
                let sum: f32 = row.scores.iter().sum();
                assert!((sum - 1.0).abs() < 1e-5, "row sums to {sum}");
            }
        }
    }
}

#[test]
fn tokens_and_rows_independent_of_batch() {
    let dir = write(&tiny_llama());
    write_frequent_eos(&dir, 64);
    let engine = load(&dir);
    let requests = requests(&[3, 14, 7, 1, 9, 5], 64);
    let settings = sampled(10);
    let capture = capture_all(&engine, 10);

    let alone: Vec<GenerationOutput> = requests
        .iter()
        .map(|request| {
            engine
                .generate_batch(std::slice::from_ref(request), &settings, &capture)
                .unwrap()
                .remove(0)
        })
        .collect();
    let batched = engine
        .generate_batch(&requests, &settings, &capture)
        .unwrap();
    let mut reversed_requests = requests.clone();
    reversed_requests.reverse();
    let mut reversed = engine
        .generate_batch(&reversed_requests, &settings, &capture)
        .unwrap();
    reversed.reverse();

    let lengths: Vec<usize> = alone.iter().map(|o| o.token_ids.len()).collect();
    assert!(
        lengths.iter().any(|&len| len < 10),
        "some sample stops early: {lengths:?}"
    );
    assert!(
        lengths.iter().any(|&len| len > 1),
        "some sample continues: {lengths:?}"
    );
    for (index, single) in alone.iter().enumerate() {
        for (name, other) in [("batched", &batched[index]), ("reversed", &reversed[index])] {
            let context = format!("request {index} {name}");
            assert_eq!(single.token_ids, other.token_ids, "{context}: tokens");
            assert_eq!(single.text, other.text, "{context}: text");
            assert_eq!(
                single.stop_reason, other.stop_reason,
                "{context}: stop reason"
            );
            assert_rows_close(single, other, &context);
        }
    }
}

/// Runs a prefill of two rows, the first padded by `pad`, and returns the
/// logits and the captured attention, `[layer][row][head][key]` flattened.
fn padded_prefill(engine: &gaze_worker::Engine, pad: usize) -> (Vec<f32>, Vec<f32>) {
    let decoder = &engine.model().decoder;
    let device = decoder.device();
    let ids = Tensor::new(&[[3_u32, 3, 3, 10, 11], [20, 21, 22, 23, 24]], device).unwrap();
    let layout = MaskLayout {
        pads: vec![pad, 0],
        past_len: 0,
        new_len: 5,
    };
    let masks = AttentionMasks::new(&layout, &decoder.sliding_windows(), device).unwrap();
    let capture = CaptureLayers {
        layers: vec![0, 1],
        heads: Tensor::new(&[0_u32, 1, 2, 3], device).unwrap(),
    };
    let positions = vec![vec![1, 1, 1, 0, 1], vec![0, 1, 2, 3, 4]];
    let mut cache = decoder.new_cache(5);
    let out = decoder
        .forward(&ids, &positions, &masks, &mut cache, Some(&capture))
        .unwrap();
    let logits = out.logits.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let attention = out
        .attention
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    (logits, attention)
}

#[test]
fn pad_keys_get_exactly_zero_attention() {
    let dir = write(&tiny_llama());
    let engine = load(&dir);
    let (logits, attention) = padded_prefill(&engine, 3);
    assert!(logits.iter().all(|l| l.is_finite()));
    let keys = 5;
    for layer in 0..2 {
        for head in 0..4 {
            let offset = ((layer * 2) * 4 + head) * keys;
            let row = &attention[offset..offset + keys];
            assert_eq!(
                &row[..3],
                &[0.0, 0.0, 0.0],
                "layer {layer} head {head}: pad keys"
            );
            let sum: f32 = row[3..].iter().sum();
            assert!(
                (sum - 1.0).abs() < 1e-5,
                "layer {layer} head {head}: sum {sum}"
            );
        }
    }
}

#[test]
fn half_precision_padding_stays_finite() {
    let dir = write(&tiny_llama());
    let engine =
        gaze_worker::Engine::load(dir.path(), DTypeChoice::Fixed(DType::F16), &Device::Cpu)
            .unwrap();
    let (logits, attention) = padded_prefill(&engine, 4);
    assert!(logits.iter().all(|l| l.is_finite()), "logits");
    assert!(attention.iter().all(|p| p.is_finite()), "attention");
}

#[test]
fn gqa_rows_name_their_kv_head() {
    let dir = write(&tiny_llama());
    let engine = load(&dir);
    let outputs = engine
        .generate(&requests(&[4], 64), &greedy(1), &capture_all(&engine, 1))
        .unwrap();
    let kv_heads: Vec<(usize, usize)> = outputs[0].captured[0]
        .rows
        .iter()
        .map(|row| (row.head, row.kv_head))
        .collect();
    let expected = vec![
        (0, 0),
        (1, 0),
        (2, 1),
        (3, 1),
        (0, 0),
        (1, 0),
        (2, 1),
        (3, 1),
    ];
    assert_eq!(kv_heads, expected);
}

#[test]
fn selected_layers_and_heads_only_captured() {
    let dir = write(&tiny_llama());
    let engine = load(&dir);
    let capture = CaptureSpec {
        layers: vec![1],
        heads: vec![0, 3],
        first_steps: 2,
        decision_step: false,
    };
    let outputs = engine
        .generate(&requests(&[4], 64), &greedy(3), &capture)
        .unwrap();
    let steps: Vec<usize> = outputs[0].captured.iter().map(|step| step.step).collect();
    assert_eq!(steps, vec![0, 1]);
    let rows: Vec<(usize, usize)> = outputs[0].captured[1]
        .rows
        .iter()
        .map(|r| (r.layer, r.head))
        .collect();
    assert_eq!(rows, vec![(1, 0), (1, 3)]);
}

#[test]
fn uncaptured_request_gets_no_rows_and_same_tokens() {
    let dir = write(&tiny_llama());
    let engine = load(&dir);
    let mut requests = requests(&[4, 6], 64);
    let captured = engine
        .generate(&requests, &sampled(5), &capture_all(&engine, 5))
        .unwrap();
    requests[1].capture = false;
    let outputs = engine
        .generate(&requests, &sampled(5), &capture_all(&engine, 5))
        .unwrap();
    assert!(outputs[1].captured.is_empty());
    assert!(!outputs[0].captured.is_empty());
    assert_eq!(outputs[1].token_ids, captured[1].token_ids);
}

#[test]
fn same_seed_same_tokens_other_seed_differs() {
    let dir = write(&tiny_llama());
    let engine = load(&dir);
    let request = |seed| GenerationRequest {
        prompt_ids: vec![5, 6, 7],
        seed,
        capture: false,
    };
    let run = |seeds: &[u64]| -> Vec<Vec<u32>> {
        let requests: Vec<GenerationRequest> = seeds.iter().map(|&seed| request(seed)).collect();
        let outputs = engine
            .generate(&requests, &sampled(12), &CaptureSpec::default())
            .unwrap();
        outputs.into_iter().map(|output| output.token_ids).collect()
    };
    let first = run(&[1, 2, 3, 4]);
    assert_eq!(first, run(&[1, 2, 3, 4]));
    assert!(
        first.iter().skip(1).any(|tokens| *tokens != first[0]),
        "seeds give different samples"
    );
}

#[test]
fn eos_token_stops_and_ends_ids() {
    let spec = tiny_llama();
    let dir = write(&spec);
    let first = load(&dir)
        .generate(&requests(&[5], 64), &greedy(4), &CaptureSpec::default())
        .unwrap();
    let eos = first[0].token_ids[1];
    std::fs::write(
        dir.path().join("generation_config.json"),
        format!("{{\"eos_token_id\": [{eos}]}}"),
    )
    .unwrap();

    let outputs = load(&dir)
        .generate(&requests(&[5], 64), &greedy(4), &CaptureSpec::default())
        .unwrap();
    assert_eq!(outputs[0].stop_reason, StopReason::Eos);
    let expected_ids = first[0].token_ids[..2].to_vec();
    assert_eq!(outputs[0].token_ids, expected_ids);
}

#[test]
fn stop_string_stops_generation() {
    let dir = write(&tiny_llama());
    let engine = load(&dir);
    let first = engine
        .generate(&requests(&[5], 64), &greedy(6), &CaptureSpec::default())
        .unwrap();
    let words: Vec<&str> = first[0].text.split(' ').collect();
    let stop = words[2].to_string();
    let stop_at = words.iter().position(|w| *w == stop).unwrap();

    let settings = gaze_worker::generate::GenerationSettings {
        stop_strings: vec![stop.clone()],
        ..greedy(6)
    };
    let outputs = engine
        .generate(&requests(&[5], 64), &settings, &CaptureSpec::default())
        .unwrap();
    assert_eq!(outputs[0].stop_reason, StopReason::StopString(stop.clone()));
    assert_eq!(
        outputs[0].token_ids,
        first[0].token_ids[..=stop_at].to_vec()
    );
    assert!(outputs[0].text.ends_with(&stop));
}

#[test]
fn length_limit_stops_generation() {
    let dir = write(&tiny_llama());
    let engine = load(&dir);
    let outputs = engine
        .generate(&requests(&[5], 64), &greedy(3), &CaptureSpec::default())
        .unwrap();
    assert_eq!(outputs[0].stop_reason, StopReason::MaxNewTokens);
    assert_eq!(outputs[0].token_ids.len(), 3);
}

/// Finds the first step from `from` on whose word has not appeared
/// earlier in the greedy response, and returns it with the word.
fn fresh_word(output: &GenerationOutput, from: usize) -> (usize, String) {
    let words: Vec<&str> = output.text.split(' ').collect();
    let step = (from..words.len())
        .find(|&i| !words[..i].contains(&words[i]))
        .unwrap();
    (step, words[step].to_string())
}

/// Computes the probabilities of `ids` after `prefix` from a fresh prefill.
fn next_token_probabilities(engine: &gaze_worker::Engine, prefix: &[u32], ids: &[u32]) -> Vec<f64> {
    let decoder = &engine.model().decoder;
    let device = decoder.device();
    let layout = MaskLayout {
        pads: vec![0],
        past_len: 0,
        new_len: prefix.len(),
    };
    let masks = AttentionMasks::new(&layout, &decoder.sliding_windows(), device).unwrap();
    let input = Tensor::new(prefix, device).unwrap().unsqueeze(0).unwrap();
    let mut cache = decoder.new_cache(prefix.len());
    let out = decoder
        .forward(
            &input,
            &[(0..prefix.len() as u32).collect()],
            &masks,
            &mut cache,
            None,
        )
        .unwrap();
    let logits: Vec<f64> = out
        .logits
        .squeeze(0)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|&l| l as f64)
        .collect();
    let max = logits.iter().copied().fold(f64::MIN, f64::max);
    let total: f64 = logits.iter().map(|l| (l - max).exp()).sum();
    ids.iter()
        .map(|&id| (logits[id as usize] - max).exp() / total)
        .collect()
}

#[test]
fn decision_step_found_captured_and_scored() {
    let dir = write(&tiny_llama());
    let engine = load(&dir);
    let request = &requests(&[6], 64)[0];
    let plain = engine
        .generate(
            std::slice::from_ref(request),
            &greedy(8),
            &CaptureSpec::default(),
        )
        .unwrap();
    let (step, label) = fresh_word(&plain[0], 2);
    let other = (4..64u32)
        .map(|id| engine.tokenizer().id_to_token(id).unwrap())
        .find(|word| !plain[0].text.split(' ').any(|w| w == word))
        .unwrap();

    let settings = gaze_worker::generate::GenerationSettings {
        decision: Some(DecisionSpec {
            labels: vec![label.clone(), other.clone()],
            pattern: None,
        }),
        ..greedy(8)
    };
    let capture = CaptureSpec {
        decision_step: true,
        ..capture_all(&engine, 1)
    };
    let output = engine
        .generate(std::slice::from_ref(request), &settings, &capture)
        .unwrap()
        .remove(0);
    let decision = output.decision.as_ref().unwrap();
    assert_eq!(decision.status, DecisionStatus::Parsed);
    assert_eq!(decision.label.as_deref(), Some(label.as_str()));
    assert_eq!(decision.step, Some(step));

    let steps: Vec<usize> = output.captured.iter().map(|s| s.step).collect();
    assert_eq!(steps, vec![0, step], "first step, then the decision step");
    let decision_rows = &output.captured[1];
    assert_eq!(decision_rows.token_id, output.token_ids[step]);
    assert_eq!(
        decision_rows.rows[0].scores.len(),
        request.prompt_ids.len() + step
    );

    let mut prefix = request.prompt_ids.clone();
    prefix.extend_from_slice(&output.token_ids[..step]);
    let ids = [
        engine.tokenizer().token_to_id(&label).unwrap(),
        engine.tokenizer().token_to_id(&other).unwrap(),
    ];
    let expected = next_token_probabilities(&engine, &prefix, &ids);
    let probabilities = decision.label_probabilities.as_ref().unwrap();
    let mass = expected[0] + expected[1];
    assert!(
        (probabilities.mass as f64 - mass).abs() < 1e-5,
        "{} vs {mass}",
        probabilities.mass
    );
    assert!((probabilities.normalized[0] as f64 - expected[0] / mass).abs() < 1e-5);
    assert!((probabilities.normalized[1] as f64 - expected[1] / mass).abs() < 1e-5);
}

#[test]
fn decision_at_first_token_is_step_zero() {
    let dir = write(&tiny_llama());
    let engine = load(&dir);
    let request = &requests(&[6], 64)[0];
    let plain = engine
        .generate(
            std::slice::from_ref(request),
            &greedy(4),
            &CaptureSpec::default(),
        )
        .unwrap();
    let label = plain[0].text.split(' ').next().unwrap().to_string();

    let settings = gaze_worker::generate::GenerationSettings {
        decision: Some(DecisionSpec {
            labels: vec![label, "REFUSE".into()],
            pattern: None,
        }),
        ..greedy(4)
    };
    let capture = CaptureSpec {
        decision_step: true,
        ..capture_all(&engine, 1)
    };
    let output = engine
        .generate(std::slice::from_ref(request), &settings, &capture)
        .unwrap()
        .remove(0);
    let decision = output.decision.unwrap();
    assert_eq!(decision.step, Some(0));
    assert!(decision.label_probabilities.is_some());
    let steps: Vec<usize> = output.captured.iter().map(|s| s.step).collect();
    assert_eq!(steps, vec![0], "step 0 captured once");
}

#[test]
fn both_labels_recorded_without_decision_step() {
    let dir = write(&tiny_llama());
    let engine = load(&dir);
    let request = &requests(&[6], 64)[0];
    let plain = engine
        .generate(
            std::slice::from_ref(request),
            &greedy(8),
            &CaptureSpec::default(),
        )
        .unwrap();
    let (first_step, first) = fresh_word(&plain[0], 0);
    let (_, second) = fresh_word(&plain[0], first_step + 1);

    let settings = gaze_worker::generate::GenerationSettings {
        decision: Some(DecisionSpec {
            labels: vec![first, second],
            pattern: None,
        }),
        ..greedy(8)
    };
    let capture = CaptureSpec {
        decision_step: true,
        ..capture_all(&engine, 0)
    };
    let output = engine
        .generate(std::slice::from_ref(request), &settings, &capture)
        .unwrap()
        .remove(0);
    let decision = output.decision.unwrap();
    assert_eq!(decision.status, DecisionStatus::MultipleLabels);
    assert_eq!(decision.step, None);
    assert_eq!(decision.label_probabilities, None);
    assert!(output.captured.is_empty(), "no decision step to capture");
}

#[test]
fn injected_batch_failure_retried_smaller() {
    let dir = write(&tiny_llama());
    let engine = load(&dir);
    let requests = requests(&[3, 8, 5, 2, 6], 64);
    let settings = sampled(6);
    let capture = capture_all(&engine, 6);
    let expected = engine
        .generate_batch(&requests, &settings, &capture)
        .unwrap();

    let mut attempts = Vec::new();
    let mut run = |batch: &[GenerationRequest]| {
        attempts.push(batch.len());
        if batch.len() > 2 {
            let error = candle_core::Error::Msg("injected: CUDA_ERROR_OUT_OF_MEMORY".into());
            return Err(GenerateError::Candle(error));
        }
        engine.generate_batch(batch, &settings, &capture)
    };
    let outputs = run_with_fallback(&requests, &mut run).unwrap();
    assert_eq!(attempts, vec![5, 3, 2, 1, 2]);
    for (index, (a, b)) in expected.iter().zip(&outputs).enumerate() {
        assert_eq!(a.token_ids, b.token_ids, "request {index}");
        assert_rows_close(a, b, &format!("request {index}"));
    }
}

#[test]
fn invalid_request_names_its_index() {
    let dir = write(&tiny_llama());
    let engine = load(&dir);
    let mut requests = requests(&[3, 3], 64);
    requests[1].prompt_ids[0] = 640;
    let message = engine
        .generate_batch(&requests, &greedy(2), &CaptureSpec::default())
        .unwrap_err()
        .to_string();
    assert!(message.contains("request 1"), "{message}");
    assert!(message.contains("640"), "{message}");
}

#[test]
fn sliding_window_hides_old_keys() {
    let spec = RandomModel {
        sliding_window: Some(4),
        ..RandomModel::tiny(Architecture::Mistral)
    };
    let dir = write(&spec);
    let engine = load(&dir);
    let outputs = engine
        .generate(&requests(&[7, 3], 64), &greedy(3), &capture_all(&engine, 3))
        .unwrap();
    for output in &outputs {
        for step in &output.captured {
            for row in &step.rows {
                let keys = row.scores.len();
                let old = keys.saturating_sub(4);
                assert!(
                    row.scores[..old].iter().all(|&p| p == 0.0),
                    "keys beyond the window"
                );
                let sum: f32 = row.scores[old..].iter().sum();
                assert!((sum - 1.0).abs() < 1e-5);
            }
        }
    }
}

#[test]
fn qwen2_batch_matches_single_samples() {
    let dir = write(&RandomModel::tiny(Architecture::Qwen2));
    let engine = load(&dir);
    let requests = requests(&[2, 9, 4], 64);
    let batched = engine
        .generate(&requests, &sampled(5), &capture_all(&engine, 5))
        .unwrap();
    for (index, request) in requests.iter().enumerate() {
        let single = engine
            .generate(
                std::slice::from_ref(request),
                &sampled(5),
                &capture_all(&engine, 5),
            )
            .unwrap();
        assert_eq!(single[0].token_ids, batched[index].token_ids);
        assert_rows_close(&single[0], &batched[index], &format!("request {index}"));
    }
}
