//! Summaries of one attention row over a prompt: the top-k prompt tokens,
//! the attention mass per region and per template field, and the BOS mass.
//!
//! Identity: for a row over `prompt_len + step` keys,
//! `sum(region masses) + bos_mass + generated_mass == sum(row)`, which is 1
//! up to rounding for a softmax row. The BOS token (the usual attention
//! sink) is reported only in `bos_mass` and is not part of the
//! `chat_template` region mass nor of the top-k. Field masses are parts of
//! their regions' masses (a field token is also in the vignette).

use gaze_shared::layout::Region;

use crate::prompt::PromptTokens;

/// One prompt token among the most attended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopToken {
    /// Position in the prompt (0-based, BOS included in the count).
    pub position: usize,
    pub score: f32,
}

/// The attention mass on one template field's tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldMass {
    pub field: String,
    pub mass: f32,
    /// Number of prompt tokens mapped to this field (all its occurrences).
    pub tokens: usize,
    /// `mass / tokens`, comparable across fields of different token lengths.
    pub mass_per_token: f32,
}

/// A summary of one attention row (one layer and head, or an average).
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionSummary {
    /// The k highest-scoring prompt tokens, BOS excluded, by descending
    /// score; equal scores in ascending position.
    pub top_k: Vec<TopToken>,
    /// Mass per region in [`Region::ALL`] order, every region present (0 for
    /// regions without tokens); the BOS token counts in none of them.
    pub region_mass: Vec<(Region, f32)>,
    /// Mass per field, in order of the field's first token in the prompt.
    pub field_mass: Vec<FieldMass>,
    /// Mass on the BOS token; 0 for models without one.
    pub bos_mass: f32,
    /// Mass on the tokens generated before this step (keys past the prompt).
    pub generated_mass: f32,
}

/// Errors in the inputs of a summary.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SummaryError {
    #[error(
        "attention row has {row_len} keys but the prompt has {prompt_len} tokens; a row must \
         cover the whole prompt (prompt length + decode step keys)"
    )]
    RowTooShort { row_len: usize, prompt_len: usize },
}

/// Summarises one attention row over `prompt` (`row.len() == prompt.len() +
/// step`); `k` is the number of top tokens to keep (fewer if the prompt is
/// shorter). Sums run in f64 and are rounded to f32 once.
pub fn summarize(
    row: &[f32],
    prompt: &PromptTokens,
    k: usize,
) -> Result<AttentionSummary, SummaryError> {
    let prompt_len = prompt.len();
    if row.len() < prompt_len {
        return Err(SummaryError::RowTooShort {
            row_len: row.len(),
            prompt_len,
        });
    }

    Ok(AttentionSummary {
        top_k: top_k(row, prompt, k),
        region_mass: region_mass(row, prompt),
        field_mass: field_mass(row, prompt),
        bos_mass: prompt.bos_position.map_or(0.0, |p| row[p]),
        generated_mass: row[prompt_len..].iter().map(|&v| f64::from(v)).sum::<f64>() as f32,
    })
}

/// Returns the `k` highest-scoring prompt tokens except BOS; ties in ascending
/// position. NaN scores sort last.
pub fn top_k(row: &[f32], prompt: &PromptTokens, k: usize) -> Vec<TopToken> {
    let mut tokens: Vec<TopToken> = (0..prompt.len().min(row.len()))
        .filter(|&position| Some(position) != prompt.bos_position)
        .map(|position| TopToken {
            position,
            score: row[position],
        })
        .collect();
    tokens.sort_by(|a, b| {
        let by_score = match (a.score.is_nan(), b.score.is_nan()) {
            (false, false) => b.score.total_cmp(&a.score),
            (nan_a, nan_b) => nan_a.cmp(&nan_b),
        };
        by_score.then(a.position.cmp(&b.position))
    });
    tokens.truncate(k);
    tokens
}

/// Sums the attention mass per region over the prompt tokens, BOS excluded.
pub fn region_mass(row: &[f32], prompt: &PromptTokens) -> Vec<(Region, f32)> {
    let mut sums = [0.0f64; Region::ALL.len()];
    for token in &prompt.tokens {
        if Some(token.position) == prompt.bos_position {
            continue;
        }
        let slot = Region::ALL
            .iter()
            .position(|r| *r == token.region)
            .expect("Region::ALL lists every region");
        sums[slot] += f64::from(row[token.position]);
    }
    Region::ALL
        .iter()
        .zip(sums)
        .map(|(region, sum)| (*region, sum as f32))
        .collect()
}

/// Sums the attention mass per template field and counts its tokens.
pub fn field_mass(row: &[f32], prompt: &PromptTokens) -> Vec<FieldMass> {
    let mut fields: Vec<(String, f64, usize)> = Vec::new();
    for token in &prompt.tokens {
        let Some(field) = &token.field else { continue };
        let score = f64::from(row[token.position]);
        match fields.iter_mut().find(|(name, _, _)| name == field) {
            Some(entry) => {
                entry.1 += score;
                entry.2 += 1;
            }
            None => fields.push((field.clone(), score, 1)),
        }
    }
    fields
        .into_iter()
        .map(|(field, mass, tokens)| FieldMass {
            field,
            mass: mass as f32,
            tokens,
            mass_per_token: (mass / tokens as f64) as f32,
        })
        .collect()
}
