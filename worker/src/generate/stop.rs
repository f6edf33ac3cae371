//! When a sample stops: at an end-of-sequence token, a stop string in the
//! decoded response, or the maximum number of new tokens.

/// The reason a sample's generation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The model emitted one of the EOS ids; the EOS token is the last of
    /// the generated ids, and the text leaves it out.
    Eos,
    /// The response text contains this stop string; the text keeps it.
    StopString(String),
    /// `max_new_tokens` tokens were generated.
    MaxNewTokens,
}

impl StopReason {
    /// Returns the name written to tables: `eos`, `stop_string` or
    /// `max_new_tokens`.
    pub fn as_str(&self) -> &'static str {
        match self {
            StopReason::Eos => "eos",
            StopReason::StopString(_) => "stop_string",
            StopReason::MaxNewTokens => "max_new_tokens",
        }
    }
}

/// The stop conditions of a batch.
#[derive(Debug, Clone)]
pub struct StopCriteria {
    pub eos_token_ids: Vec<u32>,
    pub stop_strings: Vec<String>,
    pub max_new_tokens: usize,
}

impl StopCriteria {
    /// Checks a sample after it generated `token`, making `generated` tokens
    /// whose text is `text`. EOS wins over a stop string, which wins over
    /// the length limit.
    pub fn check(&self, token: u32, generated: usize, text: &str) -> Option<StopReason> {
        if self.eos_token_ids.contains(&token) {
            return Some(StopReason::Eos);
        }
        if let Some(stop) = self
            .stop_strings
            .iter()
            .find(|stop| text.contains(stop.as_str()))
        {
            return Some(StopReason::StopString(stop.clone()));
        }
        if generated >= self.max_new_tokens {
            return Some(StopReason::MaxNewTokens);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn criteria() -> StopCriteria {
        StopCriteria {
            eos_token_ids: vec![2, 9],
            stop_strings: vec!["\n\n".into()],
            max_new_tokens: 4,
        }
    }

    #[test]
    fn any_eos_id_stops() {
        assert_eq!(criteria().check(9, 1, "a"), Some(StopReason::Eos));
    }

    #[test]
    fn stop_string_found_across_tokens() {
        assert_eq!(
            criteria().check(5, 2, "GRANT\n\nmore"),
            Some(StopReason::StopString("\n\n".into()))
        );
    }

    #[test]
    fn length_limit_stops_last() {
        assert_eq!(
            criteria().check(5, 4, "a b c d"),
            Some(StopReason::MaxNewTokens)
        );
        assert_eq!(criteria().check(5, 3, "a b c"), None);
    }

    #[test]
    fn eos_reported_before_length_limit() {
        assert_eq!(criteria().check(2, 4, "a b c"), Some(StopReason::Eos));
    }
}
