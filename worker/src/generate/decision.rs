//! The decision in a response: which label it states, found with the
//! study's labels and optional pattern, and the probability the model gave
//! each label at the step that emitted it.
//!
//! # Label tokens
//!
//! A label's probability at a step is the probability of its first token.
//! The first token depends on what precedes the label, so two encodings
//! count: the label alone, and the label after one space. Each is encoded
//! without special tokens, and its first token is the one whose character
//! span covers the label's first character. A label's probability is the
//! sum over its distinct first tokens (one or two). A token that is a first
//! token of two labels cannot distinguish them, so it counts for neither.
//! If that leaves a label without tokens, label probabilities are not
//! reported.

use std::collections::BTreeMap;

use regex::Regex;
use tokenizers::Tokenizer;

use super::error::GenerateError;

/// The labels a response may state and how to find them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionSpec {
    /// Such as `["GRANT", "REFUSE"]`; distinct and non-empty.
    pub labels: Vec<String>,
    /// A regular expression (Rust `regex` syntax) whose capture group named
    /// `label`, else its first group, else its whole match, is compared
    /// with the labels. Without one, labels are found as whole words,
    /// ignoring case.
    pub pattern: Option<String>,
}

/// The outcome of parsing a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionStatus {
    /// Exactly one label was found (possibly more than once).
    Parsed,
    /// No label was found.
    NoLabel,
    /// Two or more different labels were found; none is chosen.
    MultipleLabels,
}

impl DecisionStatus {
    /// Returns the name written to tables.
    pub fn as_str(&self) -> &'static str {
        match self {
            DecisionStatus::Parsed => "parsed",
            DecisionStatus::NoLabel => "no_label",
            DecisionStatus::MultipleLabels => "multiple_labels",
        }
    }
}

/// The result of parsing one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedDecision {
    pub status: DecisionStatus,
    /// The label, as the spec spells it, when `status` is `Parsed`.
    pub label: Option<String>,
    /// The character offset in the response of the label's first
    /// occurrence, when `status` is `Parsed`.
    pub offset: Option<usize>,
}

/// A compiled [`DecisionSpec`].
#[derive(Debug, Clone)]
pub struct DecisionParser {
    labels: Vec<String>,
    pattern: Regex,
    group: Option<usize>,
}

impl DecisionParser {
    pub fn new(spec: &DecisionSpec) -> Result<Self, GenerateError> {
        let invalid = |message: String| GenerateError::InvalidSettings { message };
        if spec.labels.is_empty() {
            return Err(invalid(
                "decision labels are empty; list at least one label".into(),
            ));
        }
        for (index, label) in spec.labels.iter().enumerate() {
            if label.trim().is_empty() {
                return Err(invalid(format!("decision label {index} is blank")));
            }
            if spec.labels[..index]
                .iter()
                .any(|other| other.eq_ignore_ascii_case(label))
            {
                return Err(invalid(format!("decision label {label:?} is listed twice")));
            }
        }

        let source = match &spec.pattern {
            Some(pattern) => pattern.clone(),
            None => default_pattern(&spec.labels),
        };
        let pattern = Regex::new(&source)
            .map_err(|e| invalid(format!("invalid decision pattern {source:?}: {e}")))?;
        let group = match pattern
            .capture_names()
            .position(|name| name == Some("label"))
        {
            Some(index) => Some(index),
            None if pattern.captures_len() > 1 => Some(1),
            None => None,
        };
        Ok(Self {
            labels: spec.labels.clone(),
            pattern,
            group,
        })
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Finds the labels in `response`. Matches whose text is no label are
    /// skipped; a match equal to a label up to case counts as that label.
    pub fn parse(&self, response: &str) -> ParsedDecision {
        let mut found: Vec<(usize, usize)> = Vec::new(); // (label index, byte offset)
        for captures in self.pattern.captures_iter(response) {
            let matched = match self.group {
                Some(group) => captures.get(group),
                None => captures.get(0),
            };
            let Some(matched) = matched else { continue };
            let Some(label) = self.label_index(matched.as_str()) else {
                continue;
            };
            if !found.iter().any(|(index, _)| *index == label) {
                found.push((label, matched.start()));
            }
        }
        match found.as_slice() {
            [] => ParsedDecision {
                status: DecisionStatus::NoLabel,
                label: None,
                offset: None,
            },
            [(label, byte)] => ParsedDecision {
                status: DecisionStatus::Parsed,
                label: Some(self.labels[*label].clone()),
                offset: Some(response[..*byte].chars().count()),
            },
            _ => ParsedDecision {
                status: DecisionStatus::MultipleLabels,
                label: None,
                offset: None,
            },
        }
    }

    fn label_index(&self, text: &str) -> Option<usize> {
        self.labels
            .iter()
            .position(|label| label == text)
            .or_else(|| {
                self.labels
                    .iter()
                    .position(|label| lowercase_eq(label, text))
            })
    }

    /// Tells whether a label could start inside the character span `span`
    /// of `response`: the text from some character in the span onward
    /// begins with a label, or is the beginning of one, ignoring case. A
    /// step failing this test cannot be the decision step.
    pub fn may_start_label(&self, response: &str, span: (usize, usize)) -> bool {
        let (start, end) = span;
        let mut rest = response.char_indices().skip(start).map(|(byte, _)| byte);
        (start..end).any(|_| match rest.next() {
            Some(byte) => self
                .labels
                .iter()
                .any(|label| prefix_compatible(&response[byte..], label)),
            None => false,
        })
    }
}

/// Whole-word, case-insensitive alternatives of the escaped labels; `\b`
/// only where a label starts or ends with a word character.
fn default_pattern(labels: &[String]) -> String {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let alternatives: Vec<String> = labels
        .iter()
        .map(|label| {
            let before = if word(label.chars().next()) {
                r"\b"
            } else {
                ""
            };
            let after = if word(label.chars().last()) {
                r"\b"
            } else {
                ""
            };
            format!("{before}{}{after}", regex::escape(label))
        })
        .collect();
    format!("(?i)({})", alternatives.join("|"))
}

fn lowercase_eq(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

/// True when one of `text` and `label` begins with the other, ignoring case.
fn prefix_compatible(text: &str, label: &str) -> bool {
    let text = text.chars().flat_map(char::to_lowercase);
    let label = label.chars().flat_map(char::to_lowercase);
    text.zip(label).all(|(a, b)| a == b)
}

/// The first-token ids of each label, chosen by the rule in the module
/// documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelTokens {
    /// Per label, in spec order, its distinct first-token ids.
    pub ids: Vec<Vec<u32>>,
    /// The reason label probabilities are unavailable: a label whose first
    /// tokens all start another label too.
    pub ambiguous: Option<String>,
}

/// The labels' probabilities at one step.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelProbabilities {
    /// Per label, in spec order, its probability divided by `mass`; sums
    /// to 1 unless `mass` is 0.
    pub normalized: Vec<f32>,
    /// The summed probability of all labels' first tokens under the
    /// model's distribution (softmax of the raw logits, before temperature,
    /// top-k or top-p).
    pub mass: f32,
}

impl LabelTokens {
    /// Finds each label's first tokens by the rule in the module
    /// documentation, leaving out tokens that start more than one label.
    pub fn new(tokenizer: &Tokenizer, labels: &[String]) -> Result<Self, GenerateError> {
        let mut ids = labels
            .iter()
            .map(|label| first_token_ids(tokenizer, label))
            .collect::<Result<Vec<_>, _>>()?;

        let mut label_counts: BTreeMap<u32, usize> = BTreeMap::new();
        for &id in ids.iter().flatten() {
            *label_counts.entry(id).or_default() += 1;
        }
        let shared: Vec<u32> = label_counts
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(id, _)| id)
            .collect();
        for label_ids in ids.iter_mut() {
            label_ids.retain(|id| !shared.contains(id));
        }

        let ambiguous =
            labels
                .iter()
                .zip(&ids)
                .find(|(_, ids)| ids.is_empty())
                .map(|(label, _)| {
                    let tokens: Vec<String> = shared
                        .iter()
                        .map(|&id| tokenizer.id_to_token(id).unwrap_or_default())
                        .collect();
                    format!(
                        "every first token of label {label:?} also starts another label: {tokens:?}"
                    )
                });
        Ok(Self { ids, ambiguous })
    }

    /// Computes the label probabilities from one row of raw logits, or
    /// `None` when a label has no first token of its own.
    pub fn probabilities(&self, logits: &[f32]) -> Option<LabelProbabilities> {
        if self.ambiguous.is_some() {
            return None;
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let partition: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
        let probability = |id: u32| (logits[id as usize] as f64 - max).exp() / partition;
        let per_label: Vec<f64> = self
            .ids
            .iter()
            .map(|ids| ids.iter().map(|&id| probability(id)).sum())
            .collect();
        let mass: f64 = per_label.iter().sum();
        let normalized = per_label
            .iter()
            .map(|&p| if mass > 0.0 { (p / mass) as f32 } else { 0.0 })
            .collect();
        Some(LabelProbabilities {
            normalized,
            mass: mass as f32,
        })
    }
}

/// Returns the distinct first tokens of `label` alone and after one space.
fn first_token_ids(tokenizer: &Tokenizer, label: &str) -> Result<Vec<u32>, GenerateError> {
    let mut ids = Vec::new();
    for (text, first_char) in [(label.to_string(), 0), (format!(" {label}"), 1)] {
        let encoding = tokenizer
            .encode_char_offsets(text.as_str(), false)
            .map_err(|e| GenerateError::Tokenizer(e.to_string()))?;
        let covering = encoding
            .get_offsets()
            .iter()
            .position(|&(start, end)| start <= first_char && first_char < end);
        if let Some(id) = covering.map(|index| encoding.get_ids()[index])
            && !ids.contains(&id)
        {
            ids.push(id);
        }
    }
    if ids.is_empty() {
        return Err(GenerateError::InvalidSettings {
            message: format!(
                "decision label {label:?} encodes to no token covering its first character"
            ),
        });
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser(pattern: Option<&str>) -> DecisionParser {
        DecisionParser::new(&DecisionSpec {
            labels: vec!["GRANT".into(), "REFUSE".into()],
            pattern: pattern.map(String::from),
        })
        .unwrap()
    }

    #[test]
    fn single_label_parsed_with_offset() {
        let parsed = parser(None).parse(" I would GRANT this.");
        assert_eq!(parsed.status, DecisionStatus::Parsed);
        assert_eq!(parsed.label.as_deref(), Some("GRANT"));
        assert_eq!(parsed.offset, Some(9));
    }

    #[test]
    fn default_pattern_ignores_case_and_reports_spec_spelling() {
        let parsed = parser(None).parse("refuse");
        assert_eq!(parsed.label.as_deref(), Some("REFUSE"));
    }

    #[test]
    fn default_pattern_needs_whole_words() {
        assert_eq!(
            parser(None).parse("GRANTED").status,
            DecisionStatus::NoLabel
        );
    }

    #[test]
    fn both_labels_recorded_as_multiple() {
        let parsed = parser(None).parse("GRANT or REFUSE");
        assert_eq!(parsed.status, DecisionStatus::MultipleLabels);
        assert_eq!(parsed.label, None);
    }

    #[test]
    fn repeated_label_is_parsed_at_first_occurrence() {
        let parsed = parser(None).parse("GRANT. Yes, GRANT.");
        assert_eq!(parsed.status, DecisionStatus::Parsed);
        assert_eq!(parsed.offset, Some(0));
    }

    #[test]
    fn pattern_group_limits_where_labels_count() {
        let parsed = parser(Some(r"DECISION:\s*(\w+)")).parse("I may GRANT it. DECISION: REFUSE");
        assert_eq!(parsed.label.as_deref(), Some("REFUSE"));
        assert_eq!(parsed.offset, Some(26));
    }

    #[test]
    fn named_group_preferred() {
        let parsed = parser(Some(r"(\w+): (?P<label>\w+)")).parse("answer: GRANT");
        assert_eq!(parsed.label.as_deref(), Some("GRANT"));
    }

    #[test]
    fn offset_counts_characters_not_bytes() {
        assert_eq!(parser(None).parse("é GRANT").offset, Some(2));
    }

    #[test]
    fn invalid_pattern_named_in_error() {
        let spec = DecisionSpec {
            labels: vec!["A".into()],
            pattern: Some("(".into()),
        };
        let message = DecisionParser::new(&spec).unwrap_err().to_string();
        assert!(message.contains("\"(\""), "{message}");
    }

    #[test]
    fn duplicate_label_rejected() {
        let spec = DecisionSpec {
            labels: vec!["A".into(), "a".into()],
            pattern: None,
        };
        assert!(DecisionParser::new(&spec).is_err());
    }

    #[test]
    fn label_may_start_in_partial_text() {
        let p = parser(None);
        assert!(p.may_start_label(" GR", (0, 3)), "prefix of a label");
        assert!(p.may_start_label(" grant it", (0, 3)), "case ignored");
        assert!(
            !p.may_start_label(" GO", (0, 3)),
            "diverged from every label"
        );
        assert!(
            !p.may_start_label("ok GRANT", (0, 2)),
            "label starts outside the span"
        );
    }

    #[test]
    fn probabilities_renormalise_over_labels() {
        let tokens = LabelTokens {
            ids: vec![vec![0], vec![1, 2]],
            ambiguous: None,
        };
        let logits = [0.0_f32, 0.0, 0.0, 0.0];
        let probabilities = tokens.probabilities(&logits).unwrap();
        assert!((probabilities.mass - 0.75).abs() < 1e-6);
        assert!((probabilities.normalized[0] - 1.0 / 3.0).abs() < 1e-6);
        assert!((probabilities.normalized[1] - 2.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn shared_first_token_gives_no_probabilities() {
        let tokens = LabelTokens {
            ids: vec![vec![0]],
            ambiguous: Some("shared".into()),
        };
        assert_eq!(tokens.probabilities(&[0.0]), None);
    }
}
