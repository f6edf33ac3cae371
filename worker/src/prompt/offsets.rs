//! Conversion of the tokenizer's UTF-8 byte offsets into character offsets
//! (Unicode scalar values, as Python indexes a `str`).

use gaze_shared::layout::CharSpan;

use super::PromptError;

/// A table from byte offsets of one text to character offsets.
///
/// Byte-level BPE can split a multi-byte character across tokens. An offset
/// that falls inside a character widens the span to the whole character
/// (start rounds down, end rounds up), so a span never splits a character.
#[derive(Debug, Clone)]
pub struct ByteToChar {
    /// `char_at[b]` is the index of the character that contains byte `b`;
    /// the extra last entry is the character count.
    char_at: Vec<usize>,
    /// Whether byte `b` starts a character (or is the end of the text).
    boundary: Vec<bool>,
}

impl ByteToChar {
    pub fn new(text: &str) -> Self {
        let mut char_at = Vec::with_capacity(text.len() + 1);
        let mut boundary = Vec::with_capacity(text.len() + 1);
        for (index, ch) in text.chars().enumerate() {
            for byte in 0..ch.len_utf8() {
                char_at.push(index);
                boundary.push(byte == 0);
            }
        }
        char_at.push(text.chars().count());
        boundary.push(true);
        Self { char_at, boundary }
    }

    /// Returns the number of characters in the text.
    pub fn char_len(&self) -> usize {
        self.char_at[self.char_at.len() - 1]
    }

    /// Returns the number of UTF-8 bytes in the text.
    pub fn byte_len(&self) -> usize {
        self.char_at.len() - 1
    }

    /// Converts the byte range `start..end` into the smallest character span
    /// that contains it.
    pub fn char_span(&self, start: usize, end: usize) -> Result<CharSpan, PromptError> {
        let len = self.byte_len();
        if start > end || end > len {
            return Err(PromptError::OffsetsOutOfRange { start, end, len });
        }

        let char_start = self.char_at[start];
        let char_end = if self.boundary[end] {
            self.char_at[end]
        } else {
            self.char_at[end] + 1
        };
        Ok(CharSpan::new(char_start, char_end.max(char_start)))
    }
}

/// Gives every non-special token a non-empty span.
///
/// A tokenizer whose post-processor trims offsets (GPT-2 style
/// `trim_offsets`) gives a token made only of whitespace an empty span next
/// to the whitespace it covers. Each run of consecutive empty spans takes the
/// characters between the previous and the next non-empty span, one
/// character per token in order, the last token taking the rest. When that
/// gap has fewer characters than the run has tokens, every token of the run
/// takes the whole gap, or the single character at its offset if the gap is
/// empty. Special tokens keep their spans; `spans` and `special` are parallel.
pub fn fill_empty_spans(spans: &mut [CharSpan], special: &[bool], char_len: usize) {
    let mut i = 0;
    while i < spans.len() {
        if special[i] || !spans[i].is_empty() {
            i += 1;
            continue;
        }

        let run_start = i;
        while i < spans.len() && !special[i] && spans[i].is_empty() {
            i += 1;
        }
        let run = run_start..i;

        let gap_start = spans[..run.start]
            .iter()
            .zip(&special[..run.start])
            .rev()
            .find(|(span, is_special)| !**is_special && !span.is_empty())
            .map_or(0, |(span, _)| span.end);
        let gap_end = spans[run.end..]
            .iter()
            .find(|span| !span.is_empty())
            .map_or(char_len, |span| span.start)
            .max(gap_start);

        let count = run.len();
        for (k, position) in run.enumerate() {
            spans[position] = if gap_end - gap_start >= count {
                let start = gap_start + k;
                let end = if k + 1 == count { gap_end } else { start + 1 };
                CharSpan::new(start, end)
            } else if gap_end > gap_start {
                CharSpan::new(gap_start, gap_end)
            } else {
                let at = spans[position].start.min(char_len.saturating_sub(1));
                CharSpan::new(at, (at + 1).min(char_len))
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_offsets_are_unchanged() {
        let table = ByteToChar::new("abc def");
        assert_eq!(table.char_span(4, 7).unwrap(), CharSpan::new(4, 7));
    }

    #[test]
    fn multibyte_characters_count_once() {
        // "Zoë" is 4 bytes and 3 characters; "王" is 3 bytes.
        let table = ByteToChar::new("Zoë 王芳");
        assert_eq!(table.char_len(), 6);
        assert_eq!(table.char_span(0, 4).unwrap(), CharSpan::new(0, 3));
        assert_eq!(table.char_span(5, 8).unwrap(), CharSpan::new(4, 5));
        assert_eq!(table.char_span(8, 11).unwrap(), CharSpan::new(5, 6));
    }

    #[test]
    fn split_character_widens_to_whole_character() {
        let table = ByteToChar::new("a王b");
        // Bytes 1..2 and 2..4 are parts of the 3-byte character at char 1.
        assert_eq!(table.char_span(1, 2).unwrap(), CharSpan::new(1, 2));
        assert_eq!(table.char_span(2, 4).unwrap(), CharSpan::new(1, 2));
        assert_eq!(table.char_span(2, 5).unwrap(), CharSpan::new(1, 3));
    }

    #[test]
    fn out_of_range_offsets_are_rejected() {
        let table = ByteToChar::new("ab");
        assert!(table.char_span(1, 3).is_err());
        assert!(table.char_span(2, 1).is_err());
    }

    #[test]
    fn trimmed_whitespace_tokens_get_their_gap() {
        // "  Two" tokenized as [Ġ, Ġ, Two] with trimmed offsets (0,0) (2,2) (2,5).
        let mut spans = vec![
            CharSpan::new(0, 0),
            CharSpan::new(2, 2),
            CharSpan::new(2, 5),
        ];
        fill_empty_spans(&mut spans, &[false; 3], 5);
        assert_eq!(
            spans,
            vec![
                CharSpan::new(0, 1),
                CharSpan::new(1, 2),
                CharSpan::new(2, 5)
            ]
        );
    }

    #[test]
    fn trailing_whitespace_token_gets_the_tail() {
        let mut spans = vec![CharSpan::new(0, 2), CharSpan::new(3, 3)];
        fill_empty_spans(&mut spans, &[false; 2], 3);
        assert_eq!(spans[1], CharSpan::new(2, 3));
    }

    #[test]
    fn special_tokens_keep_empty_spans() {
        let mut spans = vec![CharSpan::new(0, 0), CharSpan::new(0, 3)];
        fill_empty_spans(&mut spans, &[true, false], 3);
        assert_eq!(spans[0], CharSpan::new(0, 0));
    }

    #[test]
    fn empty_gap_falls_back_to_one_character() {
        let mut spans = vec![
            CharSpan::new(0, 2),
            CharSpan::new(2, 2),
            CharSpan::new(2, 4),
        ];
        fill_empty_spans(&mut spans, &[false; 3], 4);
        assert_eq!(spans[1], CharSpan::new(2, 3));
    }
}
