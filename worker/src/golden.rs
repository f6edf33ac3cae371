//! Compares the engine on any device and dtype with a golden record made by
//! `tests/reference/make_golden.py` (transformers, eager attention, f32 on
//! CPU), and measures batch invariance on that device and dtype.
//!
//! This is how the attention tolerance of a GPU in bf16 is measured: the
//! same golden prompts, greedy decoding, every layer and head captured at
//! every step. Once a greedy token differs from the reference, the later
//! steps attend over other keys, so rows are compared only up to and
//! including the first step whose token differs.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::Engine;
use crate::capture::{CaptureSpec, CapturedStep};
use crate::generate::{GenerationRequest, GenerationSettings, SamplingParams};

/// The part of a `golden.json` file that the comparison reads.
#[derive(Debug, Clone, Deserialize)]
pub struct GoldenRecord {
    pub new_tokens: usize,
    pub cases: Vec<GoldenCase>,
    pub batch: GoldenBatch,
}

/// One prompt run alone.
#[derive(Debug, Clone, Deserialize)]
pub struct GoldenCase {
    pub name: String,
    pub input_ids: Vec<u32>,
    pub generated_ids: Vec<u32>,
    /// `[step][layer][head][key]`.
    pub attentions: Vec<Vec<Vec<Vec<f32>>>>,
}

/// Prompts of different lengths run as one left-padded batch.
#[derive(Debug, Clone, Deserialize)]
pub struct GoldenBatch {
    pub rows: Vec<GoldenBatchRow>,
}

/// One row of the golden batch, without its padding.
#[derive(Debug, Clone, Deserialize)]
pub struct GoldenBatchRow {
    pub input_ids: Vec<u32>,
    pub generated_ids: Vec<u32>,
    /// `[step][layer][head][key]`.
    pub attentions: Vec<Vec<Vec<Vec<f32>>>>,
}

impl GoldenRecord {
    /// Reads `golden.json` from the folder `dir`.
    pub fn read(dir: &Path) -> anyhow::Result<GoldenRecord> {
        if !dir.is_dir() {
            anyhow::bail!(
                "golden folder {} not found; pass a folder under tests/golden, such as \
                 tests/golden/llama3",
                dir.display()
            );
        }
        let path = dir.join("golden.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {}; pass a folder under tests/golden, such as tests/golden/llama3, \
                 or write one with tests/reference/make_golden.py",
                path.display()
            )
        })?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        if value.get("batch").is_none() {
            anyhow::bail!(
                "{} records only tokenization, with no generation to compare; pass the folder \
                 of a model record such as tests/golden/llama3",
                path.display()
            );
        }
        serde_json::from_value(value)
            .with_context(|| format!("{} is not a golden record", path.display()))
    }
}

/// The agreement of one run of a prompt with another run of it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RunComparison {
    /// Every greedy token is the same.
    pub tokens_match: bool,
    /// Steps whose rows were compared: up to and including the first step
    /// whose token differs.
    pub steps_compared: usize,
    /// Largest absolute difference of an attention probability: infinite
    /// (`null` in JSON) when a probability is NaN or the rows differ in
    /// shape.
    pub max_attention_diff: f32,
}

/// One golden prompt: the engine against the reference, and for batch rows
/// the row run alone against the same row in the padded batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromptComparison {
    pub name: String,
    pub reference: RunComparison,
    /// Only for rows of the golden batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alone_vs_batch: Option<RunComparison>,
}

/// Every golden prompt compared, with the maxima over them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GoldenComparison {
    pub device: String,
    pub dtype: String,
    pub prompts: Vec<PromptComparison>,
    /// Every greedy token of every prompt matches the reference.
    pub all_tokens_match: bool,
    pub max_attention_diff: f32,
    /// Largest difference between a batch row run alone and in the batch.
    pub max_batch_diff: f32,
    /// Batch rows whose greedy tokens change with the batch.
    pub batch_token_mismatches: usize,
}

/// `[step][layer][head][key]`.
type Rows = Vec<Vec<Vec<Vec<f32>>>>;

/// Runs every golden prompt on `engine` and compares it with `golden`.
pub fn compare_with_golden(
    engine: &Engine,
    golden: &GoldenRecord,
) -> anyhow::Result<GoldenComparison> {
    let mut prompts = Vec::new();
    for case in &golden.cases {
        let (tokens, rows) = greedy(
            engine,
            std::slice::from_ref(&case.input_ids),
            golden.new_tokens,
        )?
        .remove(0);
        prompts.push(PromptComparison {
            name: case.name.clone(),
            reference: compare_runs(&tokens, &rows, &case.generated_ids, &case.attentions),
            alone_vs_batch: None,
        });
    }

    let batch_prompts: Vec<Vec<u32>> = golden
        .batch
        .rows
        .iter()
        .map(|row| row.input_ids.clone())
        .collect();
    let batched = greedy(engine, &batch_prompts, golden.new_tokens)?;
    for (index, (row, (tokens, rows))) in golden.batch.rows.iter().zip(batched).enumerate() {
        let (alone_tokens, alone_rows) = greedy(
            engine,
            std::slice::from_ref(&row.input_ids),
            golden.new_tokens,
        )?
        .remove(0);
        prompts.push(PromptComparison {
            name: format!("batch row {index}"),
            reference: compare_runs(&tokens, &rows, &row.generated_ids, &row.attentions),
            alone_vs_batch: Some(compare_runs(&tokens, &rows, &alone_tokens, &alone_rows)),
        });
    }

    let fold_max = |values: &mut dyn Iterator<Item = f32>| values.fold(0.0_f32, f32::max);
    let max_attention_diff = fold_max(&mut prompts.iter().map(|p| p.reference.max_attention_diff));
    let batch: Vec<RunComparison> = prompts.iter().filter_map(|p| p.alone_vs_batch).collect();
    let max_batch_diff = fold_max(&mut batch.iter().map(|c| c.max_attention_diff));
    Ok(GoldenComparison {
        device: device_name(engine),
        dtype: format!("{:?}", engine.model().decoder.dtype()).to_lowercase(),
        all_tokens_match: prompts.iter().all(|p| p.reference.tokens_match),
        max_attention_diff,
        max_batch_diff,
        batch_token_mismatches: batch.iter().filter(|c| !c.tokens_match).count(),
        prompts,
    })
}

/// Compares run `got` with run `want`, rows only up to the first step whose
/// token differs (that step's query still saw the same keys).
pub fn compare_runs(
    got_tokens: &[u32],
    got_rows: &Rows,
    want_tokens: &[u32],
    want_rows: &Rows,
) -> RunComparison {
    let same_prefix = got_tokens
        .iter()
        .zip(want_tokens)
        .take_while(|(a, b)| a == b)
        .count();
    let tokens_match = got_tokens == want_tokens;
    let steps = (same_prefix + 1).min(got_rows.len()).min(want_rows.len());

    let mut max = 0.0_f32;
    for (step, (got, want)) in got_rows.iter().zip(want_rows).take(steps).enumerate() {
        // Rows of another shape attend over other keys: never a match.
        if got.len() != want.len() {
            tracing::warn!(
                step,
                got = got.len(),
                want = want.len(),
                "runs differ in layer count"
            );
            max = f32::INFINITY;
        }
        for (layer, (got, want)) in got.iter().zip(want).enumerate() {
            if got.len() != want.len() {
                tracing::warn!(
                    step,
                    layer,
                    got = got.len(),
                    want = want.len(),
                    "runs differ in head count"
                );
                max = f32::INFINITY;
            }
            for (head, (got, want)) in got.iter().zip(want).enumerate() {
                if got.len() != want.len() {
                    tracing::warn!(
                        step,
                        layer,
                        head,
                        got = got.len(),
                        want = want.len(),
                        "attention rows differ in length"
                    );
                    max = f32::INFINITY;
                }
                for (a, b) in got.iter().zip(want) {
                    // `f32::max` ignores NaN, so a NaN probability counts
                    // as an infinite difference.
                    let diff = (a - b).abs();
                    max = if diff.is_nan() {
                        f32::INFINITY
                    } else {
                        max.max(diff)
                    };
                }
            }
        }
    }
    RunComparison {
        tokens_match,
        steps_compared: steps,
        max_attention_diff: max,
    }
}

/// Greedy decoding of `new_tokens` tokens as one batch, with every layer
/// and head captured at every step.
fn greedy(
    engine: &Engine,
    prompts: &[Vec<u32>],
    new_tokens: usize,
) -> anyhow::Result<Vec<(Vec<u32>, Rows)>> {
    let config = engine.config();
    let settings = GenerationSettings {
        max_new_tokens: new_tokens,
        sampling: SamplingParams {
            temperature: 0.0,
            top_p: None,
            top_k: None,
        },
        stop_strings: Vec::new(),
        decision: None,
    };
    let capture = CaptureSpec {
        layers: (0..config.num_hidden_layers).collect(),
        heads: (0..config.num_attention_heads).collect(),
        first_steps: new_tokens,
        decision_step: false,
    };
    let requests: Vec<GenerationRequest> = prompts
        .iter()
        .map(|ids| GenerationRequest {
            prompt_ids: ids.clone(),
            seed: 0,
            capture: true,
        })
        .collect();
    let outputs = engine.generate_batch(&requests, &settings, &capture)?;
    Ok(outputs
        .into_iter()
        .map(|output| {
            let rows = nest(&output.captured, config.num_attention_heads);
            (output.token_ids, rows)
        })
        .collect())
}

/// Regroups captured steps into `[step][layer][head][key]`.
fn nest(steps: &[CapturedStep], heads: usize) -> Rows {
    steps
        .iter()
        .map(|step| {
            step.rows
                .chunks(heads)
                .map(|layer| layer.iter().map(|row| row.scores.clone()).collect())
                .collect()
        })
        .collect()
}

fn device_name(engine: &Engine) -> String {
    match engine.model().decoder.device().location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_string(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        other => format!("{other:?}"),
    }
}

/// Renders `comparison` as a table, one line per prompt.
pub fn render_table(comparison: &GoldenComparison) -> String {
    let mut out = format!(
        "{} {}: greedy tokens {} the reference; max attention difference {:.3e}; \
         batch rows against the same prompts alone: max difference {:.3e}, {} with other tokens\n",
        comparison.device,
        comparison.dtype,
        if comparison.all_tokens_match {
            "match"
        } else {
            "differ from"
        },
        comparison.max_attention_diff,
        comparison.max_batch_diff,
        comparison.batch_token_mismatches,
    );
    out.push_str("prompt                 tokens  steps  max diff    alone vs batch\n");
    for prompt in &comparison.prompts {
        let batch = prompt.alone_vs_batch.map_or(String::from("-"), |c| {
            format!(
                "{:.3e} ({})",
                c.max_attention_diff,
                if c.tokens_match {
                    "same tokens"
                } else {
                    "other tokens"
                }
            )
        });
        out.push_str(&format!(
            "{:<22} {:<7} {:>5}  {:<10.3e}  {}\n",
            prompt.name,
            if prompt.reference.tokens_match {
                "same"
            } else {
                "differ"
            },
            prompt.reference.steps_compared,
            prompt.reference.max_attention_diff,
            batch
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(values: &[f32]) -> Rows {
        values
            .iter()
            .map(|v| vec![vec![vec![*v, 1.0 - v]]])
            .collect()
    }

    #[test]
    fn identical_runs_compare_equal() {
        let run = rows(&[0.25, 0.5, 0.75]);
        let comparison = compare_runs(&[1, 2, 3], &run, &[1, 2, 3], &run);
        assert!(comparison.tokens_match);
        assert_eq!(comparison.steps_compared, 3);
        assert_eq!(comparison.max_attention_diff, 0.0);
    }

    #[test]
    fn rows_after_divergence_are_skipped() {
        let got = rows(&[0.25, 0.5, 0.0]);
        let want = rows(&[0.25, 0.4, 0.9]);
        // Step 1 emits another token, so step 2 attends over other keys.
        let comparison = compare_runs(&[1, 7, 3], &got, &[1, 2, 3], &want);
        assert!(!comparison.tokens_match);
        assert_eq!(comparison.steps_compared, 2);
        assert!((comparison.max_attention_diff - 0.1).abs() < 1e-6);
    }

    #[test]
    fn nan_probability_never_matches() {
        let got = vec![vec![vec![vec![f32::NAN, 0.5]]]];
        let want = vec![vec![vec![vec![0.5, 0.5]]]];
        let comparison = compare_runs(&[1], &got, &[1], &want);
        assert_eq!(comparison.max_attention_diff, f32::INFINITY);
    }

    #[test]
    fn missing_head_never_matches() {
        let got = vec![vec![vec![vec![0.5, 0.5]]]];
        let want = vec![vec![vec![vec![0.5, 0.5], vec![0.5, 0.5]]]];
        let comparison = compare_runs(&[1], &got, &[1], &want);
        assert_eq!(comparison.max_attention_diff, f32::INFINITY);
    }

    #[test]
    fn rows_of_other_lengths_never_match() {
        let got = vec![vec![vec![vec![0.5, 0.5]]]];
        let want = vec![vec![vec![vec![0.5, 0.25, 0.25]]]];
        let comparison = compare_runs(&[1], &got, &[1], &want);
        assert_eq!(comparison.max_attention_diff, f32::INFINITY);
    }
}
