//! The sample plan: every sample of a study, drawn deterministically from
//! the config, the vignette file and the seed, ordered so that any prefix is
//! balanced, and cut into shards.
//!
//! How it is built:
//! 1. Cells are topic x the values of each `design.stratify` field that the
//!    topic allows ([`cells`]).
//! 2. The cells are put in a seeded balanced order ([`order`]).
//! 3. With `N` samples and `C` cells every cell gets `N / C` samples and the
//!    first `N % C` cells in that order one more, so cell counts differ by at
//!    most one. With fewer samples than cells, only the first `N` cells get a
//!    sample (one each) and the others none.
//! 4. Samples are dealt round-robin over the cells in balanced order: round
//!    `j` contains sample `j` of every cell that has one. So any prefix of the
//!    plan (`--limit`) has cell counts that differ by at most one.
//! 5. Attention samples are chosen within each cell ([`attention`]).
//! 6. The plan is cut into shards of `output.samples_per_shard` in order.

mod attention;
mod cells;
mod draw;
mod error;
mod fingerprint;
mod model_identity;
mod order;
mod render;
mod rng;
mod summary;
mod table;

use std::collections::BTreeMap;
use std::ops::Range;

use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::config::StudyConfig;
use crate::layout::PromptLayout;
use crate::vignettes::{Topic, VignetteSet};

pub use cells::{Cell, TopicFields};
pub use error::PlanError;
pub use fingerprint::{Fingerprint, FingerprintPart, MISSING_MODEL};
pub use model_identity::{
    ModelIdentity, ModelIdentityError, ModelStatus, model_identity, model_status,
};
pub use order::factorial_digits;
pub use rng::{keyed_rng, shuffle, uniform_index};
pub use summary::{FieldCounts, PlanSummary, TopicCount};
pub use table::plan_record_batch;

/// Domain tag of the cell-order generator; changing it changes every plan.
const ORDER_DOMAIN: &str = "gaze/plan/order/v1";

/// One sampled decision to make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// Position in the plan, from 0. The same config, vignette file and seed
    /// (the same fingerprint) give every sample the same id; `--limit N`
    /// keeps ids `0..N`.
    pub sample_id: u64,
    pub shard_id: u32,
    /// The topic's id in the vignette file.
    pub topic: String,
    /// The topic's route name.
    pub route: String,
    /// The sampled value of every field the template uses, every stratified
    /// field and every field an agree rule refers to, by field name.
    pub fields: BTreeMap<String, String>,
    /// The user message: `prompt.user` with the filled vignette in place of `{vignette}`.
    pub user_message: String,
    /// Regions and field occurrences of `user_message`, in characters.
    pub layout: PromptLayout,
    /// Seed of this sample's token sampling, below 2^63.
    pub seed: u64,
    pub collect_attention: bool,
    /// The cell: `topic|field=value|...` over the stratified fields.
    pub cell: String,
}

/// A contiguous run of samples that one worker leases at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shard {
    pub shard_id: u32,
    /// Sample ids `start..end`; also indices into [`Plan::samples`].
    pub samples: Range<u64>,
}

/// A cell and the number of samples it received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CellCount {
    pub key: String,
    pub samples: u64,
    pub attention_samples: u64,
}

/// Every sample of a study, in plan order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `samples[i].sample_id == i`.
    pub samples: Vec<Sample>,
    /// Shards in order; `shards[i].shard_id == i`.
    pub shards: Vec<Shard>,
    /// Every cell of the design in balanced order, including cells that got
    /// no sample.
    pub cells: Vec<CellCount>,
}

impl Plan {
    /// Builds the plan of `config` over `vignettes`. The same inputs always
    /// give an equal plan.
    pub fn build(config: &StudyConfig, vignettes: &VignetteSet) -> Result<Plan, PlanError> {
        let design = &config.design;
        let stratify = &design.stratify;
        cells::check_stratify(stratify, vignettes, &config.source)?;

        let cells = cells::enumerate_cells(stratify, vignettes);
        let total = total_samples(config, cells.len())?;
        let samples_per_shard = u64::from(config.output.samples_per_shard);
        let shard_count = total.div_ceil(samples_per_shard);
        if shard_count > i32::MAX as u64 {
            return Err(PlanError::TooManyShards {
                config: config.source.clone(),
                shards: shard_count,
                max: i32::MAX as u64,
            });
        }

        let mut order_rng = keyed_rng(ORDER_DOMAIN, design.seed, &[]);
        let order = order::balanced_order(&cells, stratify, vignettes, &mut order_rng);
        let cell_count = order.len() as u64;
        let counts: Vec<u64> = (0..cell_count)
            .map(|place| total / cell_count + u64::from(place < total % cell_count))
            .collect();
        let rate = attention::rate_in_millionths(config.attention.sample_rate);
        let attention_counts = attention::attention_counts(&counts, rate);

        let topic_fields: Vec<TopicFields> = vignettes
            .topics
            .iter()
            .map(|t| cells::topic_fields(t, stratify))
            .collect();
        let mut placed: Vec<PlacedCell> = order
            .iter()
            .zip(counts.iter().zip(&attention_counts))
            .map(|(&index, (&samples, &attention_samples))| {
                let cell = &cells[index];
                let topic = &vignettes.topics[cell.topic];
                let fields = &topic_fields[cell.topic];
                PlacedCell {
                    cell,
                    topic,
                    fields,
                    rng: draw::cell_rng(design.seed, cell),
                    candidates: draw::cell_candidates(cell, topic, stratify, fields),
                    samples,
                    attention_samples,
                }
            })
            .collect();

        let samples = deal_samples(&mut placed, total, samples_per_shard, config);
        let cell_counts = placed
            .iter()
            .map(|p| CellCount {
                key: p.cell.key.clone(),
                samples: p.samples,
                attention_samples: p.attention_samples,
            })
            .collect();
        Ok(Plan {
            shards: cut_shards(total, samples_per_shard),
            samples,
            cells: cell_counts,
        })
    }

    /// Keeps only the first `limit` samples, and the shards that hold them
    /// (the last one cut short). Ids and every kept sample stay as they were.
    pub fn limit(&mut self, limit: u64) {
        if limit >= self.samples.len() as u64 {
            return;
        }
        self.samples.truncate(limit as usize);
        self.shards.retain(|shard| shard.samples.start < limit);
        if let Some(last) = self.shards.last_mut() {
            last.samples.end = last.samples.end.min(limit);
        }
    }

    /// Returns the samples of one shard.
    pub fn shard_samples(&self, shard: &Shard) -> &[Sample] {
        &self.samples[shard.samples.start as usize..shard.samples.end as usize]
    }
}

/// A cell at its place in balanced order, with its generator and counts.
struct PlacedCell<'a> {
    cell: &'a Cell,
    topic: &'a Topic,
    fields: &'a TopicFields,
    rng: ChaCha8Rng,
    candidates: Vec<Option<Vec<usize>>>,
    samples: u64,
    attention_samples: u64,
}

/// Draws and renders every sample, round-robin over `placed`: round `j`
/// draws sample `j` of each cell that has more than `j` samples. Sample
/// counts never increase along `placed`, so a round ends at the first cell
/// without a sample left.
fn deal_samples(
    placed: &mut [PlacedCell],
    total: u64,
    samples_per_shard: u64,
    config: &StudyConfig,
) -> Vec<Sample> {
    let stratify = &config.design.stratify;
    let (prefix, suffix) = config.prompt.user_parts();
    let user_template = render::UserTemplate::new(prefix, suffix);
    let rounds = placed.first().map_or(0, |p| p.samples);

    let mut samples = Vec::with_capacity(total as usize);
    for round in 0..rounds {
        for (place, cell) in placed.iter_mut().enumerate() {
            if cell.samples <= round {
                break;
            }
            let draw = draw::draw_sample(
                &mut cell.rng,
                round,
                cell.cell,
                cell.topic,
                stratify,
                cell.fields,
                &cell.candidates,
            );
            let (user_message, layout) = user_template.render(&cell.topic.template, &draw.fields);
            let sample_id = samples.len() as u64;
            samples.push(Sample {
                sample_id,
                shard_id: (sample_id / samples_per_shard) as u32,
                topic: cell.topic.id.clone(),
                route: cell.topic.route.clone(),
                fields: draw.fields,
                user_message,
                layout,
                seed: draw.seed,
                collect_attention: attention::collects_attention(
                    round,
                    cell.samples,
                    cell.attention_samples,
                    place,
                ),
                cell: cell.cell.key.clone(),
            });
        }
    }
    samples
}

/// Returns the number of samples: `design.total_samples`, or cells x
/// `design.samples_per_cell`; when both are set they must agree.
fn total_samples(config: &StudyConfig, cell_count: usize) -> Result<u64, PlanError> {
    let design = &config.design;
    if design.samples_per_cell == 0 {
        return Ok(design
            .total_samples
            .expect("validated: total_samples is set without samples_per_cell"));
    }
    let implied = cell_count as u64 * design.samples_per_cell;
    match design.total_samples {
        Some(total) if total != implied => Err(PlanError::TotalConflict {
            config: config.source.clone(),
            total,
            per_cell: design.samples_per_cell,
            cells: cell_count,
            implied,
        }),
        _ => Ok(implied),
    }
}

fn cut_shards(total: u64, samples_per_shard: u64) -> Vec<Shard> {
    (0..total.div_ceil(samples_per_shard))
        .map(|shard| {
            let start = shard * samples_per_shard;
            Shard {
                shard_id: shard as u32,
                samples: start..(start + samples_per_shard).min(total),
            }
        })
        .collect()
}
