//! Multi-head self-attention with grouped key/value heads (GQA), computed
//! as transformers' eager attention does, with the last query row's
//! probabilities available for capture.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::Linear;
use candle_nn::rotary_emb::rope;

use super::kv_cache::KvCache;

/// The per-pass inputs of one attention layer besides the hidden states.
#[derive(Debug, Clone, Copy)]
pub struct AttentionInput<'a> {
    /// Rotary tables, `(batch, new_len, head_dim / 2)` each.
    pub cos: &'a Tensor,
    pub sin: &'a Tensor,
    /// Additive f32 mask, `(batch, 1, new_len, kv_len)`, over the visible
    /// cache columns after this pass.
    pub mask: &'a Tensor,
    /// Query head indices (u32) whose last-row probabilities to return.
    pub capture_heads: Option<&'a Tensor>,
}

/// The projections of one attention layer and its head layout.
#[derive(Debug, Clone)]
pub struct Attention {
    pub(crate) q_proj: Linear,
    pub(crate) k_proj: Linear,
    pub(crate) v_proj: Linear,
    pub(crate) o_proj: Linear,
    pub(crate) num_heads: usize,
    pub(crate) num_kv_heads: usize,
    pub(crate) head_dim: usize,
}

impl Attention {
    /// Runs attention for `x`, `(batch, new_len, hidden)`, appending its
    /// keys and values to `cache` as layer `layer`.
    ///
    /// The scores are computed in the model dtype, scaled by
    /// `head_dim^-0.5`, masked and normalised with a softmax in f32, then
    /// cast back for the product with the values. With
    /// `input.capture_heads` set, also returns the f32 probabilities of the
    /// last query row for those heads, `(batch, heads, kv_len)`.
    pub fn forward(
        &self,
        x: &Tensor,
        input: &AttentionInput,
        cache: &mut KvCache,
        layer: usize,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (batch, new_len, _) = x.dims3()?;
        let heads = |t: Tensor, n: usize| {
            t.reshape((batch, new_len, n, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = heads(self.q_proj.forward(x)?, self.num_heads)?;
        let k = heads(self.k_proj.forward(x)?, self.num_kv_heads)?;
        let v = heads(self.v_proj.forward(x)?, self.num_kv_heads)?;
        let q = rope(&q, input.cos, input.sin)?;
        let k = rope(&k, input.cos, input.sin)?;
        let (k, v) = cache.append(layer, &k, &v)?;
        let kv_len = k.dim(2)?;

        // GQA without copying keys and values: the query heads of one group
        // are adjacent, so folding them into the row dimension lets each
        // group's queries multiply its single key/value head directly.
        let group = self.num_heads / self.num_kv_heads;
        let q = q.reshape((batch, self.num_kv_heads, group * new_len, self.head_dim))?;
        let scale = (self.head_dim as f64).powf(-0.5);
        let scores = (q.matmul(&k.t()?)? * scale)?;
        let scores = scores.reshape((batch, self.num_heads, new_len, kv_len))?;
        // NOTE: at prefill this materialises `(batch, heads, new_len, kv_len)`
        // f32 scores in every layer, as eager attention does; memory grows
        // with the square of the prompt length, and a failed batch is
        // retried smaller by the caller.
        let scores = scores.to_dtype(DType::F32)?.broadcast_add(input.mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;

        let captured = match input.capture_heads {
            Some(heads) => {
                let last_row = probs.narrow(2, new_len - 1, 1)?.squeeze(2)?.contiguous()?;
                Some(last_row.index_select(heads, 1)?)
            }
            None => None,
        };

        let probs = probs.to_dtype(v.dtype())?;
        let probs = probs.reshape((batch, self.num_kv_heads, group * new_len, kv_len))?;
        let out = probs.matmul(&v)?;
        let out = out
            .reshape((batch, self.num_heads, new_len, self.head_dim))?
            .transpose(1, 2)?
            .reshape((batch, new_len, self.num_heads * self.head_dim))?;
        Ok((self.o_proj.forward(&out)?, captured))
    }
}
