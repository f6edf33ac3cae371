//! Background tasks around leases: the heartbeat that keeps a worker's
//! lease alive, and the reaper that every worker runs to reclaim expired
//! leases of other workers.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{MissedTickBehavior, interval};
use tracing::{debug, warn};

use super::{JobQueue, Lease, QueueError};

/// Sends heartbeats for one lease every `heartbeat_interval` until dropped
/// or until the lease is lost.
///
/// A failed heartbeat (Redis unreachable) is logged and retried at the next
/// interval; only [`QueueError::LeaseLost`] ends the task. Drop the handle
/// when the job ends, before `ack` or `release`.
pub struct Heartbeat {
    lost: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Heartbeat {
    /// Starts the heartbeat task of `lease` on the current tokio runtime.
    pub fn spawn(queue: Arc<dyn JobQueue>, lease: Lease) -> Self {
        let (lost_sender, lost) = watch::channel(false);
        let period = queue.settings().heartbeat_interval;

        let task = tokio::spawn(async move {
            let mut ticker = interval(period);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            // The first tick completes at once; the claim itself was the
            // first refresh.
            ticker.tick().await;
            loop {
                ticker.tick().await;
                match queue.heartbeat(&lease).await {
                    Ok(()) => debug!(
                        shard = lease.job.shard_id,
                        attempt = lease.attempt,
                        "heartbeat sent"
                    ),
                    Err(err @ QueueError::LeaseLost { .. }) => {
                        warn!(study = %lease.job.study, shard = lease.job.shard_id, worker = %lease.consumer, attempt = lease.attempt, cause = %err, "lease lost");
                        let _ = lost_sender.send(true);
                        return;
                    }
                    Err(err) => {
                        warn!(study = %lease.job.study, shard = lease.job.shard_id, worker = %lease.consumer, attempt = lease.attempt, cause = %err, "heartbeat failed; retrying at the next interval");
                    }
                }
            }
        });

        Self { lost, task }
    }

    /// Returns whether a heartbeat found the lease lost.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Completes when the lease is lost, or when the heartbeat task has
    /// ended for another reason (a panic), after which the lease will
    /// expire. Pending for as long as heartbeats keep the lease.
    pub async fn lost(&mut self) {
        let _ = self.lost.wait_for(|lost| *lost).await;
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs [`JobQueue::reclaim_expired`] for one model every half lease
/// timeout until dropped, so that a job whose worker died is queued again
/// within 1.5 lease timeouts of its last heartbeat.
pub struct Reaper {
    task: JoinHandle<()>,
}

impl Reaper {
    /// Starts the reaper task of `model` on the current tokio runtime.
    pub fn spawn(queue: Arc<dyn JobQueue>, model: String) -> Self {
        let period = queue.settings().lease_timeout / 2;

        let task = tokio::spawn(async move {
            let mut ticker = interval(period);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(err) = queue.reclaim_expired(&model).await {
                    warn!(study = %queue.study().name, model = %model, cause = %err, "reclaiming expired leases failed; retrying later");
                }
            }
        });

        Self { task }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.task.abort();
    }
}
