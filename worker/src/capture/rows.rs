//! Captured attention rows: the host copy of one forward pass's
//! probabilities and each sample's rows with its padding removed.

use candle_core::{Device, Tensor};

use super::{CaptureError, CaptureSpec};

/// One query head's attention probabilities at one step.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionRow {
    pub layer: usize,
    pub head: usize,
    /// The key/value head this query head reads (GQA).
    pub kv_head: usize,
    /// One probability per key: the unpadded prompt, then the generated
    /// tokens before this step. Sums to 1 up to rounding.
    pub scores: Vec<f32>,
}

/// The captured rows of one decode step of one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedStep {
    pub step: usize,
    /// The token this step's query produced.
    pub token_id: u32,
    /// Ordered by layer, then head, as in the [`CaptureSpec`].
    pub rows: Vec<AttentionRow>,
}

/// The captured probabilities of one forward pass, copied to the host:
/// `(layers, rows, heads, kv_len)` over the visible cache columns.
#[derive(Debug)]
pub struct StepAttention {
    values: Vec<f32>,
    rows: usize,
    heads: usize,
    kv_len: usize,
}

impl StepAttention {
    /// Copies `attention`, `(layers, rows, heads, kv_len)` f32, to the host.
    pub fn from_tensor(attention: &Tensor) -> candle_core::Result<Self> {
        let (_, rows, heads, kv_len) = attention.dims4()?;
        let values = attention
            .to_device(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(Self {
            values,
            rows,
            heads,
            kv_len,
        })
    }

    /// Returns the rows of batch row `row`, whose first `pad` columns are
    /// padding, with those columns removed. Fails if a pad column contains
    /// anything but exactly zero.
    pub fn unpadded(
        &self,
        row: usize,
        pad: usize,
        spec: &CaptureSpec,
        kv_head_of: impl Fn(usize) -> usize,
    ) -> Result<Vec<AttentionRow>, CaptureError> {
        let mut out = Vec::with_capacity(spec.layers.len() * spec.heads.len());
        for (layer_index, &layer) in spec.layers.iter().enumerate() {
            for (head_index, &head) in spec.heads.iter().enumerate() {
                let offset =
                    ((layer_index * self.rows + row) * self.heads + head_index) * self.kv_len;
                let values = &self.values[offset..offset + self.kv_len];
                if let Some(column) = values[..pad].iter().position(|&value| value != 0.0) {
                    let value = values[column];
                    return Err(CaptureError::PaddingAttended {
                        layer,
                        head,
                        column,
                        value,
                    });
                }
                let scores = values[pad..].to_vec();
                out.push(AttentionRow {
                    layer,
                    head,
                    kv_head: kv_head_of(head),
                    scores,
                });
            }
        }
        Ok(out)
    }
}
