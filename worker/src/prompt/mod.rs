//! Prompt rendering and token mapping: the chat template, the tokenizer's
//! offsets in characters, and each prompt token's region, field and word.
//!
//! TODO: the bodies below are placeholders that the prompt work replaces;
//! the signatures are the contract that the engine and probe build on.

use gaze_shared::layout::{PromptLayout, Region};
use tokenizers::Tokenizer;

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
}

/// Tokenizes `text` as transformers' `tokenizer(text)` does: with the
/// tokenizer's own special tokens (such as BOS) added, and no chat template.
pub fn tokenize_raw(tokenizer: &Tokenizer, text: &str) -> anyhow::Result<PromptTokens> {
    let _ = (tokenizer, text);
    todo!("tokenize_raw")
}

/// Tokenizes a rendered prompt so the ids start with exactly one BOS (for
/// models that use one), and maps every token to its region and field.
pub fn tokenize_rendered(
    tokenizer: &Tokenizer,
    bos_token_id: Option<u32>,
    prompt: &RenderedPrompt,
) -> anyhow::Result<PromptTokens> {
    let _ = (tokenizer, bos_token_id, prompt);
    todo!("tokenize_rendered")
}
