//! Character spans of a prompt's template regions and fields.
//!
//! The plan records these spans when it renders a vignette, and the worker
//! maps prompt tokens onto them. Offsets count Unicode scalar values (as
//! Python indexes a `str`), never bytes.

use serde::{Deserialize, Serialize};

/// A half-open range `[start, end)` of character offsets into one text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CharSpan {
    pub start: usize,
    pub end: usize,
}

impl CharSpan {
    pub fn new(start: usize, end: usize) -> Self {
        debug_assert!(start <= end, "span start {start} after end {end}");
        Self { start, end }
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Returns this span moved right by `offset` characters.
    pub fn shifted(&self, offset: usize) -> Self {
        Self::new(self.start + offset, self.end + offset)
    }

    pub fn overlap(&self, other: &CharSpan) -> usize {
        self.end
            .min(other.end)
            .saturating_sub(self.start.max(other.start))
    }
}

/// The part of a rendered prompt that a character or token belongs to.
///
/// The names are the values of the `region` column in every Parquet table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Region {
    /// Text the chat template adds: role headers, special tokens, BOS.
    ChatTemplate,
    /// The study's system message.
    System,
    /// The user message template before `{vignette}`.
    InstructionPrefix,
    /// The filled vignette.
    Vignette,
    /// The user message template after `{vignette}`.
    InstructionSuffix,
    /// The assistant prefix that the response starts with, such as `DECISION:`.
    AssistantPrefix,
}

impl Region {
    pub const ALL: [Region; 6] = [
        Region::ChatTemplate,
        Region::System,
        Region::InstructionPrefix,
        Region::Vignette,
        Region::InstructionSuffix,
        Region::AssistantPrefix,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Region::ChatTemplate => "chat_template",
            Region::System => "system",
            Region::InstructionPrefix => "instruction_prefix",
            Region::Vignette => "vignette",
            Region::InstructionSuffix => "instruction_suffix",
            Region::AssistantPrefix => "assistant_prefix",
        }
    }
}

/// One occurrence of a template field's value in a text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSpan {
    /// The field's name, as the vignette file's placeholder spells it.
    pub field: String,
    pub span: CharSpan,
}

/// The regions and field occurrences of one text, in character offsets.
///
/// Regions do not overlap. Characters that no region covers belong to
/// [`Region::ChatTemplate`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptLayout {
    pub regions: Vec<(Region, CharSpan)>,
    pub fields: Vec<FieldSpan>,
}

impl PromptLayout {
    /// Returns a copy with every span moved right by `offset` characters.
    pub fn shifted(&self, offset: usize) -> Self {
        Self {
            regions: self
                .regions
                .iter()
                .map(|(r, s)| (*r, s.shifted(offset)))
                .collect(),
            fields: self
                .fields
                .iter()
                .map(|f| FieldSpan {
                    field: f.field.clone(),
                    span: f.span.shifted(offset),
                })
                .collect(),
        }
    }
}
