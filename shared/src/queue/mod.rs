//! The job queue: hands shards of a study to workers under leases.
//!
//! The queue only distributes work. The store's commit markers record which
//! shards are done, so a queue that loses its data costs time, never results:
//! submitting the study again (minus committed shards) rebuilds it.
//!
//! # Protocol
//!
//! A coordinator [`submit`](JobQueue::submit)s one [`Job`] per (model, shard).
//! Submitting is idempotent: a shard that is already queued or in flight is
//! skipped. A worker with a model loaded [`claim`](JobQueue::claim)s jobs of
//! that model only, and receives a [`Lease`]. While it works it calls
//! [`heartbeat`](JobQueue::heartbeat) every
//! [`heartbeat_interval`](LeaseSettings::heartbeat_interval) (see
//! [`Heartbeat`]). A lease whose last heartbeat is older than
//! [`lease_timeout`](LeaseSettings::lease_timeout) has expired, and a reaper
//! ([`reclaim_expired`](JobQueue::reclaim_expired), run by every worker, see
//! [`Reaper`]) puts the job back in the queue. A job delivered
//! [`max_deliveries`](LeaseSettings::max_deliveries) times without success
//! goes to the dead-letter list with its last error, and the rest of the
//! study goes on. A message that cannot be decoded, or that belongs to
//! another study, config fingerprint or model, goes there at once.
//!
//! # Fencing: what a worker whose lease was taken over can and cannot do
//!
//! A worker can lose its lease without knowing it, for example when it is
//! paused (SIGSTOP, a stalled host) for longer than the lease timeout and then
//! resumes. The queue guarantees:
//!
//! - Each claim of a shard gets a new [`Lease::attempt`], one more than the
//!   last claim of that shard. The counter is kept with the queue, so it
//!   starts again at 1 when Redis loses its data. `(attempt, consumer,
//!   entry_id)` is unique per claim even then, because stream entry ids are
//!   generated from the server clock.
//! - Once a lease has expired and been reclaimed, [`heartbeat`](JobQueue::heartbeat),
//!   [`release`](JobQueue::release) and [`dead_letter`](JobQueue::dead_letter)
//!   on the old lease return [`QueueError::LeaseLost`] and change nothing, and
//!   [`still_owner`](JobQueue::still_owner) returns `false`. The old worker
//!   can never take the job back.
//! - [`ack`](JobQueue::ack) removes the shard from the queue whichever lease
//!   holds it, because a worker acks only after the shard's commit marker
//!   exists, and then the shard is done.
//!
//! The queue cannot stop a stale worker that checked `still_owner` just
//! before it was paused from writing afterwards, because no check in Redis
//! is atomic with a write to object storage. Exactly-once results therefore
//! rest on the store (see `store::shard_commit`). Each lease writes its data
//! under a path of its own (from the shard, the consumer, the attempt and a
//! nonce). A claim created only if absent (a conditional put) names the
//! attempt whose data becomes the shard; the first lease to claim wins, and
//! a later one finds the claim and discards its data. Whoever copies data to
//! the final keys copies the winner's. `still_owner` only saves the wasted
//! upload.

mod embedded;
mod error;
mod job;
mod lease;
mod redis_streams;

use std::time::Duration;

use futures::future::BoxFuture;

pub use embedded::{EmbeddedBroker, EmbeddedQueue};
pub use error::QueueError;
pub use job::{JOB_VERSION, Job, JobError, StudyId};
pub use lease::{Heartbeat, Reaper};
pub use redis_streams::{RedisOptions, RedisQueue, redact_url};

/// Timing and retry limits of leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSettings {
    /// How often a worker refreshes its lease while it works on a job.
    pub heartbeat_interval: Duration,
    /// How long after the last heartbeat a lease expires and the job may be
    /// given to another worker. A multiple of the heartbeat interval (at
    /// least 3x), never tied to how long a job runs.
    pub lease_timeout: Duration,
    /// How many times a job is delivered before it is dead-lettered. A
    /// delivery that ends with [`ReleaseReason::Shutdown`] does not count.
    pub max_deliveries: u32,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(10),
            lease_timeout: Duration::from_secs(60),
            max_deliveries: 3,
        }
    }
}

impl LeaseSettings {
    /// Checks the limits: a lease must survive two missed heartbeats.
    pub fn validate(&self) -> Result<(), QueueError> {
        if self.lease_timeout < self.heartbeat_interval * 3 {
            return Err(QueueError::LeaseTooShort {
                heartbeat_interval: self.heartbeat_interval,
                lease_timeout: self.lease_timeout,
            });
        }
        if self.max_deliveries == 0 {
            return Err(QueueError::NoDeliveries);
        }
        Ok(())
    }
}

/// A worker's claim on one job, valid while its heartbeats keep coming.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    pub job: Job,
    /// The worker that claimed the job (its consumer name in the group).
    pub consumer: String,
    /// Fencing token: 1 for the first claim of the shard, one more for each
    /// later claim. The commit marker records it.
    pub attempt: u64,
    /// How many times the job has been delivered, this delivery included,
    /// not counting deliveries released on shutdown.
    pub delivery: u32,
    /// The backend's id of this delivery (a stream entry id in Redis).
    pub entry_id: String,
}

/// The reason a worker gives a job back before finishing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseReason {
    /// The worker is stopping (SIGTERM). The job goes back to the queue at
    /// once and the delivery does not count towards `max_deliveries`.
    Shutdown,
    /// The job failed with a possibly transient error. The job goes back to
    /// the queue, or to the dead-letter list with this error if it has been
    /// delivered `max_deliveries` times.
    Failed(String),
}

/// Counts of the jobs [`JobQueue::submit`] queued and skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubmitReport {
    /// Jobs added to the queue.
    pub queued: usize,
    /// Jobs skipped because their shard was already queued or in flight.
    pub skipped: usize,
}

/// Counts of the expired leases one pass of [`JobQueue::reclaim_expired`]
/// handled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Expired jobs put back in the queue.
    pub requeued: usize,
    /// Expired jobs moved to the dead-letter list, having reached
    /// `max_deliveries`.
    pub dead_lettered: usize,
}

/// A job held by a worker, as shown by `gaze status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlightJob {
    /// `None` when the message has no readable shard id.
    pub shard_id: Option<u32>,
    pub consumer: String,
    /// Time since the claim or the last heartbeat.
    pub idle: Duration,
    /// Deliveries so far, this one included.
    pub delivery: u32,
}

/// A job that will not be retried, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// `None` when the message has no readable shard id.
    pub shard_id: Option<u32>,
    pub reason: String,
    /// The worker that dead-lettered the job; empty when the reaper did.
    pub consumer: String,
    pub deliveries: u32,
    /// The job message as it was queued, for inspection.
    pub message: String,
}

/// A worker known to the queue of one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSeen {
    pub consumer: String,
    /// Jobs leased to it now.
    pub in_flight: usize,
    /// Time since it last claimed, polled or sent a heartbeat.
    pub idle: Duration,
}

/// The state of one model's queue, for `gaze status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueSnapshot {
    /// Jobs waiting for a worker.
    pub queued: usize,
    /// Jobs held by workers, oldest claim first. Includes expired leases
    /// that no reaper has handled yet.
    pub in_flight: Vec<InFlightJob>,
    /// Dead-lettered jobs, oldest first, at most [`SNAPSHOT_DEAD_LETTERS`].
    pub dead_letters: Vec<DeadLetter>,
    /// All dead-lettered jobs of the model, listed or not.
    pub dead_lettered: usize,
    /// Workers seen on this model's queue, by name.
    pub workers: Vec<WorkerSeen>,
}

/// How many lease timeouts a worker may stay idle, holding no job, before
/// [`JobQueue::reclaim_expired`] drops it from the workers list.
pub const FORGET_IDLE_WORKERS_AFTER: u32 = 10;

/// The maximum number of dead letters a [`QueueSnapshot`] lists.
pub const SNAPSHOT_DEAD_LETTERS: usize = 1000;

/// The boxed future every queue operation returns, so that the trait is
/// object safe (`Arc<dyn JobQueue>`).
pub type QueueFuture<'a, T> = BoxFuture<'a, Result<T, QueueError>>;

/// A job queue of one study, shared by the coordinator and all workers.
///
/// Every operation may be retried after an error. Jobs of each model are
/// kept apart: a worker only receives jobs of the model it passes to `claim`.
pub trait JobQueue: Send + Sync {
    /// The study whose jobs this handle submits and accepts.
    fn study(&self) -> &StudyId;

    /// The lease limits this handle applies.
    fn settings(&self) -> &LeaseSettings;

    /// Queues the jobs whose shard is neither queued nor in flight, in
    /// order. Idempotent: submitting the same jobs twice queues each once.
    /// The caller leaves out shards the store has already committed. Fails
    /// with [`QueueError::ForeignJob`], before queueing anything, when a job
    /// is of another study or fingerprint.
    fn submit<'a>(&'a self, jobs: &'a [Job]) -> QueueFuture<'a, SubmitReport>;

    /// Takes the next job of `model` for worker `consumer`, or `None` when
    /// none is queued. Returns at once; the caller polls. Messages that fail
    /// [`Job::decode`] or [`Job::check_belongs`] are dead-lettered on the
    /// way and never returned.
    fn claim<'a>(&'a self, model: &'a str, consumer: &'a str) -> QueueFuture<'a, Option<Lease>>;

    /// Extends the lease by `lease_timeout` from now. Fails with
    /// [`QueueError::LeaseLost`] when the lease is no longer this worker's.
    fn heartbeat<'a>(&'a self, lease: &'a Lease) -> QueueFuture<'a, ()>;

    /// Returns whether the lease is still this worker's: not expired and reclaimed,
    /// acked, released or dead-lettered. Check before committing a shard.
    fn still_owner<'a>(&'a self, lease: &'a Lease) -> QueueFuture<'a, bool>;

    /// Marks the shard done and removes it from the queue, whichever lease
    /// holds it now. Call only once the shard's commit marker exists.
    /// Idempotent.
    fn ack<'a>(&'a self, lease: &'a Lease) -> QueueFuture<'a, ()>;

    /// Gives the job back at once (see [`ReleaseReason`]). Fails with
    /// [`QueueError::LeaseLost`] when the lease is no longer this worker's.
    fn release<'a>(&'a self, lease: &'a Lease, reason: ReleaseReason) -> QueueFuture<'a, ()>;

    /// Moves the job to the dead-letter list with `reason`: it will not be
    /// retried until submitted again. Fails with [`QueueError::LeaseLost`]
    /// when the lease is no longer this worker's.
    fn dead_letter<'a>(&'a self, lease: &'a Lease, reason: &'a str) -> QueueFuture<'a, ()>;

    /// Puts the jobs of `model` whose lease expired back at the tail of the
    /// queue, or in the dead-letter list once delivered `max_deliveries`
    /// times, and forgets workers that hold no job and have been idle for
    /// [`FORGET_IDLE_WORKERS_AFTER`] lease timeouts. Any worker may run it at
    /// any time.
    fn reclaim_expired<'a>(&'a self, model: &'a str) -> QueueFuture<'a, Reclaimed>;

    /// Reads the state of `model`'s queue. Changes nothing.
    fn snapshot<'a>(&'a self, model: &'a str) -> QueueFuture<'a, QueueSnapshot>;
}

/// Checks that a job handed to `submit` belongs to the handle's study.
fn check_submitted(study: &StudyId, jobs: &[Job]) -> Result<(), QueueError> {
    for job in jobs {
        if job.study != study.name || job.fingerprint != study.fingerprint {
            return Err(QueueError::ForeignJob {
                study: study.name.clone(),
                fingerprint: study.fingerprint.clone(),
                found_study: job.study.clone(),
                found_fingerprint: job.fingerprint.clone(),
            });
        }
        if job.model.is_empty() {
            return Err(QueueError::EmptyName { what: "job model" });
        }
    }
    Ok(())
}

/// Formats the reason recorded when a job has been delivered
/// `max_deliveries` times without success.
fn exhausted_reason(deliveries: u32, last_error: Option<&str>) -> String {
    format!(
        "delivered {deliveries} times without success (max_deliveries); last error: {}",
        last_error.unwrap_or("none recorded")
    )
}

fn lease_lost(lease: &Lease) -> QueueError {
    QueueError::LeaseLost {
        shard_id: lease.job.shard_id,
        attempt: lease.attempt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_settings_are_valid() {
        assert!(LeaseSettings::default().validate().is_ok());
    }

    #[test]
    fn lease_of_three_heartbeats_is_valid() {
        let settings = LeaseSettings {
            heartbeat_interval: Duration::from_millis(100),
            lease_timeout: Duration::from_millis(300),
            max_deliveries: 1,
        };
        assert!(settings.validate().is_ok());
    }

    #[test]
    fn lease_under_three_heartbeats_is_rejected() {
        let settings = LeaseSettings {
            heartbeat_interval: Duration::from_secs(10),
            lease_timeout: Duration::from_secs(29),
            ..LeaseSettings::default()
        };
        assert!(matches!(
            settings.validate(),
            Err(QueueError::LeaseTooShort { .. })
        ));
    }

    #[test]
    fn zero_max_deliveries_is_rejected() {
        let settings = LeaseSettings {
            max_deliveries: 0,
            ..LeaseSettings::default()
        };
        assert!(matches!(settings.validate(), Err(QueueError::NoDeliveries)));
    }
}
