//! Model identity and the study fingerprint: what changes them, what does
//! not, and the errors for broken model folders.

mod plan_support;

use std::path::Path;

use gaze_shared::config::StudyConfig;
use gaze_shared::plan::{Fingerprint, ModelStatus, model_identity, model_status};
use gaze_shared::vignettes::VignetteSet;
use plan_support::{MINIMAL_CONFIG, demo_config, demo_vignettes, parse_config, parse_vignettes};

const HEADER: &[u8] = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
/// SHA-256 of HEADER, from Python's hashlib.
const HEADER_SHA256: &str = "fa5725b8a0875b82b1cecabddc20f1cd4429eb731eec696a7a2db987cd0c1a27";
const CONFIG_JSON: &[u8] = br#"{"num_hidden_layers": 2}"#;
/// SHA-256 of CONFIG_JSON, from Python's hashlib.
const CONFIG_SHA256: &str = "1c4885415157fe8cf4cae514fb95ad6431d51d4dac448b12bfcbb29c8cdcf718";

fn safetensors(header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(data);
    bytes
}

fn write_model(dir: &Path, weights: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), CONFIG_JSON).unwrap();
    std::fs::write(dir.join("tokenizer.json"), b"{}").unwrap();
    std::fs::write(dir.join("model.safetensors"), safetensors(HEADER, weights)).unwrap();
}

#[test]
fn identity_hashes_files_and_header_only() {
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), &[1; 8]);

    let identity = model_identity(dir.path()).unwrap();

    let names: Vec<&str> = identity
        .files
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(
        names,
        vec!["config.json", "header:model.safetensors", "tokenizer.json"]
    );
    assert_eq!(identity.files[0].1, CONFIG_SHA256);
    assert_eq!(identity.files[1].1, HEADER_SHA256);
}

#[test]
fn identity_ignores_weight_values() {
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), &[1; 8]);
    let before = model_identity(dir.path()).unwrap();

    write_model(dir.path(), &[2; 8]);

    assert_eq!(model_identity(dir.path()).unwrap(), before);
}

#[test]
fn identity_changes_with_header_and_config() {
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), &[1; 8]);
    let before = model_identity(dir.path()).unwrap().digest;

    let other_header = br#"{"w":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}}"#;
    std::fs::write(
        dir.path().join("model.safetensors"),
        safetensors(other_header, &[1; 8]),
    )
    .unwrap();
    let after_header = model_identity(dir.path()).unwrap().digest;
    std::fs::write(dir.path().join("generation_config.json"), b"{}").unwrap();
    let after_generation_config = model_identity(dir.path()).unwrap().digest;

    assert_ne!(after_header, before);
    assert_ne!(after_generation_config, after_header);
}

#[test]
fn sharded_model_hashes_index_and_every_shard_header() {
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), &[0; 8]);
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let index = br#"{"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors", "c": "model-00001-of-00002.safetensors"}}"#;
    std::fs::write(dir.path().join("model.safetensors.index.json"), index).unwrap();
    for name in [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ] {
        std::fs::write(dir.path().join(name), safetensors(HEADER, &[0; 8])).unwrap();
    }

    let identity = model_identity(dir.path()).unwrap();

    let names: Vec<&str> = identity
        .files
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(
        names,
        vec![
            "config.json",
            "header:model-00001-of-00002.safetensors",
            "header:model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
            "tokenizer.json"
        ]
    );
}

#[test]
fn missing_tokenizer_names_file_and_folder() {
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), &[1; 8]);
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();

    let message = model_identity(dir.path()).unwrap_err().to_string();

    assert!(message.contains("tokenizer.json"), "{message}");
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
}

#[test]
fn truncated_safetensors_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), &[1; 8]);
    let full = safetensors(HEADER, &[1; 8]);
    std::fs::write(dir.path().join("model.safetensors"), &full[..20]).unwrap();

    let message = model_identity(dir.path()).unwrap_err().to_string();

    assert!(message.contains("model.safetensors"), "{message}");
    assert!(message.contains("truncated"), "{message}");
}

#[test]
fn missing_weights_are_named() {
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), &[1; 8]);
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();

    let message = model_identity(dir.path()).unwrap_err().to_string();

    assert!(
        message.contains("model.safetensors.index.json"),
        "{message}"
    );
    assert!(
        message.contains("convert the weights to safetensors"),
        "{message}"
    );
}

#[test]
fn absent_folder_is_missing_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-generated-yet");

    assert_eq!(model_status(&path).unwrap(), ModelStatus::Missing { path });
}

/// Returns the fingerprint of `config` with the model folder `model_dir`.
fn fingerprint(config: &StudyConfig, vignettes: &VignetteSet, model_dir: &Path) -> Fingerprint {
    let status = model_status(model_dir).unwrap();
    Fingerprint::compute(config, vignettes, &[(&config.models[0], &status)])
}

#[test]
fn fingerprint_names_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), &[1; 8]);
    let vignettes = demo_vignettes();
    let config = demo_config();
    let base = fingerprint(&config, &vignettes, dir.path());

    let mut hotter = config.clone();
    hotter.generation.temperature = 0.9;
    let mut reseeded = config.clone();
    reseeded.design.seed += 1;
    let mut sharded = config.clone();
    sharded.output.samples_per_shard = 50;
    let other_vignettes =
        parse_vignettes(r#"{"topics": [{"id": "t", "route": "R", "template": "x"}]}"#).unwrap();
    let other_model = tempfile::tempdir().unwrap();
    write_model(other_model.path(), &[1; 8]);
    std::fs::write(other_model.path().join("tokenizer.json"), b"{\"v\": 2}").unwrap();

    assert_eq!(
        fingerprint(&hotter, &vignettes, dir.path()).changed_parts(&base),
        vec!["config.generation"]
    );
    assert_eq!(
        fingerprint(&reseeded, &vignettes, dir.path()).changed_parts(&base),
        vec!["config.design"]
    );
    assert_eq!(
        fingerprint(&sharded, &vignettes, dir.path()).changed_parts(&base),
        vec!["config.samples_per_shard"]
    );
    assert_eq!(
        fingerprint(&config, &other_vignettes, dir.path()).changed_parts(&base),
        vec!["vignettes"]
    );
    assert_eq!(
        fingerprint(&config, &vignettes, other_model.path()).changed_parts(&base),
        vec!["model:post-brexit"]
    );
    assert_ne!(
        fingerprint(&hotter, &vignettes, dir.path()).digest,
        base.digest
    );
}

#[test]
fn fingerprint_ignores_batch_size_paths_devices_and_store() {
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), &[1; 8]);
    let vignettes = demo_vignettes();
    let config = demo_config();
    let base = fingerprint(&config, &vignettes, dir.path());

    let mut changed = config.clone();
    changed.generation.batch_size = 64;
    changed.output.store = "s3://bucket/elsewhere".into();
    changed.queue.url = "redis://127.0.0.1:6379".into();
    changed.models[0].dtype = Some(gaze_shared::config::Dtype::F32);
    let moved = tempfile::tempdir().unwrap();
    write_model(moved.path(), &[7; 8]);

    assert_eq!(
        fingerprint(&changed, &vignettes, moved.path()).digest,
        base.digest
    );
}

#[test]
fn fingerprint_ignores_toml_comments_and_key_order() {
    let vignettes = demo_vignettes();
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), &[1; 8]);
    let reordered = MINIMAL_CONFIG.replace(
        "labels = [\"GRANTED\", \"REFUSED\"]",
        "# the two outcomes\nlabels = [ \"GRANTED\",\"REFUSED\" ]",
    );
    let reordered = reordered.replace(
        "total_samples = 100\nstratify = [\"gender\"]",
        "stratify = [\"gender\"]\ntotal_samples = 100",
    );

    let a = fingerprint(
        &parse_config(MINIMAL_CONFIG).unwrap(),
        &vignettes,
        dir.path(),
    );
    let b = fingerprint(&parse_config(&reordered).unwrap(), &vignettes, dir.path());

    assert_eq!(a.digest, b.digest);
}

#[test]
fn missing_model_marks_fingerprint_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_config();

    let print = fingerprint(&config, &demo_vignettes(), &dir.path().join("absent"));

    assert!(!print.is_complete());
    assert_eq!(print.parts.last().unwrap().digest, "missing");
}
