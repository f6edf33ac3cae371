//! Seeded token sampling: one candle `LogitsProcessor` per sample, with
//! temperature, top-k and top-p applied as transformers' warpers do.

use candle_core::{Result, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};

/// Sampling parameters shared by a batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// 0 (or below 1e-7) picks the most likely token (greedy decoding).
    pub temperature: f64,
    /// Nucleus sampling: keep the most likely tokens whose probabilities
    /// sum to at least `top_p`. `None` or 1.0 keeps all.
    pub top_p: Option<f64>,
    /// Keep the `top_k` most likely tokens (ties with the last one kept).
    /// `None` or 0 keeps all.
    pub top_k: Option<usize>,
}

/// The token sampler of one sample. Its random stream depends only on the
/// seed and the number of tokens drawn, never on the batch.
pub struct Sampler {
    processor: LogitsProcessor,
    params: SamplingParams,
}

impl Sampler {
    pub fn new(seed: u64, params: SamplingParams) -> Self {
        let sampling = if params.temperature < 1e-7 {
            Sampling::ArgMax
        } else {
            Sampling::All {
                temperature: params.temperature,
            }
        };
        Self {
            processor: LogitsProcessor::from_sampling(seed, sampling),
            params,
        }
    }

    /// Draws the next token from `logits`, one row of `vocab` f32 values.
    pub fn sample(&mut self, logits: &Tensor) -> Result<u32> {
        let params = self.params;
        self.processor.sample_f(logits, |probs| {
            if let Some(k) = params.top_k.filter(|&k| k > 0) {
                keep_top_k(probs, k);
            }
            if let Some(p) = params.top_p.filter(|&p| p < 1.0) {
                keep_top_p(probs, p);
            }
        })
    }
}

/// Zeroes every probability below the `k`-th largest, as transformers'
/// `TopKLogitsWarper` does (ties with the `k`-th are kept).
pub fn keep_top_k(probs: &mut [f32], k: usize) {
    if k >= probs.len() {
        return;
    }
    let mut sorted = probs.to_vec();
    sorted.sort_unstable_by(|a, b| b.total_cmp(a));
    let threshold = sorted[k - 1];
    for p in probs.iter_mut().filter(|p| **p < threshold) {
        *p = 0.0;
    }
}

/// Zeroes the least likely tokens whose probabilities, renormalised over
/// the tokens still kept, sum to at most `1 - top_p`, keeping at least the
/// most likely token, as transformers' `TopPLogitsWarper` does.
pub fn keep_top_p(probs: &mut [f32], top_p: f64) {
    let total: f64 = probs.iter().map(|&p| p as f64).sum();
    if total <= 0.0 {
        return;
    }
    let mut order: Vec<usize> = (0..probs.len()).filter(|&i| probs[i] > 0.0).collect();
    order.sort_unstable_by(|&a, &b| probs[a].total_cmp(&probs[b]));
    let Some((_, smaller)) = order.split_last() else {
        return;
    };
    let mut cumulative = 0.0;
    for &index in smaller {
        cumulative += probs[index] as f64 / total;
        if cumulative > 1.0 - top_p {
            break;
        }
        probs[index] = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn top_k_keeps_ties_with_kth() {
        let mut probs = vec![0.1, 0.4, 0.2, 0.2, 0.1];
        keep_top_k(&mut probs, 2);
        assert_eq!(probs, vec![0.0, 0.4, 0.2, 0.2, 0.0]);
    }

    #[test]
    fn top_p_drops_tail_below_one_minus_p() {
        // Ascending: 0.05, 0.15, 0.3, 0.5; cumulative 0.05, 0.2, 0.5, 1.0.
        // With top_p 0.75 the tokens whose cumulative mass is <= 0.25 go.
        let mut probs = vec![0.3, 0.05, 0.5, 0.15];
        keep_top_p(&mut probs, 0.75);
        assert_eq!(probs, vec![0.3, 0.0, 0.5, 0.0]);
    }

    #[test]
    fn top_p_keeps_most_likely_token() {
        let mut probs = vec![0.2, 0.8];
        keep_top_p(&mut probs, 0.0);
        assert_eq!(probs, vec![0.0, 0.8]);
    }

    #[test]
    fn top_p_renormalises_after_top_k() {
        // After top-k the kept mass is 0.6, so token 1 has 1/6 of it, which
        // is above 1 - 0.85. It stays, though its raw 0.1 is below 0.15.
        let mut probs = vec![0.5, 0.1, 0.0, 0.0];
        keep_top_p(&mut probs, 0.85);
        assert_eq!(probs, vec![0.5, 0.1, 0.0, 0.0]);
    }

    #[test]
    fn zero_temperature_is_greedy() {
        let logits = Tensor::new(&[0.1_f32, 2.0, 1.9], &Device::Cpu).unwrap();
        let params = SamplingParams {
            temperature: 0.0,
            top_p: None,
            top_k: None,
        };
        let mut sampler = Sampler::new(3, params);
        assert_eq!(sampler.sample(&logits).unwrap(), 1);
    }

    #[test]
    fn same_seed_draws_same_tokens() {
        let logits = Tensor::new(&[0.0_f32, 0.1, 0.2, 0.3, 0.4, 0.5], &Device::Cpu).unwrap();
        let params = SamplingParams {
            temperature: 1.0,
            top_p: Some(0.9),
            top_k: Some(5),
        };
        let draw = |seed| {
            let mut sampler = Sampler::new(seed, params);
            (0..20)
                .map(|_| sampler.sample(&logits).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(11), draw(11));
        assert_ne!(draw(11), draw(12));
    }
}
