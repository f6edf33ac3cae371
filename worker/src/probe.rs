//! The `probe` command: one prompt through the engine, reported as its
//! prompt tokens and, for each captured step, the generated token and its
//! attention rows, as a table or as JSON.
//!
//! # JSON form
//!
//! ```json
//! {
//!   "prompt_tokens": [{"position": 0, "id": 1, "token": "<s>", "start": 0, "end": 0}],
//!   "steps": [{"step": 0, "token_id": 42, "token": "ĠGR",
//!              "attention": [{"layer": 0, "head": 0, "kv_head": 0, "scores": [0.5, 0.5]}]}],
//!   "text": " GRANT",
//!   "stop_reason": "max_new_tokens"
//! }
//! ```
//!
//! `start` and `end` are character offsets into the prompt text (after the
//! chat template unless `--raw`). Each `scores` list has one entry per key:
//! the prompt's tokens, then the `step` tokens generated before this step.
//! `token` is the vocabulary entry; `text` is the whole response, decoded
//! with special tokens skipped.

use std::fmt::Write;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::Engine;
use crate::capture::{CaptureSpec, Selection};
use crate::generate::{GenerationOutput, GenerationRequest, GenerationSettings, SamplingParams};
use crate::prompt::{self, ChatTemplate, PromptParts, PromptTokens};

/// The prompt and settings of one probe.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    pub prompt: String,
    /// Tokenize the prompt as it is, with the tokenizer's special tokens,
    /// instead of rendering it as the user message of the chat template.
    pub raw: bool,
    pub system: Option<String>,
    pub assistant_prefix: String,
    pub max_new_tokens: usize,
    pub temperature: f64,
    pub seed: u64,
    pub layers: Selection,
    pub heads: Selection,
    /// Capture steps `0..steps`.
    pub steps: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeReport {
    pub prompt_tokens: Vec<ProbeToken>,
    pub steps: Vec<ProbeStep>,
    pub text: String,
    pub stop_reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeToken {
    pub position: usize,
    pub id: u32,
    pub token: String,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeStep {
    pub step: usize,
    pub token_id: u32,
    pub token: String,
    pub attention: Vec<ProbeRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeRow {
    pub layer: usize,
    pub head: usize,
    pub kv_head: usize,
    pub scores: Vec<f32>,
}

/// Tokenizes the prompt of `options`, generates from it with `engine`
/// (loaded from `model_dir`) and builds the report.
pub fn probe(
    engine: &Engine,
    model_dir: &Path,
    options: &ProbeOptions,
) -> anyhow::Result<ProbeReport> {
    let tokens = prompt_tokens(engine, model_dir, options)?;
    let capture = CaptureSpec::new(
        engine.config(),
        &options.layers,
        &options.heads,
        options.steps,
        false,
    )?;
    let settings = GenerationSettings {
        max_new_tokens: options.max_new_tokens,
        sampling: SamplingParams {
            temperature: options.temperature,
            top_p: None,
            top_k: None,
        },
        stop_strings: Vec::new(),
        decision: None,
    };
    let request = GenerationRequest {
        prompt_ids: tokens.ids.clone(),
        seed: options.seed,
        capture: true,
    };
    let output = engine.generate(&[request], &settings, &capture)?.remove(0);
    Ok(report(engine, &tokens, output))
}

fn prompt_tokens(
    engine: &Engine,
    model_dir: &Path,
    options: &ProbeOptions,
) -> anyhow::Result<PromptTokens> {
    if options.raw {
        if options.system.is_some() || !options.assistant_prefix.is_empty() {
            anyhow::bail!(
                "--system and --assistant-prefix need the chat template; drop --raw to use them"
            );
        }
        return prompt::tokenize_raw(engine.tokenizer(), &options.prompt);
    }

    let template = ChatTemplate::from_model_dir(model_dir).with_context(|| {
        format!(
            "cannot load the chat template of {}; pass --raw to skip it",
            model_dir.display()
        )
    })?;
    let user_layout = prompt::whole_message_layout(&options.prompt);
    let parts = PromptParts {
        system: options.system.as_deref(),
        user: &options.prompt,
        user_layout: &user_layout,
        assistant_prefix: &options.assistant_prefix,
    };
    let rendered = prompt::render(&template, &parts)?;
    prompt::tokenize_rendered(
        engine.tokenizer(),
        engine.special_tokens().bos_token_id,
        &rendered,
    )
}

fn report(engine: &Engine, tokens: &PromptTokens, output: GenerationOutput) -> ProbeReport {
    let vocabulary_entry = |id: u32| engine.tokenizer().id_to_token(id).unwrap_or_default();
    let prompt_tokens = tokens
        .tokens
        .iter()
        .map(|t| ProbeToken {
            position: t.position,
            id: t.id,
            token: t.token.clone(),
            start: t.start,
            end: t.end,
        })
        .collect();
    let steps = output
        .captured
        .into_iter()
        .map(|step| ProbeStep {
            step: step.step,
            token_id: step.token_id,
            token: vocabulary_entry(step.token_id),
            attention: step
                .rows
                .into_iter()
                .map(|row| ProbeRow {
                    layer: row.layer,
                    head: row.head,
                    kv_head: row.kv_head,
                    scores: row.scores,
                })
                .collect(),
        })
        .collect();
    ProbeReport {
        prompt_tokens,
        steps,
        text: output.text,
        stop_reason: output.stop_reason.as_str().to_string(),
    }
}

/// Formats the report for a terminal: the prompt tokens, then per step a
/// table with one line per key and one column per captured layer and head.
pub fn render_table(report: &ProbeReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "prompt: {} tokens", report.prompt_tokens.len());
    let _ = writeln!(
        out,
        "{:>5} {:>7}  {:<24} {:>11}",
        "pos", "id", "token", "chars"
    );
    for token in &report.prompt_tokens {
        let chars = format!("{}..{}", token.start, token.end);
        let _ = writeln!(
            out,
            "{:>5} {:>7}  {:<24} {:>11}",
            token.position,
            token.id,
            clip(&token.token),
            chars
        );
    }

    for step in &report.steps {
        let _ = writeln!(
            out,
            "\nstep {}: generated {:?} (id {})",
            step.step, step.token, step.token_id
        );
        let mut header = format!("{:>5}  {:<24}", "pos", "key");
        for row in &step.attention {
            let _ = write!(header, " {:>8}", format!("L{}H{}", row.layer, row.head));
        }
        let _ = writeln!(out, "{header}");
        let keys = step.attention.first().map_or(0, |row| row.scores.len());
        for key in 0..keys {
            let name = match report.prompt_tokens.get(key) {
                Some(token) => clip(&token.token),
                None => format!("(generated {})", key - report.prompt_tokens.len()),
            };
            let mut line = format!("{key:>5}  {name:<24}");
            for row in &step.attention {
                let _ = write!(line, " {:>8.4}", row.scores[key]);
            }
            let _ = writeln!(out, "{line}");
        }
    }
    let _ = writeln!(
        out,
        "\ntext: {:?}\nstop: {}",
        report.text, report.stop_reason
    );
    out
}

fn clip(token: &str) -> String {
    let mut clipped: String = token.chars().take(23).collect();
    if token.chars().count() > 23 {
        clipped.push('…');
    }
    clipped
}
