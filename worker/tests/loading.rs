//! Loading model folders: config variants of transformers 4 and 5, special
//! tokens, shards, tied embeddings and the errors for broken folders.

mod random_models;

use candle_core::{DType, Device};
use gaze_worker::capture::CaptureSpec;
use gaze_worker::model::config::ModelConfig;
use gaze_worker::model::random::RandomModel;
use gaze_worker::model::rope::RopeScaling;
use gaze_worker::model::{Architecture, DTypeChoice, LoadedModel};
use random_models::*;
use serde_json::json;

fn config_with(changes: serde_json::Value) -> Result<ModelConfig, String> {
    let mut config = RandomModel::tiny(Architecture::Llama).config_json();
    for (key, value) in changes.as_object().unwrap() {
        if value.is_null() && key.starts_with('-') {
            config.as_object_mut().unwrap().remove(&key[1..]);
        } else {
            config[key] = value.clone();
        }
    }
    ModelConfig::from_json(&config.to_string()).map_err(|e| e.to_string())
}

fn load_error(dir: &tempfile::TempDir) -> String {
    LoadedModel::load(dir.path(), DTypeChoice::Fixed(DType::F32), &Device::Cpu)
        .unwrap_err()
        .to_string()
}

#[test]
fn transformers5_rope_parameters_read() {
    let config = config_with(json!({
        "-rope_theta": null,
        "-rope_scaling": null,
        "rope_parameters": {
            "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192
        },
        "-torch_dtype": null,
        "dtype": "bfloat16",
    }))
    .unwrap();
    assert_eq!(config.rope_theta, 500000.0);
    assert_eq!(
        config.rope_scaling,
        RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192.0
        }
    );
    assert_eq!(config.dtype.as_deref(), Some("bfloat16"));
}

#[test]
fn default_rope_parameters_mean_no_scaling() {
    let config = config_with(json!({
        "-rope_theta": null,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
    }))
    .unwrap();
    assert_eq!(config.rope_theta, 1000000.0);
    assert_eq!(config.rope_scaling, RopeScaling::Default);
}

#[test]
fn top_level_rope_scaling_with_old_type_key() {
    let config = config_with(json!({"rope_scaling": {"type": "linear", "factor": 4.0}})).unwrap();
    assert_eq!(config.rope_scaling, RopeScaling::Linear { factor: 4.0 });
}

#[test]
fn head_dim_derived_when_absent_or_null() {
    assert_eq!(config_with(json!({})).unwrap().head_dim, 8);
    assert_eq!(config_with(json!({"head_dim": null})).unwrap().head_dim, 8);
    assert_eq!(config_with(json!({"head_dim": 16})).unwrap().head_dim, 16);
}

#[test]
fn eos_token_id_may_be_list() {
    let config = config_with(json!({"eos_token_id": [2, 9]})).unwrap();
    assert_eq!(config.eos_token_ids, vec![2, 9]);
}

#[test]
fn mistral_sliding_window_absent_null_or_set() {
    let mistral = |window: serde_json::Value| {
        let mut changes = json!({"architectures": ["MistralForCausalLM"]});
        if window != json!("absent") {
            changes["sliding_window"] = window;
        }
        config_with(changes).unwrap().sliding_windows
    };
    assert_eq!(
        mistral(json!("absent")),
        vec![Some(4096); 2],
        "transformers' default"
    );
    assert_eq!(mistral(json!(null)), vec![None; 2]);
    assert_eq!(mistral(json!(128)), vec![Some(128); 2]);
}

#[test]
fn qwen2_sliding_window_only_when_enabled() {
    let qwen = |enabled: bool| {
        config_with(json!({
            "architectures": ["Qwen2ForCausalLM"],
            "sliding_window": 64,
            "use_sliding_window": enabled,
            "layer_types": ["full_attention", "sliding_attention"],
        }))
        .unwrap()
    };
    assert_eq!(qwen(false).sliding_windows, vec![None, None]);
    assert_eq!(qwen(true).sliding_windows, vec![None, Some(64)]);
    assert!(qwen(false).qkv_bias, "Qwen2 has q, k and v biases");
}

#[test]
fn unsupported_architecture_named_with_supported_list() {
    let message = config_with(json!({"architectures": ["GPT2LMHeadModel"]})).unwrap_err();
    assert!(message.contains("\"GPT2LMHeadModel\""), "{message}");
    assert!(
        message.contains("LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"),
        "{message}"
    );
}

#[test]
fn unsupported_rope_type_named() {
    let message =
        config_with(json!({"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}})).unwrap_err();
    assert!(message.contains("\"dynamic\""), "{message}");
}

#[test]
fn non_silu_activation_rejected() {
    let message = config_with(json!({"hidden_act": "gelu"})).unwrap_err();
    assert!(message.contains("\"gelu\""), "{message}");
}

#[test]
fn missing_config_names_path() {
    let dir = write(&tiny_llama());
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let message = load_error(&dir);
    assert!(
        message.contains(&dir.path().join("config.json").display().to_string()),
        "{message}"
    );
}

#[test]
fn missing_weights_name_path() {
    let dir = write(&tiny_llama());
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let message = load_error(&dir);
    assert!(message.contains("model.safetensors"), "{message}");
    assert!(message.contains("not found"), "{message}");
}

#[test]
fn truncated_weights_name_folder_and_fix() {
    let dir = write(&tiny_llama());
    let weights = dir.path().join("model.safetensors");
    let length = std::fs::metadata(&weights).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&weights)
        .unwrap()
        .set_len(length / 2)
        .unwrap();

    let message = load_error(&dir);

    assert!(
        message.contains(&format!(
            "cannot read the safetensors weights in {}",
            dir.path().display()
        )),
        "{message}"
    );
    assert!(
        message.contains("copy or download the model again"),
        "{message}"
    );
}

#[test]
fn missing_shard_names_path() {
    let dir = write(&RandomModel {
        shards: 2,
        ..tiny_llama()
    });
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    let message = load_error(&dir);
    assert!(
        message.contains("model-00002-of-00002.safetensors"),
        "{message}"
    );
}

#[test]
fn wrong_tensor_shape_names_tensor_and_shapes() {
    let dir = write(&tiny_llama());
    let mut config = tiny_llama().config_json();
    config["intermediate_size"] = json!(48);
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let message = load_error(&dir);
    assert!(
        message.contains("model.layers.0.mlp.gate_proj.weight"),
        "{message}"
    );
    assert!(message.contains("[64, 32]"), "found shape: {message}");
    assert!(message.contains("[48, 32]"), "expected shape: {message}");
}

#[test]
fn sharded_weights_load_like_one_file() {
    let single = load(&write(&tiny_llama()));
    let sharded = load(&write(&RandomModel {
        shards: 3,
        ..tiny_llama()
    }));
    let requests = requests(&[5, 2], 64);
    let a = single
        .generate(&requests, &greedy(5), &CaptureSpec::default())
        .unwrap();
    let b = sharded
        .generate(&requests, &greedy(5), &CaptureSpec::default())
        .unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.token_ids, y.token_ids);
    }
}

#[test]
fn tied_embeddings_used_as_lm_head() {
    let tied = RandomModel {
        tie_word_embeddings: true,
        ..tiny_llama()
    };
    let tied_dir = write(&tied);

    // The same weights with an explicit lm_head equal to the embeddings.
    let untied_dir = tempfile::tempdir().unwrap();
    RandomModel {
        tie_word_embeddings: false,
        ..tied.clone()
    }
    .write(untied_dir.path())
    .unwrap();
    let mut tensors = tied.tensors().unwrap();
    let embeddings = tensors["model.embed_tokens.weight"].clone();
    tensors.insert("lm_head.weight".into(), embeddings);
    let tensors: std::collections::HashMap<_, _> = tensors.into_iter().collect();
    candle_core::safetensors::save(&tensors, untied_dir.path().join("model.safetensors")).unwrap();

    let requests = requests(&[6], 64);
    let a = load(&tied_dir)
        .generate(&requests, &greedy(6), &CaptureSpec::default())
        .unwrap();
    let b = load(&untied_dir)
        .generate(&requests, &greedy(6), &CaptureSpec::default())
        .unwrap();
    assert_eq!(a[0].token_ids, b[0].token_ids);
}

#[test]
fn missing_lm_head_means_tied() {
    let dir = write(&RandomModel {
        tie_word_embeddings: true,
        ..tiny_llama()
    });
    let mut config = tiny_llama().config_json();
    config
        .as_object_mut()
        .unwrap()
        .remove("tie_word_embeddings");
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    assert!(LoadedModel::load(dir.path(), DTypeChoice::Fixed(DType::F32), &Device::Cpu).is_ok());
}

#[test]
fn generation_config_eos_list_wins_over_config() {
    let dir = write(&tiny_llama());
    std::fs::write(
        dir.path().join("generation_config.json"),
        r#"{"eos_token_id": [2, 7], "bos_token_id": 1}"#,
    )
    .unwrap();
    let engine = load(&dir);
    assert_eq!(engine.special_tokens().eos_token_ids, vec![2, 7]);
    assert_eq!(engine.special_tokens().bos_token_id, Some(1));
}

#[test]
fn pad_id_read_from_tokenizer_config() {
    let engine = load(&write(&tiny_llama()));
    assert_eq!(engine.special_tokens().pad_token_id, 3, "<pad> is id 3");
}

#[test]
fn chat_template_list_picks_default() {
    let dir = write(&tiny_llama());
    let tokenizer_config = json!({
        "bos_token": {"content": "<s>", "special": true},
        "chat_template": [
            {"name": "tool_use", "template": "tools"},
            {"name": "default", "template": "plain"}
        ]
    });
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        tokenizer_config.to_string(),
    )
    .unwrap();
    let engine = load(&dir);
    assert_eq!(engine.chat_template(), Some("plain"));
    assert_eq!(engine.special_tokens().bos_token.as_deref(), Some("<s>"));
}

#[test]
fn chat_template_jinja_file_wins() {
    let dir = write(&tiny_llama());
    std::fs::write(dir.path().join("chat_template.jinja"), "{{ messages }}").unwrap();
    assert_eq!(load(&dir).chat_template(), Some("{{ messages }}"));
}

#[test]
fn capture_layer_out_of_range_names_valid_range() {
    let config = config_with(json!({})).unwrap();
    let count = config.num_hidden_layers;
    let spec = CaptureSpec {
        layers: vec![count],
        heads: vec![0],
        ..CaptureSpec::default()
    };

    let message = spec.validate(&config).unwrap_err().to_string();

    assert_eq!(
        message,
        format!(
            "capture layer {count} does not exist: the model has {count} layers, 0 to {}; pick a smaller index",
            count - 1
        )
    );
}
