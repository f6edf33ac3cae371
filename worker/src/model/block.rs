//! One decoder layer: pre-norm attention and pre-norm MLP, each added to
//! the residual stream.

use candle_core::{Module, Result, Tensor};
use candle_nn::RmsNorm;

use super::attention::{Attention, AttentionInput};
use super::kv_cache::KvCache;
use super::mlp::Mlp;

#[derive(Debug, Clone)]
pub struct Block {
    pub(crate) input_layernorm: RmsNorm,
    pub(crate) self_attn: Attention,
    pub(crate) post_attention_layernorm: RmsNorm,
    pub(crate) mlp: Mlp,
    /// The sliding attention window of this layer, if any.
    pub(crate) sliding_window: Option<usize>,
}

impl Block {
    /// Runs the layer on `x`, `(batch, new_len, hidden)`; see
    /// [`Attention::forward`].
    pub fn forward(
        &self,
        x: &Tensor,
        input: &AttentionInput,
        cache: &mut KvCache,
        layer: usize,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let normed = self.input_layernorm.forward(x)?;
        let (attended, captured) = self.self_attn.forward(&normed, input, cache, layer)?;
        let x = (x + attended)?;
        let normed = self.post_attention_layernorm.forward(&x)?;
        let x = (&x + self.mlp.forward(&normed)?)?;
        Ok((x, captured))
    }
}
