//! The `[prompt]` section: the system message, the user message that wraps
//! each vignette, and how the two become the model's input.

use serde::{Deserialize, Serialize};

use super::error::{Checker, ConfigError};

/// The placeholder in [`PromptConfig::user`] that each filled vignette replaces.
pub const VIGNETTE_PLACEHOLDER: &str = "{vignette}";

/// The raw template used when `template = "raw"` and `raw_template` is not set.
pub const DEFAULT_RAW_TEMPLATE: &str = "{system}\n\n{user}\n\n{assistant_prefix}";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptConfig {
    pub system: String,
    /// The user message; contains [`VIGNETTE_PLACEHOLDER`] exactly once.
    /// Everything else in it is literal text.
    pub user: String,
    /// Text the assistant's turn starts with; the response follows it.
    #[serde(default)]
    pub assistant_prefix: String,
    #[serde(default)]
    pub template: TemplateKind,
    /// Used when `template = "raw"`: `{system}`, `{user}` and
    /// `{assistant_prefix}` are replaced, `{user}` must appear exactly once.
    #[serde(default = "default_raw_template")]
    pub raw_template: String,
}

/// The way the system and user messages become one prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplateKind {
    /// The model's own chat template from `tokenizer_config.json`.
    #[default]
    Chat,
    /// [`PromptConfig::raw_template`], for base models without a chat template.
    Raw,
}

fn default_raw_template() -> String {
    DEFAULT_RAW_TEMPLATE.to_string()
}

impl PromptConfig {
    /// Returns the user message's text before and after `{vignette}`.
    pub fn user_parts(&self) -> (&str, &str) {
        self.user
            .split_once(VIGNETTE_PLACEHOLDER)
            .expect("validated: prompt.user contains {vignette}")
    }

    pub(crate) fn validate(&self, check: &Checker) -> Result<(), ConfigError> {
        let count = self.user.matches(VIGNETTE_PLACEHOLDER).count();
        if count != 1 {
            return Err(check.invalid(
                "prompt.user",
                format!("{:?}", self.user),
                format!(
                    "it contains {{vignette}} {count} times; write {{vignette}} exactly once where the case text goes"
                ),
            ));
        }
        if self.template == TemplateKind::Raw {
            for (placeholder, max) in [("{user}", 1), ("{system}", 1), ("{assistant_prefix}", 1)] {
                let found = self.raw_template.matches(placeholder).count();
                let required = placeholder == "{user}";
                if found > max || (required && found == 0) {
                    return Err(check.invalid(
                        "prompt.raw_template",
                        format!("{:?}", self.raw_template),
                        format!(
                            "it contains {placeholder} {found} times; {placeholder} must appear {}",
                            if required {
                                "exactly once"
                            } else {
                                "at most once"
                            }
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
