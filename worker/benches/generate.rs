//! Generation throughput with and without attention capture, on a random
//! Llama-shaped checkpoint of about 100M parameters in f32 on the CPU.
//!
//! Run with `cargo bench -p gaze-worker --bench generate`. Throughput is
//! generated tokens per second over whole batches (prefill included).

mod common;

use candle_core::{DType, Device};
use common::bench_model::{self, BATCH, NEW_TOKENS, TEMPERATURE, TOP_P};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gaze_worker::Engine;
use gaze_worker::capture::CaptureSpec;
use gaze_worker::generate::{GenerationSettings, SamplingParams};
use gaze_worker::model::DTypeChoice;

/// The demo study's capture (`config/uk-immigration.toml`): every layer and
/// head for the first 3 generated tokens.
const DEMO_CAPTURE_STEPS: usize = 3;

fn bench_generate(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    bench_model::write(dir.path()).unwrap();
    let engine = Engine::load(dir.path(), DTypeChoice::Fixed(DType::F32), &Device::Cpu).unwrap();
    let settings = GenerationSettings {
        max_new_tokens: NEW_TOKENS,
        sampling: SamplingParams {
            temperature: TEMPERATURE,
            top_p: Some(TOP_P),
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
    // Without a decision spec no decision step exists, so only the first
    // steps are captured.
    let capture_demo = CaptureSpec {
        first_steps: DEMO_CAPTURE_STEPS,
        decision_step: true,
        ..capture_all.clone()
    };
    let requests = bench_model::requests();

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
    group.bench_function("capture_demo_first_3_steps", |b| {
        b.iter(|| {
            engine
                .generate(&requests, &settings, &capture_demo)
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_generate);
criterion_main!(benches);
