//! The in-process backend, for `gaze run` on one machine: the same queue
//! semantics as the Redis backend, kept in memory and lost with the process.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::ready;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{
    DeadLetter, FORGET_IDLE_WORKERS_AFTER, InFlightJob, Job, JobQueue, Lease, LeaseSettings,
    QueueError, QueueFuture, QueueSnapshot, Reclaimed, ReleaseReason, SNAPSHOT_DEAD_LETTERS,
    StudyId, SubmitReport, WorkerSeen, check_submitted, exhausted_reason, lease_lost,
};

/// The shared state behind all [`EmbeddedQueue`] handles of a process, the
/// counterpart of one Redis server. Cheap to clone; clones share state.
#[derive(Clone, Default)]
pub struct EmbeddedBroker {
    state: Arc<Mutex<BrokerState>>,
}

/// A job queue of one study in an [`EmbeddedBroker`].
#[derive(Clone)]
pub struct EmbeddedQueue {
    broker: EmbeddedBroker,
    study: StudyId,
    settings: LeaseSettings,
}

#[derive(Default)]
struct BrokerState {
    /// Source of entry ids, which increase in queueing order like stream ids.
    last_entry_id: u64,
    /// Queues by (study, model).
    queues: HashMap<(String, String), ModelQueue>,
}

#[derive(Default)]
struct ModelQueue {
    queued: VecDeque<Entry>,
    /// Leased entries by entry id.
    in_flight: BTreeMap<u64, Leased>,
    /// The live (queued or in-flight) entry of each shard.
    shards: HashMap<u32, u64>,
    /// The last attempt number of each shard.
    attempts: HashMap<u32, u64>,
    /// The last error of each shard whose delivery failed.
    errors: HashMap<u32, String>,
    dead: Vec<DeadLetter>,
    /// When each worker last claimed or sent a heartbeat.
    workers: HashMap<String, Instant>,
}

struct Entry {
    id: u64,
    job: Job,
    /// Deliveries before this entry was queued.
    deliveries: u32,
}

struct Leased {
    entry: Entry,
    consumer: String,
    refreshed: Instant,
}

impl EmbeddedBroker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens the queue of `study` with `settings`.
    pub fn queue(
        &self,
        study: StudyId,
        settings: LeaseSettings,
    ) -> Result<EmbeddedQueue, QueueError> {
        settings.validate()?;
        if study.name.is_empty() {
            return Err(QueueError::EmptyName { what: "study name" });
        }
        Ok(EmbeddedQueue {
            broker: self.clone(),
            study,
            settings,
        })
    }

    fn lock(&self) -> MutexGuard<'_, BrokerState> {
        // A panic while the lock was held cannot leave a half-changed queue
        // behind, since no operation panics between two changes.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ModelQueue {
    /// Puts `entry` back at the tail under a new id, unless another entry
    /// already holds its shard.
    fn requeue(&mut self, mut entry: Entry, deliveries: u32, new_id: u64) {
        let shard = entry.job.shard_id;
        match self.shards.get(&shard) {
            Some(&live) if live != entry.id => return,
            _ => {}
        }
        entry.id = new_id;
        entry.deliveries = deliveries;
        self.shards.insert(shard, new_id);
        self.queued.push_back(entry);
    }

    /// Moves `entry` to the dead-letter list.
    fn bury(&mut self, entry: Entry, deliveries: u32, reason: String, consumer: &str) {
        let shard = entry.job.shard_id;
        if self.shards.get(&shard) == Some(&entry.id) {
            self.shards.remove(&shard);
        }
        self.errors.remove(&shard);
        self.dead.push(DeadLetter {
            shard_id: Some(shard),
            reason,
            consumer: consumer.to_owned(),
            deliveries,
            message: entry.job.encode(),
        });
    }

    /// Removes the lease's entry if `consumer` holds it.
    fn take_leased(&mut self, lease: &Lease) -> Option<Leased> {
        let id = entry_id(lease)?;
        match self.in_flight.get(&id) {
            Some(leased) if leased.consumer == lease.consumer => self.in_flight.remove(&id),
            _ => None,
        }
    }

    fn holds(&self, lease: &Lease) -> bool {
        entry_id(lease)
            .and_then(|id| self.in_flight.get(&id))
            .is_some_and(|leased| leased.consumer == lease.consumer)
    }
}

impl EmbeddedQueue {
    /// Runs `operation` on the queue of `model`, creating it if missing.
    fn with_queue<T>(
        &self,
        model: &str,
        operation: impl FnOnce(&mut ModelQueue, &mut dyn FnMut() -> u64) -> T,
    ) -> T {
        let mut state = self.broker.lock();
        let BrokerState {
            last_entry_id,
            queues,
        } = &mut *state;
        let queue = queues
            .entry((self.study.name.clone(), model.to_owned()))
            .or_default();
        let mut next_id = || {
            *last_entry_id += 1;
            *last_entry_id
        };
        operation(queue, &mut next_id)
    }

    fn submit_jobs(&self, jobs: &[Job]) -> Result<SubmitReport, QueueError> {
        check_submitted(&self.study, jobs)?;

        let mut state = self.broker.lock();
        let BrokerState {
            last_entry_id,
            queues,
        } = &mut *state;
        let mut report = SubmitReport::default();
        for job in jobs {
            let queue = queues
                .entry((self.study.name.clone(), job.model.clone()))
                .or_default();
            if queue.shards.contains_key(&job.shard_id) {
                report.skipped += 1;
                continue;
            }
            *last_entry_id += 1;
            queue.shards.insert(job.shard_id, *last_entry_id);
            queue.queued.push_back(Entry {
                id: *last_entry_id,
                job: job.clone(),
                deliveries: 0,
            });
            report.queued += 1;
        }
        info!(study = %self.study.name, queued = report.queued, skipped = report.skipped, "submitted jobs");
        Ok(report)
    }

    fn claim_job(&self, model: &str, consumer: &str) -> Result<Option<Lease>, QueueError> {
        if consumer.is_empty() {
            return Err(QueueError::EmptyName {
                what: "consumer name",
            });
        }
        let now = Instant::now();
        self.with_queue(model, |queue, _| {
            queue.workers.insert(consumer.to_owned(), now);
            while let Some(entry) = queue.queued.pop_front() {
                let delivery = entry.deliveries + 1;
                if let Err(err) = entry.job.check_belongs(&self.study, model) {
                    let reason = err.to_string();
                    warn!(study = %self.study.name, shard = entry.job.shard_id, worker = consumer, %reason, "dead-lettering a bad job");
                    queue.bury(entry, delivery, reason, consumer);
                    continue;
                }

                let shard = entry.job.shard_id;
                let attempt = queue.attempts.entry(shard).or_insert(0);
                *attempt += 1;
                let lease = Lease {
                    job: entry.job.clone(),
                    consumer: consumer.to_owned(),
                    attempt: *attempt,
                    delivery,
                    entry_id: entry.id.to_string(),
                };
                debug!(study = %self.study.name, shard, worker = consumer, attempt = lease.attempt, delivery, "claimed job");
                queue.in_flight.insert(
                    entry.id,
                    Leased {
                        entry,
                        consumer: consumer.to_owned(),
                        refreshed: now,
                    },
                );
                return Ok(Some(lease));
            }
            Ok(None)
        })
    }

    fn heartbeat_lease(&self, lease: &Lease) -> Result<(), QueueError> {
        let now = Instant::now();
        self.with_queue(&lease.job.model, |queue, _| {
            let leased = entry_id(lease)
                .and_then(|id| queue.in_flight.get_mut(&id))
                .filter(|leased| leased.consumer == lease.consumer)
                .ok_or_else(|| lease_lost(lease))?;
            leased.refreshed = now;
            queue.workers.insert(lease.consumer.clone(), now);
            Ok(())
        })
    }

    fn check_owner(&self, lease: &Lease) -> bool {
        self.with_queue(&lease.job.model, |queue, _| queue.holds(lease))
    }

    fn ack_lease(&self, lease: &Lease) {
        self.with_queue(&lease.job.model, |queue, _| {
            let shard = lease.job.shard_id;
            if let Some(id) = entry_id(lease) {
                queue.in_flight.remove(&id);
            }
            if let Some(live) = queue.shards.remove(&shard) {
                queue.in_flight.remove(&live);
                queue.queued.retain(|entry| entry.id != live);
            }
            queue.errors.remove(&shard);
        });
        debug!(study = %self.study.name, shard = lease.job.shard_id, worker = %lease.consumer, attempt = lease.attempt, "acked job");
    }

    fn release_lease(&self, lease: &Lease, reason: ReleaseReason) -> Result<(), QueueError> {
        let max_deliveries = self.settings.max_deliveries;
        self.with_queue(&lease.job.model, |queue, next_id| {
            let leased = queue.take_leased(lease).ok_or_else(|| lease_lost(lease))?;
            let shard = leased.entry.job.shard_id;
            let this_delivery = leased.entry.deliveries + 1;
            match &reason {
                ReleaseReason::Shutdown => {
                    queue.requeue(leased.entry, this_delivery - 1, next_id());
                }
                ReleaseReason::Failed(error) => {
                    queue.errors.insert(shard, error.clone());
                    if this_delivery >= max_deliveries {
                        let reason = exhausted_reason(this_delivery, Some(error));
                        queue.bury(leased.entry, this_delivery, reason, &lease.consumer);
                    } else {
                        queue.requeue(leased.entry, this_delivery, next_id());
                    }
                }
            }
            Ok(())
        })?;
        info!(study = %self.study.name, shard = lease.job.shard_id, worker = %lease.consumer, attempt = lease.attempt, ?reason, "released job");
        Ok(())
    }

    fn dead_letter_lease(&self, lease: &Lease, reason: &str) -> Result<(), QueueError> {
        self.with_queue(&lease.job.model, |queue, _| {
            let leased = queue.take_leased(lease).ok_or_else(|| lease_lost(lease))?;
            let deliveries = leased.entry.deliveries + 1;
            queue.bury(leased.entry, deliveries, reason.to_owned(), &lease.consumer);
            Ok::<(), QueueError>(())
        })?;
        warn!(study = %self.study.name, shard = lease.job.shard_id, worker = %lease.consumer, attempt = lease.attempt, reason, "dead-lettered job");
        Ok(())
    }

    fn reclaim(&self, model: &str) -> Reclaimed {
        let now = Instant::now();
        let lease_timeout = self.settings.lease_timeout;
        let max_deliveries = self.settings.max_deliveries;

        let reclaimed = self.with_queue(model, |queue, next_id| {
            let expired: Vec<u64> = queue
                .in_flight
                .iter()
                .filter(|(_, leased)| now.duration_since(leased.refreshed) >= lease_timeout)
                .map(|(&id, _)| id)
                .collect();

            let mut reclaimed = Reclaimed::default();
            for id in expired {
                let leased = queue.in_flight.remove(&id).expect("id listed above");
                let idle = now.duration_since(leased.refreshed).as_millis();
                let error = format!(
                    "lease of worker {} expired after {idle} ms without a heartbeat",
                    leased.consumer
                );
                queue
                    .errors
                    .insert(leased.entry.job.shard_id, error.clone());
                let deliveries = leased.entry.deliveries + 1;
                if deliveries >= max_deliveries {
                    let reason = exhausted_reason(deliveries, Some(&error));
                    queue.bury(leased.entry, deliveries, reason, "");
                    reclaimed.dead_lettered += 1;
                } else {
                    queue.requeue(leased.entry, deliveries, next_id());
                    reclaimed.requeued += 1;
                }
            }

            let forget_after = lease_timeout * FORGET_IDLE_WORKERS_AFTER;
            let busy: Vec<&str> = queue
                .in_flight
                .values()
                .map(|h| h.consumer.as_str())
                .collect();
            let idle_workers: Vec<String> = queue
                .workers
                .iter()
                .filter(|(name, seen)| {
                    !busy.contains(&name.as_str()) && now.duration_since(**seen) >= forget_after
                })
                .map(|(name, _)| name.clone())
                .collect();
            for name in idle_workers {
                queue.workers.remove(&name);
            }
            reclaimed
        });

        if reclaimed.requeued + reclaimed.dead_lettered > 0 {
            warn!(study = %self.study.name, model, requeued = reclaimed.requeued, dead_lettered = reclaimed.dead_lettered, "reclaimed expired leases");
        }
        reclaimed
    }

    fn snapshot_of(&self, model: &str) -> QueueSnapshot {
        let now = Instant::now();
        self.with_queue(model, |queue, _| {
            let in_flight = queue
                .in_flight
                .values()
                .map(|leased| InFlightJob {
                    shard_id: Some(leased.entry.job.shard_id),
                    consumer: leased.consumer.clone(),
                    idle: now.duration_since(leased.refreshed),
                    delivery: leased.entry.deliveries + 1,
                })
                .collect();

            let mut workers: Vec<WorkerSeen> = queue
                .workers
                .iter()
                .map(|(name, seen)| WorkerSeen {
                    consumer: name.clone(),
                    in_flight: queue
                        .in_flight
                        .values()
                        .filter(|leased| &leased.consumer == name)
                        .count(),
                    idle: now.duration_since(*seen),
                })
                .collect();
            workers.sort_by(|a, b| a.consumer.cmp(&b.consumer));

            QueueSnapshot {
                queued: queue.queued.len(),
                in_flight,
                dead_letters: queue
                    .dead
                    .iter()
                    .take(SNAPSHOT_DEAD_LETTERS)
                    .cloned()
                    .collect(),
                dead_lettered: queue.dead.len(),
                workers,
            }
        })
    }
}

impl JobQueue for EmbeddedQueue {
    fn study(&self) -> &StudyId {
        &self.study
    }

    fn settings(&self) -> &LeaseSettings {
        &self.settings
    }

    fn submit<'a>(&'a self, jobs: &'a [Job]) -> QueueFuture<'a, SubmitReport> {
        Box::pin(ready(self.submit_jobs(jobs)))
    }

    fn claim<'a>(&'a self, model: &'a str, consumer: &'a str) -> QueueFuture<'a, Option<Lease>> {
        Box::pin(ready(self.claim_job(model, consumer)))
    }

    fn heartbeat<'a>(&'a self, lease: &'a Lease) -> QueueFuture<'a, ()> {
        Box::pin(ready(self.heartbeat_lease(lease)))
    }

    fn still_owner<'a>(&'a self, lease: &'a Lease) -> QueueFuture<'a, bool> {
        Box::pin(ready(Ok(self.check_owner(lease))))
    }

    fn ack<'a>(&'a self, lease: &'a Lease) -> QueueFuture<'a, ()> {
        self.ack_lease(lease);
        Box::pin(ready(Ok(())))
    }

    fn release<'a>(&'a self, lease: &'a Lease, reason: ReleaseReason) -> QueueFuture<'a, ()> {
        Box::pin(ready(self.release_lease(lease, reason)))
    }

    fn dead_letter<'a>(&'a self, lease: &'a Lease, reason: &'a str) -> QueueFuture<'a, ()> {
        Box::pin(ready(self.dead_letter_lease(lease, reason)))
    }

    fn reclaim_expired<'a>(&'a self, model: &'a str) -> QueueFuture<'a, Reclaimed> {
        Box::pin(ready(Ok(self.reclaim(model))))
    }

    fn snapshot<'a>(&'a self, model: &'a str) -> QueueFuture<'a, QueueSnapshot> {
        Box::pin(ready(Ok(self.snapshot_of(model))))
    }
}

/// The entry id of a lease from this backend; `None` for a foreign lease.
fn entry_id(lease: &Lease) -> Option<u64> {
    lease.entry_id.parse().ok()
}
