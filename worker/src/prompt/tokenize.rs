//! Tokenization of raw and rendered prompts into mapped [`PromptToken`]s.

use std::collections::HashSet;

use gaze_shared::layout::{CharSpan, PromptLayout, Region};
use tokenizers::Tokenizer;

use super::mapping::{OverlapRule, assign_words};
use super::offsets::{ByteToChar, fill_empty_spans};
use super::{PromptError, PromptToken, PromptTokens, RenderedPrompt};

/// Tokenizes `text` as transformers' `tokenizer(text)` does: with the
/// tokenizer's own special tokens (such as BOS) added, and no chat template.
///
/// Spans are character offsets into `text`. The text carries no layout, so
/// every token's region is `ChatTemplate` and its field `None`; render with
/// [`super::ChatTemplate::raw`] and use [`tokenize_rendered`] to map regions.
pub fn tokenize_raw(tokenizer: &Tokenizer, text: &str) -> anyhow::Result<PromptTokens> {
    let encoding = tokenizer
        .encode(text, true)
        .map_err(|err| PromptError::Tokenizer(err.to_string()))?;
    let mut tokens = tokens_from_encoding(tokenizer, text, &encoding)?;

    let bos = bos_token_id(tokenizer);
    let bos_position = match tokens.first() {
        Some(first) if Some(first.id) == bos && first.special => Some(0),
        _ => None,
    };
    fill_spans(&mut tokens, text);
    Ok(map_tokens(
        text,
        &PromptLayout::default(),
        tokens,
        bos_position,
    ))
}

/// Tokenizes a rendered prompt so the ids start with exactly one BOS (for
/// models that use one), and maps every token to its region and field.
///
/// The text is encoded without the tokenizer's post-processor, since the
/// chat template writes the BOS itself. With `bos_token_id` set, a missing
/// leading BOS is inserted (with an empty span at 0), and repeated leading
/// BOS tokens collapse into one. BOS tokens later in the prompt stay.
/// Special tokens are recognised by id, because one written as text in the
/// template gets a special-tokens mask of 0.
pub fn tokenize_rendered(
    tokenizer: &Tokenizer,
    bos_token_id: Option<u32>,
    prompt: &RenderedPrompt,
) -> anyhow::Result<PromptTokens> {
    let text = prompt.text.as_str();
    let encoding = tokenizer
        .encode(text, false)
        .map_err(|err| PromptError::Tokenizer(err.to_string()))?;
    let mut tokens = tokens_from_encoding(tokenizer, text, &encoding)?;

    let mut bos_position = None;
    if let Some(bos) = bos_token_id {
        let leading = tokens.iter().take_while(|t| t.id == bos).count();
        if leading == 0 {
            let token = tokenizer.id_to_token(bos).unwrap_or_default();
            tokens.insert(
                0,
                RawToken {
                    id: bos,
                    token,
                    span: CharSpan::new(0, 0),
                    special: true,
                },
            );
        } else if leading > 1 {
            tracing::debug!(
                dropped = leading - 1,
                "dropped repeated BOS tokens at the prompt start"
            );
            tokens.drain(1..leading);
        }
        bos_position = Some(0);
    }

    fill_spans(&mut tokens, text);
    Ok(map_tokens(text, &prompt.layout, tokens, bos_position))
}

/// Returns the BOS id that the tokenizer's post-processor puts before the
/// text, as transformers' `tokenizer(text)` does, or `None` when it adds
/// none (Qwen2, for example).
pub fn bos_token_id(tokenizer: &Tokenizer) -> Option<u32> {
    let encoding = tokenizer.encode("a", true).ok()?;
    let first_is_added = encoding.get_special_tokens_mask().first() == Some(&1);
    first_is_added.then(|| encoding.get_ids()[0])
}

/// Returns the ids of the tokenizer's added tokens that are special, such as
/// `<|begin_of_text|>`, `<|eot_id|>` or `<s>`.
pub fn special_token_ids(tokenizer: &Tokenizer) -> HashSet<u32> {
    tokenizer
        .get_added_tokens_decoder()
        .into_iter()
        .filter(|(_, token)| token.special)
        .map(|(id, _)| id)
        .collect()
}

/// A token before mapping: id, vocabulary string, span and special flag.
struct RawToken {
    id: u32,
    token: String,
    span: CharSpan,
    special: bool,
}

fn tokens_from_encoding(
    tokenizer: &Tokenizer,
    text: &str,
    encoding: &tokenizers::Encoding,
) -> Result<Vec<RawToken>, PromptError> {
    let specials = special_token_ids(tokenizer);
    let table = ByteToChar::new(text);

    let mut tokens = Vec::with_capacity(encoding.len());
    for (i, &id) in encoding.get_ids().iter().enumerate() {
        let (start, end) = encoding.get_offsets()[i];
        let special = encoding.get_special_tokens_mask()[i] == 1 || specials.contains(&id);
        // Tokens the post-processor added have no text (offsets 0..0).
        let span = table.char_span(start, end)?;
        tokens.push(RawToken {
            id,
            token: encoding.get_tokens()[i].clone(),
            span,
            special,
        });
    }
    Ok(tokens)
}

fn fill_spans(tokens: &mut [RawToken], text: &str) {
    let mut spans: Vec<CharSpan> = tokens.iter().map(|t| t.span).collect();
    let special: Vec<bool> = tokens.iter().map(|t| t.special).collect();
    fill_empty_spans(&mut spans, &special, text.chars().count());
    for (token, span) in tokens.iter_mut().zip(spans) {
        token.span = span;
    }
}

fn map_tokens(
    text: &str,
    layout: &PromptLayout,
    tokens: Vec<RawToken>,
    bos_position: Option<usize>,
) -> PromptTokens {
    let char_starts: Vec<usize> = text
        .char_indices()
        .map(|(at, _)| at)
        .chain([text.len()])
        .collect();
    let spans: Vec<CharSpan> = tokens.iter().map(|t| t.span).collect();
    let special: Vec<bool> = tokens.iter().map(|t| t.special).collect();
    let words = assign_words(text, &spans, &special);
    let rule = OverlapRule::new(text);
    let region_spans: Vec<CharSpan> = layout.regions.iter().map(|(_, span)| *span).collect();
    let field_spans: Vec<CharSpan> = layout.fields.iter().map(|f| f.span).collect();

    let mut ids = Vec::with_capacity(tokens.len());
    let mut mapped = Vec::with_capacity(tokens.len());
    for (position, (token, word)) in tokens.into_iter().zip(words).enumerate() {
        ids.push(token.id);
        mapped.push(PromptToken {
            position,
            id: token.id,
            token: token.token,
            text: text[char_starts[token.span.start]..char_starts[token.span.end]].to_string(),
            start: token.span.start,
            end: token.span.end,
            special: token.special,
            word,
            region: rule
                .owner(token.span, &region_spans)
                .map_or(Region::ChatTemplate, |i| layout.regions[i].0),
            field: rule
                .owner(token.span, &field_spans)
                .map(|i| layout.fields[i].field.clone()),
        });
    }
    PromptTokens {
        ids,
        tokens: mapped,
        bos_position,
    }
}
