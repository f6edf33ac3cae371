//! The `[generation]` section: decoding settings shared by every sample.

use serde::{Deserialize, Serialize};

use super::error::{Checker, ConfigError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationConfig {
    /// Maximum number of generated tokens per sample, at least 1.
    #[serde(default = "default_max_new_tokens")]
    pub max_new_tokens: usize,
    /// Softmax temperature; 0 means greedy decoding.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// Nucleus sampling mass in (0, 1]; 1.0 turns it off.
    #[serde(default = "default_top_p")]
    pub top_p: f64,
    /// Keep only the k most likely tokens; 0 turns it off.
    #[serde(default)]
    pub top_k: usize,
    /// Generation stops after any of these strings; they stay in the response.
    #[serde(default)]
    pub stop: Vec<String>,
    /// Prompts per forward pass. It does not change any sample's result, so
    /// it is left out of the study's fingerprint.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
}

fn default_max_new_tokens() -> usize {
    64
}

fn default_temperature() -> f64 {
    1.0
}

fn default_top_p() -> f64 {
    1.0
}

fn default_batch_size() -> usize {
    8
}

impl GenerationConfig {
    pub(crate) fn validate(&self, check: &Checker) -> Result<(), ConfigError> {
        if self.max_new_tokens == 0 {
            return Err(check.invalid("generation.max_new_tokens", 0, "set it to at least 1"));
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(check.invalid(
                "generation.temperature",
                self.temperature,
                "set it to 0 for greedy decoding or a positive number such as 0.7",
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(check.invalid(
                "generation.top_p",
                self.top_p,
                "set it above 0 and at most 1 (1.0 turns nucleus sampling off)",
            ));
        }
        if let Some(index) = self.stop.iter().position(String::is_empty) {
            return Err(check.invalid(
                format!("generation.stop[{index}]"),
                "\"\"",
                "an empty stop string would end every response at once; remove it",
            ));
        }
        if self.batch_size == 0 {
            return Err(check.invalid("generation.batch_size", 0, "set it to at least 1"));
        }
        Ok(())
    }
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: default_max_new_tokens(),
            temperature: default_temperature(),
            top_p: default_top_p(),
            top_k: 0,
            stop: Vec::new(),
            batch_size: default_batch_size(),
        }
    }
}
