//! `compare-golden`, the tool that measures the attention tolerance of a
//! device and dtype against the transformers golden records. On CPU in f32
//! it must report the same agreement as the golden tests.

mod common;

use std::ffi::OsStr;
use std::process::{Command, Output};

use candle_core::{DType, Device};
use common::{GOLDEN_MODELS, golden_dir};
use gaze_worker::Engine;
use gaze_worker::golden::{GoldenComparison, GoldenRecord, compare_with_golden};
use gaze_worker::model::DTypeChoice;

/// Runs `gaze-worker compare-golden` with `args`.
fn compare_golden_command(args: &[&OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gaze-worker"))
        .arg("compare-golden")
        .args(args)
        .output()
        .unwrap()
}

/// Returns the standard error of a failed `output`.
fn failure_message(output: &Output) -> String {
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn compare(name: &str, dtype: DType) -> GoldenComparison {
    let dir = golden_dir(name);
    let engine = Engine::load(&dir, DTypeChoice::Fixed(dtype), &Device::Cpu).unwrap();
    let golden = GoldenRecord::read(&dir).unwrap();
    compare_with_golden(&engine, &golden).unwrap()
}

#[test]
fn f32_matches_every_reference() {
    for name in GOLDEN_MODELS {
        let comparison = compare(name, DType::F32);
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
        assert_eq!(
            comparison.prompts.len(),
            9,
            "{name}: 6 cases and 3 batch rows"
        );
        for prompt in &comparison.prompts {
            assert_eq!(prompt.reference.steps_compared, 6, "{name}/{}", prompt.name);
        }
    }
}

#[test]
fn bf16_keeps_batch_rows_tokens() {
    let comparison = compare("llama3", DType::BF16);
    assert_eq!(comparison.dtype, "bf16");
    assert_eq!(comparison.batch_token_mismatches, 0, "{comparison:?}");
    // bf16 rounding moves the rows of these random checkpoints by up to
    // about 0.15; a bound of 0.5 only catches a broken bf16 path.
    assert!(comparison.max_attention_diff > 0.0);
    assert!(
        comparison.max_attention_diff < 0.5,
        "{}",
        comparison.max_attention_diff
    );
}

#[test]
fn command_prints_json() {
    let golden = golden_dir("qwen2");
    let output =
        compare_golden_command(&[golden.as_os_str(), "--format".as_ref(), "json".as_ref()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["device"], "cpu");
    assert_eq!(report["dtype"], "f32");
    assert_eq!(report["all_tokens_match"], true);
    assert!(report["max_attention_diff"].as_f64().unwrap() < 1e-5);
    assert_eq!(report["prompts"].as_array().unwrap().len(), 9);
}

#[test]
fn folder_without_record_names_the_fix() {
    let empty = tempfile::tempdir().unwrap();
    let stderr = failure_message(&compare_golden_command(&[empty.path().as_os_str()]));
    assert!(stderr.contains("golden.json"), "{stderr}");
    assert!(stderr.contains("make_golden.py"), "{stderr}");
}

#[test]
fn record_without_model_names_the_fix() {
    let golden = golden_dir("test-model");
    let stderr = failure_message(&compare_golden_command(&[golden.as_os_str()]));
    assert!(stderr.contains("--model"), "{stderr}");
    assert!(stderr.contains("make-test-model"), "{stderr}");
}

#[test]
fn tokenizer_only_record_is_named() {
    let (golden, model) = (golden_dir("llama2-legacy"), golden_dir("llama2"));
    let stderr = failure_message(&compare_golden_command(&[
        golden.as_os_str(),
        "--model".as_ref(),
        model.as_os_str(),
    ]));
    assert!(stderr.contains("only tokenization"), "{stderr}");
}

#[test]
fn json_out_matches_printed_json() {
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("llama2.json");
    let golden = golden_dir("llama2");
    let output = compare_golden_command(&[
        golden.as_os_str(),
        "--format".as_ref(),
        "json".as_ref(),
        "--json-out".as_ref(),
        path.as_os_str(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(printed, written);
}
