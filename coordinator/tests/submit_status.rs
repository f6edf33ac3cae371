//! `gaze submit` and `gaze status` on a real Redis and S3 server: submitting
//! twice, the JSON status before and after the workers, the status from
//! the store alone, and a Redis that may evict keys.

mod chaos_support;

use std::process::Command;

use chaos_support::{SAMPLES, SHARDS, Services, Study, block_on, serial};
use gaze_shared::store::{StudyId, read_manifest};
use serde_json::Value;

fn json(output: &std::process::Output) -> Value {
    assert!(
        output.status.success(),
        "gaze failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("gaze prints JSON")
}

fn submit_json(study: &Study, services: &Services) -> Value {
    json(&study.gaze(
        services,
        &["submit", study.config.to_str().unwrap(), "--json"],
    ))
}

#[test]
fn submit_twice_queues_once() {
    let _serial = serial();
    let Some(services) = Services::start("submit_twice_queues_once") else {
        return;
    };
    let study = Study::new(&services, "submit-twice");

    let first = submit_json(&study, &services);
    let second = submit_json(&study, &services);

    assert_eq!(first["models"][0]["planned"], SHARDS);
    assert_eq!(first["models"][0]["queued"], SHARDS);
    assert_eq!(second["models"][0]["queued"], 0);
    assert_eq!(second["models"][0]["already_queued"], SHARDS);
}

#[test]
fn status_counts_queued_shards() {
    let _serial = serial();
    let Some(services) = Services::start("status_counts_queued_shards") else {
        return;
    };
    let study = Study::new(&services, "status-queued");
    study.submit(&services);

    let status = study.status(&services);

    assert_eq!(status["format"], 1);
    assert_eq!(status["study"], "status-queued");
    let shards = &status["total"]["shards"];
    assert_eq!(shards["planned"], SHARDS);
    assert_eq!(shards["queued"], SHARDS);
    assert_eq!(shards["committed"], 0);
    assert_eq!(shards["in_flight"], 0);
    assert_eq!(shards["missing"], 0);
    assert_eq!(status["total"]["samples"]["planned"], SAMPLES);
    assert_eq!(status["total"]["eta_seconds"], Value::Null);
}

#[test]
fn status_from_store_after_workers() {
    let _serial = serial();
    let Some(services) = Services::start("status_from_store_after_workers") else {
        return;
    };
    let mut study = Study::new(&services, "status-store");
    study.submit(&services);
    let mut worker = study.worker(&services, "one", &["--exit-when-idle", "1"]);
    assert!(
        worker.wait_exit().success(),
        "the worker exits on an idle queue"
    );

    let store = format!("s3://gaze-chaos/{}", study.name);
    let status = json(&study.gaze(
        &services,
        &["status", &study.name, "--store", &store, "--json"],
    ));
    let resubmitted = submit_json(&study, &services);

    let shards = &status["total"]["shards"];
    assert_eq!(shards["committed"], SHARDS);
    assert_eq!(shards["queued"], 0);
    assert_eq!(status["total"]["samples"]["committed"], SAMPLES);
    assert_eq!(status["total"]["samples"]["remaining"], 0);
    assert_eq!(resubmitted["models"][0]["committed"], SHARDS);
    assert_eq!(resubmitted["models"][0]["queued"], 0);
}

#[test]
fn submit_rejects_evicting_redis() {
    let _serial = serial();
    let Some(services) = Services::start("submit_rejects_evicting_redis") else {
        return;
    };
    let study = Study::new(&services, "submit-evicting");
    let config_set = Command::new("redis-cli")
        .args(["-p", &services.redis_port.to_string()])
        .args(["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"])
        .output()
        .expect("run redis-cli");
    assert!(config_set.status.success(), "redis-cli CONFIG SET failed");

    let output = study.gaze(&services, &["submit", study.config.to_str().unwrap()]);

    assert!(!output.status.success(), "submit must fail");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("allkeys-lru"), "stderr: {stderr}");
    assert!(stderr.contains("noeviction"), "stderr: {stderr}");
    let store = services.store(&study.name);
    let study_id = StudyId::new(&study.name).unwrap();
    let manifest = block_on(read_manifest(&store, &study_id)).expect("read the manifest");
    assert!(manifest.is_none(), "the failed submit wrote no manifest");
}

#[test]
fn limit_submits_whole_shards() {
    let _serial = serial();
    let Some(services) = Services::start("limit_submits_whole_shards") else {
        return;
    };
    let study = Study::new(&services, "submit-limit");
    let config = study.config.to_str().unwrap();

    // 20 samples end inside shard 2 (samples 16..24), which goes whole.
    let limited = json(&study.gaze(&services, &["submit", config, "--limit", "20", "--json"]));
    let rest = submit_json(&study, &services);

    assert_eq!(limited["models"][0]["planned"], 3);
    assert_eq!(limited["models"][0]["queued"], 3);
    assert_eq!(rest["models"][0]["queued"], SHARDS - 3);
    assert_eq!(rest["models"][0]["already_queued"], 3);
}
