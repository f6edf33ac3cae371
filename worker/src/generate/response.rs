//! The decoded response of one sample and the character span each
//! generated token covers in it.

use tokenizers::Tokenizer;

use super::error::GenerateError;

/// Generated token ids and their text, decoded with special tokens skipped.
#[derive(Debug, Clone, Default)]
pub struct Response {
    ids: Vec<u32>,
    text: String,
    /// Per token, the character offset in `text` where its text starts;
    /// non-decreasing.
    starts: Vec<usize>,
}

impl Response {
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Appends `id` and decodes the whole response again, because a token
    /// can change how earlier bytes decode (a character split over
    /// byte-level tokens). Earlier tokens whose start moves past the text
    /// they still share with the new decoding are pulled back to it.
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<(), GenerateError> {
        self.ids.push(id);
        let text = tokenizer
            .decode(&self.ids, true)
            .map_err(|e| GenerateError::Tokenizer(e.to_string()))?;
        let shared = common_prefix_chars(&self.text, &text);
        for start in self.starts.iter_mut() {
            *start = (*start).min(shared);
        }
        self.starts.push(shared);
        self.text = text;
        Ok(())
    }

    /// Returns the character span `[start, end)` of generated token `step`.
    pub fn span(&self, step: usize) -> (usize, usize) {
        let end = match self.starts.get(step + 1) {
            Some(&next) => next,
            None => self.text.chars().count(),
        };
        (self.starts[step], end.max(self.starts[step]))
    }

    /// Returns the step whose token span contains character `offset` of the
    /// text. Tokens that add no text (empty spans) never match.
    pub fn step_at(&self, offset: usize) -> Option<usize> {
        (0..self.ids.len()).find(|&step| {
            let (start, end) = self.span(step);
            start <= offset && offset < end
        })
    }
}

fn common_prefix_chars(a: &str, b: &str) -> usize {
    a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count()
}
