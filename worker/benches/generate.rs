//! Generation throughput with and without attention capture, on a random
//! Llama-shaped checkpoint of about 100M parameters in f32 on the CPU.
//!
//! Run with `cargo bench -p gaze-worker --bench generate`. Throughput is
//! generated tokens per second over whole batches (prefill included).

use candle_core::{DType, Device};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gaze_worker::Engine;
use gaze_worker::capture::CaptureSpec;
use gaze_worker::generate::{GenerationRequest, GenerationSettings, SamplingParams};
use gaze_worker::model::random::RandomModel;
use gaze_worker::model::{Architecture, DTypeChoice};

const BATCH: usize = 4;
const PROMPT_LEN: usize = 64;
const NEW_TOKENS: usize = 16;

/// 12 layers, hidden 768, 12 query heads on 4 KV heads, MLP 2048, vocab
/// 32000, tied embeddings: 24.6M embedding + 12 x 6.3M layer parameters.
fn model() -> RandomModel {
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

fn requests() -> Vec<GenerationRequest> {
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

fn bench_generate(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    model().write(dir.path()).unwrap();
    // No EOS: every sample generates NEW_TOKENS tokens.
    std::fs::write(
        dir.path().join("generation_config.json"),
        r#"{"eos_token_id": []}"#,
    )
    .unwrap();
    let engine = Engine::load(dir.path(), DTypeChoice::Fixed(DType::F32), &Device::Cpu).unwrap();
    let settings = GenerationSettings {
        max_new_tokens: NEW_TOKENS,
        sampling: SamplingParams {
            temperature: 1.0,
            top_p: Some(0.95),
            top_k: None,
        },
        stop_strings: Vec::new(),
        decision: None,
    };
    let config = engine.config();
    let capture_all = CaptureSpec {
        layers: (0..config.num_hidden_layers).collect(),
        heads: (0..config.num_attention_heads).collect(),
        first_steps: NEW_TOKENS,
        decision_step: false,
    };
    let requests = requests();

    let mut group = c.benchmark_group("generate_100m_f32_cpu");
    group.sample_size(10);
    group.throughput(Throughput::Elements((BATCH * NEW_TOKENS) as u64));
    group.bench_function("no_capture", |b| {
        b.iter(|| {
            engine
                .generate(&requests, &settings, &CaptureSpec::default())
                .unwrap()
        })
    });
    group.bench_function("capture_all_layers_heads_steps", |b| {
        b.iter(|| engine.generate(&requests, &settings, &capture_all).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench_generate);
criterion_main!(benches);
