//! Counts that describe a plan: samples per topic, per field value and per
//! cell, attention samples and shards.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Plan;
use crate::vignettes::{Category, VignetteSet};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanSummary {
    pub samples: u64,
    pub attention_samples: u64,
    pub shards: usize,
    /// Cells of the design, including those that got no sample.
    pub cells: usize,
    pub cells_with_samples: usize,
    /// Minimum and maximum samples in one cell, over every cell of the design.
    pub min_cell_samples: u64,
    pub max_cell_samples: u64,
    /// In vignette file order.
    pub topics: Vec<TopicCount>,
    /// Every sampled field, by name.
    pub fields: BTreeMap<String, FieldCounts>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicCount {
    pub topic: String,
    pub route: String,
    pub samples: u64,
    pub attention_samples: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldCounts {
    pub category: Category,
    /// Samples per value, by value.
    pub values: BTreeMap<String, u64>,
}

impl PlanSummary {
    /// Counts the samples of `plan`, which was built from `vignettes`.
    /// After [`Plan::limit`] every count describes the samples kept, and
    /// `cells` still counts every cell of the design.
    pub fn of(plan: &Plan, vignettes: &VignetteSet) -> PlanSummary {
        let mut topics: Vec<TopicCount> = vignettes
            .topics
            .iter()
            .map(|t| TopicCount {
                topic: t.id.clone(),
                route: t.route.clone(),
                samples: 0,
                attention_samples: 0,
            })
            .collect();
        let mut fields: BTreeMap<String, FieldCounts> = BTreeMap::new();

        for sample in &plan.samples {
            if let Some(count) = topics.iter_mut().find(|t| t.topic == sample.topic) {
                count.samples += 1;
                count.attention_samples += u64::from(sample.collect_attention);
            }
            let topic = vignettes
                .topic(&sample.topic)
                .expect("plan topics come from the vignette set");
            for (name, value) in &sample.fields {
                let counts = fields.entry(name.clone()).or_insert_with(|| FieldCounts {
                    category: topic.pools[name].category,
                    values: BTreeMap::new(),
                });
                *counts.values.entry(value.clone()).or_default() += 1;
            }
        }

        let mut per_cell: BTreeMap<&str, u64> =
            plan.cells.iter().map(|c| (c.key.as_str(), 0)).collect();
        for sample in &plan.samples {
            *per_cell.entry(&sample.cell).or_default() += 1;
        }
        let cell_samples = per_cell.values().copied();
        PlanSummary {
            samples: plan.samples.len() as u64,
            attention_samples: plan.samples.iter().filter(|s| s.collect_attention).count() as u64,
            shards: plan.shards.len(),
            cells: plan.cells.len(),
            cells_with_samples: per_cell.values().filter(|&&n| n > 0).count(),
            min_cell_samples: cell_samples.clone().min().unwrap_or(0),
            max_cell_samples: cell_samples.max().unwrap_or(0),
            topics,
            fields,
        }
    }
}
