//! The `[attention]` section: which samples, layers, heads and decode steps
//! have their attention to the prompt captured.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::error::{Checker, ConfigError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttentionConfig {
    /// Fraction of samples with attention captured, in [0, 1], applied
    /// within each cell of the plan.
    #[serde(default)]
    pub sample_rate: f64,
    #[serde(default)]
    pub layers: IndexSelection,
    #[serde(default)]
    pub heads: IndexSelection,
    /// Number of generated tokens, from the first, whose attention is captured.
    #[serde(default = "default_steps")]
    pub steps: usize,
    /// Also capture the decode step that emits the decision label.
    #[serde(default = "default_true")]
    pub decision_step: bool,
    /// Prompt tokens kept per captured row, the most attended first.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// Keep every captured row over all prompt tokens. Large: one value per
    /// prompt token, per head, per layer, per step.
    #[serde(default)]
    pub store_rows: bool,
}

fn default_steps() -> usize {
    1
}

fn default_true() -> bool {
    true
}

fn default_top_k() -> usize {
    10
}

impl Default for AttentionConfig {
    fn default() -> Self {
        Self {
            sample_rate: 0.0,
            layers: IndexSelection::All,
            heads: IndexSelection::All,
            steps: default_steps(),
            decision_step: true,
            top_k: default_top_k(),
            store_rows: false,
        }
    }
}

/// A selection of layers (or heads) to capture.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum IndexSelection {
    /// Every index; `"all"` in TOML.
    #[default]
    All,
    /// These indices, 0-based, distinct; `[10, 20, 30]` in TOML.
    List(Vec<usize>),
    /// `n` indices spread over the range; `{ evenly_spaced = n }` in TOML.
    /// See [`IndexSelection::resolve`] for the formula.
    EvenlySpaced(usize),
}

/// An attention selection that does not fit the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("attention.{key} lists {what} {index}, but the model has {count} {what}s (0 to {last}); remove it or pick a smaller index", last = count.saturating_sub(1))]
    OutOfRange {
        key: &'static str,
        what: &'static str,
        index: usize,
        count: usize,
    },
    #[error(
        "attention.{key} asks for {requested} evenly spaced {what}s, but the model has only {count}; ask for at most {count}"
    )]
    TooMany {
        key: &'static str,
        what: &'static str,
        requested: usize,
        count: usize,
    },
}

impl IndexSelection {
    /// Resolves the selection to concrete indices for a model with `count`
    /// layers (or heads), in ascending order.
    ///
    /// `EvenlySpaced(n)` picks the centres of `n` equal parts of the range:
    /// index `i` is `floor((2i + 1) * count / (2n))` for `i` in `0..n`. For
    /// 32 layers and n = 3 that is 5, 16 and 26; n = count selects every index.
    pub fn resolve(
        &self,
        count: usize,
        key: &'static str,
        what: &'static str,
    ) -> Result<Vec<usize>, SelectionError> {
        match self {
            IndexSelection::All => Ok((0..count).collect()),
            IndexSelection::List(indices) => {
                if let Some(&index) = indices.iter().find(|&&i| i >= count) {
                    return Err(SelectionError::OutOfRange {
                        key,
                        what,
                        index,
                        count,
                    });
                }
                let mut sorted = indices.clone();
                sorted.sort_unstable();
                Ok(sorted)
            }
            IndexSelection::EvenlySpaced(n) => {
                if *n > count {
                    return Err(SelectionError::TooMany {
                        key,
                        what,
                        requested: *n,
                        count,
                    });
                }
                Ok((0..*n).map(|i| (2 * i + 1) * count / (2 * n)).collect())
            }
        }
    }

    fn validate(&self, key: &str, check: &Checker) -> Result<(), ConfigError> {
        match self {
            IndexSelection::All => Ok(()),
            IndexSelection::List(indices) if indices.is_empty() => {
                Err(check.invalid(key, "[]", "list at least one index, or write \"all\""))
            }
            IndexSelection::List(indices) => {
                let mut seen = std::collections::BTreeSet::new();
                match indices.iter().find(|i| !seen.insert(**i)) {
                    Some(repeat) => Err(check.invalid(
                        key,
                        repeat,
                        "each index may appear once; remove the repeat",
                    )),
                    None => Ok(()),
                }
            }
            IndexSelection::EvenlySpaced(0) => Err(check.invalid(
                key,
                "{ evenly_spaced = 0 }",
                "ask for at least 1, or write \"all\"",
            )),
            IndexSelection::EvenlySpaced(_) => Ok(()),
        }
    }
}

impl AttentionConfig {
    /// Returns the layers to capture for a model with `num_layers` layers, ascending.
    pub fn resolve_layers(&self, num_layers: usize) -> Result<Vec<usize>, SelectionError> {
        self.layers.resolve(num_layers, "layers", "layer")
    }

    /// Returns the heads to capture for a model with `num_heads` query heads, ascending.
    pub fn resolve_heads(&self, num_heads: usize) -> Result<Vec<usize>, SelectionError> {
        self.heads.resolve(num_heads, "heads", "head")
    }

    pub(crate) fn validate(&self, check: &Checker) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.sample_rate) {
            return Err(check.invalid(
                "attention.sample_rate",
                self.sample_rate,
                "set it to a fraction from 0 (no attention) to 1 (every sample)",
            ));
        }
        self.layers.validate("attention.layers", check)?;
        self.heads.validate("attention.heads", check)?;
        if self.steps == 0 && !self.decision_step {
            return Err(check.invalid(
                "attention.steps",
                0,
                "with decision_step = false nothing would be captured; set steps to at least 1 or decision_step = true",
            ));
        }
        if self.top_k == 0 && !self.store_rows {
            return Err(check.invalid(
                "attention.top_k",
                0,
                "with store_rows = false nothing would be kept; set top_k to at least 1",
            ));
        }
        Ok(())
    }
}

impl Serialize for IndexSelection {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            IndexSelection::All => serializer.serialize_str("all"),
            IndexSelection::List(indices) => indices.serialize(serializer),
            IndexSelection::EvenlySpaced(n) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("evenly_spaced", n)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for IndexSelection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(IndexSelectionVisitor)
    }
}

struct IndexSelectionVisitor;

impl<'de> Visitor<'de> for IndexSelectionVisitor {
    type Value = IndexSelection;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("\"all\", a list of indices such as [10, 20], or { evenly_spaced = N }")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        match text {
            "all" => Ok(IndexSelection::All),
            _ => Err(E::invalid_value(de::Unexpected::Str(text), &self)),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut indices = Vec::new();
        while let Some(index) = seq.next_element::<usize>()? {
            indices.push(index);
        }
        Ok(IndexSelection::List(indices))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct EvenlySpaced {
            evenly_spaced: usize,
        }

        let spec = EvenlySpaced::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(IndexSelection::EvenlySpaced(spec.evenly_spaced))
    }
}
