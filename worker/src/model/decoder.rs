//! The decoder-only transformer: embeddings, the layer stack, the final norm
//! and the LM head, run one forward pass at a time over a KV cache.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, Linear, RmsNorm};

use super::attention::AttentionInput;
use super::block::Block;
use super::config::ModelConfig;
use super::kv_cache::KvCache;
use super::mask::AttentionMasks;
use super::rope::RotaryEmbedding;

/// The layers and heads whose attention a forward pass returns.
#[derive(Debug, Clone)]
pub struct CaptureLayers {
    /// Layer indices, ascending.
    pub layers: Vec<usize>,
    /// Query head indices (u32) on the model's device, in output order.
    pub heads: Tensor,
}

/// The results of one forward pass.
#[derive(Debug)]
pub struct ForwardOutput {
    /// Logits of the last position of each row, `(batch, vocab)`, f32.
    pub logits: Tensor,
    /// With capture: the attention probabilities of each row's last query
    /// over the visible cache columns, `(layers, batch, heads, kv_len)`,
    /// f32, in the order of [`CaptureLayers`].
    pub attention: Option<Tensor>,
}

#[derive(Debug, Clone)]
pub struct Decoder {
    pub(crate) embed_tokens: Embedding,
    pub(crate) layers: Vec<Block>,
    pub(crate) norm: RmsNorm,
    pub(crate) lm_head: Linear,
    pub(crate) rotary: RotaryEmbedding,
    pub(crate) config: ModelConfig,
    pub(crate) dtype: DType,
    pub(crate) device: Device,
}

impl Decoder {
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Returns the sliding window of each layer, for building
    /// [`AttentionMasks`].
    pub fn sliding_windows(&self) -> Vec<Option<usize>> {
        self.layers
            .iter()
            .map(|layer| layer.sliding_window)
            .collect()
    }

    /// Sets the maximum count of f32 attention scores a layer computes at
    /// once during prefill (default [`SCORE_BUDGET`](super::attention::SCORE_BUDGET)).
    /// A smaller budget computes the prefill in more, smaller blocks of
    /// query rows, with results equal up to f32 rounding.
    pub fn set_score_budget(&mut self, scores: usize) {
        for layer in &mut self.layers {
            layer.self_attn.score_budget = scores;
        }
    }

    /// Creates an empty KV cache for up to `capacity` positions per row.
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        KvCache::new(self.layers.len(), capacity)
    }

    /// Runs one pass over `input_ids`, `(batch, new_len)` u32, whose
    /// position ids are `positions` (one row per batch row), appending the
    /// keys and values to `cache`. `masks` must cover the visible cache
    /// columns plus the new ones.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        positions: &[Vec<u32>],
        masks: &AttentionMasks,
        cache: &mut KvCache,
        capture: Option<&CaptureLayers>,
    ) -> Result<ForwardOutput> {
        let (_, new_len) = input_ids.dims2()?;
        let (cos, sin) = self.rotary.tables(positions, self.dtype, &self.device)?;

        let mut x = self.embed_tokens.forward(input_ids)?;
        let mut captured = Vec::new();
        for (index, layer) in self.layers.iter().enumerate() {
            let heads = capture
                .filter(|capture| capture.layers.binary_search(&index).is_ok())
                .map(|capture| &capture.heads);
            let input = AttentionInput {
                cos: &cos,
                sin: &sin,
                mask: masks.get(layer.sliding_window),
                capture_heads: heads,
            };
            let (next, rows) = layer.forward(&x, &input, cache, index)?;
            x = next;
            captured.extend(rows);
        }
        cache.advance(new_len);

        let last = x.narrow(1, new_len - 1, 1)?;
        let logits = self.lm_head.forward(&self.norm.forward(&last)?)?;
        let logits = logits.squeeze(1)?.to_dtype(DType::F32)?;
        let attention = match captured.is_empty() {
            true => None,
            false => Some(Tensor::stack(&captured, 0)?),
        };
        Ok(ForwardOutput { logits, attention })
    }
}
