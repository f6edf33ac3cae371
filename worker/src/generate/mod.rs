//! Generation: batches of prompts decoded with seeded sampling, stopped by
//! EOS, stop strings or length, with each response's decision parsed and
//! the requested attention rows captured.

pub mod batch;
pub mod decision;
pub mod error;
pub mod fallback;
pub mod response;
pub mod run;
pub mod sampling;
pub mod stop;

use std::time::Duration;

pub use decision::{DecisionParser, DecisionSpec, DecisionStatus, LabelProbabilities, LabelTokens};
pub use error::GenerateError;
pub use sampling::SamplingParams;
pub use stop::StopReason;

use crate::capture::CapturedStep;

/// One sample to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationRequest {
    /// The prompt's token ids, with any BOS already in place.
    pub prompt_ids: Vec<u32>,
    /// Seeds this sample's sampler; the same seed and prompt give the same
    /// tokens in any batch.
    pub seed: u64,
    /// Whether to capture attention rows for this sample.
    pub capture: bool,
}

/// Settings shared by every sample of a call.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationSettings {
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation stops once the response text contains one of these.
    pub stop_strings: Vec<String>,
    /// How to find the decision in the response; `None` skips parsing.
    pub decision: Option<DecisionSpec>,
}

/// The decision found in a response.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionOutcome {
    pub status: DecisionStatus,
    /// The label, when `status` is `Parsed`.
    pub label: Option<String>,
    /// The step that emitted the label's first token, when `status` is
    /// `Parsed`. It is 0 when the response starts with the label, as after
    /// an assistant prefix such as `DECISION:`.
    pub step: Option<usize>,
    /// The labels' probabilities at `step`; `None` without a step or when
    /// a label has no first token of its own.
    pub label_probabilities: Option<LabelProbabilities>,
}

/// Wall-clock time of one sample's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timings {
    /// Rows in the batch at its prefill.
    pub batch_size: usize,
    /// The prefill of the whole batch.
    pub prefill: Duration,
    /// From the end of the prefill until this sample stopped.
    pub decode: Duration,
}

/// The result of one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationOutput {
    /// The generated ids, ending with the EOS id when `stop_reason` is EOS.
    pub token_ids: Vec<u32>,
    /// The generated ids decoded with special tokens skipped.
    pub text: String,
    pub stop_reason: StopReason,
    /// Captured steps, ascending: the first steps, then the decision step
    /// if it came later. Empty when the request did not ask for capture.
    pub captured: Vec<CapturedStep>,
    /// `None` when the settings name no decision labels.
    pub decision: Option<DecisionOutcome>,
    pub timings: Timings,
}
