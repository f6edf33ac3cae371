//! Errors of prompt rendering and tokenization.

use std::path::PathBuf;

/// An error in a chat template, a prompt's layout or its tokenization.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error(
        "no chat template in {dir}: tokenizer_config.json has no `chat_template` and there \
         is no chat_template.jinja; set a raw prompt template in the study config instead"
    )]
    NoChatTemplate { dir: PathBuf },

    #[error("invalid chat template: {0}")]
    InvalidTemplate(String),

    #[error("invalid raw prompt template {template:?}: {reason}")]
    InvalidRawTemplate { template: String, reason: String },

    #[error("the chat template failed to render: {0}")]
    Render(#[from] minijinja::Error),

    #[error(
        "the {role} message is not in the rendered prompt verbatim (nor trimmed of \
         surrounding whitespace), so its token spans cannot be located; the chat template \
         changes or drops it; use a raw prompt template instead"
    )]
    ContentNotFound { role: &'static str },

    #[error("the {role} message contains the reserved character U+{codepoint:04X}; remove it")]
    ReservedCharacter { role: &'static str, codepoint: u32 },

    #[error("invalid user message layout: {0}")]
    InvalidLayout(String),

    #[error("tokenization failed: {0}")]
    Tokenizer(String),

    #[error(
        "the tokenizer returned byte offsets {start}..{end} outside the {len}-byte prompt; \
         the tokenizer.json does not match its offsets contract"
    )]
    OffsetsOutOfRange {
        start: usize,
        end: usize,
        len: usize,
    },
}
