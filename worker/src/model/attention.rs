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
    ///
    /// NOTE: the mask is built whole, outside the score budget: 4 bytes per
    /// prompt row and key, such as 4 GiB for 16 prompts of 8,192 tokens.
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
    /// The maximum count of f32 scores held at once: a prefill whose
    /// `(batch, heads, new_len, kv_len)` scores exceed it is computed in
    /// blocks of query rows. [`SCORE_BUDGET`] unless set with
    /// `Decoder::set_score_budget`.
    pub(crate) score_budget: usize,
}

impl Attention {
    /// Runs attention for `x`, `(batch, new_len, hidden)`, appending its
    /// keys and values to `cache` as layer `layer`.
    ///
    /// The scores are computed in the model dtype, scaled by
    /// `head_dim^-0.5`, masked and normalised with a softmax in f32, then
    /// cast back for the product with the values. A prefill computes them in
    /// blocks of query rows, so that each score tensor holds at most
    /// `score_budget` values (or one row per head, if that is more). With
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

        let rows = query_block_rows(batch, self.num_heads, kv_len, self.score_budget);
        let mut outputs = Vec::with_capacity(new_len.div_ceil(rows));
        let mut captured = None;
        let mut start = 0;
        while start < new_len {
            let len = rows.min(new_len - start);
            let mask = input.mask.narrow(2, start, len)?;
            let last = start + len == new_len;
            let capture_heads = if last { input.capture_heads } else { None };
            let block = q.narrow(2, start, len)?;
            let (out, probs) = self.attend(&block, &k, &v, &mask, capture_heads)?;
            outputs.push(out);
            captured = probs;
            start += len;
        }
        let out = Tensor::cat(&outputs, 2)?;
        let out = out
            .transpose(1, 2)?
            .reshape((batch, new_len, self.num_heads * self.head_dim))?;
        Ok((self.o_proj.forward(&out)?, captured))
    }

    /// Attends the query rows `q`, `(batch, heads, rows, head_dim)`, over
    /// every key, and returns `(batch, heads, rows, head_dim)` and the
    /// captured probabilities of the last row.
    fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: &Tensor,
        capture_heads: Option<&Tensor>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (batch, _, rows, _) = q.dims4()?;
        let kv_len = k.dim(2)?;

        // GQA without copying keys and values: the query heads of one group
        // are adjacent, so folding them into the row dimension lets each
        // group's queries multiply its single key/value head directly.
        let group = self.num_heads / self.num_kv_heads;
        let q = q
            .contiguous()?
            .reshape((batch, self.num_kv_heads, group * rows, self.head_dim))?;
        let scale = (self.head_dim as f64).powf(-0.5);
        // Each assignment frees the previous tensor, so at most two
        // score-sized tensors exist at a time.
        let mut scores = (q.matmul(&k.t()?)? * scale)?;
        scores = scores.reshape((batch, self.num_heads, rows, kv_len))?;
        scores = scores.to_dtype(DType::F32)?;
        scores = scores.broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        drop(scores);

        let captured = match capture_heads {
            Some(heads) => {
                let last_row = probs.narrow(2, rows - 1, 1)?.squeeze(2)?.contiguous()?;
                Some(last_row.index_select(heads, 1)?)
            }
            None => None,
        };

        let probs =
            probs
                .to_dtype(v.dtype())?
                .reshape((batch, self.num_kv_heads, group * rows, kv_len))?;
        let out = probs.matmul(v)?;
        Ok((
            out.reshape((batch, self.num_heads, rows, self.head_dim))?,
            captured,
        ))
    }
}

/// Default budget of attention scores in one block of query rows: 2^26.
/// A block holds at most two score-sized tensors at a time, so in f32 it
/// needs up to 512 MiB besides the mask.
pub const SCORE_BUDGET: usize = 1 << 26;

/// Returns how many query rows fit `budget` scores at once, at least one.
fn query_block_rows(batch: usize, heads: usize, kv_len: usize, budget: usize) -> usize {
    (budget / (batch * heads * kv_len).max(1)).max(1)
}
