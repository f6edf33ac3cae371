//! Queue overhead per job: one submit, claim, heartbeat and ack, on Redis
//! (GAZE_TEST_REDIS_URL, see scripts/redis.sh) and in process.
//!
//! Run: `eval "$(scripts/redis.sh start)"; cargo bench -p gaze-shared --bench queue`

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gaze_shared::queue::{
    EmbeddedBroker, Job, JobQueue, LeaseSettings, RedisOptions, RedisQueue, StudyId,
};
use tokio::runtime::Runtime;

const MODEL: &str = "llama-3-8b";

fn study() -> StudyId {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    StudyId::new(format!("bench-{nanos}"), "fingerprint-1")
}

/// Sends one job through the queue: submit, claim, heartbeat, ack. Each
/// call uses a new shard id, so every submit queues a job.
async fn job_cycle(queue: &dyn JobQueue, study: &StudyId, next_shard: &AtomicU32) {
    let job = Job {
        study: study.name.clone(),
        fingerprint: study.fingerprint.clone(),
        model: MODEL.to_owned(),
        shard_id: next_shard.fetch_add(1, Ordering::Relaxed),
        samples: 250,
    };
    queue.submit(std::slice::from_ref(&job)).await.unwrap();
    let lease = queue.claim(MODEL, "bench-worker").await.unwrap().unwrap();
    queue.heartbeat(&lease).await.unwrap();
    queue.ack(&lease).await.unwrap();
}

fn bench_backend(c: &mut Criterion, runtime: &Runtime, name: &str, queue: &dyn JobQueue) {
    let next_shard = AtomicU32::new(0);
    let mut group = c.benchmark_group("queue_job_cycle");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter(|| runtime.block_on(job_cycle(queue, queue.study(), &next_shard)));
    });
    group.finish();
}

fn queue_overhead(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let settings = LeaseSettings {
        heartbeat_interval: Duration::from_secs(10),
        lease_timeout: Duration::from_secs(60),
        max_deliveries: 3,
    };

    let broker = EmbeddedBroker::new();
    let in_process = broker.queue(study(), settings).unwrap();
    bench_backend(c, &runtime, "in_process", &in_process);

    match std::env::var("GAZE_TEST_REDIS_URL") {
        Ok(url) => {
            let redis = runtime
                .block_on(RedisQueue::connect(
                    &url,
                    study(),
                    settings,
                    &RedisOptions::default(),
                ))
                .expect("connect to GAZE_TEST_REDIS_URL");
            bench_backend(c, &runtime, "redis", &redis);
        }
        Err(_) => eprintln!(
            "SKIPPED queue_job_cycle/redis: GAZE_TEST_REDIS_URL is unset \
             (start Redis with `eval \"$(scripts/redis.sh start)\"`)"
        ),
    }
}

criterion_group!(benches, queue_overhead);
criterion_main!(benches);
