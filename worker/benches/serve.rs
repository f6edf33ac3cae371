//! Worker loop overhead per shard: claim, heartbeat and runner tasks,
//! metrics and ack around a runner that commits at once, on the in-process
//! queue and on Redis (GAZE_TEST_REDIS_URL, see scripts/redis.sh).
//!
//! Run: `eval "$(scripts/redis.sh start)"; cargo bench -p gaze-worker --bench serve`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::future::BoxFuture;
use gaze_shared::queue::{
    EmbeddedBroker, Job, JobQueue, LeaseSettings, RedisOptions, RedisQueue, StudyId,
};
use gaze_worker::serve::{
    AttemptInfo, CommitStatus, ServeOptions, ShardError, ShardOutcome, ShardRunner, ShutdownSignal,
    ShutdownTrigger, serve,
};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

const MODEL: &str = "llama-3-8b";

/// Commits every shard at once and requests a shutdown after `target`
/// shards, so that `serve` returns when the batch is done.
struct CountingRunner {
    done: AtomicU64,
    target: u64,
    trigger: ShutdownTrigger,
}

impl ShardRunner for CountingRunner {
    fn run_shard<'a>(
        &'a self,
        job: &'a Job,
        _attempt: &'a AttemptInfo,
        _cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ShardOutcome, ShardError>> {
        Box::pin(async move {
            if self.done.fetch_add(1, Ordering::SeqCst) + 1 == self.target {
                self.trigger.drain();
            }
            Ok(ShardOutcome {
                samples: u64::from(job.samples),
                generated_tokens: 0,
                commit: CommitStatus::Written,
            })
        })
    }
}

fn study() -> StudyId {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    StudyId::new(format!("bench-serve-{nanos}"), "fingerprint-1")
}

/// Queues `shards` jobs, then times one `serve` call that runs them all.
async fn serve_batch(queue: Arc<dyn JobQueue>, shards: u64) -> Duration {
    let study = queue.study().clone();
    let jobs: Vec<Job> = (0..shards)
        .map(|shard_id| Job {
            study: study.name.clone(),
            fingerprint: study.fingerprint.clone(),
            model: MODEL.to_owned(),
            shard_id: shard_id as u32,
            samples: 100,
        })
        .collect();
    queue.submit(&jobs).await.unwrap();

    let (trigger, shutdown) = ShutdownSignal::manual();
    let runner = Arc::new(CountingRunner {
        done: AtomicU64::new(0),
        target: shards,
        trigger,
    });
    let start = Instant::now();
    let report = serve(
        queue,
        runner,
        ServeOptions::new(MODEL, "bench-worker"),
        shutdown,
    )
    .await
    .unwrap();
    let elapsed = start.elapsed();
    assert_eq!(report.completed, shards);
    elapsed
}

fn bench_backend<F>(c: &mut Criterion, runtime: &Runtime, name: &str, open: F)
where
    F: Fn() -> Arc<dyn JobQueue>,
{
    let mut group = c.benchmark_group("serve_shard_cycle");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter_custom(|shards| runtime.block_on(serve_batch(open(), shards)));
    });
    group.finish();
}

fn serve_overhead(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let settings = LeaseSettings::default();

    let broker = EmbeddedBroker::new();
    bench_backend(c, &runtime, "in_process", || {
        Arc::new(broker.queue(study(), settings).unwrap())
    });

    match std::env::var("GAZE_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => {
            bench_backend(c, &runtime, "redis", || {
                let queue = runtime.block_on(RedisQueue::connect(
                    &url,
                    study(),
                    settings,
                    &RedisOptions::default(),
                ));
                Arc::new(queue.expect("connect to Redis"))
            });
        }
        _ => eprintln!("SKIPPED serve_shard_cycle/redis: GAZE_TEST_REDIS_URL is unset"),
    }
}

criterion_group!(benches, serve_overhead);
criterion_main!(benches);
