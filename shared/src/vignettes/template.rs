//! Case-text templates: `{field}` placeholders between literal text, and
//! rendering that records where each value landed, in characters.

use std::collections::BTreeMap;

use crate::layout::{CharSpan, FieldSpan};

/// A parsed template: literal text and field placeholders, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Field(String),
}

/// A template parse error; `offset` counts characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("'{{' at character {offset} is not closed; write {{{{ for a literal brace")]
    Unclosed { offset: usize },
    #[error(
        "placeholder {{{name}}} at character {offset} is not a field name (ASCII letters, digits and '_')"
    )]
    InvalidName { name: String, offset: usize },
    #[error("'}}' at character {offset} has no matching '{{'; write }}}} for a literal brace")]
    StrayClose { offset: usize },
}

/// Returns whether `name` can be written as a placeholder: ASCII letters,
/// digits and `_`, not empty.
pub fn is_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Template {
    /// Parses `text`. `{name}` is a placeholder, `{{` and `}}` are literal braces.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().enumerate().peekable();

        while let Some((offset, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|(_, next)| *next) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|(_, next)| *next) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err(TemplateError::StrayClose { offset }),
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for (_, c) in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    if !closed {
                        return Err(TemplateError::Unclosed { offset });
                    }
                    if !is_field_name(&name) {
                        return Err(TemplateError::InvalidName { name, offset });
                    }
                    if !literal.is_empty() {
                        segments.push(Segment::Literal(std::mem::take(&mut literal)));
                    }
                    segments.push(Segment::Field(name));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(Template { segments })
    }

    /// Returns the distinct field names in order of first use.
    pub fn fields(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for segment in &self.segments {
            if let Segment::Field(name) = segment
                && !names.contains(&name.as_str())
            {
                names.push(name);
            }
        }
        names
    }

    /// Fills the placeholders from `values` and returns the text with one
    /// [`FieldSpan`] per placeholder occurrence, in character offsets into
    /// the returned text, in order of appearance.
    ///
    /// Panics when a placeholder has no value; the plan draws every field
    /// its topic's template uses.
    pub fn render(&self, values: &BTreeMap<String, String>) -> (String, Vec<FieldSpan>) {
        let mut text = String::new();
        let mut spans = Vec::new();
        let mut chars = 0;

        for segment in &self.segments {
            match segment {
                Segment::Literal(literal) => {
                    text.push_str(literal);
                    chars += literal.chars().count();
                }
                Segment::Field(name) => {
                    let value = values
                        .get(name)
                        .unwrap_or_else(|| panic!("no value drawn for field {name:?}"));
                    let len = value.chars().count();
                    text.push_str(value);
                    spans.push(FieldSpan {
                        field: name.clone(),
                        span: CharSpan::new(chars, chars + len),
                    });
                    chars += len;
                }
            }
        }
        (text, spans)
    }
}
