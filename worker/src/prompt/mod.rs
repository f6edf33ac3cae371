//! Prompt rendering and token mapping: the chat template, the tokenizer's
//! offsets in characters, and each prompt token's region, field and word.

mod chat_template;
mod error;
mod mapping;
mod offsets;
mod strftime;
mod tokenize;

pub use chat_template::{ChatTemplate, PromptParts, render, whole_message_layout};
pub use error::PromptError;
pub use mapping::{OverlapRule, assign_words};
pub use offsets::ByteToChar;
pub use strftime::Date;
pub use tokenize::{bos_token_id, special_token_ids, tokenize_raw, tokenize_rendered};

use gaze_shared::layout::{PromptLayout, Region};

/// The text of a prompt after the chat template, with the layout of its
/// regions and fields in character offsets into `text`.
#[derive(Debug, Clone)]
pub struct RenderedPrompt {
    pub text: String,
    pub layout: PromptLayout,
}

/// One prompt token with its place in the rendered text.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptToken {
    pub position: usize,
    pub id: u32,
    /// The token string from the vocabulary, such as `Ġname` or `▁name`.
    pub token: String,
    /// The text this token covers in the prompt, `text[start..end]`.
    pub text: String,
    /// Character offsets into the rendered prompt; empty (`start == end`)
    /// only for special tokens that no text produced, such as an added BOS.
    pub start: usize,
    pub end: usize,
    pub special: bool,
    /// Index of the word this token belongs to; sub-word pieces share one.
    pub word: Option<usize>,
    pub region: Region,
    pub field: Option<String>,
}

/// The token ids of a prompt and the mapping of each token.
#[derive(Debug, Clone)]
pub struct PromptTokens {
    pub ids: Vec<u32>,
    pub tokens: Vec<PromptToken>,
    /// Position of the BOS token (0 when present), the usual attention sink;
    /// `None` for models without a BOS, such as Qwen2.
    pub bos_position: Option<usize>,
}

impl PromptTokens {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}
