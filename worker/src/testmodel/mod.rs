//! The tiny Llama-architecture test checkpoint that tests and the demo use.
//! It has 4 layers, hidden size 64, 4 query heads sharing 2 KV heads (GQA)
//! and Llama 3 RoPE scaling. Its byte-level BPE tokenizer is trained on a
//! built-in corpus of UK immigration case texts with names in several
//! scripts.

mod tokenizer;
mod weights;

use std::path::Path;

use anyhow::Context;
use serde_json::{Value, json};

pub use tokenizer::{CHAT_TEMPLATE, SPECIAL_TOKENS, train_tokenizer};
pub use weights::{TestModelShape, model_weights, tensor_shapes};

/// The shape of the test model, as written to `config.json`.
pub const SHAPE: TestModelShape = TestModelShape {
    hidden_size: 64,
    intermediate_size: 192,
    num_hidden_layers: 4,
    num_attention_heads: 4,
    num_key_value_heads: 2,
};

/// Seed of the ChaCha stream that draws the weights.
const WEIGHT_SEED: u64 = 20_240_726;

/// Writes `config.json`, `tokenizer.json`, `tokenizer_config.json`,
/// `generation_config.json` and `model.safetensors` into `dir`, creating it
/// if needed and replacing those files if present.
/// The same call always writes the same bytes.
pub fn write_test_model(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;

    let tokenizer_json = train_tokenizer()
        .map_err(|err| anyhow::anyhow!("training the test tokenizer failed: {err}"))?;
    let tokenizer = tokenizers::Tokenizer::from_bytes(tokenizer_json.as_bytes())
        .map_err(|err| anyhow::anyhow!("the trained test tokenizer does not load: {err}"))?;
    let vocab_size = tokenizer.get_vocab_size(true);
    let id = |token: &str| {
        tokenizer
            .token_to_id(token)
            .with_context(|| format!("test tokenizer lacks {token}"))
    };
    let bos = id("<|begin_of_text|>")?;
    let eos = [id("<|end_of_text|>")?, id("<|eot_id|>")?];

    let safetensors = model_weights(&SHAPE, vocab_size, WEIGHT_SEED)?;

    write(dir, "tokenizer.json", tokenizer_json.into_bytes())?;
    write(dir, "tokenizer_config.json", pretty(&tokenizer_config()))?;
    write(
        dir,
        "config.json",
        pretty(&model_config(vocab_size, bos, eos)),
    )?;
    write(
        dir,
        "generation_config.json",
        pretty(&generation_config(bos, eos)),
    )?;
    write(dir, "model.safetensors", safetensors)?;
    Ok(())
}

fn model_config(vocab_size: usize, bos: u32, eos: [u32; 2]) -> Value {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab_size,
        "hidden_size": SHAPE.hidden_size,
        "intermediate_size": SHAPE.intermediate_size,
        "num_hidden_layers": SHAPE.num_hidden_layers,
        "num_attention_heads": SHAPE.num_attention_heads,
        "num_key_value_heads": SHAPE.num_key_value_heads,
        "head_dim": SHAPE.head_dim(),
        "hidden_act": "silu",
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        // A small original context makes the scaling change frequencies that
        // matter at test prompt lengths, including the smoothed band.
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 256
        },
        "bos_token_id": bos,
        "eos_token_id": eos,
        "tie_word_embeddings": false,
        "attention_bias": false,
        "attention_dropout": 0.0,
        "mlp_bias": false,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "use_cache": true,
        "torch_dtype": "float32"
    })
}

fn tokenizer_config() -> Value {
    json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>",
        "pad_token": "<|end_of_text|>",
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": false,
        "model_max_length": 2048
    })
}

fn generation_config(bos: u32, eos: [u32; 2]) -> Value {
    json!({
        "bos_token_id": bos,
        "eos_token_id": eos,
        "do_sample": true,
        "temperature": 0.6,
        "top_p": 0.9
    })
}

fn pretty(value: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("JSON values serialise");
    bytes.push(b'\n');
    bytes
}

fn write(dir: &Path, name: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
}
