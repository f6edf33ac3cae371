//! Behaviour of the worker loop (`gaze-worker serve`) on the in-process
//! queue, and once on Redis: completing, retrying and dead-lettering shards,
//! keeping leases alive through blocking work, fencing, and shutdown.

#[path = "../../shared/tests/queue_support/mod.rs"]
mod queue_support;
mod serve_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gaze_shared::queue::{
    EmbeddedBroker, Job, JobQueue, Lease, LeaseSettings, QueueFuture, QueueSnapshot, Reclaimed,
    RedisOptions, RedisQueue, ReleaseReason, StudyId, SubmitReport,
};
use gaze_worker::serve::{
    ServeError, ServeOptions, ServeReport, ShutdownSignal, ShutdownTrigger, StopReason, serve,
};
use queue_support::{MODEL, fast_settings, jobs, redis_url, unique_study};
use serve_support::{
    FakeRunner, Step, TOKENS_PER_SAMPLE, bounded, options, options_until_shutdown, wait_until,
};
use tokio::task::JoinHandle;

/// Opens an in-process queue of a fresh study with the fast lease limits
/// (heartbeat every 100 ms, lease timeout 500 ms, 3 deliveries).
fn embedded_queue(tag: &str) -> Arc<dyn JobQueue> {
    let study = unique_study(tag);
    Arc::new(
        EmbeddedBroker::new()
            .queue(study, fast_settings())
            .expect("valid settings"),
    )
}

async fn submit(queue: &dyn JobQueue, shards: std::ops::Range<u32>) {
    let batch = jobs(queue.study(), MODEL, shards);
    queue.submit(&batch).await.expect("submit");
}

/// Serves until the queue stays empty.
async fn serve_until_idle(
    queue: &Arc<dyn JobQueue>,
    runner: &Arc<FakeRunner>,
    worker: &str,
) -> ServeReport {
    let future = serve(
        queue.clone(),
        runner.clone(),
        options(MODEL, worker),
        ShutdownSignal::never(),
    );
    bounded("the worker stops on an idle queue", future)
        .await
        .expect("serve")
}

async fn snapshot(queue: &dyn JobQueue) -> QueueSnapshot {
    queue.snapshot(MODEL).await.expect("snapshot")
}

/// A worker-a running the only shard of a fresh queue, whose first attempt
/// hangs and ignores cancellation; later attempts commit.
struct HangingShard {
    queue: Arc<dyn JobQueue>,
    runner: Arc<FakeRunner>,
    trigger: ShutdownTrigger,
    worker: JoinHandle<Result<ServeReport, ServeError>>,
}

impl HangingShard {
    /// Starts the worker with `shutdown_grace` and waits until the first
    /// attempt runs.
    async fn start(tag: &str, shutdown_grace: Duration) -> Self {
        let queue = embedded_queue(tag);
        submit(queue.as_ref(), 0..1).await;
        let runner = FakeRunner::new(|_, attempt| match attempt {
            1 => Step::Hang,
            _ => Step::Commit,
        });
        let (trigger, shutdown) = ShutdownSignal::manual();
        let options = ServeOptions {
            shutdown_grace,
            ..options_until_shutdown(MODEL, "worker-a")
        };
        let worker = tokio::spawn(serve(queue.clone(), runner.clone(), options, shutdown));
        runner.wait_for_runs(1).await;
        Self {
            queue,
            runner,
            trigger,
            worker,
        }
    }
}

#[tokio::test]
async fn serve_completes_every_shard() {
    let queue = embedded_queue("serve-happy");
    submit(queue.as_ref(), 0..5).await;
    let runner = FakeRunner::committing();

    let report = serve_until_idle(&queue, &runner, "worker-a").await;

    assert_eq!(report.stop, StopReason::Idle);
    assert_eq!(report.completed, 5);
    assert_eq!(report.failed, 0);
    assert_eq!(report.samples, 500);
    assert_eq!(report.generated_tokens, 500 * TOKENS_PER_SAMPLE);
    assert_eq!(runner.committed(), [0, 1, 2, 3, 4]);
    let after = snapshot(queue.as_ref()).await;
    assert_eq!(after.queued, 0);
    assert!(after.in_flight.is_empty());
    assert_eq!(after.dead_lettered, 0);
}

#[tokio::test]
async fn retryable_failure_redelivered_then_completes() {
    let queue = embedded_queue("serve-retry");
    submit(queue.as_ref(), 0..4).await;
    let runner = FakeRunner::new(|shard, attempt| match (shard, attempt) {
        (2, 1) => Step::Retryable("object store returned 503"),
        _ => Step::Commit,
    });

    let report = serve_until_idle(&queue, &runner, "worker-a").await;

    assert_eq!(report.failed, 1);
    assert_eq!(report.completed, 4);
    let attempts: Vec<(u64, u32)> = runner
        .runs_of(2)
        .iter()
        .map(|run| (run.attempt, run.delivery))
        .collect();
    assert_eq!(attempts, [(1, 1), (2, 2)]);
    assert_eq!(runner.committed(), [0, 1, 2, 3]);
    assert_eq!(snapshot(queue.as_ref()).await.dead_lettered, 0);
}

#[tokio::test]
async fn retryable_failure_dead_lettered_after_max_deliveries() {
    let queue = embedded_queue("serve-exhausted");
    submit(queue.as_ref(), 0..3).await;
    let runner = FakeRunner::new(|shard, _| match shard {
        1 => Step::Retryable("CUDA out of memory"),
        _ => Step::Commit,
    });

    let report = serve_until_idle(&queue, &runner, "worker-a").await;

    assert_eq!(report.failed, 3);
    assert_eq!(report.completed, 2);
    assert_eq!(runner.runs_of(1).len(), 3);
    let after = snapshot(queue.as_ref()).await;
    assert_eq!(after.dead_lettered, 1);
    let dead = &after.dead_letters[0];
    assert_eq!(dead.shard_id, Some(1));
    assert!(dead.reason.contains("delivered 3 times"), "{}", dead.reason);
    assert!(
        dead.reason.contains("CUDA out of memory"),
        "{}",
        dead.reason
    );
}

#[tokio::test]
async fn poison_dead_lettered_rest_complete() {
    let queue = embedded_queue("serve-poison");
    submit(queue.as_ref(), 0..5).await;
    let runner = FakeRunner::new(|shard, _| match shard {
        3 => Step::Poison("prompt of 9000 tokens exceeds the context of 8192"),
        _ => Step::Commit,
    });

    let report = serve_until_idle(&queue, &runner, "worker-a").await;

    assert_eq!(report.dead_lettered, 1);
    assert_eq!(report.completed, 4);
    assert_eq!(runner.runs_of(3).len(), 1);
    assert_eq!(runner.committed(), [0, 1, 2, 4]);
    let after = snapshot(queue.as_ref()).await;
    assert_eq!(after.dead_lettered, 1);
    assert_eq!(after.dead_letters[0].shard_id, Some(3));
    assert_eq!(
        after.dead_letters[0].reason,
        "prompt of 9000 tokens exceeds the context of 8192"
    );
    assert_eq!(after.dead_letters[0].consumer, "worker-a");
}

#[tokio::test]
async fn blocking_runner_keeps_lease() {
    let queue = embedded_queue("serve-blocking");
    submit(queue.as_ref(), 0..1).await;
    // Four lease timeouts of blocked thread: the lease survives only if
    // heartbeats go on while the shard blocks.
    let block = fast_settings().lease_timeout * 4;
    let runner = FakeRunner::new(move |_, _| Step::BlockThread(block));

    let first = tokio::spawn(serve(
        queue.clone(),
        runner.clone(),
        options(MODEL, "worker-a"),
        ShutdownSignal::never(),
    ));
    runner.wait_for_runs(1).await;
    // A second worker, whose reaper and claims would take the shard if its
    // lease expired.
    let (stop_second, shutdown) = ShutdownSignal::manual();
    let second = tokio::spawn(serve(
        queue.clone(),
        runner.clone(),
        options_until_shutdown(MODEL, "worker-b"),
        shutdown,
    ));
    let first = bounded("the first worker stops", first)
        .await
        .unwrap()
        .expect("serve");
    stop_second.drain();
    let second = bounded("the second worker stops", second)
        .await
        .unwrap()
        .expect("serve");

    assert_eq!(first.completed, 1);
    assert_eq!(first.lease_lost, 0);
    assert_eq!(second.completed, 0);
    let runs = runner.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].worker, "worker-a");
    assert_eq!(runs[0].attempt, 1);
    assert_eq!(runs[0].owner_at_end, Some(true));
}

#[tokio::test]
async fn shutdown_lets_shard_finish_within_grace() {
    let queue = embedded_queue("serve-grace");
    submit(queue.as_ref(), 0..3).await;
    let runner = FakeRunner::new(|_, _| Step::WaitForGate);
    let (trigger, shutdown) = ShutdownSignal::manual();
    let worker = tokio::spawn(serve(
        queue.clone(),
        runner.clone(),
        ServeOptions {
            shutdown_grace: Duration::from_secs(3600),
            ..options_until_shutdown(MODEL, "worker-a")
        },
        shutdown,
    ));

    runner.wait_for_runs(1).await;
    trigger.drain();
    runner.open_gate();
    let report = bounded("the worker stops", worker)
        .await
        .unwrap()
        .expect("serve");

    assert_eq!(report.stop, StopReason::Shutdown);
    assert_eq!(report.completed, 1);
    assert_eq!(report.released, 0);
    assert_eq!(runner.runs().len(), 1);
    let after = snapshot(queue.as_ref()).await;
    assert_eq!(after.queued, 2);
    assert!(after.in_flight.is_empty());
}

#[tokio::test]
async fn shutdown_past_grace_releases_shard() {
    let hanging = HangingShard::start("serve-grace-exceeded", Duration::from_millis(50)).await;
    let HangingShard {
        queue,
        runner,
        trigger,
        worker,
    } = hanging;

    trigger.drain();
    let report = bounded("the worker stops", worker)
        .await
        .unwrap()
        .expect("serve");

    assert_eq!(report.stop, StopReason::Shutdown);
    assert_eq!(report.released, 1);
    assert_eq!(report.completed, 0);
    assert!(runner.runs()[0].cancel.is_cancelled());
    let released = snapshot(queue.as_ref()).await;
    assert_eq!(released.queued, 1);
    assert!(released.in_flight.is_empty());

    let next = serve_until_idle(&queue, &runner, "worker-b").await;

    assert_eq!(next.completed, 1);
    let second = &runner.runs_of(0)[1];
    assert_eq!(second.worker, "worker-b");
    assert_eq!(second.attempt, 2);
    // A release on shutdown does not count as a delivery.
    assert_eq!(second.delivery, 1);
}

#[tokio::test]
async fn second_signal_leaves_lease_to_expire() {
    let hanging = HangingShard::start("serve-immediate", Duration::from_secs(3600)).await;
    let HangingShard {
        queue,
        runner,
        trigger,
        worker,
    } = hanging;

    trigger.escalate();
    trigger.escalate();
    let report = bounded("the worker stops", worker)
        .await
        .unwrap()
        .expect("serve");

    assert_eq!(report.stop, StopReason::ShutdownImmediate);
    assert_eq!(report.abandoned, 1);
    assert_eq!(report.released, 0);
    let left = snapshot(queue.as_ref()).await;
    assert_eq!(left.in_flight.len(), 1);
    assert_eq!(left.in_flight[0].consumer, "worker-a");

    // The next worker waits for the lease to expire, so it must not stop
    // when it first finds the queue empty.
    let (stop_next, shutdown) = ShutdownSignal::manual();
    let next = tokio::spawn(serve(
        queue.clone(),
        runner.clone(),
        options_until_shutdown(MODEL, "worker-b"),
        shutdown,
    ));
    wait_until("the reclaimed shard is committed", || {
        runner.committed() == [0]
    })
    .await;
    stop_next.drain();
    let next = bounded("the next worker stops", next)
        .await
        .unwrap()
        .expect("serve");

    assert_eq!(next.completed, 1);
    let second = &runner.runs_of(0)[1];
    assert_eq!(second.worker, "worker-b");
    assert_eq!(second.attempt, 2);
    // An expired lease counts as a delivery.
    assert_eq!(second.delivery, 2);
}

#[tokio::test]
async fn lost_lease_cancels_and_discards_attempt() {
    let queue: Arc<dyn JobQueue> = Arc::new(DroppedHeartbeats::new(embedded_queue("serve-lost")));
    submit(queue.as_ref(), 0..1).await;
    let runner = FakeRunner::new(|_, attempt| match attempt {
        1 => Step::WaitForCancel,
        _ => Step::Commit,
    });

    let report = serve_until_idle(&queue, &runner, "worker-a").await;

    assert_eq!(report.lease_lost, 1);
    assert_eq!(report.completed, 1);
    let runs = runner.runs_of(0);
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].owner_at_end, Some(false));
    assert_eq!(runs[1].attempt, 2);
    assert_eq!(runs[1].owner_at_end, Some(true));
    assert_eq!(runner.committed(), [0]);
}

#[tokio::test]
async fn foreign_job_dead_lettered() {
    let queue: Arc<dyn JobQueue> =
        Arc::new(ForeignFingerprint::new(embedded_queue("serve-foreign"), 1));
    submit(queue.as_ref(), 0..3).await;
    let runner = FakeRunner::committing();

    let report = serve_until_idle(&queue, &runner, "worker-a").await;

    assert_eq!(report.dead_lettered, 1);
    assert_eq!(report.completed, 2);
    assert!(runner.runs_of(1).is_empty());
    let after = snapshot(queue.as_ref()).await;
    assert_eq!(after.dead_lettered, 1);
    assert_eq!(after.dead_letters[0].shard_id, Some(1));
    let reason = &after.dead_letters[0].reason;
    assert!(
        reason.contains("config fingerprint stale-fingerprint"),
        "{reason}"
    );
}

#[tokio::test]
async fn shutdown_during_claim_releases_unstarted() {
    let (trigger, shutdown) = ShutdownSignal::manual();
    let inner = embedded_queue("serve-claim-shutdown");
    let queue: Arc<dyn JobQueue> = Arc::new(ShutdownOnClaim { inner, trigger });
    submit(queue.as_ref(), 0..2).await;
    let runner = FakeRunner::committing();

    let options = options_until_shutdown(MODEL, "worker-a");
    let future = serve(queue.clone(), runner.clone(), options, shutdown);
    let report = bounded("the worker stops", future).await.expect("serve");

    assert_eq!(report.stop, StopReason::Shutdown);
    assert_eq!(report.released, 1);
    assert!(runner.runs().is_empty());
    let after = snapshot(queue.as_ref()).await;
    assert_eq!(after.queued, 2);
    assert!(after.in_flight.is_empty());
}

#[tokio::test]
async fn serve_on_redis_skips_bad_messages() {
    let Some(url) = redis_url("serve_on_redis_skips_bad_messages") else {
        return;
    };
    let study = unique_study("serve-redis");
    let foreign = Job {
        study: "another-study".into(),
        ..jobs(&study, MODEL, [9]).remove(0)
    };
    let stream = format!("gaze:{{{}}}:{MODEL}:jobs", study.name);
    let mut raw = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection to Redis");
    for (shard, message) in [("8", "not json".to_owned()), ("9", foreign.encode())] {
        let fields = [
            ("shard", shard),
            ("deliveries", "0"),
            ("job", message.as_str()),
        ];
        let _: String = redis::AsyncCommands::xadd(&mut raw, &stream, "*", &fields)
            .await
            .unwrap();
    }
    let queue: Arc<dyn JobQueue> = Arc::new(
        RedisQueue::connect(
            &url,
            study.clone(),
            fast_settings(),
            &RedisOptions::default(),
        )
        .await
        .expect("connect to the test Redis"),
    );
    submit(queue.as_ref(), 0..4).await;
    let runner = FakeRunner::new(|shard, attempt| match (shard, attempt) {
        (2, 1) => Step::Retryable("object store returned 503"),
        _ => Step::Commit,
    });

    let report = serve_until_idle(&queue, &runner, "worker-a").await;

    assert_eq!(report.completed, 4);
    assert_eq!(report.failed, 1);
    assert_eq!(runner.committed(), [0, 1, 2, 3]);
    let after = snapshot(queue.as_ref()).await;
    assert_eq!(after.queued, 0);
    assert!(after.in_flight.is_empty());
    let dead: Vec<Option<u32>> = after.dead_letters.iter().map(|d| d.shard_id).collect();
    assert_eq!(dead, [Some(8), Some(9)]);
}

/// A queue that drops the heartbeats of shard 0's first attempt while that
/// lease is still held, as a network partition would. Once the lease has
/// expired and been reclaimed it passes them on, so the worker learns that
/// it lost the lease.
struct DroppedHeartbeats {
    inner: Arc<dyn JobQueue>,
    reclaimed: AtomicBool,
}

impl DroppedHeartbeats {
    fn new(inner: Arc<dyn JobQueue>) -> Self {
        Self {
            inner,
            reclaimed: AtomicBool::new(false),
        }
    }
}

/// A queue that hands out shard `shard` with a stale config fingerprint, as
/// a queue written by an older coordinator would.
struct ForeignFingerprint {
    inner: Arc<dyn JobQueue>,
    shard: u32,
}

impl ForeignFingerprint {
    fn new(inner: Arc<dyn JobQueue>, shard: u32) -> Self {
        Self { inner, shard }
    }
}

/// A queue that requests a shutdown during every claim, as a SIGTERM that
/// arrives while the claim is on its way to Redis would.
struct ShutdownOnClaim {
    inner: Arc<dyn JobQueue>,
    trigger: ShutdownTrigger,
}

/// Forwards the [`JobQueue`] methods that a test wrapper leaves unchanged.
macro_rules! forward_queue {
    ($($method:ident),*) => {
        fn study(&self) -> &StudyId {
            self.inner.study()
        }

        fn settings(&self) -> &LeaseSettings {
            self.inner.settings()
        }

        fn submit<'a>(&'a self, jobs: &'a [Job]) -> QueueFuture<'a, SubmitReport> {
            self.inner.submit(jobs)
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
    };
}

impl JobQueue for DroppedHeartbeats {
    forward_queue!();

    fn claim<'a>(&'a self, model: &'a str, consumer: &'a str) -> QueueFuture<'a, Option<Lease>> {
        self.inner.claim(model, consumer)
    }

    fn heartbeat<'a>(&'a self, lease: &'a Lease) -> QueueFuture<'a, ()> {
        Box::pin(async move {
            let targeted = lease.job.shard_id == 0 && lease.attempt == 1;
            if targeted && !self.reclaimed.load(Ordering::SeqCst) {
                if self.inner.still_owner(lease).await? {
                    return Ok(());
                }
                self.reclaimed.store(true, Ordering::SeqCst);
            }
            self.inner.heartbeat(lease).await
        })
    }
}

impl JobQueue for ForeignFingerprint {
    forward_queue!();

    fn claim<'a>(&'a self, model: &'a str, consumer: &'a str) -> QueueFuture<'a, Option<Lease>> {
        Box::pin(async move {
            let mut lease = self.inner.claim(model, consumer).await?;
            if let Some(lease) = lease
                .as_mut()
                .filter(|lease| lease.job.shard_id == self.shard)
            {
                lease.job.fingerprint = "stale-fingerprint".into();
            }
            Ok(lease)
        })
    }

    fn heartbeat<'a>(&'a self, lease: &'a Lease) -> QueueFuture<'a, ()> {
        self.inner.heartbeat(lease)
    }
}

impl JobQueue for ShutdownOnClaim {
    forward_queue!();

    fn claim<'a>(&'a self, model: &'a str, consumer: &'a str) -> QueueFuture<'a, Option<Lease>> {
        self.trigger.drain();
        self.inner.claim(model, consumer)
    }

    fn heartbeat<'a>(&'a self, lease: &'a Lease) -> QueueFuture<'a, ()> {
        self.inner.heartbeat(lease)
    }
}
