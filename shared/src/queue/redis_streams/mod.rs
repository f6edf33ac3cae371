//! The Redis Streams backend: one stream and one consumer group per
//! (study, model), changed only by atomic Lua scripts.
//!
//! A queued or in-flight job is an entry of the model's `jobs` stream with
//! fields `shard`, `deliveries` (earlier deliveries) and `job` (the JSON
//! message). Claiming reads it with XREADGROUP, which puts it in the group's
//! pending list under the worker's consumer name. A heartbeat resets its idle
//! time with `XCLAIM <same consumer> 0 <id> JUSTID`. Reclaiming, releasing,
//! acking and dead-lettering all delete the entry. Reclaiming and releasing
//! also add a copy with a new id at the tail, so a stale lease refers to an
//! id that no longer exists and every check on it fails.
//!
//! The reaper finds expired leases with `XPENDING ... IDLE <lease timeout>`
//! rather than XAUTOCLAIM. Inside one script both are atomic, and XPENDING
//! also returns the consumer whose lease expired, which the recorded error
//! names. That option needs Redis 6.2 or later; the tests run on 7.0.
//!
//! If Redis restarts empty, the next call finds no consumer group (NOGROUP),
//! creates it again and carries on; leases held at the time are lost and the
//! queue is empty until the coordinator submits the study again.

mod connect;
mod keys;
mod scripts;
mod snapshot;

use redis::aio::ConnectionManager;
use redis::{FromRedisValue, RedisError, Script, ScriptInvocation};
use tracing::{debug, info, warn};

pub use connect::{RedisOptions, redact_url};
use keys::{GROUP, ModelKeys};

use super::{
    FORGET_IDLE_WORKERS_AFTER, Job, JobError, JobQueue, Lease, LeaseSettings, QueueError,
    QueueFuture, QueueSnapshot, Reclaimed, ReleaseReason, StudyId, SubmitReport, check_submitted,
    lease_lost,
};

/// Jobs sent in one submit script, so that one call does not block Redis
/// for long.
const SUBMIT_BATCH: usize = 500;

/// A job queue of one study in Redis. Cheap to clone; clones share one
/// connection, which reconnects with backoff after it drops.
#[derive(Clone)]
pub struct RedisQueue {
    conn: ConnectionManager,
    study: StudyId,
    settings: LeaseSettings,
}

/// The reply of the claim script: entry id, shard field, delivery, attempt
/// and job message.
type ClaimReply = (String, String, u32, u64, Vec<u8>);

impl RedisQueue {
    /// Connects to the Redis at `url` (`redis://` or `rediss://`, with an
    /// optional `user:password@`), and checks that it never evicts keys
    /// (see [`RedisOptions::assume_noeviction`]).
    pub async fn connect(
        url: &str,
        study: StudyId,
        settings: LeaseSettings,
        options: &RedisOptions,
    ) -> Result<Self, QueueError> {
        settings.validate()?;
        if study.name.is_empty() {
            return Err(QueueError::EmptyName { what: "study name" });
        }

        let mut conn = connect::connect(url, options).await?;
        connect::check_eviction_policy(&mut conn, url, options).await?;
        info!(url = %redact_url(url), study = %study.name, "connected to the Redis job queue");

        Ok(Self {
            conn,
            study,
            settings,
        })
    }

    fn keys(&self, model: &str) -> ModelKeys {
        ModelKeys::new(&self.study.name, model)
    }

    /// Creates the consumer group (and the stream) unless it exists. The
    /// group starts at id 0 so that it delivers every entry already queued.
    async fn ensure_group(&self, keys: &ModelKeys) -> Result<(), QueueError> {
        let created: Result<(), RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&keys.jobs)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn.clone())
            .await;
        match created {
            Ok(()) => Ok(()),
            Err(err) if err.code() == Some("BUSYGROUP") => Ok(()),
            Err(source) => Err(QueueError::Redis {
                operation: "XGROUP CREATE",
                source,
            }),
        }
    }

    /// Runs a queue script. When the consumer group is missing because Redis
    /// lost its data, creates it again and runs the script once more.
    async fn run<T: FromRedisValue>(
        &self,
        operation: &'static str,
        keys: &ModelKeys,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, QueueError> {
        let first = invocation.invoke_async(&mut self.conn.clone()).await;
        let result = match first {
            Err(err) if is_nogroup(&err) => {
                warn!(
                    study = %self.study.name,
                    stream = %keys.jobs,
                    "consumer group missing, as after a Redis restart that lost its data; creating it again"
                );
                self.ensure_group(keys).await?;
                invocation.invoke_async(&mut self.conn.clone()).await
            }
            other => other,
        };
        result.map_err(|source| QueueError::Redis { operation, source })
    }

    async fn submit_jobs(&self, jobs: &[Job]) -> Result<SubmitReport, QueueError> {
        check_submitted(&self.study, jobs)?;

        let mut models: Vec<&str> = jobs.iter().map(|job| job.model.as_str()).collect();
        models.sort_unstable();
        models.dedup();

        let mut report = SubmitReport::default();
        for model in models {
            let keys = self.keys(model);
            self.ensure_group(&keys).await?;
            let model_jobs: Vec<&Job> = jobs.iter().filter(|job| job.model == model).collect();
            let mut queued = 0;
            for batch in model_jobs.chunks(SUBMIT_BATCH) {
                let mut invocation = invocation(&scripts::SUBMIT, &keys);
                for job in batch {
                    invocation.arg(job.shard_id).arg(job.encode());
                }
                let batch_queued: usize = self.run("submit", &keys, &invocation).await?;
                queued += batch_queued;
            }
            let skipped = model_jobs.len() - queued;
            info!(study = %self.study.name, model, queued, skipped, "submitted jobs");
            report.queued += queued;
            report.skipped += skipped;
        }
        Ok(report)
    }

    async fn claim_job(&self, model: &str, consumer: &str) -> Result<Option<Lease>, QueueError> {
        if consumer.is_empty() {
            return Err(QueueError::EmptyName {
                what: "consumer name",
            });
        }
        let keys = self.keys(model);

        loop {
            let mut invocation = invocation(&scripts::CLAIM, &keys);
            invocation.arg(consumer);
            let reply: Option<ClaimReply> = self.run("claim", &keys, &invocation).await?;
            let Some((entry_id, shard, delivery, attempt, message)) = reply else {
                return Ok(None);
            };

            match self.accept(model, &shard, &message) {
                Ok(job) => {
                    debug!(study = %self.study.name, shard = job.shard_id, worker = consumer, attempt, delivery, "claimed job");
                    return Ok(Some(Lease {
                        job,
                        consumer: consumer.to_owned(),
                        attempt,
                        delivery,
                        entry_id,
                    }));
                }
                Err(err) => {
                    let reason = err.to_string();
                    warn!(study = %self.study.name, shard = %shard, worker = consumer, entry = %entry_id, %reason, "dead-lettering a bad job message");
                    self.bury(&keys, consumer, &entry_id, &reason).await?;
                }
            }
        }
    }

    /// Decodes and checks a claimed message.
    fn accept(&self, model: &str, shard: &str, message: &[u8]) -> Result<Job, JobError> {
        let job = Job::decode(message)?;
        job.check_belongs(&self.study, model)?;
        if shard != job.shard_id.to_string() {
            return Err(JobError::Malformed {
                detail: format!(
                    "stream field shard {shard:?} differs from shard_id {} in the message",
                    job.shard_id
                ),
            });
        }
        Ok(job)
    }

    /// Dead-letters entry `entry_id` held by `consumer`. Returns whether
    /// the consumer still held it.
    async fn bury(
        &self,
        keys: &ModelKeys,
        consumer: &str,
        entry_id: &str,
        reason: &str,
    ) -> Result<bool, QueueError> {
        let mut invocation = invocation(&scripts::DEAD_LETTER, keys);
        invocation.arg(consumer).arg(entry_id).arg(reason);
        let held: u8 = self.run("dead_letter", keys, &invocation).await?;
        Ok(held == 1)
    }

    async fn heartbeat_lease(&self, lease: &Lease) -> Result<(), QueueError> {
        let keys = self.keys(&lease.job.model);
        let mut invocation = invocation(&scripts::HEARTBEAT, &keys);
        invocation.arg(&lease.consumer).arg(&lease.entry_id);
        let held: u8 = self.run("heartbeat", &keys, &invocation).await?;
        if held == 1 {
            Ok(())
        } else {
            Err(lease_lost(lease))
        }
    }

    async fn check_owner(&self, lease: &Lease) -> Result<bool, QueueError> {
        let keys = self.keys(&lease.job.model);
        let reply: Result<redis::streams::StreamPendingCountReply, RedisError> =
            redis::cmd("XPENDING")
                .arg(&keys.jobs)
                .arg(GROUP)
                .arg(&lease.entry_id)
                .arg(&lease.entry_id)
                .arg(1)
                .query_async(&mut self.conn.clone())
                .await;
        match reply {
            Ok(pending) => Ok(pending
                .ids
                .first()
                .is_some_and(|entry| entry.consumer == lease.consumer)),
            Err(err) if is_nogroup(&err) => Ok(false),
            Err(source) => Err(QueueError::Redis {
                operation: "XPENDING",
                source,
            }),
        }
    }

    async fn ack_lease(&self, lease: &Lease) -> Result<(), QueueError> {
        let keys = self.keys(&lease.job.model);
        let mut invocation = invocation(&scripts::ACK, &keys);
        invocation.arg(&lease.entry_id).arg(lease.job.shard_id);
        let _: u8 = self.run("ack", &keys, &invocation).await?;
        debug!(study = %self.study.name, shard = lease.job.shard_id, worker = %lease.consumer, attempt = lease.attempt, "acked job");
        Ok(())
    }

    async fn release_lease(&self, lease: &Lease, reason: ReleaseReason) -> Result<(), QueueError> {
        let keys = self.keys(&lease.job.model);
        let (counted, error) = match &reason {
            ReleaseReason::Shutdown => ("0", ""),
            ReleaseReason::Failed(error) => ("1", error.as_str()),
        };
        let mut invocation = invocation(&scripts::RELEASE, &keys);
        invocation
            .arg(&lease.consumer)
            .arg(&lease.entry_id)
            .arg(counted)
            .arg(self.settings.max_deliveries)
            .arg(error);
        let held: u8 = self.run("release", &keys, &invocation).await?;
        if held != 1 {
            return Err(lease_lost(lease));
        }
        info!(study = %self.study.name, shard = lease.job.shard_id, worker = %lease.consumer, attempt = lease.attempt, ?reason, "released job");
        Ok(())
    }

    async fn dead_letter_lease(&self, lease: &Lease, reason: &str) -> Result<(), QueueError> {
        let keys = self.keys(&lease.job.model);
        if !self
            .bury(&keys, &lease.consumer, &lease.entry_id, reason)
            .await?
        {
            return Err(lease_lost(lease));
        }
        warn!(study = %self.study.name, shard = lease.job.shard_id, worker = %lease.consumer, attempt = lease.attempt, reason, "dead-lettered job");
        Ok(())
    }

    async fn reclaim(&self, model: &str) -> Result<Reclaimed, QueueError> {
        let keys = self.keys(model);
        let lease_ms = self.settings.lease_timeout.as_millis() as u64;
        let mut invocation = invocation(&scripts::RECLAIM, &keys);
        invocation
            .arg(lease_ms)
            .arg(self.settings.max_deliveries)
            .arg(lease_ms * u64::from(FORGET_IDLE_WORKERS_AFTER));
        let (requeued, dead_lettered): (usize, usize) =
            self.run("reclaim_expired", &keys, &invocation).await?;
        if requeued + dead_lettered > 0 {
            warn!(study = %self.study.name, model, requeued, dead_lettered, "reclaimed expired leases");
        }
        Ok(Reclaimed {
            requeued,
            dead_lettered,
        })
    }
}

impl JobQueue for RedisQueue {
    fn study(&self) -> &StudyId {
        &self.study
    }

    fn settings(&self) -> &LeaseSettings {
        &self.settings
    }

    fn submit<'a>(&'a self, jobs: &'a [Job]) -> QueueFuture<'a, SubmitReport> {
        Box::pin(self.submit_jobs(jobs))
    }

    fn claim<'a>(&'a self, model: &'a str, consumer: &'a str) -> QueueFuture<'a, Option<Lease>> {
        Box::pin(self.claim_job(model, consumer))
    }

    fn heartbeat<'a>(&'a self, lease: &'a Lease) -> QueueFuture<'a, ()> {
        Box::pin(self.heartbeat_lease(lease))
    }

    fn still_owner<'a>(&'a self, lease: &'a Lease) -> QueueFuture<'a, bool> {
        Box::pin(self.check_owner(lease))
    }

    fn ack<'a>(&'a self, lease: &'a Lease) -> QueueFuture<'a, ()> {
        Box::pin(self.ack_lease(lease))
    }

    fn release<'a>(&'a self, lease: &'a Lease, reason: ReleaseReason) -> QueueFuture<'a, ()> {
        Box::pin(self.release_lease(lease, reason))
    }

    fn dead_letter<'a>(&'a self, lease: &'a Lease, reason: &'a str) -> QueueFuture<'a, ()> {
        Box::pin(self.dead_letter_lease(lease, reason))
    }

    fn reclaim_expired<'a>(&'a self, model: &'a str) -> QueueFuture<'a, Reclaimed> {
        Box::pin(self.reclaim(model))
    }

    fn snapshot<'a>(&'a self, model: &'a str) -> QueueFuture<'a, QueueSnapshot> {
        Box::pin(snapshot::read(self.conn.clone(), self.keys(model)))
    }
}

/// Starts a script call with the keys and the group every script takes.
fn invocation<'a>(script: &'a Script, keys: &ModelKeys) -> ScriptInvocation<'a> {
    let mut invocation = script.prepare_invoke();
    for key in keys.all() {
        invocation.key(key);
    }
    invocation.arg(GROUP);
    invocation
}

/// Returns whether Redis reported a missing stream or consumer group. Inside a
/// script the code comes after the script's own error prefix.
fn is_nogroup(err: &RedisError) -> bool {
    err.code() == Some("NOGROUP") || err.to_string().contains("NOGROUP")
}
