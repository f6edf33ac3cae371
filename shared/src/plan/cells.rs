//! Cells of the design: one per topic and combination of the stratified
//! fields' values that the topic allows.

use std::path::Path;

use super::error::PlanError;
use crate::vignettes::{Topic, VignetteSet};

/// One stratum of the design.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// Index of the topic in the vignette file.
    pub topic: usize,
    /// For each stratified field, in `design.stratify` order, the index of
    /// the value in the topic's pool.
    pub levels: Vec<usize>,
    /// `topic|field=value|...`, fields in `design.stratify` order.
    pub key: String,
}

/// The fields a topic's samples draw besides the strata, in draw order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicFields {
    /// Fields without an agree rule, drawn uniformly after the strata, by name.
    pub free: Vec<String>,
    /// Fields with an agree rule, drawn last among the values that agree, by name.
    pub agreeing: Vec<String>,
}

/// Checks that every topic defines every stratified field and that none of
/// them has an agree rule.
pub fn check_stratify(
    stratify: &[String],
    vignettes: &VignetteSet,
    config: &Path,
) -> Result<(), PlanError> {
    for field in stratify {
        for topic in &vignettes.topics {
            let Some(pool) = topic.pools.get(field) else {
                return Err(PlanError::UnknownStratifyField {
                    config: config.to_path_buf(),
                    vignettes: vignettes.source.clone(),
                    field: field.clone(),
                    topic: topic.id.clone(),
                });
            };
            if !pool.agree.is_empty() {
                return Err(PlanError::AgreeingStratifyField {
                    config: config.to_path_buf(),
                    vignettes: vignettes.source.clone(),
                    field: field.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Returns every cell: topics in file order, and within a topic the
/// combinations of stratified values in pool order, the last field varying
/// fastest.
pub fn enumerate_cells(stratify: &[String], vignettes: &VignetteSet) -> Vec<Cell> {
    let mut cells = Vec::new();
    for (topic_index, topic) in vignettes.topics.iter().enumerate() {
        let sizes: Vec<usize> = stratify
            .iter()
            .map(|f| topic.pools[f].values.len())
            .collect();
        let count: usize = sizes.iter().product();
        for mut flat in 0..count {
            let mut levels = vec![0; sizes.len()];
            for (slot, size) in levels.iter_mut().zip(&sizes).rev() {
                *slot = flat % size;
                flat /= size;
            }
            let key = cell_key(topic, stratify, &levels);
            cells.push(Cell {
                topic: topic_index,
                levels,
                key,
            });
        }
    }
    cells
}

fn cell_key(topic: &Topic, stratify: &[String], levels: &[usize]) -> String {
    let mut key = topic.id.clone();
    for (field, &level) in stratify.iter().zip(levels) {
        key.push('|');
        key.push_str(field);
        key.push('=');
        key.push_str(&topic.pools[field].values[level].value);
    }
    key
}

/// Returns the fields a topic's samples draw besides the strata: those its
/// template uses and those an agree rule refers to.
pub fn topic_fields(topic: &Topic, stratify: &[String]) -> TopicFields {
    let mut needed: std::collections::BTreeSet<&str> =
        topic.template.fields().into_iter().collect();
    for name in needed.clone() {
        for rule in &topic.pools[name].agree {
            for reference in &rule.references {
                needed.insert(&reference.field);
            }
        }
    }

    let mut fields = TopicFields {
        free: Vec::new(),
        agreeing: Vec::new(),
    };
    for name in needed {
        if stratify.iter().any(|s| s == name) {
            continue;
        }
        if topic.pools[name].agree.is_empty() {
            fields.free.push(name.to_string());
        } else {
            fields.agreeing.push(name.to_string());
        }
    }
    fields
}
