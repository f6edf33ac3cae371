//! A seeded order of the cells in which every prefix is balanced: topics
//! take turns, and within a topic each stratified field's values are used
//! evenly.
//!
//! Within one topic the cells form a full factorial of field sizes
//! `n1 x ... x nk`. Position `i` of the topic's sequence gets the last
//! field's level `(i + floor(i / L)) mod nk`, with `L = lcm(n1 * ... * n(k-1), nk)`,
//! and the other fields' levels from position `i mod (n1 * ... * n(k-1))` of
//! the same construction over the first `k - 1` fields (the first field alone
//! is `i mod n1`). Every run of `nj` positions starting at a multiple of `nj`
//! then contains each level of field `j` once, so in any prefix the counts of a
//! field's values differ by at most one, and the `floor(i / L)` shift makes
//! every cell appear exactly once.
//!
//! The seed shuffles each field's values (one ranking shared by all topics)
//! and the topics' turn order. Each topic also rotates its values by its
//! turn, so that topics placing cells in the same round use different values
//! and the counts over all topics stay close as well.

use std::collections::BTreeMap;

use rand_chacha::ChaCha8Rng;

use super::cells::Cell;
use super::rng::shuffle;
use crate::vignettes::VignetteSet;

/// Returns the indices of `cells` (as [`super::cells::enumerate_cells`]
/// lists them) in balanced order.
pub fn balanced_order(
    cells: &[Cell],
    stratify: &[String],
    vignettes: &VignetteSet,
    rng: &mut ChaCha8Rng,
) -> Vec<usize> {
    let value_rank = rank_values(stratify, vignettes, rng);
    let mut turn_order: Vec<usize> = (0..vignettes.topics.len()).collect();
    shuffle(rng, &mut turn_order);

    let mut first_cell = vec![usize::MAX; vignettes.topics.len()];
    for (index, cell) in cells.iter().enumerate().rev() {
        first_cell[cell.topic] = index;
    }

    let mut sequences: Vec<std::vec::IntoIter<usize>> = turn_order
        .iter()
        .enumerate()
        .map(|(turn, &topic)| {
            topic_sequence(
                topic,
                turn,
                first_cell[topic],
                stratify,
                vignettes,
                &value_rank,
            )
            .into_iter()
        })
        .collect();

    let mut order = Vec::with_capacity(cells.len());
    while order.len() < cells.len() {
        for sequence in &mut sequences {
            if let Some(index) = sequence.next() {
                order.push(index);
            }
        }
    }
    order
}

/// Returns, per stratified field, a seeded rank for every value any topic uses.
fn rank_values<'a>(
    stratify: &[String],
    vignettes: &'a VignetteSet,
    rng: &mut ChaCha8Rng,
) -> Vec<BTreeMap<&'a str, usize>> {
    stratify
        .iter()
        .map(|field| {
            let mut values: Vec<&str> = Vec::new();
            for topic in &vignettes.topics {
                for value in &topic.pools[field].values {
                    if !values.contains(&value.value.as_str()) {
                        values.push(&value.value);
                    }
                }
            }
            shuffle(rng, &mut values);
            values
                .into_iter()
                .enumerate()
                .map(|(rank, value)| (value, rank))
                .collect()
        })
        .collect()
}

/// Returns the cell indices of one topic in balanced order. The topic's
/// cells start at `first_cell` and are numbered in mixed radix over the
/// pool indices, the last field varying fastest.
fn topic_sequence(
    topic_index: usize,
    turn: usize,
    first_cell: usize,
    stratify: &[String],
    vignettes: &VignetteSet,
    value_rank: &[BTreeMap<&str, usize>],
) -> Vec<usize> {
    let topic = &vignettes.topics[topic_index];
    let levels: Vec<Vec<usize>> = stratify
        .iter()
        .zip(value_rank)
        .map(|(field, rank)| {
            let values = &topic.pools[field].values;
            let mut levels: Vec<usize> = (0..values.len()).collect();
            levels.sort_by_key(|&level| rank[values[level].value.as_str()]);
            levels.rotate_left(turn % values.len());
            levels
        })
        .collect();
    let sizes: Vec<usize> = levels.iter().map(Vec::len).collect();
    let count: usize = sizes.iter().product();

    (0..count)
        .map(|position| {
            let digits = factorial_digits(position, &sizes);
            let flat = digits
                .iter()
                .zip(&levels)
                .fold(0, |flat, (&digit, field_levels)| {
                    flat * field_levels.len() + field_levels[digit]
                });
            first_cell + flat
        })
        .collect()
}

/// Returns the digit of each field at `position` of the balanced sequence
/// over a full factorial of `sizes` (see the module documentation).
pub fn factorial_digits(position: usize, sizes: &[usize]) -> Vec<usize> {
    let mut digits = vec![0; sizes.len()];
    let mut position = position;
    for last in (1..sizes.len()).rev() {
        let prefix: usize = sizes[..last].iter().product();
        let period = lcm(prefix, sizes[last]);
        digits[last] = (position + position / period) % sizes[last];
        position %= prefix;
    }
    if let Some(first) = digits.first_mut() {
        *first = position % sizes[0];
    }
    digits
}

fn lcm(a: usize, b: usize) -> usize {
    a / gcd(a, b) * b
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}
