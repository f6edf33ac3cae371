//! The `[decision]` section: the labels a response can decide on and the
//! pattern that finds one in the generated text.

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::error::{Checker, ConfigError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionConfig {
    /// The possible decisions, non-empty and distinct.
    pub labels: Vec<String>,
    /// A regular expression (Rust `regex` syntax) whose first capture group,
    /// or whole match when it has none, is the decision. When absent,
    /// [`DecisionConfig::pattern`] builds one from the labels.
    #[serde(default)]
    pub pattern: Option<String>,
}

impl DecisionConfig {
    /// Returns the configured pattern, or `\b(L1|L2|...)\b` with each label escaped.
    pub fn pattern(&self) -> String {
        match &self.pattern {
            Some(pattern) => pattern.clone(),
            None => {
                let escaped: Vec<String> = self.labels.iter().map(|l| regex::escape(l)).collect();
                format!(r"\b({})\b", escaped.join("|"))
            }
        }
    }

    /// Compiles [`DecisionConfig::pattern`]. Validation compiles it once
    /// already, so this panics only for a config that skipped validation.
    pub fn regex(&self) -> Regex {
        Regex::new(&self.pattern()).expect("validated: decision.pattern compiles")
    }

    pub(crate) fn validate(&self, check: &Checker) -> Result<(), ConfigError> {
        if self.labels.is_empty() {
            return Err(check.invalid(
                "decision.labels",
                "[]",
                "list the decisions a response can contain, such as [\"GRANTED\", \"REFUSED\"]",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (index, label) in self.labels.iter().enumerate() {
            let key = format!("decision.labels[{index}]");
            if label.trim().is_empty() {
                return Err(check.invalid(key, format!("{label:?}"), "write a non-empty label"));
            }
            if !seen.insert(label) {
                return Err(check.invalid(
                    key,
                    format!("{label:?}"),
                    "labels must be distinct; remove the repeat",
                ));
            }
            let word_edges = label.chars().next().is_some_and(is_word_char)
                && label.chars().last().is_some_and(is_word_char);
            if self.pattern.is_none() && !word_edges {
                return Err(check.invalid(
                    key,
                    format!("{label:?}"),
                    "the default pattern matches labels between word boundaries (\\b), so a label must start and end with a letter, digit or '_'; set decision.pattern to match this label",
                ));
            }
        }
        if let Some(pattern) = &self.pattern {
            let regex = Regex::new(pattern).map_err(|err| {
                check.invalid(
                    "decision.pattern",
                    format!("{pattern:?}"),
                    format!("it does not compile: {err}"),
                )
            })?;
            if regex.captures_len() > 2 {
                return Err(check.invalid(
                    "decision.pattern",
                    format!("{pattern:?}"),
                    "use at most one capture group, around the label; write other groups as (?:...)",
                ));
            }
        }
        Ok(())
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}
