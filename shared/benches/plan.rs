//! Benchmarks of planning: building the demo study's plan of 25,000
//! samples, and identifying a model folder whose weights file is 16 GiB
//! (sparse, so it takes no disk space).
//!
//! Run with `cargo bench -p gaze-shared --bench plan`.

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use gaze_shared::config::StudyConfig;
use gaze_shared::plan::{Plan, model_identity};
use gaze_shared::vignettes::VignetteSet;

fn demo_plan(c: &mut Criterion) {
    let config_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/uk-immigration.toml");
    let config = StudyConfig::load(&config_path).expect("demo config is valid");

    c.bench_function("load demo vignettes", |b| {
        b.iter(|| VignetteSet::load(&config.study.vignettes).expect("demo vignettes are valid"))
    });
    let vignettes = VignetteSet::load(&config.study.vignettes).expect("demo vignettes are valid");
    c.bench_function("plan demo study (25,000 samples)", |b| {
        b.iter(|| Plan::build(&config, &vignettes).expect("demo plan builds"))
    });
}

fn sparse_model_identity(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary folder");
    std::fs::write(
        dir.path().join("config.json"),
        b"{\"num_hidden_layers\": 32}",
    )
    .unwrap();
    std::fs::write(dir.path().join("tokenizer.json"), vec![b' '; 9_000_000]).unwrap();

    // A header of 291 tensors, about the size of a Llama-3-8B checkpoint's.
    let entries: Vec<String> = (0..291)
        .map(|i| format!("\"model.layers.{i}.weight\":{{\"dtype\":\"BF16\",\"shape\":[4096,4096],\"data_offsets\":[{},{}]}}", i * 33_554_432, (i + 1) * 33_554_432))
        .collect();
    let header = format!("{{{}}}", entries.join(","));
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    let weights = dir.path().join("model.safetensors");
    std::fs::write(&weights, &bytes).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&weights)
        .unwrap()
        .set_len(16 << 30)
        .unwrap();

    c.bench_function("identify 16 GiB model folder", |b| {
        b.iter(|| model_identity(dir.path()).expect("model folder is valid"))
    });
}

criterion_group!(benches, demo_plan, sparse_model_identity);
criterion_main!(benches);
