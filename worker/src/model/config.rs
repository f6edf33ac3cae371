//! The model's `config.json`, as transformers 4 and 5 write it for the Llama
//! family, resolved into the sizes and options the decoder needs.
//!
//! Field names mirror the Hugging Face names so a reader can check them
//! against a checkpoint's file.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::error::{ModelError, Result};
use super::rope::RopeScaling;

/// The decoder architectures this engine implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Llama,
    Mistral,
    Qwen2,
}

impl Architecture {
    /// The `architectures` values of `config.json` that load.
    pub const SUPPORTED: &'static [&'static str] =
        &["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"];

    /// Parses an `architectures` entry such as `LlamaForCausalLM`.
    pub fn from_hf_name(name: &str) -> Result<Self> {
        match name {
            "LlamaForCausalLM" => Ok(Self::Llama),
            "MistralForCausalLM" => Ok(Self::Mistral),
            "Qwen2ForCausalLM" => Ok(Self::Qwen2),
            other => Err(ModelError::UnsupportedArchitecture {
                found: other.to_string(),
                supported: Self::SUPPORTED,
            }),
        }
    }

    fn from_model_type(model_type: &str) -> Result<Self> {
        match model_type {
            "llama" => Ok(Self::Llama),
            "mistral" => Ok(Self::Mistral),
            "qwen2" => Ok(Self::Qwen2),
            other => Err(ModelError::UnsupportedArchitecture {
                found: format!("model_type {other}"),
                supported: Self::SUPPORTED,
            }),
        }
    }
}

/// Token ids in `config.json` or `generation_config.json`: one id, a list,
/// or `null`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }

    pub fn first(&self) -> Option<u32> {
        self.to_vec().first().copied()
    }
}

/// `config.json` as written, before defaults are applied.
#[derive(Debug, Clone, Deserialize)]
pub struct HfConfig {
    #[serde(default)]
    pub architectures: Option<Vec<String>>,
    #[serde(default)]
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default)]
    pub hidden_act: Option<String>,
    #[serde(default)]
    pub rms_norm_eps: Option<f64>,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub rope_scaling: Option<Value>,
    /// transformers 5 moves `rope_theta` and the scaling here.
    #[serde(default)]
    pub rope_parameters: Option<Value>,
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
    #[serde(default)]
    pub tie_word_embeddings: Option<bool>,
    #[serde(default)]
    pub attention_bias: Option<bool>,
    #[serde(default)]
    pub mlp_bias: Option<bool>,
    /// Absent and `null` differ: Mistral defaults an absent window to 4096.
    #[serde(default, deserialize_with = "present")]
    pub sliding_window: Option<Option<usize>>,
    #[serde(default)]
    pub use_sliding_window: Option<bool>,
    #[serde(default)]
    pub max_window_layers: Option<usize>,
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    #[serde(default)]
    pub torch_dtype: Option<String>,
    /// transformers 5 writes `dtype` in place of `torch_dtype`.
    #[serde(default)]
    pub dtype: Option<String>,
    #[serde(default)]
    pub bos_token_id: Option<TokenIds>,
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    #[serde(default)]
    pub pad_token_id: Option<TokenIds>,
}

fn present<'de, D, T>(deserializer: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Some(Option::deserialize(deserializer)?))
}

/// The resolved model shape and options, with every default applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub max_position_embeddings: Option<usize>,
    /// `Some(true)` or `Some(false)` when `config.json` sets it. `None`
    /// means tied exactly when the weights have no `lm_head.weight`.
    pub tie_word_embeddings: Option<bool>,
    /// Bias on the q, k and v projections (Qwen2, or Llama's `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on the output projection (Llama's `attention_bias`).
    pub o_bias: bool,
    pub mlp_bias: bool,
    /// Per layer: the sliding attention window in tokens, or `None` for full
    /// causal attention.
    pub sliding_windows: Vec<Option<usize>>,
    /// `torch_dtype` or `dtype`, such as `bfloat16`.
    pub dtype: Option<String>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
}

impl ModelConfig {
    /// Parses and resolves the text of a `config.json`.
    pub fn from_json(text: &str) -> Result<Self> {
        let raw: HfConfig = serde_json::from_str(text).map_err(|e| ModelError::InvalidConfig {
            message: e.to_string(),
        })?;
        Self::resolve(raw)
    }

    /// Applies transformers' defaults for the architecture and checks the
    /// sizes agree.
    pub fn resolve(raw: HfConfig) -> Result<Self> {
        let architecture = resolve_architecture(&raw)?;

        let act = raw.hidden_act.as_deref().unwrap_or("silu");
        if act != "silu" {
            return Err(ModelError::InvalidConfig {
                message: format!("hidden_act {act:?} is not supported; only \"silu\" is"),
            });
        }

        let num_key_value_heads = raw.num_key_value_heads.unwrap_or(raw.num_attention_heads);
        if num_key_value_heads == 0 || !raw.num_attention_heads.is_multiple_of(num_key_value_heads)
        {
            return Err(ModelError::InvalidConfig {
                message: format!(
                    "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                    raw.num_attention_heads, num_key_value_heads
                ),
            });
        }
        let head_dim = match raw.head_dim {
            Some(head_dim) => head_dim,
            None if raw.hidden_size.is_multiple_of(raw.num_attention_heads) => {
                raw.hidden_size / raw.num_attention_heads
            }
            None => {
                return Err(ModelError::InvalidConfig {
                    message: format!(
                        "hidden_size {} is not a multiple of num_attention_heads {}; set head_dim",
                        raw.hidden_size, raw.num_attention_heads
                    ),
                });
            }
        };
        if head_dim % 2 != 0 {
            return Err(ModelError::InvalidConfig {
                message: format!("head_dim {head_dim} is odd; rotary embeddings need an even one"),
            });
        }

        let (rope_theta, rope_scaling) = resolve_rope(&raw)?;
        let sliding_windows = resolve_sliding_windows(architecture, &raw)?;
        let attention_bias = raw.attention_bias.unwrap_or(false);

        Ok(Self {
            architecture,
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            max_position_embeddings: raw.max_position_embeddings,
            tie_word_embeddings: raw.tie_word_embeddings,
            qkv_bias: architecture == Architecture::Qwen2 || attention_bias,
            o_bias: architecture == Architecture::Llama && attention_bias,
            mlp_bias: architecture == Architecture::Llama && raw.mlp_bias.unwrap_or(false),
            sliding_windows,
            dtype: raw.dtype.or(raw.torch_dtype),
            bos_token_id: raw.bos_token_id.as_ref().and_then(TokenIds::first),
            eos_token_ids: raw
                .eos_token_id
                .as_ref()
                .map(TokenIds::to_vec)
                .unwrap_or_default(),
            pad_token_id: raw.pad_token_id.as_ref().and_then(TokenIds::first),
        })
    }

    /// Returns the number of query heads that share one key/value head
    /// (GQA).
    pub fn group_size(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    /// Returns the key/value head that query head `head` reads, in the
    /// layout of transformers' `repeat_kv`: query heads
    /// `g * group_size .. (g + 1) * group_size` share key/value head `g`.
    pub fn kv_head_of(&self, head: usize) -> usize {
        head / self.group_size()
    }
}

fn resolve_architecture(raw: &HfConfig) -> Result<Architecture> {
    match raw.architectures.as_deref() {
        Some([name, ..]) => Architecture::from_hf_name(name),
        _ => match raw.model_type.as_deref() {
            Some(model_type) => Architecture::from_model_type(model_type),
            None => Err(ModelError::InvalidConfig {
                message: format!(
                    "neither architectures nor model_type is set; expected one of {}",
                    Architecture::SUPPORTED.join(", ")
                ),
            }),
        },
    }
}

/// Finds `rope_theta` and the scaling at the top level (transformers 4) or
/// inside `rope_parameters` (transformers 5).
fn resolve_rope(raw: &HfConfig) -> Result<(f64, RopeScaling)> {
    let parameters = match &raw.rope_parameters {
        Some(Value::Object(map)) => Some(map),
        Some(Value::Null) | None => None,
        Some(other) => {
            return Err(ModelError::InvalidConfig {
                message: format!("rope_parameters must be an object, found {other}"),
            });
        }
    };
    if let Some(map) = parameters
        && !map.contains_key("rope_type")
        && !map.contains_key("rope_theta")
    {
        return Err(ModelError::InvalidConfig {
            message: "rope_parameters per attention type is not supported; \
                      expected one object with rope_type and rope_theta"
                .to_string(),
        });
    }

    let theta_in_parameters = parameters
        .and_then(|map| map.get("rope_theta"))
        .and_then(Value::as_f64);
    let rope_theta = raw.rope_theta.or(theta_in_parameters).unwrap_or(10_000.0);

    let scaling = match &raw.rope_scaling {
        Some(Value::Null) | None => parameters.map(|map| Value::Object(map.clone())),
        Some(value) => Some(value.clone()),
    };
    let rope_scaling = match scaling {
        Some(value) => RopeScaling::from_json(&value)?,
        None => RopeScaling::Default,
    };
    Ok((rope_theta, rope_scaling))
}

/// Returns each layer's sliding window as transformers applies it: every
/// Mistral layer uses `sliding_window` (4096 when absent); Qwen2 uses it only
/// with `use_sliding_window`, on the layers that `layer_types` marks as
/// `sliding_attention` (or from `max_window_layers` on); Llama never does.
fn resolve_sliding_windows(
    architecture: Architecture,
    raw: &HfConfig,
) -> Result<Vec<Option<usize>>> {
    let layers = raw.num_hidden_layers;
    let window = match raw.sliding_window {
        Some(window) => window,
        None if architecture == Architecture::Mistral => Some(4096),
        None => None,
    };
    let windows = match architecture {
        Architecture::Llama => vec![None; layers],
        Architecture::Mistral => vec![window; layers],
        Architecture::Qwen2 if !raw.use_sliding_window.unwrap_or(false) => vec![None; layers],
        Architecture::Qwen2 => {
            let Some(window) = window else {
                return Err(ModelError::InvalidConfig {
                    message: "use_sliding_window is true but sliding_window is null".to_string(),
                });
            };
            match &raw.layer_types {
                Some(types) => types
                    .iter()
                    .map(|kind| (kind == "sliding_attention").then_some(window))
                    .collect(),
                None => {
                    let first = raw.max_window_layers.unwrap_or(layers);
                    (0..layers)
                        .map(|layer| (layer >= first).then_some(window))
                        .collect()
                }
            }
        }
    };
    if windows.len() != layers {
        return Err(ModelError::InvalidConfig {
            message: format!(
                "layer_types has {} entries but num_hidden_layers is {layers}",
                windows.len()
            ),
        });
    }
    Ok(windows)
}
