//! `gaze submit`: queues one job per planned (model, shard) that the store
//! has not committed and the queue does not already hold.
//!
//! Submitting is idempotent, so running it again after a crash, after Redis
//! lost its data, or to retry dead-lettered shards queues exactly the
//! shards that still need a worker.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, bail};
use gaze_shared::config::{QueueLocation, StudyConfig};
use gaze_shared::queue::{
    Job, JobQueue, LeaseSettings, RedisOptions, RedisQueue, StudyId, redact_url,
};
use gaze_shared::store::{Store, write_or_check_manifest};
use serde::Serialize;
use tracing::info;

use super::study::{LoadedStudy, planned_models, read_committed};
use crate::args::OverrideArgs;

/// One shard of the sample plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedShard {
    pub shard_id: u32,
    /// Samples in the shard.
    pub samples: u32,
}

/// The shards one model runs: every model of a study runs every shard of
/// the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedModel {
    /// Model id, as in the study config.
    pub model: String,
    /// Shards in plan order, each id once.
    pub shards: Vec<PlannedShard>,
}

/// A shard whose commit marker exists in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedShard {
    pub model: String,
    pub shard_id: u32,
    /// When the commit marker was written.
    pub committed_at: SystemTime,
}

/// The result of [`submit`] for one model, where `planned = committed +
/// queued + already_queued`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelSubmitted {
    pub model: String,
    /// Shards in the plan.
    pub planned: usize,
    /// Planned shards skipped because the store has committed them.
    pub committed: usize,
    /// Shards added to the queue now.
    pub queued: usize,
    /// Shards skipped because they were already queued or in flight.
    pub already_queued: usize,
}

/// The result of [`submit`], per model in plan order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubmitSummary {
    pub study: String,
    pub models: Vec<ModelSubmitted>,
}

/// Queues a job for every shard of `plan` that is neither in `committed`
/// nor already queued or in flight, for the study `study`.
///
/// `study` must be the study `queue` was opened for. Idempotent: a second
/// call with the same input queues nothing. A shard that was dead-lettered
/// is queued again unless committed. Fails before queueing anything when a
/// model id is empty or repeated, or a model lists a shard twice.
pub async fn submit(
    queue: &dyn JobQueue,
    study: &StudyId,
    plan: &[PlannedModel],
    committed: &[CommittedShard],
) -> anyhow::Result<SubmitSummary> {
    if queue.study() != study {
        bail!(
            "the queue is open for study {:?} (fingerprint {}), not {:?} (fingerprint {}): open \
             the queue of the study being submitted",
            queue.study().name,
            queue.study().fingerprint,
            study.name,
            study.fingerprint
        );
    }
    check_plan(plan)?;

    let committed = committed_by_model(committed);
    let mut summary = SubmitSummary {
        study: study.name.clone(),
        models: Vec::with_capacity(plan.len()),
    };
    for model in plan {
        let done = committed.get(model.model.as_str());
        let jobs: Vec<Job> = model
            .shards
            .iter()
            .filter(|shard| done.is_none_or(|done| !done.contains(&shard.shard_id)))
            .map(|shard| Job {
                study: study.name.clone(),
                fingerprint: study.fingerprint.clone(),
                model: model.model.clone(),
                shard_id: shard.shard_id,
                samples: shard.samples,
            })
            .collect();

        let report = queue
            .submit(&jobs)
            .await
            .with_context(|| format!("submitting the shards of model {:?}", model.model))?;
        let submitted = ModelSubmitted {
            model: model.model.clone(),
            planned: model.shards.len(),
            committed: model.shards.len() - jobs.len(),
            queued: report.queued,
            already_queued: report.skipped,
        };
        info!(
            study = %study.name,
            model = %submitted.model,
            planned = submitted.planned,
            committed = submitted.committed,
            queued = submitted.queued,
            already_queued = submitted.already_queued,
            "submitted shards"
        );
        summary.models.push(submitted);
    }
    Ok(summary)
}

/// Checks that model ids are present and distinct and that no model lists
/// a shard twice.
fn check_plan(plan: &[PlannedModel]) -> anyhow::Result<()> {
    let mut models = BTreeSet::new();
    for model in plan {
        if model.model.is_empty() {
            bail!(
                "a model of the plan has an empty id: give every model an id in the study config"
            );
        }
        if !models.insert(model.model.as_str()) {
            bail!(
                "model {:?} appears twice in the plan: model ids must be unique",
                model.model
            );
        }
        let mut shards = BTreeSet::new();
        for shard in &model.shards {
            if !shards.insert(shard.shard_id) {
                bail!(
                    "model {:?} lists shard {} twice in the plan: rebuild the plan",
                    model.model,
                    shard.shard_id
                );
            }
        }
    }
    Ok(())
}

/// Groups committed shard ids by model.
pub(crate) fn committed_by_model(committed: &[CommittedShard]) -> BTreeMap<&str, BTreeSet<u32>> {
    let mut by_model: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    for shard in committed {
        by_model
            .entry(shard.model.as_str())
            .or_default()
            .insert(shard.shard_id);
    }
    by_model
}

impl SubmitSummary {
    /// Renders the summary as a table with one row per model and, with
    /// several models, a total row.
    pub fn render(&self) -> String {
        let mut table = vec![vec![
            "MODEL".to_owned(),
            "PLANNED".to_owned(),
            "COMMITTED".to_owned(),
            "QUEUED NOW".to_owned(),
            "ALREADY QUEUED".to_owned(),
        ]];
        let row = |model: &str, planned, committed, queued, already_queued| {
            vec![
                model.to_owned(),
                format!("{planned}"),
                format!("{committed}"),
                format!("{queued}"),
                format!("{already_queued}"),
            ]
        };
        for model in &self.models {
            table.push(row(
                &model.model,
                model.planned,
                model.committed,
                model.queued,
                model.already_queued,
            ));
        }
        if self.models.len() > 1 {
            let sum =
                |field: fn(&ModelSubmitted) -> usize| self.models.iter().map(field).sum::<usize>();
            table.push(row(
                "total",
                sum(|m| m.planned),
                sum(|m| m.committed),
                sum(|m| m.queued),
                sum(|m| m.already_queued),
            ));
        }

        let mut out = String::new();
        writeln!(out, "Study {}: shards per model", self.study).unwrap();
        out.push_str(&super::table::render(&table));
        out
    }
}

/// Arguments of `gaze submit`.
#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// The study config (TOML).
    pub config: PathBuf,

    #[command(flatten)]
    pub overrides: OverrideArgs,

    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `gaze submit`: writes the study's manifest to the store, or checks
/// it against the stored one, then queues every planned shard that is
/// neither committed nor queued. Redis must never evict keys
/// (`maxmemory-policy noeviction`), or the command fails before queueing.
pub async fn run(args: SubmitArgs) -> anyhow::Result<()> {
    let study = LoadedStudy::load(&args.config, &args.overrides.overrides())?;
    let redis_url = redis_url(&study.config)?;
    let store = Store::open(&study.config.store_url())?;
    // Connect first: a Redis that may evict keys fails before the store
    // records anything.
    let queue_id = study.queue_id();
    let queue = RedisQueue::connect(
        &redis_url,
        queue_id.clone(),
        LeaseSettings::default(),
        &RedisOptions::default(),
    )
    .await
    .context("opening the shard queue")?;

    let manifest = study.manifest(SystemTime::now())?;
    let status = write_or_check_manifest(&store, &manifest)
        .await
        .with_context(|| {
            format!(
                "recording study {} in the store {}",
                manifest.study, store.url
            )
        })?;
    info!(study = %manifest.study, fingerprint = %manifest.fingerprint, ?status, "manifest in place");

    let committed = read_committed(&store, &study.store_id()?, false).await?;
    let plan = planned_models(&study.config, &study.limited_plan());
    let summary = submit(&queue, &queue_id, &plan, &committed).await?;

    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.render());
    }
    Ok(())
}

/// Returns the Redis URL of the config's queue, which distributed commands
/// need.
pub fn redis_url(config: &StudyConfig) -> anyhow::Result<String> {
    match config.queue.location() {
        Ok(QueueLocation::Redis(url)) => Ok(url),
        _ => bail!(
            "study {} has no Redis queue (queue.url is {:?}): pass --redis redis://HOST:PORT or \
             set GAZE_REDIS",
            config.study.name,
            redact_url(&config.queue.url)
        ),
    }
}
