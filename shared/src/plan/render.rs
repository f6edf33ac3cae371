//! Renders a sample's user message: the `prompt.user` template with the
//! filled vignette in place of `{vignette}`, and its layout in characters.

use std::collections::BTreeMap;

use crate::layout::{CharSpan, PromptLayout, Region};
use crate::vignettes::Template;

/// The user message's text around `{vignette}`, with character lengths
/// counted once per plan.
pub struct UserTemplate<'a> {
    prefix: &'a str,
    suffix: &'a str,
    prefix_chars: usize,
    suffix_chars: usize,
}

impl<'a> UserTemplate<'a> {
    pub fn new(prefix: &'a str, suffix: &'a str) -> Self {
        Self {
            prefix,
            suffix,
            prefix_chars: prefix.chars().count(),
            suffix_chars: suffix.chars().count(),
        }
    }

    /// Returns the user message and its layout: the regions
    /// InstructionPrefix, Vignette and InstructionSuffix (an empty prefix or
    /// suffix is left out) and one field span per placeholder occurrence,
    /// in character offsets into the message.
    pub fn render(
        &self,
        template: &Template,
        values: &BTreeMap<String, String>,
    ) -> (String, PromptLayout) {
        let (vignette, field_spans) = template.render(values);
        let vignette_chars = vignette.chars().count();

        let mut text =
            String::with_capacity(self.prefix.len() + vignette.len() + self.suffix.len());
        text.push_str(self.prefix);
        text.push_str(&vignette);
        text.push_str(self.suffix);

        let vignette_start = self.prefix_chars;
        let vignette_end = vignette_start + vignette_chars;
        let mut regions = Vec::with_capacity(3);
        if vignette_start > 0 {
            regions.push((Region::InstructionPrefix, CharSpan::new(0, vignette_start)));
        }
        regions.push((
            Region::Vignette,
            CharSpan::new(vignette_start, vignette_end),
        ));
        if self.suffix_chars > 0 {
            let suffix_end = vignette_end + self.suffix_chars;
            regions.push((
                Region::InstructionSuffix,
                CharSpan::new(vignette_end, suffix_end),
            ));
        }

        let fields = PromptLayout {
            regions: Vec::new(),
            fields: field_spans,
        }
        .shifted(vignette_start)
        .fields;
        (text, PromptLayout { regions, fields })
    }
}
