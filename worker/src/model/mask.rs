//! Additive attention masks for a left-padded batch: causal, per-row
//! padding, and an optional sliding window.
//!
//! Masked entries get `f32::MIN`, a large finite value, never `-inf`. A
//! query whose keys are all masked (a pad token's own row) then gets a
//! uniform, finite row instead of NaN, which could otherwise reach other
//! rows through the values at its position. The mask is added to the scores in f32, so an
//! unmasked key scores exactly as without a mask.

use candle_core::{Device, Result, Tensor};

/// The value added to the score of a masked key.
pub const MASKED: f32 = f32::MIN;

/// The placement of one forward pass's queries among the visible key
/// columns.
#[derive(Debug, Clone)]
pub struct MaskLayout {
    /// Per batch row, the number of leading visible columns that are padding.
    pub pads: Vec<usize>,
    /// Visible columns cached before this pass; query `i` sits at column
    /// `past_len + i`.
    pub past_len: usize,
    /// Queries in this pass (the padded prompt length at prefill, 1 after).
    pub new_len: usize,
}

impl MaskLayout {
    /// Builds the mask, shape `(batch, 1, new_len, past_len + new_len)` in
    /// f32: key column `j` is open to the query at column `q` when `j` is
    /// not padding of that row, `j <= q`, and `q - j < window` if a window
    /// is set (transformers' sliding window rule).
    pub fn mask(&self, window: Option<usize>, device: &Device) -> Result<Tensor> {
        let kv_len = self.past_len + self.new_len;
        let batch = self.pads.len();
        let mut values = Vec::with_capacity(batch * self.new_len * kv_len);
        for &pad in &self.pads {
            for i in 0..self.new_len {
                let query = self.past_len + i;
                for key in 0..kv_len {
                    let open = key >= pad
                        && key <= query
                        && window.is_none_or(|window| query - key < window);
                    values.push(if open { 0.0 } else { MASKED });
                }
            }
        }
        Tensor::from_vec(values, (batch, 1, self.new_len, kv_len), device)
    }
}

/// The masks of one forward pass, one per distinct sliding window among the
/// layers.
#[derive(Debug)]
pub struct AttentionMasks {
    masks: Vec<(Option<usize>, Tensor)>,
}

impl AttentionMasks {
    /// Builds one mask for each distinct entry of `windows` (per layer).
    pub fn new(layout: &MaskLayout, windows: &[Option<usize>], device: &Device) -> Result<Self> {
        let mut masks: Vec<(Option<usize>, Tensor)> = Vec::new();
        for &window in windows {
            if !masks.iter().any(|(w, _)| *w == window) {
                masks.push((window, layout.mask(window, device)?));
            }
        }
        Ok(Self { masks })
    }

    /// Returns the mask for layers with sliding window `window`.
    pub fn get(&self, window: Option<usize>) -> &Tensor {
        &self
            .masks
            .iter()
            .find(|(w, _)| *w == window)
            .expect("AttentionMasks::new built a mask for every layer's window")
            .1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(layout: &MaskLayout, window: Option<usize>) -> Vec<Vec<Vec<f32>>> {
        layout
            .mask(window, &Device::Cpu)
            .unwrap()
            .squeeze(1)
            .unwrap()
            .to_vec3()
            .unwrap()
    }

    #[test]
    fn prefill_mask_is_causal_and_hides_padding() {
        let layout = MaskLayout {
            pads: vec![0, 2],
            past_len: 0,
            new_len: 3,
        };
        let mask = rows(&layout, None);
        let m = MASKED;
        assert_eq!(
            mask[0],
            vec![vec![0.0, m, m], vec![0.0, 0.0, m], vec![0.0, 0.0, 0.0]]
        );
        assert_eq!(mask[1], vec![vec![m, m, m], vec![m, m, m], vec![m, m, 0.0]]);
    }

    #[test]
    fn decode_mask_opens_all_past_columns_but_padding() {
        let layout = MaskLayout {
            pads: vec![1, 0],
            past_len: 3,
            new_len: 1,
        };
        let mask = rows(&layout, None);
        assert_eq!(mask[0], vec![vec![MASKED, 0.0, 0.0, 0.0]]);
        assert_eq!(mask[1], vec![vec![0.0, 0.0, 0.0, 0.0]]);
    }

    #[test]
    fn sliding_window_hides_keys_too_far_back() {
        let layout = MaskLayout {
            pads: vec![0],
            past_len: 3,
            new_len: 1,
        };
        let mask = rows(&layout, Some(2));
        assert_eq!(mask[0], vec![vec![MASKED, MASKED, 0.0, 0.0]]);
    }

    #[test]
    fn masks_built_once_per_distinct_window() {
        let layout = MaskLayout {
            pads: vec![0],
            past_len: 0,
            new_len: 2,
        };
        let masks = AttentionMasks::new(&layout, &[None, Some(1), None], &Device::Cpu).unwrap();
        assert_eq!(masks.masks.len(), 2);
        let windowed = masks
            .get(Some(1))
            .squeeze(1)
            .unwrap()
            .to_vec3::<f32>()
            .unwrap();
        assert_eq!(windowed[0][1], vec![MASKED, 0.0]);
    }
}
