//! Seeded random draws that stay the same across crate versions.
//!
//! Keys come from SHA-256 and the stream from ChaCha8, whose output is fixed
//! by its specification. Uniform indices and shuffles are written here
//! rather than taken from `rand`, whose distributions may change between
//! releases.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

/// Returns a generator keyed by SHA-256 of a domain tag, the study seed and
/// `parts`, each length-prefixed so that different inputs never collide.
pub fn keyed_rng(domain: &str, seed: u64, parts: &[&str]) -> ChaCha8Rng {
    let mut hasher = Sha256::new();
    for part in std::iter::once(domain.as_bytes()).chain(std::iter::once(&seed.to_le_bytes()[..])) {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    ChaCha8Rng::from_seed(hasher.finalize().into())
}

/// Returns a uniform index in `0..n` by Lemire's multiply-and-reject method.
/// Panics when `n` is 0.
pub fn uniform_index(rng: &mut impl RngCore, n: usize) -> usize {
    assert!(n > 0, "uniform_index over an empty range");
    let n = n as u64;
    let threshold = n.wrapping_neg() % n;
    loop {
        let product = u128::from(rng.next_u64()) * u128::from(n);
        if (product as u64) >= threshold {
            return (product >> 64) as usize;
        }
    }
}

/// Shuffles `items` in place (Fisher-Yates with [`uniform_index`]).
pub fn shuffle<T>(rng: &mut impl RngCore, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = uniform_index(rng, i + 1);
        items.swap(i, j);
    }
}
