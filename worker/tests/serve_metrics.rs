//! The worker's Prometheus endpoint: a worker started with a metrics
//! address serves its counters and gauges in the text format. Kept in its
//! own test binary because the exporter installs a process-wide recorder.

#[path = "../../shared/tests/queue_support/mod.rs"]
mod queue_support;
mod serve_support;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use gaze_shared::queue::{EmbeddedBroker, JobQueue};
use gaze_worker::serve::{ServeOptions, ShutdownSignal, serve};
use queue_support::{MODEL, fast_settings, jobs, unique_study};
use serve_support::{FakeRunner, Step, TOKENS_PER_SAMPLE, bounded, options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An address on 127.0.0.1 whose port was free a moment ago.
fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address")
}

/// Fetches `http://{addr}/metrics` with a plain HTTP/1.1 request and
/// returns the body.
async fn scrape(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect to /metrics");
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let (_, body) = response.split_once("\r\n\r\n").expect("headers end");
    body.to_owned()
}

/// The value of the sample line `name{model="llama-3-8b"}`, if present.
fn sample(body: &str, name: &str) -> Option<f64> {
    let prefix = format!("{name}{{model=\"{MODEL}\"}} ");
    body.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|value| value.parse().expect("numeric sample"))
}

#[tokio::test]
async fn metrics_endpoint_counts_shards() {
    let study = unique_study("serve-metrics");
    let queue: Arc<dyn JobQueue> = Arc::new(
        EmbeddedBroker::new()
            .queue(study.clone(), fast_settings())
            .unwrap(),
    );
    queue.submit(&jobs(&study, MODEL, 0..4)).await.unwrap();
    let runner = FakeRunner::new(|shard, attempt| match (shard, attempt) {
        (1, _) => Step::Poison("vignette 1 has no value for field nationality"),
        (2, 1) => Step::Retryable("object store returned 503"),
        _ => Step::Commit,
    });
    let addr = free_addr();
    let options = ServeOptions {
        metrics_addr: Some(addr),
        ..options(MODEL, "worker-a")
    };

    let future = serve(
        queue.clone(),
        runner.clone(),
        options,
        ShutdownSignal::never(),
    );
    let report = bounded("the worker stops", future).await.expect("serve");
    let body = scrape(addr).await;

    assert_eq!(report.completed, 3);
    let completed = "gaze_worker_shards_completed_total";
    assert_eq!(sample(&body, completed), Some(3.0), "{body}");
    let dead_lettered = "gaze_worker_shards_dead_lettered_total";
    assert_eq!(sample(&body, dead_lettered), Some(1.0), "{body}");
    let failed = "gaze_worker_shards_failed_total";
    assert_eq!(sample(&body, failed), Some(1.0), "{body}");
    let samples = "gaze_worker_samples_completed_total";
    assert_eq!(sample(&body, samples), Some(300.0), "{body}");
    let tokens = "gaze_worker_generated_tokens_total";
    assert_eq!(
        sample(&body, tokens),
        Some((300 * TOKENS_PER_SAMPLE) as f64),
        "{body}"
    );
    let in_flight = "gaze_worker_shard_in_flight";
    assert_eq!(sample(&body, in_flight), Some(0.0), "{body}");
    let age = "gaze_worker_heartbeat_age_seconds";
    assert_eq!(sample(&body, age), Some(0.0), "{body}");
    // Five attempts: shards 0 and 3, shard 1 once, shard 2 twice.
    let shard_seconds = "gaze_worker_shard_seconds_count";
    assert_eq!(sample(&body, shard_seconds), Some(5.0), "{body}");
    assert!(
        body.contains("# HELP gaze_worker_shards_completed_total "),
        "{body}"
    );
}
