//! Loading a model folder: the config, the tokenizer, the special tokens and
//! the weights, memory-mapped from safetensors and checked against the
//! shapes the config implies.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::var_builder::VarBuilder;
use candle_nn::{Embedding, Linear, RmsNorm};
use tokenizers::Tokenizer;

use super::attention::{Attention, SCORE_BUDGET};
use super::block::Block;
use super::config::ModelConfig;
use super::decoder::Decoder;
use super::device::DTypeChoice;
use super::error::{ModelError, Result};
use super::files::{ModelFiles, read_text};
use super::mlp::Mlp;
use super::rope::RotaryEmbedding;
use super::special_tokens::SpecialTokens;

/// Everything loaded from a model folder.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    pub files: ModelFiles,
    pub decoder: Decoder,
    pub tokenizer: Tokenizer,
    pub special_tokens: SpecialTokens,
}

impl LoadedModel {
    /// Loads the model in `dir` onto `device`, in the dtype `dtype` resolves
    /// to there.
    pub fn load(dir: &Path, dtype: DTypeChoice, device: &Device) -> Result<Self> {
        let files = ModelFiles::locate(dir)?;
        let config = ModelConfig::from_json(&read_text(&files.config)?).map_err(|e| match e {
            ModelError::InvalidConfig { message } => ModelError::InvalidFile {
                path: files.config.clone(),
                message,
            },
            other => other,
        })?;
        let tokenizer =
            Tokenizer::from_file(&files.tokenizer).map_err(|e| ModelError::Tokenizer {
                path: files.tokenizer.clone(),
                message: e.to_string(),
            })?;
        let special_tokens = SpecialTokens::resolve(&files, &config, &tokenizer)?;

        let dtype = dtype.resolve(device, config.dtype.as_deref());
        // SAFETY: the files are mapped read-only; changing them while the
        // worker runs is undefined behaviour, as for every mmap-based loader.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files.weights, dtype, device) }
            .map_err(|error| ModelError::Weights {
                dir: files.dir.clone(),
                message: error.to_string(),
            })?;
        let weights = Weights {
            vb,
            dir: files.dir.clone(),
        };
        let decoder = build_decoder(config, &weights, dtype, device)?;
        Ok(Self {
            files,
            decoder,
            tokenizer,
            special_tokens,
        })
    }
}

/// Tensor lookup that reports a missing or misshapen tensor by name.
struct Weights<'a> {
    vb: VarBuilder<'a>,
    dir: PathBuf,
}

impl Weights<'_> {
    fn contains(&self, name: &str) -> bool {
        self.vb.contains_tensor(name)
    }

    fn get(&self, expected: &[usize], name: &str) -> Result<Tensor> {
        if !self.contains(name) {
            return Err(ModelError::MissingTensor {
                name: name.to_string(),
                dir: self.dir.clone(),
            });
        }
        let tensor = self.vb.get_unchecked(name)?;
        if tensor.dims() != expected {
            return Err(ModelError::TensorShape {
                name: name.to_string(),
                expected: expected.to_vec(),
                found: tensor.dims().to_vec(),
            });
        }
        Ok(tensor)
    }

    fn linear(&self, prefix: &str, out_dim: usize, in_dim: usize, bias: bool) -> Result<Linear> {
        let weight = self.get(&[out_dim, in_dim], &format!("{prefix}.weight"))?;
        let bias = match bias {
            true => Some(self.get(&[out_dim], &format!("{prefix}.bias"))?),
            false => None,
        };
        Ok(Linear::new(weight, bias))
    }

    fn rms_norm(&self, name: &str, size: usize, eps: f64) -> Result<RmsNorm> {
        Ok(RmsNorm::new(
            self.get(&[size], &format!("{name}.weight"))?,
            eps,
        ))
    }
}

fn build_decoder(
    config: ModelConfig,
    weights: &Weights,
    dtype: DType,
    device: &Device,
) -> Result<Decoder> {
    let hidden = config.hidden_size;
    let embeddings = weights.get(&[config.vocab_size, hidden], "model.embed_tokens.weight")?;

    let layers = (0..config.num_hidden_layers)
        .map(|index| build_block(&config, weights, index))
        .collect::<Result<Vec<_>>>()?;

    let tied = config
        .tie_word_embeddings
        .unwrap_or(!weights.contains("lm_head.weight"));
    let lm_head = match tied {
        true => Linear::new(embeddings.clone(), None),
        false => weights.linear("lm_head", config.vocab_size, hidden, false)?,
    };

    Ok(Decoder {
        embed_tokens: Embedding::new(embeddings, hidden),
        layers,
        norm: weights.rms_norm("model.norm", hidden, config.rms_norm_eps)?,
        lm_head,
        rotary: RotaryEmbedding::new(config.head_dim, config.rope_theta, &config.rope_scaling),
        config,
        dtype,
        device: device.clone(),
    })
}

fn build_block(config: &ModelConfig, weights: &Weights, index: usize) -> Result<Block> {
    let prefix = format!("model.layers.{index}");
    let hidden = config.hidden_size;
    let q_dim = config.num_attention_heads * config.head_dim;
    let kv_dim = config.num_key_value_heads * config.head_dim;
    let attn = format!("{prefix}.self_attn");
    let self_attn = Attention {
        q_proj: weights.linear(&format!("{attn}.q_proj"), q_dim, hidden, config.qkv_bias)?,
        k_proj: weights.linear(&format!("{attn}.k_proj"), kv_dim, hidden, config.qkv_bias)?,
        v_proj: weights.linear(&format!("{attn}.v_proj"), kv_dim, hidden, config.qkv_bias)?,
        o_proj: weights.linear(&format!("{attn}.o_proj"), hidden, q_dim, config.o_bias)?,
        num_heads: config.num_attention_heads,
        num_kv_heads: config.num_key_value_heads,
        head_dim: config.head_dim,
        score_budget: SCORE_BUDGET,
    };
    let inter = config.intermediate_size;
    let mlp = format!("{prefix}.mlp");
    let mlp = Mlp {
        gate_proj: weights.linear(&format!("{mlp}.gate_proj"), inter, hidden, config.mlp_bias)?,
        up_proj: weights.linear(&format!("{mlp}.up_proj"), inter, hidden, config.mlp_bias)?,
        down_proj: weights.linear(&format!("{mlp}.down_proj"), hidden, inter, config.mlp_bias)?,
    };
    Ok(Block {
        input_layernorm: weights.rms_norm(
            &format!("{prefix}.input_layernorm"),
            hidden,
            config.rms_norm_eps,
        )?,
        self_attn,
        post_attention_layernorm: weights.rms_norm(
            &format!("{prefix}.post_attention_layernorm"),
            hidden,
            config.rms_norm_eps,
        )?,
        mlp,
        sliding_window: config.sliding_windows[index],
    })
}
