//! Special token ids and the chat template, gathered from `config.json`,
//! `generation_config.json` and `tokenizer_config.json` with the precedence
//! transformers' `generate` uses.

use serde::Deserialize;
use tokenizers::Tokenizer;

use super::config::{ModelConfig, TokenIds};
use super::error::{ModelError, Result};
use super::files::{ModelFiles, read_json, read_text};

/// A token in `tokenizer_config.json`: a string, or an `AddedToken` object.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TokenField {
    Text(String),
    Added { content: String },
}

impl TokenField {
    pub fn content(&self) -> &str {
        match self {
            TokenField::Text(text) => text,
            TokenField::Added { content } => content,
        }
    }
}

/// `chat_template`: one template, or a list of named ones.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ChatTemplateField {
    One(String),
    Named(Vec<NamedTemplate>),
}

#[derive(Debug, Clone, Deserialize)]
pub struct NamedTemplate {
    pub name: String,
    pub template: String,
}

/// The parts of `tokenizer_config.json` the worker reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenizerConfig {
    #[serde(default)]
    pub chat_template: Option<ChatTemplateField>,
    #[serde(default)]
    pub bos_token: Option<TokenField>,
    #[serde(default)]
    pub eos_token: Option<TokenField>,
    #[serde(default)]
    pub pad_token: Option<TokenField>,
}

/// The parts of `generation_config.json` the worker reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GenerationConfig {
    #[serde(default)]
    pub bos_token_id: Option<TokenIds>,
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    #[serde(default)]
    pub pad_token_id: Option<TokenIds>,
}

/// The special tokens generation needs, and the chat template text.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecialTokens {
    pub bos_token_id: Option<u32>,
    /// Generation stops at any of these; may be empty.
    pub eos_token_ids: Vec<u32>,
    /// The id written into pad positions. Its value never changes results
    /// because pad positions are masked.
    pub pad_token_id: u32,
    /// `bos_token` and `eos_token` as text, for the chat template.
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// `chat_template.jinja` if present, else `chat_template` from
    /// `tokenizer_config.json`: the template named `default` when several
    /// are given, else the first.
    pub chat_template: Option<String>,
}

impl SpecialTokens {
    /// Resolves the special tokens of the model in `files`. Each id comes
    /// from `generation_config.json` first, then `config.json`, then the
    /// token text in `tokenizer_config.json`. The pad id falls back to the
    /// first EOS id, then 0.
    pub fn resolve(
        files: &ModelFiles,
        config: &ModelConfig,
        tokenizer: &Tokenizer,
    ) -> Result<Self> {
        let tokenizer_config: TokenizerConfig = match &files.tokenizer_config {
            Some(path) => read_json(path)?,
            None => TokenizerConfig::default(),
        };
        let generation: GenerationConfig = match &files.generation_config {
            Some(path) => read_json(path)?,
            None => GenerationConfig::default(),
        };
        let text_id = |field: &Option<TokenField>| {
            field
                .as_ref()
                .and_then(|token| tokenizer.token_to_id(token.content()))
        };

        let bos_token_id = generation
            .bos_token_id
            .as_ref()
            .and_then(TokenIds::first)
            .or(config.bos_token_id)
            .or_else(|| text_id(&tokenizer_config.bos_token));
        let eos_token_ids = match &generation.eos_token_id {
            Some(ids) => ids.to_vec(),
            None if !config.eos_token_ids.is_empty() => config.eos_token_ids.clone(),
            None => text_id(&tokenizer_config.eos_token).into_iter().collect(),
        };
        let pad_token_id = generation
            .pad_token_id
            .as_ref()
            .and_then(TokenIds::first)
            .or(config.pad_token_id)
            .or_else(|| text_id(&tokenizer_config.pad_token))
            .or(eos_token_ids.first().copied())
            .unwrap_or(0);

        // transformers 4.43+ saves the template in chat_template.jinja, and
        // that file wins over tokenizer_config.json when both exist.
        let chat_template = match (&files.chat_template, tokenizer_config.chat_template) {
            (Some(path), _) => Some(read_text(path)?),
            (None, Some(ChatTemplateField::One(template))) => Some(template),
            (None, Some(ChatTemplateField::Named(templates))) => {
                let default = templates
                    .iter()
                    .position(|t| t.name == "default")
                    .unwrap_or(0);
                templates.into_iter().nth(default).map(|t| t.template)
            }
            (None, None) => None,
        };

        for (name, id) in [
            ("bos_token_id", bos_token_id),
            ("pad_token_id", Some(pad_token_id)),
        ] {
            if let Some(id) = id.filter(|id| *id as usize >= config.vocab_size) {
                return Err(ModelError::InvalidConfig {
                    message: format!(
                        "{name} {id} is outside the vocabulary of {}",
                        config.vocab_size
                    ),
                });
            }
        }

        Ok(Self {
            bos_token_id,
            eos_token_ids,
            pad_token_id,
            bos_token: tokenizer_config.bos_token.map(|t| t.content().to_string()),
            eos_token: tokenizer_config.eos_token.map(|t| t.content().to_string()),
            chat_template,
        })
    }
}
