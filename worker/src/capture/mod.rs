//! Attention capture: which layers, heads and decode steps to record, and
//! the recorded rows, with padding removed.

pub mod rows;
pub mod selection;
pub mod summary;

pub use rows::{AttentionRow, CapturedStep};
pub use selection::Selection;

use crate::model::ModelConfig;

/// The layers, heads and steps captured for requests with `capture` set.
///
/// Step 0 is the prefill's last query row, which produced the first
/// generated token. Step `k` is the query of generated token `k - 1`, which
/// produced token `k`. A row of step `k` covers the prompt plus `k`
/// generated keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CaptureSpec {
    /// Layer indices, ascending and distinct.
    pub layers: Vec<usize>,
    /// Query head indices, ascending and distinct.
    pub heads: Vec<usize>,
    /// Capture steps `0..first_steps`.
    pub first_steps: usize,
    /// Also capture the step that emits the first token of the decision
    /// label, when the response has one.
    pub decision_step: bool,
}

/// A capture request that does not fit the model.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(
        "capture layer {layer} does not exist: the model has {count} layers, 0 to {}; pick a smaller index",
        count.saturating_sub(1)
    )]
    Layer { layer: usize, count: usize },
    #[error(
        "capture head {head} does not exist: the model has {count} query heads, 0 to {}; pick a smaller index",
        count.saturating_sub(1)
    )]
    Head { head: usize, count: usize },
    /// An internal invariant broke: a pad key received attention.
    #[error(
        "layer {layer} head {head} gave attention {value} to pad column {column}; pad keys must get exactly zero"
    )]
    PaddingAttended {
        layer: usize,
        head: usize,
        column: usize,
        value: f32,
    },
}

impl CaptureSpec {
    /// Resolves layer and head selections against the model's sizes.
    pub fn new(
        config: &ModelConfig,
        layers: &Selection,
        heads: &Selection,
        first_steps: usize,
        decision_step: bool,
    ) -> Result<Self, CaptureError> {
        let spec = Self {
            layers: layers.resolve(config.num_hidden_layers),
            heads: heads.resolve(config.num_attention_heads),
            first_steps,
            decision_step,
        };
        spec.validate(config)?;
        Ok(spec)
    }

    /// Returns true when no step would be captured.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
            || self.heads.is_empty()
            || (self.first_steps == 0 && !self.decision_step)
    }

    /// Checks that every index exists in the model.
    pub fn validate(&self, config: &ModelConfig) -> Result<(), CaptureError> {
        let count = config.num_hidden_layers;
        if let Some(&layer) = self.layers.iter().find(|&&layer| layer >= count) {
            return Err(CaptureError::Layer { layer, count });
        }
        let count = config.num_attention_heads;
        if let Some(&head) = self.heads.iter().find(|&&head| head >= count) {
            return Err(CaptureError::Head { head, count });
        }
        Ok(())
    }
}
