//! Agreement between fields: a name's gender and origin must match the
//! sampled gender and country.
//!
//! The rule: a value of a field with `agree` is consistent with a sample
//! when, for every entry `attribute: [references]`, the value's attribute
//! equals at least one reference. A reference `field` stands for the sampled
//! value of that field, and `field.attribute` for an attribute of it. So
//! `"origin": ["country", "country.region"]` accepts a name whose origin is
//! the sampled country or that country's region.

use std::collections::BTreeMap;
use std::fmt;

use super::file::PoolValue;

/// One entry of a field's agreement rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    /// The attribute of the agreeing field's values, such as `origin`.
    pub attribute: String,
    /// The references the attribute may equal; at least one.
    pub references: Vec<FieldRef>,
}

/// `field` or `field.attribute` in an agreement rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRef {
    pub field: String,
    pub attribute: Option<String>,
}

impl FieldRef {
    pub fn parse(text: &str) -> FieldRef {
        match text.split_once('.') {
            Some((field, attribute)) => FieldRef {
                field: field.into(),
                attribute: Some(attribute.into()),
            },
            None => FieldRef {
                field: text.into(),
                attribute: None,
            },
        }
    }

    /// Returns what this reference stands for given the sampled values, or
    /// `None` when the field is not sampled or its value lacks the attribute.
    pub fn resolve<'a>(&self, drawn: &BTreeMap<&str, &'a PoolValue>) -> Option<&'a str> {
        let value = drawn.get(self.field.as_str())?;
        match &self.attribute {
            None => Some(&value.value),
            Some(attribute) => value.attributes.get(attribute).map(String::as_str),
        }
    }
}

impl fmt::Display for FieldRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.attribute {
            None => write!(f, "{}", self.field),
            Some(attribute) => write!(f, "{}.{attribute}", self.field),
        }
    }
}

/// Returns whether `candidate` satisfies every agreement given the values
/// already drawn for the referenced fields.
pub fn agrees(
    candidate: &PoolValue,
    rules: &[Agreement],
    drawn: &BTreeMap<&str, &PoolValue>,
) -> bool {
    rules.iter().all(|rule| {
        let Some(own) = candidate.attributes.get(&rule.attribute) else {
            return false;
        };
        rule.references
            .iter()
            .any(|reference| reference.resolve(drawn) == Some(own.as_str()))
    })
}
