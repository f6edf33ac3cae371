//! The `[design]` section: how many samples, which fields are strata, and
//! the seed that makes the plan reproducible.

use serde::{Deserialize, Serialize};

use super::error::{Checker, ConfigError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesignConfig {
    /// Number of samples in the plan. May be left out when
    /// `samples_per_cell` is set; when both are set they must agree.
    #[serde(default)]
    pub total_samples: Option<u64>,
    /// Vignette fields whose values form the strata; the topic is always one.
    #[serde(default)]
    pub stratify: Vec<String>,
    /// When above 0, requests the full factorial with this many samples in
    /// every cell.
    #[serde(default)]
    pub samples_per_cell: u64,
    /// Seed of every random draw in the plan.
    pub seed: u64,
}

impl DesignConfig {
    pub(crate) fn validate(&self, check: &Checker) -> Result<(), ConfigError> {
        match self.total_samples {
            Some(0) => {
                return Err(check.invalid(
                    "design.total_samples",
                    0,
                    "set it to the number of samples to draw, at least 1",
                ));
            }
            None if self.samples_per_cell == 0 => {
                return Err(check.invalid(
                    "design.total_samples",
                    "(missing)",
                    "set design.total_samples, or design.samples_per_cell for a full factorial",
                ));
            }
            _ => {}
        }

        let mut seen = std::collections::BTreeSet::new();
        for field in &self.stratify {
            if field == "topic" {
                return Err(check.invalid(
                    "design.stratify",
                    "\"topic\"",
                    "the topic is always a stratum; remove it from the list",
                ));
            }
            if !seen.insert(field) {
                return Err(check.invalid(
                    "design.stratify",
                    format!("{field:?}"),
                    "each field may appear once; remove the repeated entry",
                ));
            }
        }
        Ok(())
    }
}
