//! The long-running worker of `gaze-worker serve`: claims jobs of one model
//! from the queue, runs each shard under a lease, and stops gracefully.
//!
//! # The loop
//!
//! [`serve`] claims one job at a time for [`ServeOptions::model`], polling
//! with a growing delay while the queue is empty. For each job it:
//!
//! 1. checks that the job belongs to the queue's study, config fingerprint
//!    and model, and dead-letters it with the reason if not;
//! 2. starts a [`Heartbeat`](gaze_shared::queue::Heartbeat) task for the
//!    lease and runs [`ShardRunner::run_shard`] on a task of its own, so that
//!    heartbeats go on however long the shard takes;
//! 3. acks the job when the runner returns `Ok` (the shard is committed),
//!    releases it with [`ReleaseReason::Failed`](gaze_shared::queue::ReleaseReason)
//!    on a retryable error (the queue dead-letters it after `max_deliveries`),
//!    and dead-letters it on a poison error;
//! 4. when a heartbeat finds the lease lost, cancels the runner and discards
//!    its result, unless the runner reports the shard committed.
//!
//! Every worker also runs a [`Reaper`], so that
//! jobs of dead workers return to the queue while any worker of the model
//! is alive.
//!
//! # Shutdown
//!
//! On the first signal of the [`ShutdownSignal`] (SIGTERM or SIGINT) the
//! worker stops claiming and lets the shard in flight finish within
//! [`ServeOptions::shutdown_grace`]. When the grace period runs out it
//! cancels the shard and releases the job with
//! [`ReleaseReason::Shutdown`](gaze_shared::queue::ReleaseReason), so another
//! worker takes it at once and the delivery does not count. A second signal
//! returns at once and leaves the lease to expire.
//!
//! `serve` may return while a blocking runner thread
//! ([`tokio::task::spawn_blocking`]) is still working on a cancelled shard.
//! The binary should then exit without waiting for blocking tasks (for
//! example with [`tokio::runtime::Runtime::shutdown_timeout`]).

mod attempt;
mod heartbeat_clock;
pub mod metrics;
mod runner;
mod shutdown;
mod study_runner;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gaze_shared::queue::{JobQueue, QueueError, Reaper};
use thiserror::Error;
use tokio::time::{Instant, sleep};
use tracing::{Instrument, error, info, info_span, warn};

use attempt::{AttemptEnd, Worker};
use heartbeat_clock::{ClockedQueue, HeartbeatClock};
use metrics::WorkerMetrics;
pub use runner::{AttemptInfo, BoxError, CommitStatus, ShardError, ShardOutcome, ShardRunner};
pub use shutdown::{REPEAT_WINDOW, ShutdownSignal, ShutdownStage, ShutdownTrigger};
pub use study_runner::StudyShardRunner;

/// How many non-transient claim errors in a row make [`serve`] give up.
/// Transient errors (Redis unreachable) are retried for as long as they
/// last.
const MAX_CLAIM_ERRORS: u32 = 5;

/// Settings of one worker process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// The model id this worker has loaded, as in the study config. Only
    /// jobs of this model are claimed.
    pub model: String,
    /// The worker's consumer name in the queue, unique among live workers
    /// (see [`default_worker_name`]).
    pub worker: String,
    /// How long the shard in flight may run after the first shutdown signal
    /// before it is cancelled and released. Keep it below the delay between
    /// SIGTERM and SIGKILL of the scheduler (Kubernetes
    /// `terminationGracePeriodSeconds`, Slurm's `--signal` lead time).
    pub shutdown_grace: Duration,
    /// The first delay between two claims that find the queue empty.
    pub poll_min: Duration,
    /// The maximum delay between claims. Each empty claim doubles the delay
    /// up to this.
    pub poll_max: Duration,
    /// Return once no job has been claimed for this long, for batch
    /// schedulers (a Slurm array, a Kubernetes Job). `None` serves until
    /// shutdown.
    pub exit_when_idle: Option<Duration>,
    /// Serve Prometheus metrics at `http://ADDR/metrics`. `None` records
    /// none, unless the caller installed a recorder itself.
    pub metrics_addr: Option<SocketAddr>,
}

impl ServeOptions {
    /// Options for `model` under the consumer name `worker`, with the
    /// defaults: 120 s shutdown grace, polls every 0.5 s to 10 s, no idle
    /// exit, no metrics.
    pub fn new(model: impl Into<String>, worker: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            worker: worker.into(),
            shutdown_grace: Duration::from_secs(120),
            poll_min: Duration::from_millis(500),
            poll_max: Duration::from_secs(10),
            exit_when_idle: None,
            metrics_addr: None,
        }
    }

    fn validate(&self) -> Result<(), ServeError> {
        if self.model.is_empty() {
            return Err(ServeError::InvalidOptions(
                "the model id is empty: pass the id of the loaded model as in the study config"
                    .into(),
            ));
        }
        if self.worker.is_empty() {
            return Err(ServeError::InvalidOptions(
                "the worker name is empty: pass a name unique among live workers".into(),
            ));
        }
        if self.poll_min.is_zero() || self.poll_max < self.poll_min {
            return Err(ServeError::InvalidOptions(format!(
                "poll delays must satisfy 0 < poll_min <= poll_max, got poll_min {:?} and poll_max {:?}",
                self.poll_min, self.poll_max
            )));
        }
        Ok(())
    }
}

/// Returns a consumer name for this process: the host name (the pod name
/// in Kubernetes) and the process id, as `HOST-PID`.
pub fn default_worker_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|host| !host.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|host| host.trim().to_owned())
                .filter(|host| !host.is_empty())
        })
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{}", std::process::id())
}

/// The reason [`serve`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// No job came for [`ServeOptions::exit_when_idle`].
    Idle,
    /// A first shutdown signal: the shard in flight finished or was
    /// released.
    Shutdown,
    /// A second shutdown signal: a shard in flight was left to expire.
    ShutdownImmediate,
}

/// The counts of one [`serve`] call. Each claimed job counts in exactly one
/// of the shard counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeReport {
    pub stop: StopReason,
    /// Shards committed (or found committed) and acked.
    pub completed: u64,
    /// Shards released after a retryable error.
    pub failed: u64,
    /// Shards dead-lettered: poison errors and jobs that do not belong to
    /// this worker.
    pub dead_lettered: u64,
    /// Shards released because the shutdown grace period ran out.
    pub released: u64,
    /// Shards whose lease was lost to another worker.
    pub lease_lost: u64,
    /// Shards left to expire: by a second shutdown signal, or because the
    /// queue failed to record their release or dead letter.
    pub abandoned: u64,
    /// Samples generated and committed, over the completed shards.
    pub samples: u64,
    /// Tokens generated, over the completed shards.
    pub generated_tokens: u64,
}

impl ServeReport {
    fn new() -> Self {
        Self {
            stop: StopReason::Shutdown,
            completed: 0,
            failed: 0,
            dead_lettered: 0,
            released: 0,
            lease_lost: 0,
            abandoned: 0,
            samples: 0,
            generated_tokens: 0,
        }
    }

    fn record(&mut self, end: AttemptEnd) {
        match end {
            AttemptEnd::Completed(outcome) => {
                self.completed += 1;
                self.samples += outcome.samples;
                self.generated_tokens += outcome.generated_tokens;
            }
            AttemptEnd::Failed => self.failed += 1,
            AttemptEnd::DeadLettered => self.dead_lettered += 1,
            AttemptEnd::Released => self.released += 1,
            AttemptEnd::LeaseLost => self.lease_lost += 1,
            AttemptEnd::Abandoned | AttemptEnd::Unsettled => self.abandoned += 1,
        }
    }
}

/// An error that keeps [`serve`] from starting or makes it stop.
#[derive(Debug, Error)]
pub enum ServeError {
    #[error("invalid serve options: {0}")]
    InvalidOptions(String),

    #[error(
        "could not start the metrics exporter on {addr}: {source}; pick a free address or omit it"
    )]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: metrics_exporter_prometheus::BuildError,
    },

    #[error(
        "claiming jobs failed {MAX_CLAIM_ERRORS} times in a row with an error a retry does not fix: {0}"
    )]
    Queue(#[source] QueueError),
}

/// Serves jobs of `options.model` from `queue` with `runner` until
/// `shutdown` fires or, with [`ServeOptions::exit_when_idle`], the queue
/// stays empty. See the module documentation for the loop and shutdown.
///
/// Returns an error only for invalid options, a metrics address that cannot
/// be bound, or a queue that keeps failing with errors a retry does not fix.
/// Errors of single shards and transient queue errors are logged and never
/// end the loop.
pub async fn serve(
    queue: Arc<dyn JobQueue>,
    runner: Arc<dyn ShardRunner>,
    options: ServeOptions,
    shutdown: ShutdownSignal,
) -> Result<ServeReport, ServeError> {
    options.validate()?;
    if let Some(addr) = options.metrics_addr {
        metrics::install_exporter(addr).map_err(|source| ServeError::Metrics { addr, source })?;
        info!(%addr, "serving Prometheus metrics at /metrics");
    }
    metrics::describe();

    let span = info_span!(
        "worker",
        study = %queue.study().name,
        model = %options.model,
        worker = %options.worker
    );
    let clock = HeartbeatClock::default();
    let worker = Worker {
        queue: Arc::new(ClockedQueue::new(queue, clock.clone())),
        runner,
        metrics: WorkerMetrics::new(&options.model),
        options,
        shutdown,
        clock,
    };
    worker.serve_loop().instrument(span).await
}

impl Worker {
    async fn serve_loop(&self) -> Result<ServeReport, ServeError> {
        let settings = self.queue.settings();
        info!(
            heartbeat_interval_ms = settings.heartbeat_interval.as_millis() as u64,
            lease_timeout_ms = settings.lease_timeout.as_millis() as u64,
            max_deliveries = settings.max_deliveries,
            shutdown_grace_s = self.options.shutdown_grace.as_secs_f64(),
            "worker started"
        );
        let _reaper = Reaper::spawn(self.queue.clone(), self.options.model.clone());

        let mut report = ServeReport::new();
        report.stop = self.claim_loop(&mut report).await?;

        info!(
            stop = ?report.stop,
            completed = report.completed,
            failed = report.failed,
            dead_lettered = report.dead_lettered,
            released = report.released,
            lease_lost = report.lease_lost,
            abandoned = report.abandoned,
            samples = report.samples,
            "worker stopped"
        );
        Ok(report)
    }

    /// Claims and runs jobs until a stop, and returns its reason.
    async fn claim_loop(&self, report: &mut ServeReport) -> Result<StopReason, ServeError> {
        let mut poll = PollDelay::new(self.options.poll_min, self.options.poll_max);
        let mut idle_since = Instant::now();
        let mut claim_errors = 0;

        loop {
            if let Some(stop) = self.stop_requested() {
                return Ok(stop);
            }

            // Only a second signal interrupts a claim: a claim dropped after
            // the queue granted it would hold the job until its lease expired.
            let claimed = tokio::select! {
                biased;
                () = self.shutdown.immediate() => continue,
                claimed = self.queue.claim(&self.options.model, &self.options.worker) => claimed,
            };

            let delay = match claimed {
                Ok(Some(lease)) if self.shutdown.stage() != ShutdownStage::Running => {
                    report.record(self.release_unstarted(lease).await);
                    continue;
                }
                Ok(Some(lease)) => {
                    claim_errors = 0;
                    poll.reset();
                    let end = self.run_attempt(lease).await;
                    report.record(end);
                    idle_since = Instant::now();
                    continue;
                }
                Ok(None) => {
                    claim_errors = 0;
                    if let Some(limit) = self.options.exit_when_idle
                        && idle_since.elapsed() >= limit
                    {
                        info!(
                            idle_s = limit.as_secs_f64(),
                            "no job claimed within the idle limit, stopping"
                        );
                        return Ok(StopReason::Idle);
                    }
                    poll.next_delay()
                }
                Err(err) if err.is_transient() => {
                    let delay = poll.next_delay();
                    warn!(cause = %err, retry_in_ms = delay.as_millis() as u64, "claiming a job failed, retrying");
                    delay
                }
                Err(err) => {
                    claim_errors += 1;
                    if claim_errors >= MAX_CLAIM_ERRORS {
                        error!(cause = %err, "claiming a job keeps failing, stopping the worker");
                        return Err(ServeError::Queue(err));
                    }
                    let delay = poll.next_delay();
                    error!(cause = %err, claim_errors, retry_in_ms = delay.as_millis() as u64, "claiming a job failed, retrying");
                    delay
                }
            };

            tokio::select! {
                () = self.shutdown.draining() => {}
                () = sleep(delay) => {}
            }
        }
    }

    fn stop_requested(&self) -> Option<StopReason> {
        match self.shutdown.stage() {
            ShutdownStage::Running => None,
            ShutdownStage::Draining => Some(StopReason::Shutdown),
            ShutdownStage::Immediate => Some(StopReason::ShutdownImmediate),
        }
    }
}

/// The delay between claims that find nothing: doubles from `min` up to
/// `max`, and starts again at `min` after a job.
struct PollDelay {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl PollDelay {
    fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_delay_doubles_up_to_max() {
        let mut poll = PollDelay::new(Duration::from_millis(500), Duration::from_secs(3));
        let delays: Vec<u64> = (0..5)
            .map(|_| poll.next_delay().as_millis() as u64)
            .collect();
        assert_eq!(delays, [500, 1000, 2000, 3000, 3000]);
    }

    #[test]
    fn poll_delay_reset_starts_over() {
        let mut poll = PollDelay::new(Duration::from_millis(500), Duration::from_secs(3));
        poll.next_delay();
        poll.next_delay();
        poll.reset();
        assert_eq!(poll.next_delay(), Duration::from_millis(500));
    }

    #[test]
    fn options_reject_empty_model() {
        let options = ServeOptions::new("", "worker-1");
        assert!(matches!(
            options.validate(),
            Err(ServeError::InvalidOptions(_))
        ));
    }

    #[test]
    fn options_reject_poll_max_below_min() {
        let options = ServeOptions {
            poll_max: Duration::from_millis(100),
            ..ServeOptions::new("llama-3-8b", "worker-1")
        };
        assert!(matches!(
            options.validate(),
            Err(ServeError::InvalidOptions(_))
        ));
    }
}
