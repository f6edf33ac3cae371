//! The plan's own uniform draws and shuffle, checked against values worked
//! out by hand from Lemire's multiply-and-reject method.

use gaze_shared::plan::{shuffle, uniform_index};
use rand_chacha::rand_core::RngCore;

/// Returns the given 64-bit words in order, then panics.
struct Words(Vec<u64>);

impl RngCore for Words {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }

    fn next_u64(&mut self) -> u64 {
        assert!(!self.0.is_empty(), "the test supplied too few words");
        self.0.remove(0)
    }

    fn fill_bytes(&mut self, _: &mut [u8]) {
        unimplemented!("the plan never asks for bytes")
    }
}

#[test]
fn uniform_index_takes_high_word_of_product() {
    // index = floor(x * n / 2^64): 2^63 * 3 / 2^64 = 1.5, so 1; (2^64 - 1) * 3 / 2^64 rounds down to 2.
    assert_eq!(uniform_index(&mut Words(vec![1 << 63]), 3), 1);
    assert_eq!(uniform_index(&mut Words(vec![u64::MAX]), 3), 2);
    assert_eq!(uniform_index(&mut Words(vec![u64::MAX]), 1), 0);
}

#[test]
fn uniform_index_rejects_biased_words() {
    // For n = 3 the threshold is 2^64 mod 3 = 1, so a product whose low word
    // is 0 (x = 0) is rejected and the next word decides.
    let mut words = Words(vec![0, 1 << 63]);

    assert_eq!(uniform_index(&mut words, 3), 1);
    assert!(words.0.is_empty());
}

#[test]
fn shuffle_is_fisher_yates_from_the_end() {
    // Steps i = 3, 2, 1 swap items[i] with items[j], j = uniform_index(i + 1):
    // x = 0 is rejected for n = 3 but not for n = 4 or n = 2 (thresholds 0).
    // i = 3: x = 2^63 -> j = 2, swap 2 and 3 -> [a, b, d, c]
    // i = 2: x = 0 (rejected), then u64::MAX -> j = 2, no change
    // i = 1: x = 0 -> j = 0, swap 0 and 1 -> [b, a, d, c]
    let mut items = ["a", "b", "c", "d"];

    shuffle(&mut Words(vec![1 << 63, 0, u64::MAX, 0]), &mut items);

    assert_eq!(items, ["b", "a", "d", "c"]);
}
