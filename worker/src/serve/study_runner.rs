//! The [`ShardRunner`] of `gaze-worker serve`: looks up a job's shard in
//! the study's plan and runs it through [`crate::shard::ShardRunner`], which
//! generates, stages and commits the tables exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures::future::BoxFuture;
use gaze_shared::plan::{Plan, Sample};
use gaze_shared::queue::{Job, JobQueue};
use gaze_shared::store::CommitOutcome;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::runner::{AttemptInfo, CommitStatus, ShardError, ShardOutcome, ShardRunner};
use crate::shard;

/// Runs the shards of one study and one loaded model.
pub struct StudyShardRunner {
    runner: shard::ShardRunner,
    plan: Arc<Plan>,
    /// The queue the worker serves, for the lease check before the claim.
    queue: Arc<dyn JobQueue>,
    fail_sample: Option<u64>,
}

impl StudyShardRunner {
    /// Runs shards of `plan` (the whole plan the manifest describes) with
    /// `runner`, checking leases on `queue`.
    pub fn new(runner: shard::ShardRunner, plan: Arc<Plan>, queue: Arc<dyn JobQueue>) -> Self {
        Self {
            runner,
            plan,
            queue,
            fail_sample: None,
        }
    }

    /// Makes every shard that contains sample `sample_id` fail as poison, as a
    /// sample whose inference fails would. For fault-injection tests only.
    pub fn fail_sample(mut self, sample_id: Option<u64>) -> Self {
        self.fail_sample = sample_id;
        self
    }

    /// Returns the samples the job requests: the first `job.samples` of its
    /// shard. A job submitted with `--limit` may request fewer samples than
    /// the shard contains.
    fn samples(&self, job: &Job) -> Result<&[Sample], ShardError> {
        let shard = self.plan.shards.get(job.shard_id as usize).ok_or_else(|| {
            ShardError::poison(format!(
                "shard {} is not in the plan, which has {} shards: the job was submitted for \
                 another plan",
                job.shard_id,
                self.plan.shards.len()
            ))
        })?;
        let samples = self.plan.shard_samples(shard);
        if job.samples == 0 || job.samples as usize > samples.len() {
            return Err(ShardError::poison(format!(
                "the job requests {} samples of shard {}, which has {}: the job was submitted \
                 for another plan",
                job.samples,
                job.shard_id,
                samples.len()
            )));
        }
        Ok(&samples[..job.samples as usize])
    }
}

impl ShardRunner for StudyShardRunner {
    fn run_shard<'a>(
        &'a self,
        job: &'a Job,
        attempt: &'a AttemptInfo,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ShardOutcome, ShardError>> {
        Box::pin(async move {
            let samples = self.samples(job)?;
            if let Some(id) = self
                .fail_sample
                .filter(|id| samples.iter().any(|s| s.sample_id == *id))
            {
                return Err(ShardError::poison(format!(
                    "inference failed for sample {id}: failure injected by --fail-sample"
                )));
            }

            // The shard runner checks a flag between batches; the token
            // fires on a lost lease or at the end of the shutdown grace.
            let stop = Arc::new(AtomicBool::new(false));
            let watcher = tokio::spawn({
                let stop = Arc::clone(&stop);
                async move {
                    cancel.cancelled().await;
                    stop.store(true, Ordering::Relaxed);
                }
            });
            let tokens = Arc::new(AtomicU64::new(0));
            let counter = Arc::clone(&tokens);
            let result = self
                .runner
                .run(
                    job.shard_id,
                    samples.to_vec(),
                    shard::AttemptInfo {
                        worker: attempt.worker.clone(),
                        attempt: attempt.attempt,
                    },
                    Some((self.queue.as_ref(), attempt.lease())),
                    stop,
                    Box::new(move |batch| {
                        counter.fetch_add(batch.generated_tokens as u64, Ordering::Relaxed);
                    }),
                )
                .await;
            watcher.abort();

            let report = result.map_err(classify)?;
            let generated_tokens = tokens.load(Ordering::Relaxed);
            Ok(match report.outcome {
                Some(CommitOutcome::Won(_)) => ShardOutcome {
                    samples: samples.len() as u64,
                    generated_tokens,
                    commit: CommitStatus::Written,
                },
                Some(CommitOutcome::Lost(_)) | None => {
                    warn!(
                        shard = job.shard_id, winner = %report.marker.worker,
                        winner_attempt = report.marker.attempt,
                        "another attempt committed the shard; this attempt's tables were discarded"
                    );
                    ShardOutcome {
                        samples: 0,
                        generated_tokens: 0,
                        commit: CommitStatus::FoundCommitted,
                    }
                }
            })
        })
    }
}

/// Sorts a shard failure. What a retry cannot fix (bad prompts, a
/// selection the model does not have, tables that do not build) is poison.
/// Store, generation (out of GPU memory on a busy card) and task failures
/// are retryable.
fn classify(error: shard::ShardError) -> ShardError {
    use shard::ShardError as E;
    match error {
        E::Cancelled => ShardError::Cancelled,
        E::Template { .. }
        | E::Prompt { .. }
        | E::Selection { .. }
        | E::Table(_)
        | E::Schema(_) => ShardError::poison(error),
        E::Capture(_) | E::Generate(_) | E::Store(_) | E::Join(_) => ShardError::retryable(error),
    }
}
