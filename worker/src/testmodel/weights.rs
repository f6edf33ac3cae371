//! Deterministic weights of the test model, drawn from a seeded ChaCha
//! stream and written as f32 safetensors with Hugging Face Llama names.

use anyhow::Context;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::Dtype;
use safetensors::tensor::TensorView;

/// Sizes of a Llama-architecture model, named as in `config.json`.
#[derive(Debug, Clone, Copy)]
pub struct TestModelShape {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
}

impl TestModelShape {
    pub const fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// Standard deviation of the projection and embedding weights: large enough
/// that a tiny random model attends far from uniformly and its greedy tokens
/// vary (the usual 0.02 gives near-uniform attention at this size).
const WEIGHT_STD: f32 = 0.25;
/// Half-width of the uniform noise around 1 in the RMSNorm weights.
const NORM_NOISE: f32 = 0.1;

/// Returns the bytes of `model.safetensors` for `shape` and `vocab_size`.
///
/// Each matrix is drawn uniformly from `[-a, a)` with `a = WEIGHT_STD * √3`
/// (standard deviation `WEIGHT_STD`), each RMSNorm weight uniformly from
/// `1 ± NORM_NOISE`, in the fixed order of [`tensor_shapes`] from one
/// ChaCha8 stream seeded with `seed`. Floats come from the top 24 bits of
/// each `u32` draw, so they do not depend on `rand`'s distribution code.
pub fn model_weights(
    shape: &TestModelShape,
    vocab_size: usize,
    seed: u64,
) -> anyhow::Result<Vec<u8>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let half_width = WEIGHT_STD * 3f32.sqrt();

    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, dims) in tensor_shapes(shape, vocab_size) {
        let count: usize = dims.iter().product();
        let is_norm = name.ends_with("norm.weight");
        let mut bytes = Vec::with_capacity(count * 4);
        for _ in 0..count {
            let unit = (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32;
            let centred = 2.0 * unit - 1.0;
            let value = if is_norm {
                1.0 + NORM_NOISE * centred
            } else {
                half_width * centred
            };
            bytes.extend_from_slice(&value.to_le_bytes());
        }
        tensors.push((name, dims, bytes));
    }

    let views = tensors
        .iter()
        .map(|(name, dims, bytes)| {
            Ok((
                name.clone(),
                TensorView::new(Dtype::F32, dims.clone(), bytes)?,
            ))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .context("building tensor views failed")?;
    let metadata = [("format".to_string(), "pt".to_string())]
        .into_iter()
        .collect();
    safetensors::serialize(views, Some(metadata)).context("serialising the test weights failed")
}

/// Lists the tensors of a Llama checkpoint with their `[out, in]` shapes, in the
/// order the weights are drawn.
pub fn tensor_shapes(shape: &TestModelShape, vocab_size: usize) -> Vec<(String, Vec<usize>)> {
    let hidden = shape.hidden_size;
    let kv = shape.num_key_value_heads * shape.head_dim();
    let inter = shape.intermediate_size;

    let mut tensors = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![vocab_size, hidden],
    )];
    for layer in 0..shape.num_hidden_layers {
        let prefix = format!("model.layers.{layer}");
        tensors.extend([
            (format!("{prefix}.input_layernorm.weight"), vec![hidden]),
            (
                format!("{prefix}.self_attn.q_proj.weight"),
                vec![hidden, hidden],
            ),
            (
                format!("{prefix}.self_attn.k_proj.weight"),
                vec![kv, hidden],
            ),
            (
                format!("{prefix}.self_attn.v_proj.weight"),
                vec![kv, hidden],
            ),
            (
                format!("{prefix}.self_attn.o_proj.weight"),
                vec![hidden, hidden],
            ),
            (
                format!("{prefix}.post_attention_layernorm.weight"),
                vec![hidden],
            ),
            (
                format!("{prefix}.mlp.gate_proj.weight"),
                vec![inter, hidden],
            ),
            (format!("{prefix}.mlp.up_proj.weight"), vec![inter, hidden]),
            (
                format!("{prefix}.mlp.down_proj.weight"),
                vec![hidden, inter],
            ),
        ]);
    }
    tensors.push(("model.norm.weight".to_string(), vec![hidden]));
    tensors.push(("lm_head.weight".to_string(), vec![vocab_size, hidden]));
    tensors
}
