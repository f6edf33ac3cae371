//! The engine: a loaded model and the entry point that generates batches
//! of samples with attention capture.

use std::path::Path;

use candle_core::Device;
use tokenizers::Tokenizer;

use crate::capture::CaptureSpec;
use crate::generate::fallback::run_with_fallback;
use crate::generate::run::{Plan, run_batch};
use crate::generate::{GenerateError, GenerationOutput, GenerationRequest, GenerationSettings};
use crate::model::special_tokens::SpecialTokens;
use crate::model::{DTypeChoice, LoadedModel, ModelConfig, ModelError};

/// A model ready to generate. Generation takes `&self`: each call owns its
/// KV cache, so one engine can serve calls one after another without state
/// carried between them.
#[derive(Debug, Clone)]
pub struct Engine {
    model: LoadedModel,
}

impl Engine {
    /// Loads the model folder `dir` onto `device`.
    pub fn load(dir: &Path, dtype: DTypeChoice, device: &Device) -> Result<Self, ModelError> {
        Ok(Self {
            model: LoadedModel::load(dir, dtype, device)?,
        })
    }

    pub fn from_model(model: LoadedModel) -> Self {
        Self { model }
    }

    pub fn model(&self) -> &LoadedModel {
        &self.model
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.model.tokenizer
    }

    pub fn config(&self) -> &ModelConfig {
        self.model.decoder.config()
    }

    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.model.special_tokens
    }

    /// Returns the chat template from `chat_template.jinja` or
    /// `tokenizer_config.json`, if the model has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.model.special_tokens.chat_template.as_deref()
    }

    /// Generates every request, in one batch if it fits. A failed batch is
    /// retried in halves down to single samples (see
    /// [`run_with_fallback`]); outputs are in request order either way.
    pub fn generate(
        &self,
        requests: &[GenerationRequest],
        settings: &GenerationSettings,
        capture: &CaptureSpec,
    ) -> Result<Vec<GenerationOutput>, GenerateError> {
        let plan = Plan::new(&self.model, settings, capture)?;
        run_with_fallback(requests, &mut |batch| run_batch(&self.model, batch, &plan))
    }

    /// Generates `requests` as exactly one batch, without retries.
    pub fn generate_batch(
        &self,
        requests: &[GenerationRequest],
        settings: &GenerationSettings,
        capture: &CaptureSpec,
    ) -> Result<Vec<GenerationOutput>, GenerateError> {
        let plan = Plan::new(&self.model, settings, capture)?;
        run_batch(&self.model, requests, &plan)
    }
}
