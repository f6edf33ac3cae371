//! Left padding of a batch's prompts and the position ids that go with it.
//!
//! Every prompt is right-aligned, so all rows generate their next token at
//! the same cache column. Position ids count each row's own tokens, as
//! transformers' `generate` computes them (`cumsum(attention_mask) - 1`),
//! so a prompt gets the same positions alone or padded in a batch.

/// Prompts right-aligned into one `(batch, max_len)` grid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftPadded {
    /// Row-major token ids, `batch * max_len`.
    pub ids: Vec<u32>,
    /// Per row, the number of pad tokens before its prompt.
    pub pads: Vec<usize>,
    pub max_len: usize,
}

/// Pads `prompts` on the left with `pad_id` to the longest one's length.
pub fn left_pad(prompts: &[&[u32]], pad_id: u32) -> LeftPadded {
    let max_len = prompts.iter().map(|prompt| prompt.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(prompts.len() * max_len);
    let mut pads = Vec::with_capacity(prompts.len());
    for prompt in prompts {
        let pad = max_len - prompt.len();
        ids.extend(std::iter::repeat_n(pad_id, pad));
        ids.extend_from_slice(prompt);
        pads.push(pad);
    }
    LeftPadded { ids, pads, max_len }
}

impl LeftPadded {
    /// Returns the prefill's position ids: `0..len` over each prompt's
    /// tokens, and 1 on pad tokens, as transformers fills them.
    pub fn positions(&self) -> Vec<Vec<u32>> {
        self.pads
            .iter()
            .map(|&pad| {
                let pads = std::iter::repeat_n(1, pad);
                pads.chain(0..(self.max_len - pad) as u32).collect()
            })
            .collect()
    }
}

/// Returns the number of leading columns that every row pads, which the
/// cache can stop showing to later queries.
pub fn shared_padding(pads: &[usize]) -> usize {
    pads.iter().copied().min().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorter_prompts_padded_on_left() {
        let batch = left_pad(&[&[5, 6, 7], &[8]], 0);
        assert_eq!(batch.ids, vec![5, 6, 7, 0, 0, 8]);
        assert_eq!(batch.pads, vec![0, 2]);
        assert_eq!(batch.max_len, 3);
    }

    #[test]
    fn positions_count_own_tokens_only() {
        let batch = left_pad(&[&[5, 6, 7], &[8]], 0);
        assert_eq!(batch.positions(), vec![vec![0, 1, 2], vec![1, 1, 0]]);
    }

    #[test]
    fn shared_padding_is_smallest_pad() {
        assert_eq!(shared_padding(&[3, 1, 2]), 1);
    }
}
