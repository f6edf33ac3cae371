//! Rendering of the system message, user message and assistant prefix
//! through a model's chat template (or a raw prompt template), with the
//! user message's layout moved into the rendered text.

use std::collections::BTreeMap;
use std::path::Path;

use gaze_shared::layout::{CharSpan, FieldSpan, PromptLayout, Region};
use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, ErrorKind};
use serde_json::Value as Json;

use super::strftime::Date;
use super::{PromptError, RenderedPrompt};

const TEMPLATE_NAME: &str = "chat_template";
const SYSTEM_SENTINEL: &str = "\u{E000}gaze:system\u{E001}";
const USER_SENTINEL: &str = "\u{E000}gaze:user\u{E001}";
const SPECIAL_TOKEN_KEYS: [&str; 4] = ["bos_token", "eos_token", "unk_token", "pad_token"];

/// The template that builds a prompt from its messages: a model's Jinja chat
/// template, or a raw template with `{system}`, `{user}` and
/// `{assistant_prefix}`.
#[derive(Debug)]
pub struct ChatTemplate {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Jinja {
        env: Box<Environment<'static>>,
        special_tokens: BTreeMap<String, String>,
    },
    Raw {
        template: String,
    },
}

/// The messages of one prompt.
#[derive(Debug, Clone, Copy)]
pub struct PromptParts<'a> {
    /// The system message; `None` sends no system message at all.
    pub system: Option<&'a str>,
    /// The user message: instruction prefix, vignette, instruction suffix.
    pub user: &'a str,
    /// Regions (`InstructionPrefix`, `Vignette`, `InstructionSuffix`) and
    /// template fields of `user`, in character offsets into `user`.
    pub user_layout: &'a PromptLayout,
    /// Text the assistant's reply starts with, such as `DECISION:`; it
    /// follows the generation prompt. May be empty.
    pub assistant_prefix: &'a str,
}

impl ChatTemplate {
    /// Loads the chat template of a Hugging Face model folder, with today's
    /// UTC date for `strftime_now` (as transformers uses the current date).
    ///
    /// NOTE: templates that call `strftime_now` (Llama 3.1 and later) then
    /// render a different prompt on another day; a study should pin its date
    /// with [`ChatTemplate::from_model_dir_with_date`].
    pub fn from_model_dir(dir: &Path) -> Result<Self, PromptError> {
        Self::from_model_dir_with_date(dir, Date::today_utc())
    }

    /// Loads the chat template of a Hugging Face model folder:
    /// `chat_template.jinja` if present, else `chat_template` in
    /// `tokenizer_config.json`, whose special tokens (`bos_token`,
    /// `eos_token`, ...) become template variables. `date` is the date that
    /// `strftime_now` formats.
    pub fn from_model_dir_with_date(dir: &Path, date: Date) -> Result<Self, PromptError> {
        let config_path = dir.join("tokenizer_config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|source| PromptError::Read {
            path: config_path.clone(),
            source,
        })?;
        let config: Json = serde_json::from_str(&text).map_err(|source| PromptError::Json {
            path: config_path.clone(),
            source,
        })?;

        let jinja_path = dir.join("chat_template.jinja");
        let source = if jinja_path.is_file() {
            std::fs::read_to_string(&jinja_path).map_err(|source| PromptError::Read {
                path: jinja_path.clone(),
                source,
            })?
        } else {
            match config.get("chat_template") {
                Some(template) => select_default_template(template)?,
                None => {
                    return Err(PromptError::NoChatTemplate {
                        dir: dir.to_path_buf(),
                    });
                }
            }
        };

        Self::jinja(&source, special_tokens(&config), date)
    }

    /// Compiles a Jinja chat template as transformers renders it: trim_blocks
    /// and lstrip_blocks on, Python string and dict methods, loop controls,
    /// `raise_exception(message)`, `strftime_now(format)` (formatting
    /// `date`) and a `tojson` filter that writes JSON as Python's
    /// `json.dumps` does. `special_tokens` maps names such as `bos_token` to
    /// their text.
    pub fn jinja(
        source: &str,
        special_tokens: BTreeMap<String, String>,
        date: Date,
    ) -> Result<Self, PromptError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        minijinja_contrib::add_to_environment(&mut env);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", move |format: String| {
            date.strftime(&format)
                .map_err(|reason| minijinja::Error::new(ErrorKind::InvalidOperation, reason))
        });
        env.add_filter("tojson", python_tojson);
        env.add_template_owned(TEMPLATE_NAME, source.to_string())
            .map_err(|err| PromptError::InvalidTemplate(format!("{err:#}")))?;

        Ok(Self {
            kind: Kind::Jinja {
                env: Box::new(env),
                special_tokens,
            },
        })
    }

    /// A raw prompt template: `{user}` exactly once, `{system}` and
    /// `{assistant_prefix}` at most once each, every other character
    /// literal. Without `{assistant_prefix}` the prefix is appended at the
    /// end.
    pub fn raw(template: &str) -> Result<Self, PromptError> {
        let invalid = |reason: String| PromptError::InvalidRawTemplate {
            template: template.to_string(),
            reason,
        };
        for placeholder in ["{system}", "{user}", "{assistant_prefix}"] {
            let count = template.matches(placeholder).count();
            if count > 1 {
                return Err(invalid(format!(
                    "{placeholder} appears {count} times; use it at most once"
                )));
            }
        }
        if !template.contains("{user}") {
            return Err(invalid("it has no {user} placeholder".to_string()));
        }
        Ok(Self {
            kind: Kind::Raw {
                template: template.to_string(),
            },
        })
    }
}

/// Renders a prompt and moves the user message's layout into the result.
///
/// The layout of the result has the `System` region over the system message,
/// the user message's regions and fields shifted to where the template put
/// the message, and an `AssistantPrefix` region. Everything else is chat
/// template text. Templates that strip surrounding whitespace from a message
/// (as Llama 3's does) are handled: the spans shrink with the message. A
/// template that changes or drops a message in any other way is an error.
pub fn render(
    template: &ChatTemplate,
    parts: &PromptParts<'_>,
) -> Result<RenderedPrompt, PromptError> {
    validate_user_layout(parts.user, parts.user_layout)?;
    match &template.kind {
        Kind::Jinja {
            env,
            special_tokens,
        } => render_jinja(env, special_tokens, parts),
        Kind::Raw { template } => Ok(render_raw(template, parts)),
    }
}

/// Returns the layout of a user message without template fields: the whole
/// message is the `Vignette` region. For prompts that do not come from a
/// vignette file, such as a probe of one system and user message.
pub fn whole_message_layout(user: &str) -> PromptLayout {
    let len = user.chars().count();
    let mut layout = PromptLayout::default();
    push_region(&mut layout, Region::Vignette, CharSpan::new(0, len));
    layout
}

fn render_jinja(
    env: &Environment<'static>,
    special_tokens: &BTreeMap<String, String>,
    parts: &PromptParts<'_>,
) -> Result<RenderedPrompt, PromptError> {
    for (role, content) in [("system", parts.system.unwrap_or("")), ("user", parts.user)] {
        if let Some(ch) = content
            .chars()
            .find(|c| matches!(c, '\u{E000}' | '\u{E001}'))
        {
            return Err(PromptError::ReservedCharacter {
                role,
                codepoint: ch as u32,
            });
        }
    }

    let template = env.get_template(TEMPLATE_NAME)?;
    let run = |system: Option<&str>, user: &str| -> Result<String, PromptError> {
        let mut messages = Vec::new();
        if let Some(system) = system {
            messages.push(message("system", system));
        }
        messages.push(message("user", user));

        let mut context: BTreeMap<&str, Value> = special_tokens
            .iter()
            .map(|(name, text)| (name.as_str(), Value::from(text.as_str())))
            .collect();
        context.insert("messages", Value::from(messages));
        context.insert("add_generation_prompt", Value::from(true));
        context.insert("tools", Value::from(()));
        context.insert("documents", Value::from(()));
        Ok(template.render(context)?)
    };

    // Render once with sentinels for the contents to see where the template
    // puts each message, then match the real rendering against that.
    let skeleton = run(parts.system.map(|_| SYSTEM_SENTINEL), USER_SENTINEL)?;
    let rendered = run(parts.system, parts.user)?;

    let mut slots = vec![("user", USER_SENTINEL, parts.user)];
    if let Some(system) = parts.system {
        slots.push(("system", SYSTEM_SENTINEL, system));
    }
    let placed = locate_contents(&skeleton, &rendered, &slots)?;

    let mut layout = PromptLayout::default();
    for (role, found) in placed {
        let start = rendered[..found.start].chars().count();
        let end = start + rendered[found.start..found.end].chars().count();
        if role == "system" {
            push_region(&mut layout, Region::System, CharSpan::new(start, end));
        } else {
            let kept = CharSpan::new(found.leading_trimmed, found.leading_trimmed + end - start);
            place_user_layout(&mut layout, parts.user_layout, kept, start);
        }
    }
    Ok(finish(rendered, layout, parts.assistant_prefix))
}

fn render_raw(template: &str, parts: &PromptParts<'_>) -> RenderedPrompt {
    let mut pieces: Vec<(usize, &str)> = ["{system}", "{user}", "{assistant_prefix}"]
        .into_iter()
        .filter_map(|p| template.find(p).map(|at| (at, p)))
        .collect();
    pieces.sort();

    let mut text = String::new();
    let mut layout = PromptLayout::default();
    let mut copied_to = 0;
    let mut prefix_placed = false;
    for (at, placeholder) in pieces {
        text.push_str(&template[copied_to..at]);
        copied_to = at + placeholder.len();
        let start = text.chars().count();
        match placeholder {
            "{system}" => {
                let system = parts.system.unwrap_or("");
                text.push_str(system);
                push_region(
                    &mut layout,
                    Region::System,
                    CharSpan::new(start, start + system.chars().count()),
                );
            }
            "{user}" => {
                text.push_str(parts.user);
                let kept = CharSpan::new(0, parts.user.chars().count());
                place_user_layout(&mut layout, parts.user_layout, kept, start);
            }
            _ => {
                text.push_str(parts.assistant_prefix);
                let span = CharSpan::new(start, start + parts.assistant_prefix.chars().count());
                push_region(&mut layout, Region::AssistantPrefix, span);
                prefix_placed = true;
            }
        }
    }
    text.push_str(&template[copied_to..]);

    if prefix_placed {
        sort_layout(&mut layout);
        RenderedPrompt { text, layout }
    } else {
        finish(text, layout, parts.assistant_prefix)
    }
}

/// Appends the assistant prefix and its region, and orders the layout.
fn finish(mut text: String, mut layout: PromptLayout, assistant_prefix: &str) -> RenderedPrompt {
    let start = text.chars().count();
    text.push_str(assistant_prefix);
    push_region(
        &mut layout,
        Region::AssistantPrefix,
        CharSpan::new(start, start + assistant_prefix.chars().count()),
    );
    sort_layout(&mut layout);
    RenderedPrompt { text, layout }
}

fn sort_layout(layout: &mut PromptLayout) {
    layout
        .regions
        .sort_by_key(|(_, span)| (span.start, span.end));
    layout.fields.sort_by_key(|f| (f.span.start, f.span.end));
}

fn push_region(layout: &mut PromptLayout, region: Region, span: CharSpan) {
    if !span.is_empty() {
        layout.regions.push((region, span));
    }
}

/// Adds the user message's regions and fields for the part `kept` of the
/// message (character offsets into the message) that the rendered text
/// holds from character `at` on; the rest of each span is clipped away.
fn place_user_layout(
    layout: &mut PromptLayout,
    user_layout: &PromptLayout,
    kept: CharSpan,
    at: usize,
) {
    let clip = |span: CharSpan| {
        let start = span.start.clamp(kept.start, kept.end);
        let end = span.end.clamp(start, kept.end);
        CharSpan::new(start - kept.start + at, end - kept.start + at)
    };
    for (region, span) in &user_layout.regions {
        push_region(layout, *region, clip(*span));
    }
    for field in &user_layout.fields {
        let span = clip(field.span);
        if !span.is_empty() {
            layout.fields.push(FieldSpan {
                field: field.field.clone(),
                span,
            });
        }
    }
}

fn validate_user_layout(user: &str, layout: &PromptLayout) -> Result<(), PromptError> {
    let len = user.chars().count();
    let mut spans = Vec::new();
    for (region, span) in &layout.regions {
        if !matches!(
            region,
            Region::InstructionPrefix | Region::Vignette | Region::InstructionSuffix
        ) {
            return Err(PromptError::InvalidLayout(format!(
                "region {} cannot be part of the user message; use instruction_prefix, vignette \
                 or instruction_suffix",
                region.as_str()
            )));
        }
        spans.push((span, region.as_str()));
    }
    for field in &layout.fields {
        spans.push((&field.span, field.field.as_str()));
    }
    for (span, name) in &spans {
        if span.start > span.end || span.end > len {
            return Err(PromptError::InvalidLayout(format!(
                "span {}..{} of {name} is outside the {len}-character user message",
                span.start, span.end
            )));
        }
    }

    let mut regions: Vec<&CharSpan> = layout.regions.iter().map(|(_, s)| s).collect();
    regions.sort_by_key(|s| s.start);
    if let Some(pair) = regions.windows(2).find(|w| w[0].end > w[1].start) {
        return Err(PromptError::InvalidLayout(format!(
            "regions {}..{} and {}..{} overlap",
            pair[0].start, pair[0].end, pair[1].start, pair[1].end
        )));
    }
    Ok(())
}

/// The byte range of a message's content (possibly trimmed) in the rendered
/// text.
#[derive(Debug, Clone, Copy)]
struct Placed {
    start: usize,
    end: usize,
    /// Characters of leading whitespace the template removed.
    leading_trimmed: usize,
}

/// Matches `rendered` against `skeleton` (the same template rendered with a
/// sentinel for each content) and returns where each slot's content lands.
fn locate_contents(
    skeleton: &str,
    rendered: &str,
    slots: &[(&'static str, &str, &str)],
) -> Result<Vec<(&'static str, Placed)>, PromptError> {
    let mut ordered = Vec::new();
    for &(role, sentinel, content) in slots {
        let mut found = skeleton.match_indices(sentinel).map(|(at, _)| at);
        match (found.next(), found.next()) {
            (Some(at), None) => ordered.push((at, role, sentinel, content)),
            _ => return Err(PromptError::ContentNotFound { role }),
        }
    }
    ordered.sort_by_key(|entry| entry.0);

    // The literal template text before, between and after the contents.
    let mut pieces = Vec::new();
    let mut from = 0;
    for &(at, _, sentinel, _) in &ordered {
        pieces.push(&skeleton[from..at]);
        from = at + sentinel.len();
    }
    pieces.push(&skeleton[from..]);

    let contents: Vec<(&'static str, &str)> = ordered.iter().map(|e| (e.1, e.3)).collect();
    let mut placed = Vec::new();
    if match_from(rendered, 0, &pieces, &contents, &mut placed) {
        Ok(contents.iter().map(|c| c.0).zip(placed).collect())
    } else {
        // Name the first message whose exact or trimmed text is missing.
        let role = contents
            .iter()
            .find(|(_, content)| !rendered.contains(content.trim()))
            .map_or(contents[0].0, |c| c.0);
        Err(PromptError::ContentNotFound { role })
    }
}

/// Matches `pieces[0] content[0] pieces[1] ... pieces[n]` against
/// `rendered[pos..]`, trying each content verbatim first and then trimmed.
fn match_from(
    rendered: &str,
    pos: usize,
    pieces: &[&str],
    contents: &[(&'static str, &str)],
    placed: &mut Vec<Placed>,
) -> bool {
    let Some(rest) = rendered[pos..].strip_prefix(pieces[0]) else {
        return false;
    };
    let pos = rendered.len() - rest.len();
    let Some(((_, content), later)) = contents.split_first() else {
        return rest.is_empty();
    };

    for (variant, leading_trimmed) in trim_variants(content) {
        if rest.starts_with(variant) {
            placed.push(Placed {
                start: pos,
                end: pos + variant.len(),
                leading_trimmed,
            });
            if match_from(rendered, pos + variant.len(), &pieces[1..], later, placed) {
                return true;
            }
            placed.pop();
        }
    }
    false
}

/// Returns the content as is, then stripped of whitespace on both sides, then on
/// the left and on the right only, each with the count of leading characters
/// removed.
fn trim_variants(content: &str) -> Vec<(&str, usize)> {
    let leading_bytes = content.len() - content.trim_start().len();
    let leading = content[..leading_bytes].chars().count();
    let candidates = [
        (content, 0),
        (content.trim(), leading),
        (content.trim_start(), leading),
        (content.trim_end(), 0),
    ];

    let mut variants: Vec<(&str, usize)> = Vec::with_capacity(4);
    for candidate in candidates {
        if !variants.iter().any(|(text, _)| *text == candidate.0) {
            variants.push(candidate);
        }
    }
    variants
}

fn message(role: &str, content: &str) -> Value {
    let mut map = BTreeMap::new();
    map.insert("role", Value::from(role));
    map.insert("content", Value::from(content));
    Value::from(map)
}

fn raise_exception(message: String) -> Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// Serialises a value as Python's `json.dumps(value, ensure_ascii=False,
/// indent=indent)` does, the `tojson` that transformers gives templates.
fn python_tojson(value: Value, kwargs: Kwargs) -> Result<Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;

    let mut out = Vec::new();
    let result = match indent {
        Some(width) => {
            let spaces = vec![b' '; width];
            let formatter = serde_json::ser::PrettyFormatter::with_indent(&spaces);
            serde::Serialize::serialize(
                &value,
                &mut serde_json::Serializer::with_formatter(&mut out, formatter),
            )
        }
        None => serde::Serialize::serialize(
            &value,
            &mut serde_json::Serializer::with_formatter(&mut out, PythonFormatter),
        ),
    };
    result.map_err(|err| {
        minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson failed: {err}"))
    })?;
    Ok(Value::from_safe_string(
        String::from_utf8(out).expect("serde_json writes UTF-8"),
    ))
}

/// Python's default JSON separators: `", "` between items, `": "` after keys.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.begin_array_value(writer, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

/// Picks the template named "default" when `chat_template` is a list of
/// `{name, template}` entries.
fn select_default_template(value: &Json) -> Result<String, PromptError> {
    match value {
        Json::String(source) => Ok(source.clone()),
        Json::Array(entries) => {
            let mut names = Vec::new();
            for entry in entries {
                let name = entry.get("name").and_then(Json::as_str).unwrap_or("");
                if name == "default"
                    && let Some(source) = entry.get("template").and_then(Json::as_str)
                {
                    return Ok(source.to_string());
                }
                names.push(name.to_string());
            }
            Err(PromptError::InvalidTemplate(format!(
                "chat_template lists templates {names:?} but none named \"default\""
            )))
        }
        other => Err(PromptError::InvalidTemplate(format!(
            "chat_template must be a string or a list of {{name, template}}, not {other}"
        ))),
    }
}

/// Reads the special tokens of a tokenizer_config.json, each a string or an
/// `AddedToken` object with `content`.
fn special_tokens(config: &Json) -> BTreeMap<String, String> {
    let mut tokens = BTreeMap::new();
    for key in SPECIAL_TOKEN_KEYS {
        let text = match config.get(key) {
            Some(Json::String(text)) => Some(text.clone()),
            Some(Json::Object(token)) => token
                .get("content")
                .and_then(Json::as_str)
                .map(str::to_string),
            _ => None,
        };
        if let Some(text) = text {
            tokens.insert(key.to_string(), text);
        }
    }
    tokens
}
