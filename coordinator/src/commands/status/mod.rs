//! `gaze status`: the progress of a study, from the store's commit markers
//! and the queue's snapshot, as a table for people or as JSON for scripts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use gaze_shared::queue::{JobQueue, QueueSnapshot, StudyId};
use serde::Serialize;

use super::submit::{CommittedShard, PlannedModel, committed_by_model};

mod command;
mod render;

pub use command::{StatusArgs, run};
pub use render::{render_json, render_table};

/// The version of the JSON form, written as its `format` field. Renaming or
/// removing a field, or changing its meaning, bumps it. Added fields do not.
pub const JSON_FORMAT: u32 = 1;

/// How far back commit markers count towards the rate: long enough to span
/// several shards per worker, short enough to follow a change in the number
/// of workers.
pub const RATE_WINDOW: Duration = Duration::from_secs(30 * 60);

/// Everything [`build_report`] reads. The caller lists the plan and the
/// commit markers from the store and snapshots the queue of each model.
#[derive(Debug, Clone)]
pub struct StatusInput<'a> {
    pub study: &'a StudyId,
    pub plan: &'a [PlannedModel],
    /// Commit markers of the study, of any model, in any order.
    pub committed: &'a [CommittedShard],
    /// The queue snapshot of each model of `plan`, by model id. A model
    /// without one counts as having an empty queue.
    pub queues: &'a BTreeMap<String, QueueSnapshot>,
    /// The queue's lease timeout, to mark leases that have expired but are
    /// not yet reclaimed.
    pub lease_timeout: Duration,
    /// The time the report describes.
    pub now: SystemTime,
}

/// The status of a study: `gaze status --json` writes this object.
///
/// The JSON form is a stable interface for scripts (see [`JSON_FORMAT`]).
/// Counts are integers, times are seconds as numbers, and a value that
/// cannot be computed is `null`.
///
/// - `format`: the version of this form, [`JSON_FORMAT`].
/// - `study`, `fingerprint`: the study name and config fingerprint.
/// - `generated_at`: Unix time of the report, in whole seconds.
/// - `rate_window_seconds`: how far back commits count towards the rate.
/// - `total`: the [`Progress`] of all models together.
/// - `models`: one [`ModelStatus`] per model, in plan order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusReport {
    pub format: u32,
    pub study: String,
    pub fingerprint: String,
    pub generated_at: u64,
    pub rate_window_seconds: u64,
    pub total: Progress,
    pub models: Vec<ModelStatus>,
}

/// Progress of one model or of the whole study.
///
/// - `shards`: [`ShardCounts`]; `samples`: [`SampleCounts`].
/// - `samples_per_second`: samples of the commits in the rate window
///   divided by the time from the first of them to `generated_at`, leaving
///   out the first commit's own samples, since they were generated before
///   the window began. `null` with fewer than two commits in the window.
/// - `eta_seconds`: `samples.remaining / samples_per_second`, an estimate
///   that assumes the rate holds. 0 when nothing remains, `null` when the
///   rate is `null` or 0.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    pub shards: ShardCounts,
    pub samples: SampleCounts,
    pub samples_per_second: Option<f64>,
    pub eta_seconds: Option<f64>,
}

/// Shard counts.
///
/// - `planned`: shards in the plan.
/// - `committed`: planned shards with a commit marker.
/// - `queued`: jobs waiting in the queue.
/// - `in_flight`: jobs leased to workers, expired leases included.
/// - `dead_lettered`: entries of the dead-letter list. A shard submitted
///   again after its dead letter still has that entry.
/// - `missing`: planned shards that are neither committed, queued, in
///   flight nor dead-lettered, so no worker will run them until `gaze
///   submit` runs again. An estimate from counts, since the queue does not
///   list the ids of queued shards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ShardCounts {
    pub planned: usize,
    pub committed: usize,
    pub queued: usize,
    pub in_flight: usize,
    pub dead_lettered: usize,
    pub missing: usize,
}

/// Sample counts, from the samples of each planned shard.
///
/// - `planned`, `committed`: samples of the planned and the committed
///   shards; `remaining` = `planned - committed`.
/// - `in_flight`: samples of uncommitted shards leased to workers.
/// - `dead_lettered`: samples of uncommitted shards in the dead-letter list
///   and not in flight.
/// - `queued`: the other remaining samples: `remaining - in_flight -
///   dead_lettered`. They are all queued when `shards.missing` is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SampleCounts {
    pub planned: u64,
    pub committed: u64,
    pub remaining: u64,
    pub queued: u64,
    pub in_flight: u64,
    pub dead_lettered: u64,
}

/// The status of one model.
///
/// - `model`: the model id; the [`Progress`] fields follow inline.
/// - `dead_letters`: [`DeadLetterStatus`] entries, oldest first; at most
///   the queue's snapshot limit, so fewer than `shards.dead_lettered` when
///   the list is long.
/// - `workers`: [`WorkerStatus`] entries for every worker the queue has
///   seen recently on this model, by name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelStatus {
    pub model: String,
    #[serde(flatten)]
    pub progress: Progress,
    pub dead_letters: Vec<DeadLetterStatus>,
    pub workers: Vec<WorkerStatus>,
}

/// A dead-lettered job.
///
/// - `shard_id`: `null` when the message had no readable shard id.
/// - `deliveries`: deliveries before it was dead-lettered.
/// - `worker`: the worker that dead-lettered it, `null` for the reaper.
/// - `reason`: the error, as recorded by the worker or the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetterStatus {
    pub shard_id: Option<u32>,
    pub deliveries: u32,
    pub worker: Option<String>,
    pub reason: String,
}

/// A worker seen on a model's queue.
///
/// - `worker`: its consumer name.
/// - `last_seen_seconds`: time since it last claimed, polled or sent a
///   heartbeat.
/// - `shards`: the [`LeaseStatus`] of each job it holds, usually one or
///   none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerStatus {
    pub worker: String,
    pub last_seen_seconds: f64,
    pub shards: Vec<LeaseStatus>,
}

/// A job a worker holds.
///
/// - `shard_id`: `null` when the message had no readable shard id.
/// - `heartbeat_age_seconds`: time since the claim or the last heartbeat.
/// - `lease_expired`: whether that age is past the lease timeout, so the
///   next reaper pass puts the job back in the queue.
/// - `delivery`: deliveries so far, this one included.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeaseStatus {
    pub shard_id: Option<u32>,
    pub heartbeat_age_seconds: f64,
    pub lease_expired: bool,
    pub delivery: u32,
}

/// Snapshots the queue of every model of `plan` and builds the report.
pub async fn read_status(
    queue: &dyn JobQueue,
    plan: &[PlannedModel],
    committed: &[CommittedShard],
    now: SystemTime,
) -> anyhow::Result<StatusReport> {
    let mut queues = BTreeMap::new();
    for model in plan {
        let snapshot = queue
            .snapshot(&model.model)
            .await
            .with_context(|| format!("reading the queue of model {:?}", model.model))?;
        queues.insert(model.model.clone(), snapshot);
    }
    Ok(build_report(&StatusInput {
        study: queue.study(),
        plan,
        committed,
        queues: &queues,
        lease_timeout: queue.settings().lease_timeout,
        now,
    }))
}

/// Builds the report from the plan, the commit markers and the queue
/// snapshots. Commit markers of models or shards outside the plan are
/// ignored.
pub fn build_report(input: &StatusInput<'_>) -> StatusReport {
    let committed = committed_by_model(input.committed);
    let empty_queue = QueueSnapshot::default();
    let no_commits = BTreeSet::new();

    let mut models = Vec::with_capacity(input.plan.len());
    let mut all_commits = Vec::new();
    for model in input.plan {
        let queue = input.queues.get(&model.model).unwrap_or(&empty_queue);
        let done = committed.get(model.model.as_str()).unwrap_or(&no_commits);
        let commits = commit_samples(model, input.committed);
        let mut status = model_status(model, done, queue, input.lease_timeout);
        status.progress.set_rate(&commits, input.now);
        all_commits.extend(commits);
        models.push(status);
    }

    let mut total = Progress {
        shards: ShardCounts::default(),
        samples: SampleCounts::default(),
        samples_per_second: None,
        eta_seconds: None,
    };
    for model in &models {
        total.add(&model.progress);
    }
    total.set_rate(&all_commits, input.now);

    StatusReport {
        format: JSON_FORMAT,
        study: input.study.name.clone(),
        fingerprint: input.study.fingerprint.clone(),
        generated_at: input
            .now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs()),
        rate_window_seconds: RATE_WINDOW.as_secs(),
        total,
        models,
    }
}

/// The (commit time, samples) of each committed shard of `model`'s plan.
fn commit_samples(model: &PlannedModel, committed: &[CommittedShard]) -> Vec<(SystemTime, u64)> {
    let samples: BTreeMap<u32, u32> = model
        .shards
        .iter()
        .map(|shard| (shard.shard_id, shard.samples))
        .collect();
    let mut seen = BTreeSet::new();
    committed
        .iter()
        .filter(|shard| shard.model == model.model && seen.insert(shard.shard_id))
        .filter_map(|shard| {
            let count = samples.get(&shard.shard_id)?;
            Some((shard.committed_at, u64::from(*count)))
        })
        .collect()
}

fn model_status(
    model: &PlannedModel,
    done: &BTreeSet<u32>,
    queue: &QueueSnapshot,
    lease_timeout: Duration,
) -> ModelStatus {
    let remaining: BTreeMap<u32, u64> = model
        .shards
        .iter()
        .filter(|shard| !done.contains(&shard.shard_id))
        .map(|shard| (shard.shard_id, u64::from(shard.samples)))
        .collect();
    let in_flight: BTreeSet<u32> = queue
        .in_flight
        .iter()
        .filter_map(|job| job.shard_id)
        .filter(|id| remaining.contains_key(id))
        .collect();
    let dead: BTreeSet<u32> = queue
        .dead_letters
        .iter()
        .filter_map(|dead| dead.shard_id)
        .filter(|id| remaining.contains_key(id) && !in_flight.contains(id))
        .collect();
    let samples_of = |ids: &BTreeSet<u32>| ids.iter().map(|id| remaining[id]).sum::<u64>();

    let planned_samples: u64 = model
        .shards
        .iter()
        .map(|shard| u64::from(shard.samples))
        .sum();
    let remaining_samples: u64 = remaining.values().sum();
    let in_flight_samples = samples_of(&in_flight);
    let dead_samples = samples_of(&dead);
    let held = queue.queued + in_flight.len() + dead.len();

    ModelStatus {
        model: model.model.clone(),
        progress: Progress {
            shards: ShardCounts {
                planned: model.shards.len(),
                committed: model.shards.len() - remaining.len(),
                queued: queue.queued,
                in_flight: queue.in_flight.len(),
                dead_lettered: queue.dead_lettered,
                missing: remaining.len().saturating_sub(held),
            },
            samples: SampleCounts {
                planned: planned_samples,
                committed: planned_samples - remaining_samples,
                remaining: remaining_samples,
                queued: remaining_samples - in_flight_samples - dead_samples,
                in_flight: in_flight_samples,
                dead_lettered: dead_samples,
            },
            samples_per_second: None,
            eta_seconds: None,
        },
        dead_letters: queue
            .dead_letters
            .iter()
            .map(|dead| DeadLetterStatus {
                shard_id: dead.shard_id,
                deliveries: dead.deliveries,
                worker: Some(dead.consumer.clone()).filter(|name| !name.is_empty()),
                reason: dead.reason.clone(),
            })
            .collect(),
        workers: worker_statuses(queue, lease_timeout),
    }
}

/// Lists the workers of a snapshot, by name, with the jobs leased to each.
/// A worker with a job but missing from the workers list is listed
/// too, with the age of its job as its last-seen time.
fn worker_statuses(queue: &QueueSnapshot, lease_timeout: Duration) -> Vec<WorkerStatus> {
    let mut workers: BTreeMap<&str, WorkerStatus> = queue
        .workers
        .iter()
        .map(|worker| {
            let status = WorkerStatus {
                worker: worker.consumer.clone(),
                last_seen_seconds: worker.idle.as_secs_f64(),
                shards: Vec::new(),
            };
            (worker.consumer.as_str(), status)
        })
        .collect();
    for job in &queue.in_flight {
        let worker = workers
            .entry(job.consumer.as_str())
            .or_insert_with(|| WorkerStatus {
                worker: job.consumer.clone(),
                last_seen_seconds: job.idle.as_secs_f64(),
                shards: Vec::new(),
            });
        worker.shards.push(LeaseStatus {
            shard_id: job.shard_id,
            heartbeat_age_seconds: job.idle.as_secs_f64(),
            lease_expired: job.idle >= lease_timeout,
            delivery: job.delivery,
        });
    }
    workers.into_values().collect()
}

impl Progress {
    fn add(&mut self, other: &Progress) {
        let (shards, more) = (&mut self.shards, &other.shards);
        shards.planned += more.planned;
        shards.committed += more.committed;
        shards.queued += more.queued;
        shards.in_flight += more.in_flight;
        shards.dead_lettered += more.dead_lettered;
        shards.missing += more.missing;

        let (samples, more) = (&mut self.samples, &other.samples);
        samples.planned += more.planned;
        samples.committed += more.committed;
        samples.remaining += more.remaining;
        samples.queued += more.queued;
        samples.in_flight += more.in_flight;
        samples.dead_lettered += more.dead_lettered;
    }

    /// Sets the rate and the ETA from `commits` (commit time, samples).
    fn set_rate(&mut self, commits: &[(SystemTime, u64)], now: SystemTime) {
        self.samples_per_second = samples_per_second(commits, now);
        self.eta_seconds = if self.samples.remaining == 0 {
            Some(0.0)
        } else {
            self.samples_per_second
                .filter(|rate| *rate > 0.0)
                .map(|rate| self.samples.remaining as f64 / rate)
        };
    }
}

/// The commit rate over [`RATE_WINDOW`] before `now`, as documented on
/// [`Progress`]. Commit times after `now` (clock skew between hosts) count
/// as `now`.
fn samples_per_second(commits: &[(SystemTime, u64)], now: SystemTime) -> Option<f64> {
    let window_start = now.checked_sub(RATE_WINDOW).unwrap_or(UNIX_EPOCH);
    let mut recent: Vec<(SystemTime, u64)> = commits
        .iter()
        .map(|&(time, samples)| (time.min(now), samples))
        .filter(|(time, _)| *time >= window_start)
        .collect();
    if recent.len() < 2 {
        return None;
    }
    recent.sort_by_key(|(time, _)| *time);

    let first = recent[0].0;
    let elapsed = now.duration_since(first).ok()?.as_secs_f64();
    if elapsed <= 0.0 {
        return None;
    }
    let samples: u64 = recent[1..].iter().map(|(_, samples)| samples).sum();
    Some(samples as f64 / elapsed)
}
