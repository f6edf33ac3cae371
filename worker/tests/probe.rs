//! The `gaze-worker probe` command line on the test model: its JSON
//! interface, raw and chat-template prompts, and its errors.

use std::process::Command;

use serde_json::Value;

fn test_model() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_gaze-worker"))
        .arg("make-test-model")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

fn probe(dir: &tempfile::TempDir, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gaze-worker"))
        .arg("probe")
        .arg("--model")
        .arg(dir.path())
        .args(args)
        .output()
        .unwrap()
}

fn probe_json(dir: &tempfile::TempDir, args: &[&str]) -> Value {
    let output = probe(dir, &[args, &["--format", "json"]].concat());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn raw_probe_json_has_documented_shape() {
    let dir = test_model();
    let prompt = "Amina Yusuf applied for asylum.";
    let report = probe_json(
        &dir,
        &[
            "--prompt", prompt, "--raw", "--steps", "3", "--layers", "1,3", "--heads", "2",
        ],
    );

    let tokens = report["prompt_tokens"].as_array().unwrap();
    assert_eq!(tokens[0]["position"], 0);
    assert_eq!(
        tokens[0]["token"], "<|begin_of_text|>",
        "raw prompts get the tokenizer's BOS"
    );
    assert_eq!(
        (tokens[0]["start"].as_u64(), tokens[0]["end"].as_u64()),
        (Some(0), Some(0))
    );
    let last = tokens.last().unwrap();
    assert_eq!(
        last["end"].as_u64().unwrap() as usize,
        prompt.chars().count()
    );
    for token in tokens {
        assert!(token["id"].is_u64());
    }

    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    for (index, step) in steps.iter().enumerate() {
        assert_eq!(step["step"], index);
        assert!(step["token"].is_string());
        let attention = step["attention"].as_array().unwrap();
        let heads: Vec<(u64, u64)> = attention
            .iter()
            .map(|r| (r["layer"].as_u64().unwrap(), r["head"].as_u64().unwrap()))
            .collect();
        assert_eq!(heads, vec![(1, 2), (3, 2)]);
        for row in attention {
            let scores: Vec<f64> = row["scores"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert_eq!(scores.len(), tokens.len() + index);
            assert!((scores.iter().sum::<f64>() - 1.0).abs() < 1e-5);
        }
    }
    assert!(report["text"].is_string());
}

#[test]
fn chat_probe_renders_template_and_prefix() {
    let dir = test_model();
    let raw = probe_json(&dir, &["--prompt", "Amina applied.", "--raw"]);
    let chat = probe_json(
        &dir,
        &[
            "--prompt",
            "Amina applied.",
            "--system",
            "You are a caseworker.",
            "--assistant-prefix",
            "DECISION:",
        ],
    );
    let chat_tokens = chat["prompt_tokens"].as_array().unwrap();
    assert!(chat_tokens.len() > raw["prompt_tokens"].as_array().unwrap().len());
    let begins = chat_tokens
        .iter()
        .filter(|t| t["token"] == "<|begin_of_text|>")
        .count();
    assert_eq!(begins, 1, "exactly one BOS");
    assert_eq!(
        chat_tokens.last().unwrap()["token"],
        ":",
        "the prompt ends with the assistant prefix"
    );
}

#[test]
fn table_probe_lists_tokens_and_steps() {
    let dir = test_model();
    let output = probe(
        &dir,
        &[
            "--prompt",
            "Amina applied.",
            "--raw",
            "--steps",
            "2",
            "--heads",
            "0",
            "--layers",
            "0",
        ],
    );
    assert!(output.status.success());
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(table.contains("prompt: "), "{table}");
    assert!(table.contains("step 0: generated"), "{table}");
    assert!(table.contains("step 1: generated"), "{table}");
    assert!(table.contains("L0H0"), "{table}");
}

#[test]
fn out_of_range_layer_rejected_with_count() {
    let dir = test_model();
    let output = probe(&dir, &["--prompt", "x", "--raw", "--layers", "9"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("layer 9"), "{stderr}");
    assert!(stderr.contains("4 layers, 0 to 3"), "{stderr}");
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_device_without_feature_explains_build() {
    let dir = test_model();
    let output = probe(&dir, &["--prompt", "x", "--raw", "--device", "cuda:0"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--features cuda"));
}
