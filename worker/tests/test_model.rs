//! The tiny test checkpoint: deterministic bytes, a Llama 3 shaped config,
//! complete f32 weights, a tokenizer that handles every script in the study
//! names, and agreement with the files the reference goldens were made from.

mod common;

use std::path::Path;

use gaze_shared::layout::PromptLayout;
use gaze_worker::prompt::{
    ChatTemplate, PromptParts, bos_token_id, render, special_token_ids, tokenize_rendered,
};
use gaze_worker::testmodel::{SPECIAL_TOKENS, write_test_model};
use safetensors::SafeTensors;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokenizers::Tokenizer;

const FILES: [&str; 5] = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
    "model.safetensors",
];

fn written() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_test_model(dir.path()).unwrap();
    dir
}

fn json(dir: &Path, name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap()
}

#[test]
fn same_call_writes_same_bytes() {
    let first = written();
    let second = written();
    for name in FILES {
        let a = std::fs::read(first.path().join(name)).unwrap();
        let b = std::fs::read(second.path().join(name)).unwrap();
        assert!(a == b, "{name} differs between two writes");
    }
}

#[test]
fn files_match_reference_golden_inputs() {
    // tests/golden/test-model/golden.json was recorded by transformers from
    // files with these hashes; a change to the writer must regenerate it.
    let dir = written();
    let golden = common::golden("test-model");
    for (name, expected) in golden["files_sha256"].as_object().unwrap() {
        let digest = Sha256::digest(std::fs::read(dir.path().join(name)).unwrap());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(&hex, expected.as_str().unwrap(), "{name}");
    }
}

#[test]
fn config_is_llama3_shaped_with_gqa() {
    let dir = written();
    let config = json(dir.path(), "config.json");
    assert_eq!(config["architectures"][0], "LlamaForCausalLM");
    assert_eq!(config["num_attention_heads"], 4);
    assert_eq!(config["num_key_value_heads"], 2);
    assert_eq!(config["num_hidden_layers"], 4);
    assert_eq!(config["hidden_size"], 64);
    assert_eq!(config["rope_scaling"]["rope_type"], "llama3");
    assert_eq!(config["bos_token_id"], 0);
    assert_eq!(config["eos_token_id"], serde_json::json!([1, 4]));
}

#[test]
fn vocab_size_matches_tokenizer() {
    let dir = written();
    let config = json(dir.path(), "config.json");
    let tokenizer = Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
    let vocab = tokenizer.get_vocab_size(true);
    assert_eq!(config["vocab_size"].as_u64().unwrap() as usize, vocab);
    assert!(
        (1000..=2000).contains(&vocab),
        "vocabulary of {vocab} tokens"
    );
}

#[test]
fn weights_have_llama_names_and_shapes() {
    let dir = written();
    let vocab = json(dir.path(), "config.json")["vocab_size"]
        .as_u64()
        .unwrap() as usize;
    let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();

    let shape = |name: &str| {
        tensors
            .tensor(name)
            .unwrap_or_else(|_| panic!("missing {name}"))
            .shape()
            .to_vec()
    };
    assert_eq!(shape("model.embed_tokens.weight"), vec![vocab, 64]);
    assert_eq!(shape("lm_head.weight"), vec![vocab, 64]);
    assert_eq!(shape("model.norm.weight"), vec![64]);
    for layer in 0..4 {
        let p = format!("model.layers.{layer}");
        assert_eq!(shape(&format!("{p}.self_attn.q_proj.weight")), vec![64, 64]);
        assert_eq!(shape(&format!("{p}.self_attn.k_proj.weight")), vec![32, 64]);
        assert_eq!(shape(&format!("{p}.self_attn.v_proj.weight")), vec![32, 64]);
        assert_eq!(shape(&format!("{p}.self_attn.o_proj.weight")), vec![64, 64]);
        assert_eq!(shape(&format!("{p}.mlp.gate_proj.weight")), vec![192, 64]);
        assert_eq!(shape(&format!("{p}.mlp.down_proj.weight")), vec![64, 192]);
        assert_eq!(shape(&format!("{p}.input_layernorm.weight")), vec![64]);
        assert_eq!(
            shape(&format!("{p}.post_attention_layernorm.weight")),
            vec![64]
        );
    }
    assert_eq!(tensors.len(), 3 + 4 * 9);
}

#[test]
fn weights_are_finite_f32_and_varied() {
    let dir = written();
    let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    for (name, view) in tensors.tensors() {
        assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert!(values.iter().all(|v| v.is_finite()), "{name}");
        let distinct = values
            .iter()
            .map(|v| v.to_bits())
            .collect::<std::collections::HashSet<_>>()
            .len();
        assert!(
            distinct > values.len() / 2,
            "{name} has {distinct} distinct values"
        );
    }
}

#[test]
fn tokenizer_round_trips_names_in_every_script() {
    let dir = written();
    let tokenizer = Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
    let text = "Zoë, Siobhán, Nguyễn, José, Łukasz, محمد, राहुल and 王芳 appealed; Ωμέγα too.";
    let encoding = tokenizer.encode(text, false).unwrap();
    assert_eq!(tokenizer.decode(encoding.get_ids(), false).unwrap(), text);
}

#[test]
fn special_tokens_are_special_and_first() {
    let dir = written();
    let tokenizer = Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
    let specials = special_token_ids(&tokenizer);
    for (id, token) in SPECIAL_TOKENS.iter().enumerate() {
        assert_eq!(tokenizer.token_to_id(token), Some(id as u32), "{token}");
        assert!(specials.contains(&(id as u32)), "{token}");
    }
    assert_eq!(bos_token_id(&tokenizer), Some(0));
}

#[test]
fn chat_template_renders_one_bos_prompt() {
    let dir = written();
    let tokenizer = Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
    let template = ChatTemplate::from_model_dir(dir.path()).unwrap();
    let layout = PromptLayout::default();
    let parts = PromptParts {
        system: Some("Be fair."),
        user: "Decide.",
        user_layout: &layout,
        assistant_prefix: "",
    };
    let prompt = render(&template, &parts).unwrap();
    assert!(
        prompt
            .text
            .starts_with("<|begin_of_text|><|start_header_id|>system")
    );

    let tokens = tokenize_rendered(&tokenizer, Some(0), &prompt).unwrap();
    assert_eq!(tokens.ids.iter().filter(|&&id| id == 0).count(), 1);
}

#[test]
fn reference_outputs_are_not_degenerate() {
    // transformers' greedy tokens and attention for the test model (see
    // tests/golden/test-model): the tokens vary and attention is peaked,
    // so the model can tell a correct engine from a wrong one.
    let golden = common::golden("test-model");
    for case in golden["cases"].as_array().unwrap() {
        let generated = common::ids(&case["generated_ids"]);
        let distinct: std::collections::HashSet<_> = generated.iter().collect();
        assert!(distinct.len() >= 4, "{}: {generated:?}", case["name"]);

        let prefill = case["attentions"][0].as_array().unwrap();
        for (layer, heads) in prefill.iter().enumerate() {
            for (head, row) in heads.as_array().unwrap().iter().enumerate() {
                let row: Vec<f64> = row
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect();
                let max = row.iter().cloned().fold(0.0, f64::max);
                let uniform = 1.0 / row.len() as f64;
                assert!(
                    max > 3.0 * uniform,
                    "{} layer {layer} head {head}: max {max}",
                    case["name"]
                );
            }
        }
    }
}
