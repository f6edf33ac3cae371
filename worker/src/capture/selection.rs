//! Layer and head selections as the command line and study config write
//! them: `all`, or a comma-separated list of indices and ranges (`0,4-7`).

use std::str::FromStr;

/// A set of layer or head indices, before the model's size is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    /// Indices in the order written; duplicates are removed on resolve.
    List(Vec<usize>),
}

impl Selection {
    /// Returns every index below `count` for `All`, and the listed ones
    /// otherwise, ascending and distinct. Listed indices are not
    /// checked against `count` here; [`super::CaptureSpec::validate`] does.
    pub fn resolve(&self, count: usize) -> Vec<usize> {
        match self {
            Selection::All => (0..count).collect(),
            Selection::List(indices) => {
                let mut indices = indices.clone();
                indices.sort_unstable();
                indices.dedup();
                indices
            }
        }
    }
}

impl FromStr for Selection {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text == "all" {
            return Ok(Selection::All);
        }
        let mut indices = Vec::new();
        for part in text.split(',').map(str::trim) {
            let invalid = || {
                format!(
                    "invalid index or range {part:?} in {text:?}; write all, or a list such as 0,4-7"
                )
            };
            match part.split_once('-') {
                Some((first, last)) => {
                    let first: usize = first.trim().parse().map_err(|_| invalid())?;
                    let last: usize = last.trim().parse().map_err(|_| invalid())?;
                    if first > last {
                        return Err(invalid());
                    }
                    indices.extend(first..=last);
                }
                None => indices.push(part.parse().map_err(|_| invalid())?),
            }
        }
        Ok(Selection::List(indices))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_resolves_to_every_index() {
        assert_eq!(
            "all".parse::<Selection>().unwrap().resolve(3),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn list_with_ranges_resolves_sorted_distinct() {
        let selection: Selection = "5, 0-2,1".parse().unwrap();
        assert_eq!(selection.resolve(8), vec![0, 1, 2, 5]);
    }

    #[test]
    fn reversed_range_rejected() {
        let message = "4-2".parse::<Selection>().unwrap_err();
        assert!(message.contains("\"4-2\""), "{message}");
    }

    #[test]
    fn word_rejected_with_hint() {
        let message = "first".parse::<Selection>().unwrap_err();
        assert!(message.contains("0,4-7"), "{message}");
    }
}
