//! Rotary position embeddings: the inverse frequencies (with Llama 3 and
//! linear scaling) and cos/sin tables for per-row position ids.
//!
//! The arithmetic follows transformers' `_compute_default_rope_parameters`
//! and `_compute_llama3_parameters` step by step in f32, so the tables agree
//! with the reference to the last bits wherever f32 `powf`, `cos` and `sin`
//! agree.

use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use super::error::{ModelError, Result};

/// The rescaling of the inverse frequencies for long contexts.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    Default,
    /// Positions divided by `factor` (inverse frequencies divided by it).
    Linear {
        factor: f32,
    },
    /// Llama 3.1's scaling: low frequencies divided by `factor`, high ones
    /// kept, and a smooth blend in between.
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_max_position_embeddings: f32,
    },
}

impl RopeScaling {
    /// The `rope_type` values that load.
    pub const SUPPORTED: &'static [&'static str] = &["default", "linear", "llama3"];

    /// Parses a `rope_scaling` or `rope_parameters` object. The type is read
    /// from `rope_type`, or from `type` as older configs write it.
    pub fn from_json(value: &Value) -> Result<Self> {
        let Value::Object(map) = value else {
            return Err(ModelError::InvalidConfig {
                message: format!("rope_scaling must be an object or null, found {value}"),
            });
        };
        let rope_type = map
            .get("rope_type")
            .or_else(|| map.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let number = |key: &str| -> Result<f32> {
            map.get(key)
                .and_then(Value::as_f64)
                .map(|v| v as f32)
                .ok_or_else(|| ModelError::InvalidConfig {
                    message: format!("rope_scaling of type {rope_type:?} needs a number {key}"),
                })
        };
        match rope_type {
            "default" => Ok(Self::Default),
            "linear" => Ok(Self::Linear {
                factor: number("factor")?,
            }),
            "llama3" => Ok(Self::Llama3 {
                factor: number("factor")?,
                low_freq_factor: number("low_freq_factor")?,
                high_freq_factor: number("high_freq_factor")?,
                original_max_position_embeddings: number("original_max_position_embeddings")?,
            }),
            other => Err(ModelError::UnsupportedRopeScaling {
                found: other.to_string(),
                supported: Self::SUPPORTED,
            }),
        }
    }
}

/// The inverse frequencies of one attention head, `head_dim / 2` values.
#[derive(Debug, Clone)]
pub struct RotaryEmbedding {
    inv_freq: Vec<f32>,
}

impl RotaryEmbedding {
    pub fn new(head_dim: usize, theta: f64, scaling: &RopeScaling) -> Self {
        let base = theta as f32;
        let default: Vec<f32> = (0..head_dim)
            .step_by(2)
            .map(|i| 1.0 / base.powf(i as f32 / head_dim as f32))
            .collect();
        let inv_freq = match scaling {
            RopeScaling::Default => default,
            RopeScaling::Linear { factor } => default.iter().map(|f| f / factor).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old_context,
            } => {
                let low_freq_wavelen = old_context / low_freq_factor;
                let high_freq_wavelen = old_context / high_freq_factor;
                default
                    .iter()
                    .map(|&inv_freq| {
                        let wavelen = 2.0 * std::f32::consts::PI / inv_freq;
                        let scaled = if wavelen > low_freq_wavelen {
                            inv_freq / factor
                        } else {
                            inv_freq
                        };
                        let medium = wavelen >= high_freq_wavelen && wavelen <= low_freq_wavelen;
                        if medium {
                            let smooth = (old_context / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * scaled / factor + smooth * scaled
                        } else {
                            scaled
                        }
                    })
                    .collect()
            }
        };
        Self { inv_freq }
    }

    pub fn inv_freq(&self) -> &[f32] {
        &self.inv_freq
    }

    /// Builds the cos and sin tables for `positions`, one row of position ids
    /// per batch row (all rows the same length). Each table has shape
    /// `(batch, seq_len, head_dim / 2)`, is computed in f32 and then cast to
    /// `dtype`, as transformers does.
    pub fn tables(
        &self,
        positions: &[Vec<u32>],
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let batch = positions.len();
        let seq_len = positions.first().map_or(0, Vec::len);
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(batch * seq_len * half);
        let mut sin = Vec::with_capacity(batch * seq_len * half);
        for row in positions {
            if row.len() != seq_len {
                candle_core::bail!(
                    "position rows differ in length: {} and {seq_len}",
                    row.len()
                );
            }
            for &position in row {
                for &inv_freq in &self.inv_freq {
                    let angle = position as f32 * inv_freq;
                    cos.push(angle.cos());
                    sin.push(angle.sin());
                }
            }
        }
        let shape = (batch, seq_len, half);
        let cos = Tensor::from_vec(cos, shape, device)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, shape, device)?.to_dtype(dtype)?;
        Ok((cos, sin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_inv_freq_matches_formula() {
        let rope = RotaryEmbedding::new(8, 10_000.0, &RopeScaling::Default);
        let expected = [1.0, 0.1, 0.01, 0.001];
        for (got, want) in rope.inv_freq().iter().zip(expected) {
            assert!((got - want).abs() <= want * 1e-6, "{got} vs {want}");
        }
    }

    /// The three bands of Llama 3 scaling with head_dim 16, theta 500000,
    /// factor 8, low 1, high 4 and an original context of 256.
    #[test]
    fn llama3_scaling_blends_medium_frequencies() {
        let scaling = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 256.0,
        };
        let rope = RotaryEmbedding::new(16, 500_000.0, &scaling);
        let base = RotaryEmbedding::new(16, 500_000.0, &RopeScaling::Default);
        let old_context = 256.0_f32;
        for (scaled, default) in rope.inv_freq().iter().zip(base.inv_freq()) {
            let wavelen = 2.0 * std::f32::consts::PI / default;
            if wavelen < old_context / 4.0 {
                assert_eq!(scaled, default, "high frequencies are kept");
            } else if wavelen > old_context {
                assert_eq!(
                    *scaled,
                    default / 8.0,
                    "low frequencies are divided by factor"
                );
            } else {
                assert!(scaled < default, "medium frequencies shrink");
                assert!(
                    *scaled > default / 8.0,
                    "medium frequencies shrink less than low ones"
                );
            }
        }
    }

    #[test]
    fn scaling_type_read_from_old_type_key() {
        let value = serde_json::json!({"type": "linear", "factor": 2.0});
        assert_eq!(
            RopeScaling::from_json(&value).unwrap(),
            RopeScaling::Linear { factor: 2.0 }
        );
    }

    #[test]
    fn unsupported_scaling_type_named_in_error() {
        let value = serde_json::json!({"rope_type": "yarn", "factor": 4.0});
        let message = RopeScaling::from_json(&value).unwrap_err().to_string();
        assert!(message.contains("\"yarn\""), "{message}");
        assert!(message.contains("llama3"), "{message}");
    }

    #[test]
    fn tables_hold_one_row_per_batch_row() {
        let rope = RotaryEmbedding::new(4, 10_000.0, &RopeScaling::Default);
        let (cos, sin) = rope
            .tables(&[vec![0, 1], vec![1, 2]], DType::F32, &Device::Cpu)
            .unwrap();
        assert_eq!(cos.dims(), &[2, 2, 2]);
        let cos = cos.to_vec3::<f32>().unwrap();
        let sin = sin.to_vec3::<f32>().unwrap();
        assert_eq!(cos[0][0], vec![1.0, 1.0]);
        assert_eq!(sin[0][0], vec![0.0, 0.0]);
        assert_eq!(cos[0][1], cos[1][0], "same position, same angle");
        assert_eq!(sin[1][1][0], 2.0_f32.sin());
    }
}
