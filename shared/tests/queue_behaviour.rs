//! Behaviour of the job queue, written once and run against both backends:
//! Redis Streams (needs GAZE_TEST_REDIS_URL) and the in-process one.

mod queue_support;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use gaze_shared::queue::{
    EmbeddedBroker, Heartbeat, JobQueue, Lease, LeaseSettings, QueueError, Reaper, RedisOptions,
    RedisQueue, ReleaseReason, StudyId,
};
use queue_support::{MODEL, fast_settings, jobs, unique_study, wait_until};

/// Bounds every wait for a lease to expire; a lease expires after 500 ms.
const EXPIRY_LIMIT: Duration = Duration::from_secs(10);

trait Fixture {
    fn open(
        &self,
        study: &StudyId,
        settings: LeaseSettings,
    ) -> impl Future<Output = Arc<dyn JobQueue>>;
}

struct RedisFixture {
    url: String,
}

impl Fixture for RedisFixture {
    async fn open(&self, study: &StudyId, settings: LeaseSettings) -> Arc<dyn JobQueue> {
        let queue =
            RedisQueue::connect(&self.url, study.clone(), settings, &RedisOptions::default())
                .await
                .expect("connect to the test Redis");
        Arc::new(queue)
    }
}

#[derive(Default)]
struct EmbeddedFixture {
    broker: EmbeddedBroker,
}

impl Fixture for EmbeddedFixture {
    async fn open(&self, study: &StudyId, settings: LeaseSettings) -> Arc<dyn JobQueue> {
        Arc::new(
            self.broker
                .queue(study.clone(), settings)
                .expect("valid settings"),
        )
    }
}

/// Waits until the reaper requeues the one lease of `queue`, which must be
/// left without heartbeats.
async fn wait_for_requeue(queue: &dyn JobQueue) {
    wait_until(
        "the lease expires and is requeued",
        EXPIRY_LIMIT,
        || async { queue.reclaim_expired(MODEL).await.unwrap().requeued == 1 },
    )
    .await;
}

/// Queues `shard`, lets worker-a's lease on it expire, and returns
/// worker-a's stale lease and the lease worker-b claims after it.
async fn take_over(queue: &dyn JobQueue, study: &StudyId, shard: u32) -> (Lease, Lease) {
    queue.submit(&jobs(study, MODEL, [shard])).await.unwrap();
    let stale = queue.claim(MODEL, "worker-a").await.unwrap().unwrap();
    wait_for_requeue(queue).await;
    let current = queue
        .claim(MODEL, "worker-b")
        .await
        .unwrap()
        .expect("the requeued job");
    (stale, current)
}

/// Runs every listed behaviour on both backends.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let test = concat!("on_redis::", stringify!($name));
                    let Some(url) = crate::queue_support::redis_url(test) else { return };
                    super::$name(&super::RedisFixture { url }).await;
                }
            )*
        }
        mod in_process {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::EmbeddedFixture::default()).await;
                }
            )*
        }
    };
}

on_both_backends!(
    submit_twice_queues_once,
    submit_skips_in_flight_shard,
    claim_then_ack,
    claim_only_own_model,
    claim_empty_queue,
    heartbeat_keeps_lease,
    heartbeat_reports_lost_lease,
    reaper_requeues_dead_worker_job,
    expired_lease_goes_to_other_worker,
    stale_owner_is_fenced,
    same_consumer_reclaim_fences_old_lease,
    ack_by_stale_owner_finishes_shard,
    failures_past_max_deliveries_dead_letter,
    expiries_past_max_deliveries_dead_letter,
    shutdown_release_does_not_count,
    worker_dead_letter_then_resubmit,
    wrong_fingerprint_dead_lettered,
    snapshot_lists_workers,
);

async fn submit_twice_queues_once(fixture: &impl Fixture) {
    let study = unique_study("submit-twice");
    let queue = fixture.open(&study, fast_settings()).await;
    let batch = jobs(&study, MODEL, 0..3);

    let first = queue.submit(&batch).await.unwrap();
    let second = queue.submit(&batch).await.unwrap();

    assert_eq!(first.queued, 3);
    assert_eq!(first.skipped, 0);
    assert_eq!(second.queued, 0);
    assert_eq!(second.skipped, 3);
    assert_eq!(queue.snapshot(MODEL).await.unwrap().queued, 3);

    let mut shards = Vec::new();
    while let Some(lease) = queue.claim(MODEL, "worker-a").await.unwrap() {
        shards.push(lease.job.shard_id);
    }
    assert_eq!(shards, vec![0, 1, 2]);
}

async fn submit_skips_in_flight_shard(fixture: &impl Fixture) {
    let study = unique_study("submit-in-flight");
    let queue = fixture.open(&study, fast_settings()).await;
    let batch = jobs(&study, MODEL, 0..2);
    queue.submit(&batch).await.unwrap();
    let lease = queue.claim(MODEL, "worker-a").await.unwrap().unwrap();

    let again = queue.submit(&batch).await.unwrap();

    assert_eq!(lease.job.shard_id, 0);
    assert_eq!(again.queued, 0);
    assert_eq!(again.skipped, 2);
    let snapshot = queue.snapshot(MODEL).await.unwrap();
    assert_eq!(snapshot.queued, 1);
    assert_eq!(snapshot.in_flight.len(), 1);
}

async fn claim_then_ack(fixture: &impl Fixture) {
    let study = unique_study("claim-ack");
    let queue = fixture.open(&study, fast_settings()).await;
    let batch = jobs(&study, MODEL, [7]);
    queue.submit(&batch).await.unwrap();

    let lease = queue
        .claim(MODEL, "worker-a")
        .await
        .unwrap()
        .expect("a queued job");

    assert_eq!(lease.job, batch[0]);
    assert_eq!(lease.consumer, "worker-a");
    assert_eq!(lease.attempt, 1);
    assert_eq!(lease.delivery, 1);
    assert!(queue.still_owner(&lease).await.unwrap());

    queue.ack(&lease).await.unwrap();

    assert!(!queue.still_owner(&lease).await.unwrap());
    let snapshot = queue.snapshot(MODEL).await.unwrap();
    assert_eq!(snapshot.queued, 0);
    assert!(snapshot.in_flight.is_empty());
    assert_eq!(snapshot.dead_lettered, 0);
    assert!(queue.claim(MODEL, "worker-a").await.unwrap().is_none());
    queue.ack(&lease).await.expect("a second ack is harmless");
}

async fn claim_only_own_model(fixture: &impl Fixture) {
    let study = unique_study("own-model");
    let queue = fixture.open(&study, fast_settings()).await;
    let mut batch = jobs(&study, "mistral-7b", [1, 2]);
    batch.extend(jobs(&study, MODEL, [3]));
    queue.submit(&batch).await.unwrap();

    let lease = queue.claim(MODEL, "worker-a").await.unwrap().unwrap();

    assert_eq!(lease.job.model, MODEL);
    assert_eq!(lease.job.shard_id, 3);
    assert!(queue.claim(MODEL, "worker-a").await.unwrap().is_none());
    assert_eq!(queue.snapshot("mistral-7b").await.unwrap().queued, 2);
}

async fn claim_empty_queue(fixture: &impl Fixture) {
    let study = unique_study("empty");
    let queue = fixture.open(&study, fast_settings()).await;

    assert!(queue.claim(MODEL, "worker-a").await.unwrap().is_none());
    assert_eq!(queue.reclaim_expired(MODEL).await.unwrap().requeued, 0);
    assert_eq!(queue.snapshot(MODEL).await.unwrap().queued, 0);
}

async fn heartbeat_keeps_lease(fixture: &impl Fixture) {
    let study = unique_study("heartbeat");
    let queue = fixture.open(&study, fast_settings()).await;
    queue.submit(&jobs(&study, MODEL, [0])).await.unwrap();
    let lease = queue.claim(MODEL, "worker-a").await.unwrap().unwrap();
    let heartbeat = Heartbeat::spawn(queue.clone(), lease.clone());

    // Six lease timeouts of reaping and claiming by another worker.
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let reclaimed = queue.reclaim_expired(MODEL).await.unwrap();
        assert_eq!(reclaimed.requeued, 0, "a heartbeating lease was reclaimed");
        assert!(queue.claim(MODEL, "worker-b").await.unwrap().is_none());
    }

    assert!(!heartbeat.is_lost());
    assert!(queue.still_owner(&lease).await.unwrap());
    drop(heartbeat);
    queue.ack(&lease).await.unwrap();
}

async fn heartbeat_reports_lost_lease(fixture: &impl Fixture) {
    let study = unique_study("heartbeat-lost");
    let queue = fixture.open(&study, fast_settings()).await;
    let (stale, _current) = take_over(queue.as_ref(), &study, 3).await;

    let mut heartbeat = Heartbeat::spawn(queue.clone(), stale);

    tokio::time::timeout(EXPIRY_LIMIT, heartbeat.lost())
        .await
        .expect("the heartbeat task reports the lost lease");
    assert!(heartbeat.is_lost());
}

async fn reaper_requeues_dead_worker_job(fixture: &impl Fixture) {
    let study = unique_study("reaper");
    let queue = fixture.open(&study, fast_settings()).await;
    queue.submit(&jobs(&study, MODEL, [2])).await.unwrap();
    let abandoned = queue.claim(MODEL, "worker-a").await.unwrap().unwrap();

    let _reaper = Reaper::spawn(queue.clone(), MODEL.to_owned());

    wait_until("the reaper requeues the job", EXPIRY_LIMIT, || async {
        queue.snapshot(MODEL).await.unwrap().queued == 1
    })
    .await;
    let lease = queue.claim(MODEL, "worker-b").await.unwrap().unwrap();
    assert_eq!(lease.job, abandoned.job);
    assert_eq!(lease.attempt, 2);
}

async fn expired_lease_goes_to_other_worker(fixture: &impl Fixture) {
    let study = unique_study("expiry");
    let queue = fixture.open(&study, fast_settings()).await;
    let (first, second) = take_over(queue.as_ref(), &study, 4).await;

    assert_eq!(second.job, first.job);
    assert_eq!(second.consumer, "worker-b");
    assert_eq!(second.attempt, 2);
    assert_eq!(second.delivery, 2);
}

async fn stale_owner_is_fenced(fixture: &impl Fixture) {
    let study = unique_study("fencing");
    let queue = fixture.open(&study, fast_settings()).await;
    let (stale, current) = take_over(queue.as_ref(), &study, 5).await;

    assert!(current.attempt > stale.attempt);
    assert!(!queue.still_owner(&stale).await.unwrap());
    assert!(matches!(
        queue.heartbeat(&stale).await,
        Err(QueueError::LeaseLost {
            shard_id: 5,
            attempt: 1
        })
    ));
    assert!(matches!(
        queue
            .release(&stale, ReleaseReason::Failed("late".into()))
            .await,
        Err(QueueError::LeaseLost { .. })
    ));
    assert!(matches!(
        queue.dead_letter(&stale, "late").await,
        Err(QueueError::LeaseLost { .. })
    ));

    assert!(queue.still_owner(&current).await.unwrap());
    queue
        .heartbeat(&current)
        .await
        .expect("the new owner keeps its lease");
    let snapshot = queue.snapshot(MODEL).await.unwrap();
    assert_eq!(snapshot.in_flight.len(), 1);
    assert_eq!(snapshot.in_flight[0].consumer, "worker-b");
    assert_eq!(snapshot.dead_lettered, 0);
    assert_eq!(snapshot.queued, 0);
}

async fn same_consumer_reclaim_fences_old_lease(fixture: &impl Fixture) {
    let study = unique_study("same-consumer");
    let queue = fixture.open(&study, fast_settings()).await;
    queue.submit(&jobs(&study, MODEL, [6])).await.unwrap();
    let old = queue.claim(MODEL, "worker-a").await.unwrap().unwrap();
    wait_for_requeue(queue.as_ref()).await;

    let new = queue.claim(MODEL, "worker-a").await.unwrap().unwrap();

    assert_eq!(new.attempt, 2);
    assert!(!queue.still_owner(&old).await.unwrap());
    assert!(queue.still_owner(&new).await.unwrap());
    assert!(queue.heartbeat(&old).await.is_err());
}

async fn ack_by_stale_owner_finishes_shard(fixture: &impl Fixture) {
    let study = unique_study("stale-ack");
    let queue = fixture.open(&study, fast_settings()).await;
    let (stale, current) = take_over(queue.as_ref(), &study, 8).await;

    // The stale worker committed the shard first, so the shard is done.
    queue.ack(&stale).await.unwrap();

    assert!(!queue.still_owner(&current).await.unwrap());
    assert!(queue.heartbeat(&current).await.is_err());
    let snapshot = queue.snapshot(MODEL).await.unwrap();
    assert_eq!(snapshot.queued, 0);
    assert!(snapshot.in_flight.is_empty());
    assert_eq!(
        queue
            .submit(&jobs(&study, MODEL, [8]))
            .await
            .unwrap()
            .queued,
        1
    );
}

async fn failures_past_max_deliveries_dead_letter(fixture: &impl Fixture) {
    let study = unique_study("max-failures");
    let settings = LeaseSettings {
        max_deliveries: 2,
        ..fast_settings()
    };
    let queue = fixture.open(&study, settings).await;
    queue.submit(&jobs(&study, MODEL, [1, 2])).await.unwrap();

    let first = queue.claim(MODEL, "worker-a").await.unwrap().unwrap();
    queue
        .release(&first, ReleaseReason::Failed("CUDA out of memory".into()))
        .await
        .unwrap();
    let other = queue.claim(MODEL, "worker-a").await.unwrap().unwrap();
    let second = queue.claim(MODEL, "worker-a").await.unwrap().unwrap();
    queue
        .release(
            &second,
            ReleaseReason::Failed("CUDA out of memory at decode step 12".into()),
        )
        .await
        .unwrap();

    assert_eq!(first.job.shard_id, 1);
    assert_eq!(other.job.shard_id, 2);
    assert_eq!(second.job.shard_id, 1);
    assert_eq!(second.delivery, 2);
    let snapshot = queue.snapshot(MODEL).await.unwrap();
    assert_eq!(snapshot.dead_lettered, 1);
    let dead = &snapshot.dead_letters[0];
    assert_eq!(dead.shard_id, Some(1));
    assert_eq!(dead.deliveries, 2);
    assert!(dead.reason.contains("delivered 2 times"), "{}", dead.reason);
    assert!(dead.reason.contains("at decode step 12"), "{}", dead.reason);
    assert!(queue.still_owner(&other).await.unwrap());
    assert_eq!(snapshot.queued, 0);
}

async fn expiries_past_max_deliveries_dead_letter(fixture: &impl Fixture) {
    let study = unique_study("max-expiries");
    let settings = LeaseSettings {
        max_deliveries: 2,
        ..fast_settings()
    };
    let queue = fixture.open(&study, settings).await;
    queue.submit(&jobs(&study, MODEL, [3])).await.unwrap();

    queue.claim(MODEL, "worker-a").await.unwrap().unwrap();
    wait_until("the first lease expires", EXPIRY_LIMIT, || async {
        queue.reclaim_expired(MODEL).await.unwrap().requeued == 1
    })
    .await;
    queue.claim(MODEL, "worker-b").await.unwrap().unwrap();
    wait_until("the second lease expires", EXPIRY_LIMIT, || async {
        queue.reclaim_expired(MODEL).await.unwrap().dead_lettered == 1
    })
    .await;

    let snapshot = queue.snapshot(MODEL).await.unwrap();
    assert_eq!(snapshot.dead_lettered, 1);
    let reason = &snapshot.dead_letters[0].reason;
    assert!(
        reason.contains("lease of worker worker-b expired"),
        "{reason}"
    );
    assert!(queue.claim(MODEL, "worker-c").await.unwrap().is_none());
}

async fn shutdown_release_does_not_count(fixture: &impl Fixture) {
    let study = unique_study("shutdown");
    let settings = LeaseSettings {
        max_deliveries: 1,
        ..fast_settings()
    };
    let queue = fixture.open(&study, settings).await;
    queue.submit(&jobs(&study, MODEL, [9])).await.unwrap();

    let first = queue.claim(MODEL, "worker-a").await.unwrap().unwrap();
    queue
        .release(&first, ReleaseReason::Shutdown)
        .await
        .unwrap();
    let second = queue
        .claim(MODEL, "worker-b")
        .await
        .unwrap()
        .expect("released job");

    assert_eq!(second.job.shard_id, 9);
    assert_eq!(second.delivery, 1);
    assert_eq!(second.attempt, 2);
    assert!(!queue.still_owner(&first).await.unwrap());
    assert_eq!(queue.snapshot(MODEL).await.unwrap().dead_lettered, 0);
}

async fn worker_dead_letter_then_resubmit(fixture: &impl Fixture) {
    let study = unique_study("worker-dead-letter");
    let queue = fixture.open(&study, fast_settings()).await;
    let batch = jobs(&study, MODEL, [11]);
    queue.submit(&batch).await.unwrap();
    let lease = queue.claim(MODEL, "worker-a").await.unwrap().unwrap();

    queue
        .dead_letter(&lease, "vignette 3 has no value for field `age`")
        .await
        .unwrap();

    let snapshot = queue.snapshot(MODEL).await.unwrap();
    assert_eq!(snapshot.dead_lettered, 1);
    let dead = &snapshot.dead_letters[0];
    assert_eq!(dead.reason, "vignette 3 has no value for field `age`");
    assert_eq!(dead.consumer, "worker-a");
    assert_eq!(dead.shard_id, Some(11));
    assert_eq!(dead.message, batch[0].encode());
    assert!(queue.claim(MODEL, "worker-a").await.unwrap().is_none());

    assert_eq!(queue.submit(&batch).await.unwrap().queued, 1);
    let again = queue.claim(MODEL, "worker-a").await.unwrap().unwrap();
    assert_eq!(again.attempt, 2);
}

async fn wrong_fingerprint_dead_lettered(fixture: &impl Fixture) {
    let study = unique_study("fingerprint");
    let old_config = StudyId::new(study.name.clone(), "old-fingerprint");
    let submitter = fixture.open(&old_config, fast_settings()).await;
    let worker = fixture.open(&study, fast_settings()).await;
    submitter
        .submit(&jobs(&old_config, MODEL, [2]))
        .await
        .unwrap();

    assert!(worker.claim(MODEL, "worker-a").await.unwrap().is_none());

    let snapshot = worker.snapshot(MODEL).await.unwrap();
    assert_eq!(snapshot.dead_lettered, 1);
    let reason = &snapshot.dead_letters[0].reason;
    assert!(reason.contains("fingerprint old-fingerprint"), "{reason}");
    assert!(reason.contains("submit again"), "{reason}");
}

async fn snapshot_lists_workers(fixture: &impl Fixture) {
    let study = unique_study("workers");
    let queue = fixture.open(&study, fast_settings()).await;
    queue.submit(&jobs(&study, MODEL, 0..3)).await.unwrap();
    queue.claim(MODEL, "worker-a").await.unwrap().unwrap();
    queue.claim(MODEL, "worker-a").await.unwrap().unwrap();
    queue.claim(MODEL, "worker-b").await.unwrap().unwrap();
    queue.claim(MODEL, "worker-c").await.unwrap();

    let snapshot = queue.snapshot(MODEL).await.unwrap();

    let workers: Vec<(&str, usize)> = snapshot
        .workers
        .iter()
        .map(|worker| (worker.consumer.as_str(), worker.in_flight))
        .collect();
    assert_eq!(
        workers,
        vec![("worker-a", 2), ("worker-b", 1), ("worker-c", 0)]
    );
    let shards: Vec<Option<u32>> = snapshot.in_flight.iter().map(|job| job.shard_id).collect();
    assert_eq!(shards, vec![Some(0), Some(1), Some(2)]);
    assert!(snapshot.in_flight.iter().all(|job| job.delivery == 1));
}
