//! The worker's Prometheus metrics: their names, their help text, and the
//! `/metrics` HTTP exporter.
//!
//! Every metric carries a `model` label with the model id the worker serves.
//! The `metrics` macros record into the process's global recorder, so they
//! cost nothing until [`install_exporter`] (or another recorder) is set.

use std::net::SocketAddr;
use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};

use super::runner::ShardOutcome;

/// Shards this worker committed or found committed, then acked.
pub const SHARDS_COMPLETED: &str = "gaze_worker_shards_completed_total";
/// Shards released back to the queue after a retryable error.
pub const SHARDS_FAILED: &str = "gaze_worker_shards_failed_total";
/// Shards released back to the queue on shutdown.
pub const SHARDS_RELEASED: &str = "gaze_worker_shards_released_total";
/// Shards this worker moved to the dead-letter list.
pub const SHARDS_DEAD_LETTERED: &str = "gaze_worker_shards_dead_lettered_total";
/// Shards whose lease a heartbeat found lost.
pub const SHARDS_LEASE_LOST: &str = "gaze_worker_shards_lease_lost_total";
/// Samples this worker generated and committed.
pub const SAMPLES_COMPLETED: &str = "gaze_worker_samples_completed_total";
/// Tokens this worker generated in committed shards.
pub const GENERATED_TOKENS: &str = "gaze_worker_generated_tokens_total";
/// 1 while the worker runs a shard, else 0.
pub const SHARD_IN_FLIGHT: &str = "gaze_worker_shard_in_flight";
/// Id of the shard in flight, or of the last one when none is.
pub const SHARD_ID: &str = "gaze_worker_shard_id";
/// Seconds since the lease in flight was claimed or last refreshed, or 0
/// when no shard is in flight.
pub const HEARTBEAT_AGE: &str = "gaze_worker_heartbeat_age_seconds";
/// Wall time of each shard from claim to ack, release or dead letter.
pub const SHARD_SECONDS: &str = "gaze_worker_shard_seconds";

/// Histogram buckets of [`SHARD_SECONDS`], in seconds: from seconds (a
/// shard found committed) to hours.
const SHARD_SECONDS_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
];

/// Installs the Prometheus recorder as the process's global recorder and
/// serves it over HTTP at `http://{addr}/metrics` (every path serves it). Call
/// once per process, inside a tokio runtime, which then runs the listener.
/// Fails when a recorder is already installed or `addr` cannot be bound.
pub fn install_exporter(addr: SocketAddr) -> Result<(), BuildError> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            Matcher::Full(SHARD_SECONDS.to_owned()),
            SHARD_SECONDS_BUCKETS,
        )?
        .install()
}

/// Registers the help text and units of every metric with the recorder.
pub(super) fn describe() {
    describe_counter!(
        SHARDS_COMPLETED,
        Unit::Count,
        "Shards committed (or found committed) and acked"
    );
    describe_counter!(
        SHARDS_FAILED,
        Unit::Count,
        "Shards released to the queue after a retryable error"
    );
    describe_counter!(
        SHARDS_RELEASED,
        Unit::Count,
        "Shards released to the queue on shutdown"
    );
    describe_counter!(
        SHARDS_DEAD_LETTERED,
        Unit::Count,
        "Shards moved to the dead-letter list"
    );
    describe_counter!(
        SHARDS_LEASE_LOST,
        Unit::Count,
        "Shards whose lease was lost to another worker"
    );
    describe_counter!(
        SAMPLES_COMPLETED,
        Unit::Count,
        "Samples generated and committed"
    );
    describe_counter!(
        GENERATED_TOKENS,
        Unit::Count,
        "Tokens generated in committed shards"
    );
    describe_gauge!(
        SHARD_IN_FLIGHT,
        Unit::Count,
        "1 while a shard is in flight, else 0"
    );
    describe_gauge!(SHARD_ID, "Id of the shard in flight, or of the last one");
    describe_gauge!(
        HEARTBEAT_AGE,
        Unit::Seconds,
        "Seconds since the lease in flight was last refreshed"
    );
    describe_histogram!(
        SHARD_SECONDS,
        Unit::Seconds,
        "Wall time per shard, from claim to its end"
    );
}

/// Records the metrics of one model's worker.
#[derive(Debug, Clone)]
pub(super) struct WorkerMetrics {
    model: String,
}

impl WorkerMetrics {
    pub(super) fn new(model: &str) -> Self {
        Self {
            model: model.to_owned(),
        }
    }

    pub(super) fn shard_started(&self, shard_id: u32) {
        gauge!(SHARD_IN_FLIGHT, "model" => self.model.clone()).set(1.0);
        gauge!(SHARD_ID, "model" => self.model.clone()).set(f64::from(shard_id));
        self.heartbeat_age(Some(Duration::ZERO));
    }

    pub(super) fn shard_ended(&self, elapsed: Duration) {
        gauge!(SHARD_IN_FLIGHT, "model" => self.model.clone()).set(0.0);
        self.heartbeat_age(None);
        histogram!(SHARD_SECONDS, "model" => self.model.clone()).record(elapsed.as_secs_f64());
    }

    /// Sets the heartbeat age, recording 0 for `None` (no shard in flight).
    pub(super) fn heartbeat_age(&self, age: Option<Duration>) {
        let seconds = age.map_or(0.0, |age| age.as_secs_f64());
        gauge!(HEARTBEAT_AGE, "model" => self.model.clone()).set(seconds);
    }

    pub(super) fn completed(&self, outcome: &ShardOutcome) {
        self.count(SHARDS_COMPLETED, 1);
        self.count(SAMPLES_COMPLETED, outcome.samples);
        self.count(GENERATED_TOKENS, outcome.generated_tokens);
    }

    pub(super) fn failed(&self) {
        self.count(SHARDS_FAILED, 1);
    }

    pub(super) fn released(&self) {
        self.count(SHARDS_RELEASED, 1);
    }

    pub(super) fn dead_lettered(&self) {
        self.count(SHARDS_DEAD_LETTERED, 1);
    }

    pub(super) fn lease_lost(&self) {
        self.count(SHARDS_LEASE_LOST, 1);
    }

    fn count(&self, name: &'static str, value: u64) {
        counter!(name, "model" => self.model.clone()).increment(value);
    }
}
