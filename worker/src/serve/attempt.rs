//! One attempt at a leased shard: check the job, keep its lease alive, run
//! the shard, and settle the lease with an ack, a release or a dead letter.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use gaze_shared::queue::{Heartbeat, JobQueue, Lease, QueueError, ReleaseReason};
use tokio::task::{AbortHandle, JoinError};
use tokio::time::{Instant, MissedTickBehavior, interval, sleep, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, error, info, info_span, warn};

use super::ServeOptions;
use super::heartbeat_clock::HeartbeatClock;
use super::metrics::WorkerMetrics;
use super::runner::{AttemptInfo, ShardError, ShardOutcome, ShardRunner};
use super::shutdown::ShutdownSignal;

/// How often the heartbeat age gauge is refreshed while a shard runs.
const GAUGE_PERIOD: Duration = Duration::from_secs(1);

/// How many times an ack, release or dead letter is tried when the queue
/// fails with a transient error, and the delay before the first retry
/// (doubled for each later one).
const SETTLE_TRIES: u32 = 5;
const SETTLE_FIRST_DELAY: Duration = Duration::from_millis(100);

/// The end of an attempt, and what the worker did with the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AttemptEnd {
    /// The shard is committed and the job acked (or the ack failed, and the
    /// next worker will find the shard committed).
    Completed(ShardOutcome),
    /// A retryable error. The job was released to be delivered again.
    Failed,
    /// A poison error, or a job of another study, fingerprint or model. The
    /// job was moved to the dead-letter list.
    DeadLettered,
    /// The shutdown grace period ran out, so the job was released at once.
    Released,
    /// A heartbeat or the queue found the lease lost, so the result was
    /// discarded.
    LeaseLost,
    /// A second shutdown signal. The lease was left to expire.
    Abandoned,
    /// The queue failed to record the release or dead letter. The lease
    /// will expire and the reaper will put the job back.
    Unsettled,
}

/// Everything an attempt needs from the worker loop.
pub(super) struct Worker {
    pub(super) queue: Arc<dyn JobQueue>,
    pub(super) runner: Arc<dyn ShardRunner>,
    pub(super) options: ServeOptions,
    pub(super) shutdown: ShutdownSignal,
    pub(super) metrics: WorkerMetrics,
    pub(super) clock: HeartbeatClock,
}

/// Aborts the runner's task when the attempt is dropped or ends early, so
/// that no async work of a finished attempt goes on. Blocking work inside
/// the task runs on until it returns, and its result is ignored.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Worker {
    /// Runs one attempt on `lease` and settles the lease. Every error is
    /// logged and folded into the returned end rather than returned.
    pub(super) async fn run_attempt(&self, lease: Lease) -> AttemptEnd {
        async {
            let started = Instant::now();
            self.metrics.shard_started(lease.job.shard_id);
            let end = self.check_and_run(&lease).await;
            self.metrics.shard_ended(started.elapsed());
            self.count(&end);
            end
        }
        .instrument(shard_span(&lease))
        .await
    }

    /// Releases a job claimed while the worker was starting to shut down,
    /// without running it, so another worker takes it at once.
    pub(super) async fn release_unstarted(&self, lease: Lease) -> AttemptEnd {
        async {
            info!("shutdown requested while claiming, releasing the shard unstarted");
            let end = self.release(&lease, ReleaseReason::Shutdown).await;
            self.count(&end);
            end
        }
        .instrument(shard_span(&lease))
        .await
    }

    async fn check_and_run(&self, lease: &Lease) -> AttemptEnd {
        if let Err(err) = lease
            .job
            .check_belongs(self.queue.study(), &self.options.model)
        {
            let reason = err.to_string();
            warn!(cause = %reason, "dead-lettering a job that does not belong to this worker");
            return self.dead_letter(lease, &reason).await;
        }

        if lease.attempt > 1 {
            info!(
                samples = lease.job.samples,
                "shard started again after an earlier attempt failed, was released or was reclaimed"
            );
        } else {
            info!(samples = lease.job.samples, "shard started");
        }
        let started = Instant::now();
        let end = self.supervise(lease).await;
        info!(
            ?end,
            elapsed_s = started.elapsed().as_secs_f64(),
            "shard stopped"
        );
        end
    }

    /// Runs the shard on its own task next to the heartbeat, and reacts to a
    /// lost lease and to shutdown while it runs.
    async fn supervise(&self, lease: &Lease) -> AttemptEnd {
        let mut heartbeat = Heartbeat::spawn(self.queue.clone(), lease.clone());
        let lease_lost = CancellationToken::new();
        let cancel = CancellationToken::new();
        let mut task = self.spawn_runner(lease, lease_lost.clone(), cancel.clone());
        let _abort = AbortOnDrop(task.abort_handle());

        let grace = self.options.shutdown_grace;
        let mut grace_deadline: Option<Instant> = None;
        let mut gauge = interval(GAUGE_PERIOD);
        gauge.set_missed_tick_behavior(MissedTickBehavior::Delay);

        let joined = loop {
            tokio::select! {
                joined = &mut task => break joined,
                () = heartbeat.lost(), if !lease_lost.is_cancelled() => {
                    warn!("lease lost, so cancelling the shard and discarding its result unless it is already committed");
                    lease_lost.cancel();
                    cancel.cancel();
                }
                () = self.shutdown.draining(), if grace_deadline.is_none() => {
                    info!(grace_s = grace.as_secs_f64(), "shutdown requested, letting the shard finish within the grace period");
                    grace_deadline = Some(Instant::now() + grace);
                }
                () = sleep_until(grace_deadline.unwrap_or_else(Instant::now)), if grace_deadline.is_some() => {
                    warn!(grace_s = grace.as_secs_f64(), "shard did not finish within the shutdown grace period, so cancelling and releasing it");
                    cancel.cancel();
                    task.abort();
                    drop(heartbeat);
                    if lease_lost.is_cancelled() {
                        return AttemptEnd::LeaseLost;
                    }
                    return self.release(lease, ReleaseReason::Shutdown).await;
                }
                () = self.shutdown.immediate() => {
                    warn!("second shutdown signal, so stopping at once and leaving the lease to expire");
                    cancel.cancel();
                    task.abort();
                    return AttemptEnd::Abandoned;
                }
                _ = gauge.tick() => self.metrics.heartbeat_age(self.clock.age()),
            }
        };
        drop(heartbeat);

        let result = joined.unwrap_or_else(|err| Err(runner_panicked(err)));
        self.settle(lease, result, lease_lost.is_cancelled()).await
    }

    fn spawn_runner(
        &self,
        lease: &Lease,
        lease_lost: CancellationToken,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<Result<ShardOutcome, ShardError>> {
        let runner = self.runner.clone();
        let job = lease.job.clone();
        let attempt = AttemptInfo::new(self.queue.clone(), lease.clone(), lease_lost);
        tokio::spawn(
            async move { runner.run_shard(&job, &attempt, cancel).await }
                .instrument(Span::current()),
        )
    }

    /// Acks, releases or dead-letters the job according to the runner's
    /// result.
    async fn settle(
        &self,
        lease: &Lease,
        result: Result<ShardOutcome, ShardError>,
        lease_lost: bool,
    ) -> AttemptEnd {
        match result {
            // The commit marker exists, so the shard is done, whichever lease
            // the queue now has for it.
            Ok(outcome) => {
                info!(samples = outcome.samples, generated_tokens = outcome.generated_tokens, commit = ?outcome.commit, "shard committed");
                if let Err(err) = self.retry("ack", || self.queue.ack(lease)).await {
                    error!(cause = %err, "ack failed, so the lease will expire and the next worker will find the shard committed");
                }
                AttemptEnd::Completed(outcome)
            }
            Err(err) if lease_lost => {
                warn!(cause = %err.reason(), "discarding the result of a shard whose lease was lost");
                AttemptEnd::LeaseLost
            }
            Err(err @ ShardError::Poison(_)) => {
                let reason = err.reason();
                error!(cause = %reason, "shard failed with an error no retry can fix, so dead-lettering it");
                self.dead_letter(lease, &reason).await
            }
            Err(err) => {
                let reason = err.reason();
                let max_deliveries = self.queue.settings().max_deliveries;
                if lease.delivery >= max_deliveries {
                    error!(cause = %reason, max_deliveries, "shard failed on its last delivery, so the queue dead-letters it");
                } else {
                    warn!(cause = %reason, max_deliveries, "shard failed, releasing it for a retry");
                }
                match self.release(lease, ReleaseReason::Failed(reason)).await {
                    AttemptEnd::Released => AttemptEnd::Failed,
                    other => other,
                }
            }
        }
    }

    async fn release(&self, lease: &Lease, reason: ReleaseReason) -> AttemptEnd {
        let result = self
            .retry("release", || self.queue.release(lease, reason.clone()))
            .await;
        match result {
            Ok(()) => AttemptEnd::Released,
            Err(err) => self.unsettled("release", err),
        }
    }

    async fn dead_letter(&self, lease: &Lease, reason: &str) -> AttemptEnd {
        match self
            .retry("dead letter", || self.queue.dead_letter(lease, reason))
            .await
        {
            Ok(()) => AttemptEnd::DeadLettered,
            Err(err) => self.unsettled("dead letter", err),
        }
    }

    fn unsettled(&self, operation: &str, err: QueueError) -> AttemptEnd {
        if matches!(err, QueueError::LeaseLost { .. }) {
            warn!(cause = %err, operation, "lease lost before the job could be settled");
            return AttemptEnd::LeaseLost;
        }
        error!(cause = %err, operation, "queue operation failed, so the lease will expire and the reaper will requeue the job");
        AttemptEnd::Unsettled
    }

    /// Runs a queue operation, retrying it after transient errors.
    async fn retry<'q, F>(&self, operation: &str, call: F) -> Result<(), QueueError>
    where
        F: Fn() -> gaze_shared::queue::QueueFuture<'q, ()>,
    {
        retry_transient(operation, SETTLE_TRIES, SETTLE_FIRST_DELAY, call).await
    }

    fn count(&self, end: &AttemptEnd) {
        match end {
            AttemptEnd::Completed(outcome) => self.metrics.completed(outcome),
            AttemptEnd::Failed => self.metrics.failed(),
            AttemptEnd::DeadLettered => self.metrics.dead_lettered(),
            AttemptEnd::Released => self.metrics.released(),
            AttemptEnd::LeaseLost => self.metrics.lease_lost(),
            AttemptEnd::Abandoned | AttemptEnd::Unsettled => {}
        }
    }
}

/// Calls `call` up to `tries` times while it fails with a transient error,
/// waiting `first_delay`, then twice as long, between tries.
pub(super) async fn retry_transient<T, F, Fut>(
    operation: &str,
    tries: u32,
    first_delay: Duration,
    mut call: F,
) -> Result<T, QueueError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, QueueError>>,
{
    let mut delay = first_delay;
    let mut tried = 1;
    loop {
        match call().await {
            Err(err) if err.is_transient() && tried < tries => {
                warn!(cause = %err, operation, tried, retry_in_ms = delay.as_millis() as u64, "queue operation failed, retrying");
                sleep(delay).await;
                delay *= 2;
                tried += 1;
            }
            result => return result,
        }
    }
}

/// The span of one attempt: the shard, its fencing token and delivery.
fn shard_span(lease: &Lease) -> Span {
    info_span!(
        "shard",
        shard = lease.job.shard_id,
        attempt = lease.attempt,
        delivery = lease.delivery
    )
}

fn runner_panicked(err: JoinError) -> ShardError {
    ShardError::retryable(format!("the shard runner panicked: {err}"))
}
