//! Mapping of token spans onto the prompt's regions, template fields and
//! words.
//!
//! One rule decides every boundary case. A token belongs to the candidate
//! span with the largest overlap, counted in non-whitespace characters (in
//! all characters for a token made only of whitespace). A tie goes to the
//! candidate that starts earlier. The characters that no candidate
//! covers form gap candidates of their own (the chat template for regions,
//! "no field" for fields, "no word" for words). So `▁3` in front of the
//! field value `34` belongs to the field, and `\n\nThe` after a template
//! header belongs to the message.

use std::collections::HashMap;

use gaze_shared::layout::CharSpan;
use unicode_segmentation::UnicodeSegmentation;

/// The overlap measure of one text: counts of non-whitespace characters.
#[derive(Debug, Clone)]
pub struct OverlapRule {
    /// `nonspace_before[i]`: non-whitespace characters among the first `i`.
    nonspace_before: Vec<usize>,
}

impl OverlapRule {
    pub fn new(text: &str) -> Self {
        let mut nonspace_before = Vec::with_capacity(text.len() + 1);
        nonspace_before.push(0);
        let mut count = 0;
        for ch in text.chars() {
            count += usize::from(!ch.is_whitespace());
            nonspace_before.push(count);
        }
        Self { nonspace_before }
    }

    fn nonspace(&self, span: CharSpan) -> usize {
        let last = self.nonspace_before.len() - 1;
        self.nonspace_before[span.end.min(last)] - self.nonspace_before[span.start.min(last)]
    }

    /// Returns the index into `spans` of the span that owns `token` by the
    /// rule of this module, or `None` when text outside every span wins (or
    /// when nothing overlaps it, as for an empty span). `spans` must not
    /// overlap each other; their order does not matter.
    pub fn owner(&self, token: CharSpan, spans: &[CharSpan]) -> Option<usize> {
        let by_nonspace = self.nonspace(token) > 0;
        let measure = |span: &CharSpan| {
            let start = token.start.max(span.start);
            let end = token.end.min(span.end);
            if end <= start {
                0
            } else if by_nonspace {
                self.nonspace(CharSpan::new(start, end))
            } else {
                end - start
            }
        };

        let mut order: Vec<usize> = (0..spans.len()).collect();
        order.sort_by_key(|&i| (spans[i].start, spans[i].end));

        // Candidates in order of their start: each span, and the uncovered gap
        // before it, then the uncovered tail.
        let mut candidates: Vec<(CharSpan, Option<usize>)> =
            Vec::with_capacity(2 * spans.len() + 1);
        let mut covered_to = 0;
        for i in order {
            if spans[i].start > covered_to {
                candidates.push((CharSpan::new(covered_to, spans[i].start), None));
            }
            candidates.push((spans[i], Some(i)));
            covered_to = covered_to.max(spans[i].end);
        }
        candidates.push((CharSpan::new(covered_to, usize::MAX), None));

        let mut best = None;
        let mut best_overlap = 0;
        for (span, owner) in candidates {
            let overlap = measure(&span);
            if overlap > best_overlap {
                best = owner;
                best_overlap = overlap;
            }
        }
        best
    }
}

/// Groups token spans into words and returns each token's word index.
///
/// Words are the word segments of Unicode text segmentation (UAX #29) that
/// contain a non-whitespace character. So "appellant's" and "2019" are one
/// word each, a punctuation mark is a word of its own, and whitespace
/// belongs to no word. A token takes a word by the rule of this module, so
/// the piece ` V` of ` Văn` belongs to `Văn`. Tokens flagged in `skip`
/// (special tokens) get `None`. Indices count from 0 in order of first appearance among the
/// tokens, so sub-word pieces of one word share an index and indices never
/// decrease along the prompt.
pub fn assign_words(text: &str, spans: &[CharSpan], skip: &[bool]) -> Vec<Option<usize>> {
    let words = word_spans(text);
    let rule = OverlapRule::new(text);

    let mut assigned = Vec::with_capacity(spans.len());
    let mut index_of_segment: HashMap<usize, usize> = HashMap::new();
    for (span, skip) in spans.iter().zip(skip) {
        if *skip {
            assigned.push(None);
            continue;
        }
        // Words are sorted and disjoint, so only the run of words that
        // overlap the token can own it; the gaps between them are the same
        // as in the full list.
        let first = words.partition_point(|w| w.end <= span.start);
        let last = first + words[first..].partition_point(|w| w.start < span.end);
        let word = rule.owner(*span, &words[first..last]).map(|i| {
            let next = index_of_segment.len();
            *index_of_segment.entry(first + i).or_insert(next)
        });
        assigned.push(word);
    }
    assigned
}

/// Returns the character spans of the non-whitespace UAX #29 word segments of `text`.
fn word_spans(text: &str) -> Vec<CharSpan> {
    let mut spans = Vec::new();
    let mut chars_before = 0;
    for segment in text.split_word_bounds() {
        let len = segment.chars().count();
        if !segment.chars().all(char::is_whitespace) {
            spans.push(CharSpan::new(chars_before, chars_before + len));
        }
        chars_before += len;
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: usize, end: usize) -> CharSpan {
        CharSpan::new(start, end)
    }

    const LETTERS: &str = "abcdefghijklmnopqrstuvwxyz";

    #[test]
    fn inside_one_span() {
        assert_eq!(
            OverlapRule::new(LETTERS).owner(span(2, 4), &[span(0, 10)]),
            Some(0)
        );
    }

    #[test]
    fn larger_overlap_wins() {
        // Token 3..8 has 2 chars in span 0 (0..5) and 3 in span 1 (5..10).
        assert_eq!(
            OverlapRule::new(LETTERS).owner(span(3, 8), &[span(0, 5), span(5, 10)]),
            Some(1)
        );
    }

    #[test]
    fn tie_goes_to_earlier_span() {
        assert_eq!(
            OverlapRule::new(LETTERS).owner(span(3, 7), &[span(5, 10), span(0, 5)]),
            Some(1)
        );
    }

    #[test]
    fn gap_counts_as_candidate() {
        let rule = OverlapRule::new(LETTERS);
        // Token 0..4: 3 chars of gap (0..3) beat 1 char of the span 3..9.
        assert_eq!(rule.owner(span(0, 4), &[span(3, 9)]), None);
        // Token 2..4: 1 char of gap ties 1 char of the span; the gap is earlier.
        assert_eq!(rule.owner(span(2, 4), &[span(3, 9)]), None);
        // Token 8..10: 1 char of span ties 1 char of the tail gap; the span is earlier.
        assert_eq!(rule.owner(span(8, 10), &[span(3, 9)]), Some(0));
    }

    #[test]
    fn whitespace_does_not_count() {
        // "is 34": the token " 3" (2..4) has a space in the gap and "3" in
        // the field 3..5, so it belongs to the field.
        let rule = OverlapRule::new("is 34");
        assert_eq!(rule.owner(span(2, 4), &[span(3, 5)]), Some(0));
    }

    #[test]
    fn whitespace_token_counts_all_characters() {
        // "a\n\nb" with region 3..4: the token "\n\n" (1..3) is in the gap.
        let rule = OverlapRule::new("a\n\nb");
        assert_eq!(rule.owner(span(1, 3), &[span(3, 4)]), None);
        // The same token inside a region belongs to it.
        assert_eq!(rule.owner(span(1, 3), &[span(1, 4)]), Some(0));
    }

    #[test]
    fn empty_span_has_no_owner() {
        assert_eq!(
            OverlapRule::new(LETTERS).owner(span(3, 3), &[span(0, 10)]),
            None
        );
    }

    #[test]
    fn words_group_sub_word_pieces() {
        // "Nguyễn Văn" as pieces "Ng" "uy" "ễn" " V" "ăn".
        let text = "Nguyễn Văn";
        let spans = [span(0, 2), span(2, 4), span(4, 6), span(6, 8), span(8, 10)];
        let words = assign_words(text, &spans, &[false; 5]);
        assert_eq!(words, vec![Some(0), Some(0), Some(0), Some(1), Some(1)]);
    }

    #[test]
    fn punctuation_is_its_own_word_and_space_none() {
        let text = "Zoë, 34";
        // "Zoë" "," " " "34"
        let spans = [span(0, 3), span(3, 4), span(4, 5), span(5, 7)];
        let words = assign_words(text, &spans, &[false; 4]);
        assert_eq!(words, vec![Some(0), Some(1), None, Some(2)]);
    }

    #[test]
    fn skipped_tokens_have_no_word() {
        let words = assign_words("ab", &[span(0, 0), span(0, 2)], &[true, false]);
        assert_eq!(words, vec![None, Some(0)]);
    }
}
