//! Errors from building a sample plan from a config and a vignette file.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "design.stratify in {config} names field {field:?}, but topic {topic:?} in {vignettes} has no pool for it; define the field in the vignette file or remove it from design.stratify"
    )]
    UnknownStratifyField {
        config: PathBuf,
        vignettes: PathBuf,
        field: String,
        topic: String,
    },

    #[error(
        "design.stratify in {config} names field {field:?}, which has an agree rule in {vignettes}; stratify the fields it agrees with instead"
    )]
    AgreeingStratifyField {
        config: PathBuf,
        vignettes: PathBuf,
        field: String,
    },

    #[error(
        "{config}: design.total_samples = {total} conflicts with design.samples_per_cell = {per_cell}, which asks for {cells} cells x {per_cell} = {implied} samples; remove one of the two keys"
    )]
    TotalConflict {
        config: PathBuf,
        total: u64,
        per_cell: u64,
        cells: usize,
        implied: u64,
    },

    #[error(
        "{config}: the plan would have {shards} shards, more than the {max} a shard id can number; raise output.samples_per_shard"
    )]
    TooManyShards {
        config: PathBuf,
        shards: u64,
        max: u64,
    },
}
