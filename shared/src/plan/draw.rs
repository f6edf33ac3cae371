//! Draws one sample's field values: the cell fixes the strata, free fields
//! are uniform over their pools, and agreeing fields (such as the name) are
//! uniform over the values that agree with what was drawn before them.

use std::collections::BTreeMap;

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::RngCore;

use super::cells::{Cell, TopicFields};
use super::rng::{keyed_rng, uniform_index};
use crate::vignettes::{PoolValue, Topic, agrees};

/// Domain tag of the per-sample generator; changing it changes every plan.
const SAMPLE_DOMAIN: &str = "gaze/plan/sample/v1";

/// Per-sample seeds are masked to 63 bits so the Parquet `seed` column
/// (Int64) stores them unchanged.
const SEED_MASK: u64 = i64::MAX as u64;

/// One sample's draws before rendering.
pub struct Draw {
    /// Seed of the worker's sampling for this sample, below 2^63.
    pub seed: u64,
    pub fields: BTreeMap<String, String>,
}

/// Returns the generator of a cell: ChaCha8 keyed by the study seed and the
/// cell key. Sample `j` of the cell reads stream `j`, so its draws depend
/// only on the seed, the cell and `j`, never on the plan's total.
pub fn cell_rng(seed: u64, cell: &Cell) -> ChaCha8Rng {
    keyed_rng(SAMPLE_DOMAIN, seed, &[&cell.key])
}

/// Returns, for each agreeing field of `fields` in order, the indices of
/// the pool values that agree with the cell's strata. The entry is `None`
/// when the field's agree rule also refers to a drawn field. Computing
/// these once per cell spares a scan of the pool per sample.
pub fn cell_candidates(
    cell: &Cell,
    topic: &Topic,
    stratify: &[String],
    fields: &TopicFields,
) -> Vec<Option<Vec<usize>>> {
    let strata = strata_values(cell, topic, stratify);
    fields
        .agreeing
        .iter()
        .map(|field| {
            let pool = &topic.pools[field];
            let strata_only = pool
                .agree
                .iter()
                .flat_map(|rule| &rule.references)
                .all(|r| strata.contains_key(r.field.as_str()));
            strata_only.then(|| {
                (0..pool.values.len())
                    .filter(|&i| agrees(&pool.values[i], &pool.agree, &strata))
                    .collect()
            })
        })
        .collect()
}

fn strata_values<'a>(
    cell: &Cell,
    topic: &'a Topic,
    stratify: &'a [String],
) -> BTreeMap<&'a str, &'a PoolValue> {
    stratify
        .iter()
        .zip(&cell.levels)
        .map(|(field, &level)| (field.as_str(), &topic.pools[field].values[level]))
        .collect()
}

/// Draws sample `index` of `cell`. `rng` is the cell's generator from
/// [`cell_rng`]; its stream is set to `index` here. `candidates` comes from
/// [`cell_candidates`] for the same cell.
///
/// The first output word is the sample seed, then one draw per free field
/// in name order, then one per agreeing field in name order, each uniform
/// over the agreeing values in pool order.
pub fn draw_sample(
    rng: &mut ChaCha8Rng,
    index: u64,
    cell: &Cell,
    topic: &Topic,
    stratify: &[String],
    fields: &TopicFields,
    candidates: &[Option<Vec<usize>>],
) -> Draw {
    rng.set_stream(index);
    rng.set_word_pos(0);
    let seed = rng.next_u64() & SEED_MASK;

    let mut drawn = strata_values(cell, topic, stratify);
    for field in &fields.free {
        let values = &topic.pools[field].values;
        drawn.insert(field, &values[uniform_index(rng, values.len())]);
    }
    for (field, cached) in fields.agreeing.iter().zip(candidates) {
        let pool = &topic.pools[field];
        let found: Vec<usize>;
        let candidates = match cached {
            Some(cached) => cached,
            None => {
                found = (0..pool.values.len())
                    .filter(|&i| agrees(&pool.values[i], &pool.agree, &drawn))
                    .collect();
                &found
            }
        };
        // Validation checked that every combination of the referenced fields has an agreeing value.
        let choice = candidates[uniform_index(rng, candidates.len())];
        drawn.insert(field, &pool.values[choice]);
    }

    let fields = drawn
        .into_iter()
        .map(|(name, value)| (name.to_string(), value.value.clone()))
        .collect();
    Draw { seed, fields }
}
