//! `gaze submit` and `gaze status` over the in-process queue: which shards
//! are queued, and the table and JSON forms of the status report.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::status::{StatusInput, build_report, read_status, render_json, render_table};
use super::submit::{CommittedShard, PlannedModel, PlannedShard, submit};
use gaze_shared::queue::{
    DeadLetter, EmbeddedBroker, EmbeddedQueue, InFlightJob, JobQueue, LeaseSettings, QueueSnapshot,
    ReleaseReason, StudyId, WorkerSeen,
};
use serde_json::json;

const LLAMA: &str = "llama-3-8b";
const MISTRAL: &str = "mistral-7b";

fn study() -> StudyId {
    StudyId::new("uk-immigration", "9f2c1ab0")
}

fn open_queue(study: &StudyId) -> EmbeddedQueue {
    EmbeddedBroker::new()
        .queue(study.clone(), LeaseSettings::default())
        .expect("valid settings")
}

/// A model whose shards have the given sample counts, with ids from 0.
fn planned(model: &str, samples: &[u32]) -> PlannedModel {
    PlannedModel {
        model: model.to_owned(),
        shards: samples
            .iter()
            .enumerate()
            .map(|(id, &samples)| PlannedShard {
                shard_id: id as u32,
                samples,
            })
            .collect(),
    }
}

/// A fixed time, 2026-01-01T00:00:00Z, so that reports do not depend on the
/// clock.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

fn committed(model: &str, shard_id: u32, seconds_before_now: u64) -> CommittedShard {
    CommittedShard {
        model: model.to_owned(),
        shard_id,
        committed_at: now() - Duration::from_secs(seconds_before_now),
    }
}

#[tokio::test]
async fn submit_skips_committed_shards() {
    let study = study();
    let queue = open_queue(&study);
    let plan = [planned(LLAMA, &[100; 4]), planned(MISTRAL, &[100; 4])];
    let done = [committed(LLAMA, 0, 60), committed(LLAMA, 2, 30)];

    let summary = submit(&queue, &study, &plan, &done).await.unwrap();

    let llama = &summary.models[0];
    assert_eq!(
        (
            llama.planned,
            llama.committed,
            llama.queued,
            llama.already_queued
        ),
        (4, 2, 2, 0)
    );
    let mistral = &summary.models[1];
    assert_eq!(
        (mistral.planned, mistral.committed, mistral.queued),
        (4, 0, 4)
    );
    let lease = queue.claim(LLAMA, "worker-a").await.unwrap().unwrap();
    assert_eq!(lease.job.shard_id, 1);
    assert_eq!(lease.job.samples, 100);
    assert_eq!(lease.job.fingerprint, "9f2c1ab0");
    assert_eq!(queue.snapshot(LLAMA).await.unwrap().queued, 1);
}

#[tokio::test]
async fn submit_twice_queues_nothing_new() {
    let study = study();
    let queue = open_queue(&study);
    let plan = [planned(LLAMA, &[100; 3])];
    submit(&queue, &study, &plan, &[]).await.unwrap();
    queue.claim(LLAMA, "worker-a").await.unwrap().unwrap();

    let again = submit(&queue, &study, &plan, &[]).await.unwrap();

    assert_eq!(again.models[0].queued, 0);
    assert_eq!(again.models[0].already_queued, 3);
    let snapshot = queue.snapshot(LLAMA).await.unwrap();
    assert_eq!(snapshot.queued, 2);
    assert_eq!(snapshot.in_flight.len(), 1);
}

#[tokio::test]
async fn submit_requeues_dead_lettered_shard() {
    let study = study();
    let queue = open_queue(&study);
    let plan = [planned(LLAMA, &[100])];
    submit(&queue, &study, &plan, &[]).await.unwrap();
    let lease = queue.claim(LLAMA, "worker-a").await.unwrap().unwrap();
    queue.dead_letter(&lease, "prompt too long").await.unwrap();

    let again = submit(&queue, &study, &plan, &[]).await.unwrap();

    assert_eq!(again.models[0].queued, 1);
    assert_eq!(queue.snapshot(LLAMA).await.unwrap().queued, 1);
}

#[tokio::test]
async fn submit_rejects_other_study() {
    let queue = open_queue(&study());
    let other = StudyId::new("uk-immigration", "0000");

    let error = submit(&queue, &other, &[planned(LLAMA, &[100])], &[])
        .await
        .unwrap_err()
        .to_string();

    assert!(error.contains("fingerprint 9f2c1ab0"), "{error}");
    assert!(error.contains("fingerprint 0000"), "{error}");
    assert_eq!(queue.snapshot(LLAMA).await.unwrap().queued, 0);
}

#[tokio::test]
async fn submit_rejects_repeated_shard() {
    let study = study();
    let queue = open_queue(&study);
    let mut model = planned(LLAMA, &[100, 100]);
    model.shards[1].shard_id = 0;

    let error = submit(&queue, &study, &[model], &[])
        .await
        .unwrap_err()
        .to_string();

    assert!(error.contains("lists shard 0 twice"), "{error}");
    assert_eq!(queue.snapshot(LLAMA).await.unwrap().queued, 0);
}

#[tokio::test]
async fn submit_summary_table() {
    let study = study();
    let queue = open_queue(&study);
    let plan = [planned(LLAMA, &[100; 4]), planned(MISTRAL, &[100; 2])];
    submit(&queue, &study, &plan[..1], &[]).await.unwrap();

    let summary = submit(&queue, &study, &plan, &[committed(MISTRAL, 1, 5)])
        .await
        .unwrap();

    let expected = "\
Study uk-immigration: shards per model
MODEL       PLANNED  COMMITTED  QUEUED NOW  ALREADY QUEUED
llama-3-8b        4          0           0               4
mistral-7b        2          1           1               0
total             6          1           1               4
";
    assert_eq!(summary.render(), expected);
}

/// The queue of llama-3-8b in the status tests: shards 0 to 3 committed,
/// 4 and 5 in flight (5 with an expired lease), 6 dead-lettered, 7 and 8
/// queued, 9 lost from the queue.
fn llama_snapshot() -> QueueSnapshot {
    QueueSnapshot {
        queued: 2,
        in_flight: vec![
            InFlightJob {
                shard_id: Some(4),
                consumer: "gpu-a-41".into(),
                idle: Duration::from_secs(3),
                delivery: 1,
            },
            InFlightJob {
                shard_id: Some(5),
                consumer: "gpu-b-7".into(),
                idle: Duration::from_secs(75),
                delivery: 2,
            },
        ],
        dead_letters: vec![DeadLetter {
            shard_id: Some(6),
            reason: "prompt of 9000 tokens exceeds the context of 8192".into(),
            consumer: "gpu-a-41".into(),
            deliveries: 1,
            message: String::new(),
        }],
        dead_lettered: 1,
        workers: vec![
            WorkerSeen {
                consumer: "gpu-a-41".into(),
                in_flight: 1,
                idle: Duration::from_secs(3),
            },
            WorkerSeen {
                consumer: "gpu-b-7".into(),
                in_flight: 1,
                idle: Duration::from_secs(75),
            },
            WorkerSeen {
                consumer: "gpu-c-2".into(),
                in_flight: 0,
                idle: Duration::from_secs(12),
            },
        ],
    }
}

/// Ten shards of 100 samples each; shards 0 to 3 committed 900, 600, 300
/// and 0 seconds before now.
fn llama_input() -> (
    Vec<PlannedModel>,
    Vec<CommittedShard>,
    BTreeMap<String, QueueSnapshot>,
) {
    let plan = vec![planned(LLAMA, &[100; 10])];
    let done = vec![
        committed(LLAMA, 0, 900),
        committed(LLAMA, 1, 600),
        committed(LLAMA, 2, 300),
        committed(LLAMA, 3, 0),
    ];
    let queues = BTreeMap::from([(LLAMA.to_owned(), llama_snapshot())]);
    (plan, done, queues)
}

fn report_of(
    plan: &[PlannedModel],
    done: &[CommittedShard],
    queues: &BTreeMap<String, QueueSnapshot>,
) -> super::status::StatusReport {
    build_report(&StatusInput {
        study: &study(),
        plan,
        committed: done,
        queues,
        lease_timeout: Duration::from_secs(60),
        now: now(),
    })
}

#[test]
fn status_counts_shards_and_samples() {
    let (plan, done, queues) = llama_input();

    let report = report_of(&plan, &done, &queues);

    let shards = report.models[0].progress.shards;
    assert_eq!(shards.planned, 10);
    assert_eq!(shards.committed, 4);
    assert_eq!(shards.queued, 2);
    assert_eq!(shards.in_flight, 2);
    assert_eq!(shards.dead_lettered, 1);
    assert_eq!(shards.missing, 1);
    let samples = report.models[0].progress.samples;
    assert_eq!(samples.planned, 1000);
    assert_eq!(samples.committed, 400);
    assert_eq!(samples.remaining, 600);
    assert_eq!(samples.in_flight, 200);
    assert_eq!(samples.dead_lettered, 100);
    assert_eq!(samples.queued, 300);
}

#[test]
fn status_rate_from_recent_commits() {
    let (plan, done, queues) = llama_input();

    let report = report_of(&plan, &done, &queues);

    // Commits 2 to 4 (300 samples) came in the 900 s since the first.
    let rate = report.models[0].progress.samples_per_second.unwrap();
    assert!((rate - 300.0 / 900.0).abs() < 1e-12, "{rate}");
    // 600 samples remain at 1/3 sample per second.
    let eta = report.models[0].progress.eta_seconds.unwrap();
    assert!((eta - 1800.0).abs() < 1e-9, "{eta}");
}

#[test]
fn status_rate_ignores_commits_before_window() {
    let plan = vec![planned(LLAMA, &[100; 4])];
    // Only the last commit is within the 30 minute window.
    let done = vec![
        committed(LLAMA, 0, 4000),
        committed(LLAMA, 1, 3600),
        committed(LLAMA, 2, 10),
    ];

    let report = report_of(&plan, &done, &BTreeMap::new());

    assert_eq!(report.models[0].progress.samples_per_second, None);
    assert_eq!(report.models[0].progress.eta_seconds, None);
}

#[test]
fn status_eta_zero_when_all_committed() {
    let plan = vec![planned(LLAMA, &[100; 2])];
    let done = vec![committed(LLAMA, 0, 100), committed(LLAMA, 1, 50)];

    let report = report_of(&plan, &done, &BTreeMap::new());

    assert_eq!(report.total.eta_seconds, Some(0.0));
    assert_eq!(report.total.shards.missing, 0);
}

#[test]
fn status_ignores_commits_outside_plan() {
    let plan = vec![planned(LLAMA, &[100; 2])];
    let done = vec![committed(LLAMA, 7, 10), committed(MISTRAL, 0, 10)];

    let report = report_of(&plan, &done, &BTreeMap::new());

    assert_eq!(report.total.shards.committed, 0);
    assert_eq!(report.total.samples.committed, 0);
}

#[test]
fn status_json_form() {
    let (plan, done, queues) = llama_input();
    let report = report_of(&plan, &done, &queues);

    let json: serde_json::Value = serde_json::from_str(&render_json(&report)).unwrap();

    let progress = json!({
        "shards": {"planned": 10, "committed": 4, "queued": 2, "in_flight": 2, "dead_lettered": 1, "missing": 1},
        "samples": {"planned": 1000, "committed": 400, "remaining": 600, "queued": 300, "in_flight": 200, "dead_lettered": 100},
        "samples_per_second": 300.0 / 900.0,
        "eta_seconds": 1800.0,
    });
    let mut model = json!({
        "model": "llama-3-8b",
        "dead_letters": [{
            "shard_id": 6,
            "deliveries": 1,
            "worker": "gpu-a-41",
            "reason": "prompt of 9000 tokens exceeds the context of 8192",
        }],
        "workers": [
            {"worker": "gpu-a-41", "last_seen_seconds": 3.0, "shards": [
                {"shard_id": 4, "heartbeat_age_seconds": 3.0, "lease_expired": false, "delivery": 1},
            ]},
            {"worker": "gpu-b-7", "last_seen_seconds": 75.0, "shards": [
                {"shard_id": 5, "heartbeat_age_seconds": 75.0, "lease_expired": true, "delivery": 2},
            ]},
            {"worker": "gpu-c-2", "last_seen_seconds": 12.0, "shards": []},
        ],
    });
    for (key, value) in progress.as_object().unwrap() {
        model[key] = value.clone();
    }
    let expected = json!({
        "format": 1,
        "study": "uk-immigration",
        "fingerprint": "9f2c1ab0",
        "generated_at": 1_767_225_600,
        "rate_window_seconds": 1800,
        "total": progress,
        "models": [model],
    });
    assert_eq!(json, expected);
}

#[test]
fn status_table_form() {
    let (plan, done, queues) = llama_input();
    let report = report_of(&plan, &done, &queues);

    let expected = "\
Study uk-immigration (config fingerprint 9f2c1ab0)

MODEL       SHARDS  COMMITTED  QUEUED  IN FLIGHT  DEAD  MISSING      SAMPLES DONE    RATE     ETA
llama-3-8b      10          4       2          2     1        1  400/1000 (40.0%)  0.33/s  30m 0s

Workers of llama-3-8b:
WORKER    SHARD     HEARTBEAT AGE  LAST SEEN
gpu-a-41      4                3s         3s
gpu-b-7       5  1m 15s (expired)     1m 15s
gpu-c-2       -                 -        12s

Dead letters of llama-3-8b (1):
SHARD  DELIVERIES  WORKER    REASON
    6           1  gpu-a-41  prompt of 9000 tokens exceeds the context of 8192

1 shard(s) of llama-3-8b are neither committed, queued, in flight nor dead-lettered: run `gaze submit` to queue them (or, for a study run on one machine, `gaze run` without --limit).
Dead-lettered shards are not retried: fix the cause in the reason, then run `gaze submit` to queue them again.
";
    assert_eq!(render_table(&report), expected);
}

#[tokio::test]
async fn read_status_snapshots_each_model() {
    let study = study();
    let queue = open_queue(&study);
    let plan = [planned(LLAMA, &[50; 3]), planned(MISTRAL, &[50; 3])];
    submit(&queue, &study, &plan, &[]).await.unwrap();
    let lease = queue.claim(MISTRAL, "gpu-a-41").await.unwrap().unwrap();
    queue
        .release(
            &lease,
            ReleaseReason::Failed("object store returned 503".into()),
        )
        .await
        .unwrap();
    queue.claim(MISTRAL, "gpu-a-41").await.unwrap().unwrap();

    let report = read_status(&queue, &plan, &[], now()).await.unwrap();

    assert_eq!(report.models[0].progress.shards.queued, 3);
    assert_eq!(report.models[1].progress.shards.queued, 2);
    assert_eq!(report.models[1].progress.shards.in_flight, 1);
    let worker = &report.models[1].workers[0];
    assert_eq!(worker.worker, "gpu-a-41");
    assert_eq!(worker.shards[0].shard_id, Some(1));
    assert_eq!(worker.shards[0].delivery, 1);
    assert_eq!(report.total.shards.queued, 5);
    assert_eq!(report.total.samples.remaining, 300);
}
