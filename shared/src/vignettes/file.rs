//! The vignette file as written: JSON or TOML with the same keys.
//!
//! [`super::VignetteSet`] is the validated form that the plan reads.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// The whole file: field pools shared by every topic, and the topics.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VignetteFile {
    /// Pools shared by every topic, by field name.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldSpec>,
    pub topics: Vec<TopicSpec>,
}

/// One template field and the pool of values it is drawn from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub category: Category,
    #[serde(default)]
    pub description: String,
    /// Agreement rule: for each attribute of this field's values, the
    /// references its value must equal one of. A reference is `field` (the
    /// sampled value of that field) or `field.attribute` (an attribute of
    /// that sampled value). See [`super::Agreement`].
    #[serde(default)]
    pub agree: BTreeMap<String, Vec<String>>,
    pub values: Vec<PoolValue>,
}

/// What a field describes; demographic fields are the ones a bias audit varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Demographic,
    CaseFact,
}

impl Category {
    pub fn as_str(&self) -> &'static str {
        match self {
            Category::Demographic => "demographic",
            Category::CaseFact => "case_fact",
        }
    }
}

/// One value of a pool. Written as a plain string, or as
/// `{ "value": "...", "attributes": { "gender": "woman" } }`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PoolValue {
    pub value: String,
    pub attributes: BTreeMap<String, String>,
}

impl PoolValue {
    pub fn plain(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            attributes: BTreeMap::new(),
        }
    }
}

/// One case type: an immigration route with its case text.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    /// Identifier used in object keys: `[A-Za-z0-9_-]+`, unique in the file.
    pub id: String,
    /// Human-readable name, such as "Skilled Worker visa".
    pub route: String,
    /// Case text with `{field}` placeholders; `{{` and `}}` are literal braces.
    pub template: String,
    /// Narrows shared pools for this topic, by field name.
    #[serde(default)]
    pub restrict: BTreeMap<String, Restriction>,
    /// Pools only this topic uses, by field name. A name may not repeat a
    /// shared field.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldSpec>,
}

/// A topic's narrowing of a pool: the values listed in `values` whose
/// attributes take one of the listed values. Both parts are optional,
/// at least one is given, and a value must pass both.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restriction {
    #[serde(default)]
    pub values: Option<Vec<String>>,
    #[serde(default)]
    pub attributes: BTreeMap<String, Vec<String>>,
}

impl<'de> Deserialize<'de> for PoolValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PoolValueVisitor)
    }
}

struct PoolValueVisitor;

impl<'de> Visitor<'de> for PoolValueVisitor {
    type Value = PoolValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, or { \"value\": \"...\", \"attributes\": { ... } }")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(PoolValue::plain(text))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct WithAttributes {
            value: String,
            #[serde(default)]
            attributes: BTreeMap<String, String>,
        }

        let spec = WithAttributes::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(PoolValue {
            value: spec.value,
            attributes: spec.attributes,
        })
    }
}
