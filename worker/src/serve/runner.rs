//! The seam between the worker loop and the work on one shard: the loop
//! leases a job, and a [`ShardRunner`] generates the shard's samples and
//! commits them to the store.

use std::error::Error;
use std::sync::Arc;

use futures::future::BoxFuture;
use gaze_shared::queue::{Job, JobQueue, Lease, QueueError};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

/// Any error a runner reports, with its chain of sources.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// Runs one shard and commits its results.
///
/// The worker loop calls `run_shard` on its own tokio task while a separate
/// task sends the lease's heartbeats, so a slow shard keeps its lease.
/// Implementations must keep the async thread free: run model work in
/// [`tokio::task::spawn_blocking`] and check `cancel` between batches or
/// decode steps.
///
/// Contract:
/// - Return `Ok` only once the shard's commit marker exists, written by this
///   attempt or found from an earlier one. The loop then acks the job.
/// - Keep a stale attempt from overwriting a committed shard, as the
///   fencing section of [`gaze_shared::queue`] describes: write data under
///   a path unique to the attempt ([`AttemptInfo::attempt`] and
///   [`AttemptInfo::worker`]) and create the commit marker only if absent.
///   A retried shard may find the marker and return at once.
/// - Call [`AttemptInfo::still_owner`] right before the commit step and
///   return [`ShardError::Cancelled`] when it is `false`.
/// - When `cancel` fires (the lease was lost, or the shutdown grace period
///   ran out), stop soon and return [`ShardError::Cancelled`]. The loop
///   discards whatever the attempt returns after that.
pub trait ShardRunner: Send + Sync {
    fn run_shard<'a>(
        &'a self,
        job: &'a Job,
        attempt: &'a AttemptInfo,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ShardOutcome, ShardError>>;
}

/// What a committed shard cost this attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardOutcome {
    /// Samples this attempt generated and committed, or 0 when it found the
    /// shard already committed.
    pub samples: u64,
    /// Tokens this attempt generated, over all its samples.
    pub generated_tokens: u64,
    pub commit: CommitStatus,
}

/// The origin of the commit marker an attempt reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitStatus {
    /// This attempt created the commit marker.
    Written,
    /// The marker existed already, from an earlier attempt whose ack was
    /// lost. This attempt's data, if any, was discarded.
    FoundCommitted,
}

/// The failure of an attempt. The loop's response depends on the variant.
#[derive(Debug, Error)]
pub enum ShardError {
    /// A failure that may pass on another try (store unreachable, CUDA out
    /// of memory on a busy GPU). The job goes back to the queue, and to the
    /// dead-letter list once delivered `max_deliveries` times.
    #[error(transparent)]
    Retryable(BoxError),

    /// A failure that no retry can fix (a vignette the plan cannot render,
    /// a prompt longer than the model's context). The job goes to the
    /// dead-letter list at once with this error as the reason.
    #[error(transparent)]
    Poison(BoxError),

    /// The runner stopped because `cancel` fired or
    /// [`AttemptInfo::still_owner`] returned `false`.
    #[error("shard work stopped before its commit, on cancellation or a lost lease")]
    Cancelled,
}

impl ShardError {
    /// Wraps an error that may pass on another try.
    pub fn retryable(error: impl Into<BoxError>) -> Self {
        ShardError::Retryable(error.into())
    }

    /// Wraps an error that no retry can fix.
    pub fn poison(error: impl Into<BoxError>) -> Self {
        ShardError::Poison(error.into())
    }

    /// Formats the error and its sources as one line, `outer: inner: ...`,
    /// the form recorded in the queue as the failure reason.
    pub fn reason(&self) -> String {
        let mut reason = self.to_string();
        let mut source = self.source();
        while let Some(error) = source {
            reason.push_str(": ");
            reason.push_str(&error.to_string());
            source = error.source();
        }
        reason
    }
}

/// One claim of a shard, as passed to the runner. Cheap to clone.
#[derive(Clone)]
pub struct AttemptInfo {
    /// Fencing token of this claim: 1 for the first claim of the shard, one
    /// more for each later claim. The commit marker records it.
    pub attempt: u64,
    /// How many times the job has been delivered, this delivery included,
    /// not counting deliveries released on shutdown.
    pub delivery: u32,
    /// The worker's consumer name in the queue.
    pub worker: String,
    lease: Lease,
    queue: Arc<dyn JobQueue>,
    lease_lost: CancellationToken,
}

impl AttemptInfo {
    /// Describes the attempt holding `lease` on `queue`. The caller that
    /// sends the heartbeats cancels `lease_lost` once one finds the lease
    /// lost.
    pub fn new(queue: Arc<dyn JobQueue>, lease: Lease, lease_lost: CancellationToken) -> Self {
        Self {
            attempt: lease.attempt,
            delivery: lease.delivery,
            worker: lease.consumer.clone(),
            lease,
            queue,
            lease_lost,
        }
    }

    /// Returns the queue's lease behind this attempt.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Returns whether the lease is still this worker's, asking the queue
    /// unless a heartbeat has already found it lost. Call it right before
    /// the commit step. `true` does not fence a commit that comes much
    /// later: the commit marker's conditional create does.
    pub async fn still_owner(&self) -> Result<bool, QueueError> {
        if self.lease_lost() {
            return Ok(false);
        }
        self.queue.still_owner(&self.lease).await
    }

    /// Returns whether a heartbeat has found the lease lost. It reads a
    /// flag without locking, so it suits a check between decode steps on a
    /// blocking thread.
    pub fn lease_lost(&self) -> bool {
        self.lease_lost.is_cancelled()
    }
}

impl std::fmt::Debug for AttemptInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttemptInfo")
            .field("attempt", &self.attempt)
            .field("delivery", &self.delivery)
            .field("worker", &self.worker)
            .field("lease_lost", &self.lease_lost())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::fmt;

    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("writing shard 7 to the store failed")
        }
    }

    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn reason_joins_source_chain() {
        let error = ShardError::retryable(Outer(std::io::Error::other("connection reset")));
        assert_eq!(
            error.reason(),
            "writing shard 7 to the store failed: connection reset"
        );
    }

    #[test]
    fn reason_of_plain_message() {
        let error = ShardError::poison("prompt of 9000 tokens exceeds the context of 8192");
        assert_eq!(
            error.reason(),
            "prompt of 9000 tokens exceeds the context of 8192"
        );
    }
}
