//! Which samples capture attention: `attention.sample_rate` applied within
//! each cell, spread evenly over the cell's samples.
//!
//! The rate is taken in millionths. A cell of `n` samples gets
//! `floor(n * rate)` attention samples, and some cells one more, so that the
//! plan contains `round(N * rate)` in all (halves round up). The extra ones go to
//! the first cells in balanced order whose `n * rate` is not whole. Within a
//! cell, attention sample `m` of `a` is the sample at index
//! `floor((m + phase) * n / a)`. The phase of the cell at place `p` of the
//! balanced order is the fractional part of `p` times the golden ratio
//! (in units of 2^-32), which scatters the cells whose attention samples
//! fall in each round of the plan, so any prefix contains about `rate` of them.

const MILLION: u128 = 1_000_000;

/// Returns the rate in millionths, rounded to nearest.
pub fn rate_in_millionths(rate: f64) -> u128 {
    (rate * 1e6).round() as u128
}

/// Returns, for each cell in balanced order, how many of its samples
/// capture attention. `counts[p]` is the sample count of the cell at place `p`.
pub fn attention_counts(counts: &[u64], rate_ppm: u128) -> Vec<u64> {
    let total: u128 = counts.iter().map(|&n| u128::from(n)).sum();
    let target = (total * rate_ppm + MILLION / 2) / MILLION;

    let mut attention: Vec<u64> = counts
        .iter()
        .map(|&n| (u128::from(n) * rate_ppm / MILLION) as u64)
        .collect();
    let mut extra = target - attention.iter().map(|&a| u128::from(a)).sum::<u128>();
    for (place, &n) in counts.iter().enumerate() {
        if extra == 0 {
            break;
        }
        if !(u128::from(n) * rate_ppm).is_multiple_of(MILLION) {
            attention[place] += 1;
            extra -= 1;
        }
    }
    attention
}

/// Denominator of the phase: phases are multiples of 2^-32.
const PHASE_ONE: u128 = 1 << 32;

/// 2^32 divided by the golden ratio, rounded: consecutive multiples of it
/// modulo 2^32 are spread evenly over the circle.
const GOLDEN_STEP: u64 = 0x9E37_79B9;

/// Returns the phase of the cell at `place`, in units of 2^-32.
fn phase(place: usize) -> u128 {
    u128::from((place as u64).wrapping_mul(GOLDEN_STEP) & 0xFFFF_FFFF)
}

/// Returns whether the sample at `index` of a cell captures attention.
/// The cell has `n` samples, `a` of them with attention, and sits at
/// `place` in balanced order.
pub fn collects_attention(index: u64, n: u64, a: u64, place: usize) -> bool {
    if a == 0 {
        return false;
    }
    let (index, n, a) = (u128::from(index), u128::from(n), u128::from(a));
    let phase = phase(place);

    // The attention samples are j_m = floor((m * ONE + phase) * n / (a * ONE)) for m in 0..a.
    // The smallest m with j_m >= index decides whether index is one of them.
    let m = (index * a * PHASE_ONE)
        .saturating_sub(phase * n)
        .div_ceil(n * PHASE_ONE);
    m < a && (m * PHASE_ONE + phase) * n / (a * PHASE_ONE) == index
}
