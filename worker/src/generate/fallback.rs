//! Retrying a failed batch in smaller batches: halves, then quarters, down
//! to one sample at a time. Results do not depend on batch composition, so
//! a retried sample produces what it would have in the full batch.

use tracing::warn;

/// Runs `run` on all of `items`; if it fails, runs each half the same way,
/// recursively, and concatenates the results in input order. Fails with the
/// error of the first single item that fails on its own.
///
/// NOTE: every error is retried, not only out-of-memory ones, because
/// candle reports allocation failures of different backends in different
/// forms. A deterministic error costs about `log2(len)` extra attempts.
pub fn run_with_fallback<T, R, E>(
    items: &[T],
    run: &mut impl FnMut(&[T]) -> Result<Vec<R>, E>,
) -> Result<Vec<R>, E>
where
    E: std::fmt::Display,
{
    match run(items) {
        Ok(results) => Ok(results),
        Err(error) if items.len() > 1 => {
            let half = items.len().div_ceil(2);
            warn!(
                error = %error,
                batch_size = items.len(),
                retry_batch_size = half,
                "batch failed; retrying its samples in smaller batches"
            );
            let mut results = run_with_fallback(&items[..half], run)?;
            results.extend(run_with_fallback(&items[half..], run)?);
            Ok(results)
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_batches_split_until_they_pass() {
        let mut sizes = Vec::new();
        let mut run = |items: &[u32]| {
            sizes.push(items.len());
            if items.len() > 2 {
                Err("out of memory")
            } else {
                Ok(items.iter().map(|i| i * 10).collect())
            }
        };
        let results = run_with_fallback(&[1, 2, 3, 4, 5], &mut run).unwrap();
        assert_eq!(results, vec![10, 20, 30, 40, 50]);
        assert_eq!(sizes, vec![5, 3, 2, 1, 2]);
    }

    #[test]
    fn single_failure_returned() {
        let mut run = |items: &[u32]| -> Result<Vec<u32>, String> {
            if items.contains(&3) {
                Err(format!("bad item in {items:?}"))
            } else {
                Ok(items.to_vec())
            }
        };
        let error = run_with_fallback(&[1, 2, 3, 4], &mut run).unwrap_err();
        assert_eq!(error, "bad item in [3]");
    }
}
