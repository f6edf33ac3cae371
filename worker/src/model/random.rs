//! Randomly initialised checkpoints of any Llama-family shape, written as a
//! Hugging Face model folder, for tests and benchmarks of the engine.
//!
//! The tokenizer is word-level: each vocabulary entry is one
//! whitespace-separated word, so tests can write prompts and labels as
//! words. The same spec always writes the same bytes.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::Context;
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
use tokenizers::{AddedToken, Tokenizer};

use super::config::Architecture;

/// The special tokens every random model's vocabulary starts with.
pub const UNK: &str = "<unk>";
pub const BOS: &str = "<s>";
pub const EOS: &str = "</s>";
pub const PAD: &str = "<pad>";

/// The shape and contents of a random checkpoint.
#[derive(Debug, Clone)]
pub struct RandomModel {
    pub architecture: Architecture,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    /// Total vocabulary size, including the four special tokens and `words`.
    pub vocab_size: usize,
    /// Words given ids right after the special tokens (4, 5, ...); the rest
    /// of the vocabulary is filled with `w<id>`.
    pub words: Vec<String>,
    pub tie_word_embeddings: bool,
    pub rope_theta: f64,
    /// Written as `rope_scaling`, such as a `llama3` object.
    pub rope_scaling: Option<serde_json::Value>,
    pub sliding_window: Option<usize>,
    /// Weights are uniform with this standard deviation; large values make
    /// attention far from uniform.
    pub std: f32,
    pub seed: u64,
    /// Number of safetensors files; more than one writes an index.
    pub shards: usize,
}

impl RandomModel {
    /// Returns a two-layer GQA model small enough for unit tests.
    pub fn tiny(architecture: Architecture) -> Self {
        Self {
            architecture,
            hidden_size: 32,
            intermediate_size: 64,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            vocab_size: 64,
            words: Vec::new(),
            tie_word_embeddings: false,
            rope_theta: 10_000.0,
            rope_scaling: None,
            sliding_window: None,
            std: 0.3,
            seed: 7,
            shards: 1,
        }
    }

    fn architecture_name(&self) -> &'static str {
        match self.architecture {
            Architecture::Llama => "LlamaForCausalLM",
            Architecture::Mistral => "MistralForCausalLM",
            Architecture::Qwen2 => "Qwen2ForCausalLM",
        }
    }

    fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Returns the vocabulary in id order.
    pub fn vocabulary(&self) -> Vec<String> {
        let mut vocab: Vec<String> = [UNK, BOS, EOS, PAD].iter().map(|s| s.to_string()).collect();
        vocab.extend(self.words.iter().cloned());
        for id in vocab.len()..self.vocab_size {
            vocab.push(format!("w{id}"));
        }
        vocab
    }

    /// Returns the `config.json` contents.
    pub fn config_json(&self) -> serde_json::Value {
        let mut config = json!({
            "architectures": [self.architecture_name()],
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "vocab_size": self.vocab_size,
            "hidden_act": "silu",
            "rms_norm_eps": 1e-5,
            "rope_theta": self.rope_theta,
            "rope_scaling": self.rope_scaling,
            "max_position_embeddings": 4096,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "torch_dtype": "float32",
        });
        if self.architecture == Architecture::Mistral {
            config["sliding_window"] = json!(self.sliding_window);
        }
        config
    }

    /// Writes `config.json`, `tokenizer.json`, `tokenizer_config.json` and
    /// the weights into `dir`, which must exist.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let config = serde_json::to_string_pretty(&self.config_json())?;
        std::fs::write(dir.join("config.json"), config).context("writing config.json")?;
        self.write_tokenizer(dir)?;
        self.write_weights(dir)
    }

    fn write_tokenizer(&self, dir: &Path) -> anyhow::Result<()> {
        let vocab: HashMap<String, u32> = self
            .vocabulary()
            .into_iter()
            .enumerate()
            .map(|(id, word)| (word, id as u32))
            .collect();
        let model = WordLevel::builder()
            .vocab(vocab.into_iter().collect())
            .unk_token(UNK.to_string())
            .build()
            .map_err(|e| anyhow::anyhow!("building the word-level tokenizer: {e}"))?;
        let mut tokenizer = Tokenizer::new(model);
        tokenizer.with_pre_tokenizer(Some(WhitespaceSplit));
        let specials = [UNK, BOS, EOS, PAD].map(|token| AddedToken::from(token, true));
        tokenizer.add_special_tokens(&specials);
        tokenizer
            .save(dir.join("tokenizer.json"), false)
            .map_err(|e| anyhow::anyhow!("writing tokenizer.json: {e}"))?;

        let tokenizer_config = json!({
            "bos_token": BOS,
            "eos_token": EOS,
            "pad_token": PAD,
            "chat_template": "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }} {% endfor %}{% if add_generation_prompt %}assistant: {% endif %}",
        });
        std::fs::write(
            dir.join("tokenizer_config.json"),
            serde_json::to_string_pretty(&tokenizer_config)?,
        )
        .context("writing tokenizer_config.json")
    }

    /// Draws the tensors of the checkpoint, keyed by Hugging Face name.
    pub fn tensors(&self) -> anyhow::Result<BTreeMap<String, Tensor>> {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut tensors = BTreeMap::new();
        let hidden = self.hidden_size;
        let q_dim = self.num_attention_heads * self.head_dim();
        let kv_dim = self.num_key_value_heads * self.head_dim();
        let inter = self.intermediate_size;
        let std = self.std;

        let mut add =
            |name: String, shape: &[usize], center: f32, scale: f32| -> anyhow::Result<()> {
                let count: usize = shape.iter().product();
                // A uniform draw on [-a, a] has standard deviation a / sqrt(3).
                let half_width = scale * 3.0_f32.sqrt();
                let values: Vec<f32> = (0..count)
                    .map(|_| center + rng.random_range(-half_width..=half_width))
                    .collect();
                tensors.insert(name, Tensor::from_vec(values, shape, &Device::Cpu)?);
                Ok(())
            };

        add(
            "model.embed_tokens.weight".into(),
            &[self.vocab_size, hidden],
            0.0,
            std,
        )?;
        for layer in 0..self.num_hidden_layers {
            let p = format!("model.layers.{layer}");
            add(format!("{p}.input_layernorm.weight"), &[hidden], 1.0, 0.1)?;
            add(
                format!("{p}.post_attention_layernorm.weight"),
                &[hidden],
                1.0,
                0.1,
            )?;
            add(
                format!("{p}.self_attn.q_proj.weight"),
                &[q_dim, hidden],
                0.0,
                std,
            )?;
            add(
                format!("{p}.self_attn.k_proj.weight"),
                &[kv_dim, hidden],
                0.0,
                std,
            )?;
            add(
                format!("{p}.self_attn.v_proj.weight"),
                &[kv_dim, hidden],
                0.0,
                std,
            )?;
            add(
                format!("{p}.self_attn.o_proj.weight"),
                &[hidden, q_dim],
                0.0,
                std,
            )?;
            if self.architecture == Architecture::Qwen2 {
                add(format!("{p}.self_attn.q_proj.bias"), &[q_dim], 0.0, std)?;
                add(format!("{p}.self_attn.k_proj.bias"), &[kv_dim], 0.0, std)?;
                add(format!("{p}.self_attn.v_proj.bias"), &[kv_dim], 0.0, std)?;
            }
            add(
                format!("{p}.mlp.gate_proj.weight"),
                &[inter, hidden],
                0.0,
                std,
            )?;
            add(
                format!("{p}.mlp.up_proj.weight"),
                &[inter, hidden],
                0.0,
                std,
            )?;
            add(
                format!("{p}.mlp.down_proj.weight"),
                &[hidden, inter],
                0.0,
                std,
            )?;
        }
        add("model.norm.weight".into(), &[hidden], 1.0, 0.1)?;
        if !self.tie_word_embeddings {
            add(
                "lm_head.weight".into(),
                &[self.vocab_size, hidden],
                0.0,
                std,
            )?;
        }
        Ok(tensors)
    }

    fn write_weights(&self, dir: &Path) -> anyhow::Result<()> {
        let tensors = self.tensors()?;
        if self.shards <= 1 {
            let tensors: HashMap<String, Tensor> = tensors.into_iter().collect();
            candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
            return Ok(());
        }

        let mut shards: Vec<HashMap<String, Tensor>> = vec![HashMap::new(); self.shards];
        let mut weight_map = BTreeMap::new();
        for (index, (name, tensor)) in tensors.into_iter().enumerate() {
            let shard = index % self.shards;
            let file = format!("model-{:05}-of-{:05}.safetensors", shard + 1, self.shards);
            weight_map.insert(name.clone(), file);
            shards[shard].insert(name, tensor);
        }
        for (shard, tensors) in shards.iter().enumerate() {
            let file = format!("model-{:05}-of-{:05}.safetensors", shard + 1, self.shards);
            candle_core::safetensors::save(tensors, dir.join(file))?;
        }
        let index = json!({"metadata": {}, "weight_map": weight_map});
        std::fs::write(
            dir.join("model.safetensors.index.json"),
            serde_json::to_string_pretty(&index)?,
        )
        .context("writing model.safetensors.index.json")
    }
}
