//! Records when the current lease was last refreshed, for the heartbeat age
//! metric: a queue wrapper that notes each successful claim and heartbeat.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gaze_shared::queue::{
    Job, JobQueue, Lease, LeaseSettings, QueueFuture, QueueSnapshot, Reclaimed, ReleaseReason,
    StudyId, SubmitReport,
};
use tokio::time::Instant;

/// The time of the last successful claim or heartbeat. Clones share the
/// time.
#[derive(Debug, Clone, Default)]
pub(super) struct HeartbeatClock {
    last: Arc<Mutex<Option<Instant>>>,
}

impl HeartbeatClock {
    fn record(&self) {
        *self.lock() = Some(Instant::now());
    }

    /// Time since the last claim or heartbeat, or `None` before the first.
    pub(super) fn age(&self) -> Option<Duration> {
        self.lock().map(|last| last.elapsed())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A [`JobQueue`] that passes every call to `inner` and records successful
/// claims and heartbeats on a [`HeartbeatClock`].
pub(super) struct ClockedQueue {
    inner: Arc<dyn JobQueue>,
    clock: HeartbeatClock,
}

impl ClockedQueue {
    pub(super) fn new(inner: Arc<dyn JobQueue>, clock: HeartbeatClock) -> Self {
        Self { inner, clock }
    }
}

impl JobQueue for ClockedQueue {
    fn study(&self) -> &StudyId {
        self.inner.study()
    }

    fn settings(&self) -> &LeaseSettings {
        self.inner.settings()
    }

    fn submit<'a>(&'a self, jobs: &'a [Job]) -> QueueFuture<'a, SubmitReport> {
        self.inner.submit(jobs)
    }

    fn claim<'a>(&'a self, model: &'a str, consumer: &'a str) -> QueueFuture<'a, Option<Lease>> {
        Box::pin(async move {
            let lease = self.inner.claim(model, consumer).await?;
            if lease.is_some() {
                self.clock.record();
            }
            Ok(lease)
        })
    }

    fn heartbeat<'a>(&'a self, lease: &'a Lease) -> QueueFuture<'a, ()> {
        Box::pin(async move {
            self.inner.heartbeat(lease).await?;
            self.clock.record();
            Ok(())
        })
    }

    fn still_owner<'a>(&'a self, lease: &'a Lease) -> QueueFuture<'a, bool> {
        self.inner.still_owner(lease)
    }

    fn ack<'a>(&'a self, lease: &'a Lease) -> QueueFuture<'a, ()> {
        self.inner.ack(lease)
    }

    fn release<'a>(&'a self, lease: &'a Lease, reason: ReleaseReason) -> QueueFuture<'a, ()> {
        self.inner.release(lease, reason)
    }

    fn dead_letter<'a>(&'a self, lease: &'a Lease, reason: &'a str) -> QueueFuture<'a, ()> {
        self.inner.dead_letter(lease, reason)
    }

    fn reclaim_expired<'a>(&'a self, model: &'a str) -> QueueFuture<'a, Reclaimed> {
        self.inner.reclaim_expired(model)
    }

    fn snapshot<'a>(&'a self, model: &'a str) -> QueueFuture<'a, QueueSnapshot> {
        self.inner.snapshot(model)
    }
}
