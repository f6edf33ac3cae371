//! `gaze run`: runs a whole study on this machine, with no services. It
//! plans the study, writes or checks its manifest, skips committed shards,
//! and runs one in-process worker per configured device over the embedded
//! queue. Models run one after another, each loaded once.
//!
//! Rerunning the same command resumes: shards with a commit marker are
//! skipped, and a shard claimed but not marked is finished from the
//! claiming attempt's staged tables. The first Ctrl-C (or SIGTERM) stops
//! taking shards and lets the shards in flight commit; a second one exits
//! at once, which never leaves a torn shard visible because the commit
//! marker is written last.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use gaze_shared::config::{ModelConfig, QueueLocation, StudyConfig, is_identifier};
use gaze_shared::plan::{Fingerprint, Plan};
use gaze_shared::queue::{
    EmbeddedBroker, Heartbeat, Job, JobQueue, LeaseSettings, ReleaseReason, StudyId as QueueStudy,
};
use gaze_shared::store::{
    ModelId, Store, StoreError, StudyId, committed_shards, read_manifest,
    replace_manifest_without_results, write_or_check_manifest,
};
use gaze_shared::vignettes::VignetteSet;
use gaze_worker::Engine;
use gaze_worker::model::{DTypeChoice, parse_device};
use gaze_worker::prompt::Date;
use gaze_worker::shard::{AttemptInfo, ShardRunner, StudyContext, date_of};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::{info, warn};

use crate::args::{OverrideArgs, load_config};
use crate::commands::run_summary::{RunTotals, print_summary};
use crate::commands::study::LoadedStudy;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The study config (TOML).
    #[arg(value_name = "CONFIG")]
    pub config: PathBuf,

    /// Run under this study name instead of study.name, to start a new
    /// study with changed inputs next to the old one. Results of two
    /// studies are never mixed: a study whose manifest differs from this
    /// run's inputs is rejected.
    #[arg(long, value_name = "NAME")]
    pub study: Option<String>,

    #[command(flatten)]
    pub overrides: OverrideArgs,
}

/// Everything the workers of one study share.
struct Study {
    config: StudyConfig,
    vignettes: VignetteSet,
    plan: Plan,
    fingerprint: Fingerprint,
    study: StudyId,
    store: Store,
    /// The date `strftime_now` formats in chat templates: the study's start.
    date: Date,
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let study = prepare(&args).await?;
    let stop = Stop::install();

    let planned = study.plan.samples.len() as u64;
    let progress = progress_bar(planned * study.config.models.len() as u64);
    let mut totals = RunTotals::default();
    let mut outcome = Ok(());
    for model in &study.config.models {
        if stop.stopping() {
            break;
        }
        outcome = run_model(&study, model, &stop, &progress, &mut totals).await;
        if outcome.is_err() {
            break;
        }
    }
    progress.finish_and_clear();
    crate::log_writer::clear_bar();
    outcome?;

    print_summary(
        &study.store,
        &study.study,
        &study.config,
        planned,
        started.elapsed(),
        &totals,
        stop.stopping(),
    )
    .await
}

/// Loads the config, builds the plan, opens the store and writes or
/// checks the manifest.
async fn prepare(args: &RunArgs) -> anyhow::Result<Study> {
    let overrides = args.overrides.overrides();
    let mut config = load_config(&args.config, &overrides)?;
    if let Some(name) = &args.study {
        if !is_identifier(name) {
            bail!(
                "invalid --study {name:?}: use 1 to 128 ASCII letters, digits, '_' or '-', such as {}-2",
                config.study.name
            );
        }
        config.study.name = name.clone();
    }
    if config.queue.location() != Ok(QueueLocation::Embedded) {
        warn!(
            "gaze run uses its in-process queue; the Redis queue of queue.url or --redis is not used"
        );
    }
    let loaded = LoadedStudy::from_config(config, overrides.limit)?;
    let study = loaded.store_id()?;
    let store = Store::open(&loaded.config.store_url())?;
    store
        .check_access()
        .await
        .context("the result store cannot be used")?;
    let manifest = loaded.manifest(SystemTime::now())?;
    match write_or_check_manifest(&store, &manifest).await {
        Ok(_) => {}
        Err(StoreError::ManifestMismatch(mismatch)) => {
            // A study that failed before committing anything holds no results
            // to protect, so the corrected inputs may take its name.
            if !replace_manifest_without_results(&store, &manifest).await? {
                bail!(
                    "study {study} was started with other inputs: {}. Its results cannot be \
                     mixed with this run's; pass --study {study}-2 (or another new name) to run \
                     these inputs as a new study, or restore the inputs it was started with",
                    mismatch.changes_text()
                );
            }
        }
        Err(other) => return Err(other.into()),
    }
    let stored = read_manifest(&store, &study)
        .await?
        .context("the manifest was written and is gone")?;
    let date = stored
        .created_at
        .as_deref()
        .and_then(date_of)
        .unwrap_or_else(Date::today_utc);

    let plan = loaded.limited_plan();
    info!(
        study = %study, samples = plan.samples.len(), shards = plan.shards.len(),
        fingerprint = %loaded.fingerprint.digest, store = %store.url, "study ready"
    );
    Ok(Study {
        config: loaded.config,
        vignettes: loaded.vignettes,
        plan,
        fingerprint: loaded.fingerprint,
        study,
        store,
        date,
    })
}

/// Runs every pending shard of one model with one worker per device.
async fn run_model(
    study: &Study,
    model: &ModelConfig,
    stop: &Stop,
    progress: &ProgressBar,
    totals: &mut RunTotals,
) -> anyhow::Result<()> {
    let model_id = ModelId::new(&model.id)?;
    let committed = committed_shards(&study.store, &study.study, &model_id).await?;
    let pending: Vec<_> = study
        .plan
        .shards
        .iter()
        .filter(|shard| !committed.contains(&shard.shard_id))
        .collect();
    let done: u64 = study
        .plan
        .shards
        .iter()
        .filter(|shard| committed.contains(&shard.shard_id))
        .map(|shard| shard.samples.end - shard.samples.start)
        .sum();
    progress.inc(done);
    // Samples committed by earlier runs are not this run's speed: record
    // them, then restart the rate and ETA estimate from here.
    progress.tick();
    progress.reset_eta();
    totals.shards_skipped += study.plan.shards.len() - pending.len();
    if pending.is_empty() {
        info!(model = %model.id, "every planned shard is committed");
        return Ok(());
    }

    let queue_study = QueueStudy::new(study.study.as_str(), &study.fingerprint.digest);
    let queue: Arc<dyn JobQueue> =
        Arc::new(EmbeddedBroker::new().queue(queue_study, LeaseSettings::default())?);
    let jobs: Vec<Job> = pending
        .iter()
        .map(|shard| Job {
            study: study.study.to_string(),
            fingerprint: study.fingerprint.digest.clone(),
            model: model.id.clone(),
            shard_id: shard.shard_id,
            samples: (shard.samples.end - shard.samples.start) as u32,
        })
        .collect();
    queue.submit(&jobs).await?;
    info!(model = %model.id, shards = jobs.len(), skipped = committed.len(), "running shards");

    let mut workers = tokio::task::JoinSet::new();
    for device in &model.device.0 {
        let runner = load_runner(study, model, &device.to_string())?;
        let worker = format!("{}-{}-{}", host_name(), std::process::id(), device);
        let (queue, stop, progress) = (Arc::clone(&queue), stop.clone(), progress.clone());
        let plan = study.plan.clone();
        let model = model.id.clone();
        workers.spawn(
            async move { work(runner, queue, &model, &worker, &plan, stop, progress).await },
        );
    }
    while let Some(result) = workers.join_next().await {
        let count = result.context("a worker task panicked")??;
        totals.shards_run += count.shards;
        totals.samples_run += count.samples;
    }
    Ok(())
}

/// Loads the model onto one device and builds its study context.
fn load_runner(study: &Study, model: &ModelConfig, device: &str) -> anyhow::Result<ShardRunner> {
    let loading = Instant::now();
    let candle_device = parse_device(device)?;
    let dtype: DTypeChoice = model.dtype().as_str().parse()?;
    let engine = Engine::load(&model.path, dtype, &candle_device).with_context(|| {
        format!(
            "cannot load model {} from {}",
            model.id,
            model.path.display()
        )
    })?;
    let context = StudyContext::new(
        &study.config,
        &study.vignettes,
        &model.id,
        &engine,
        &study.fingerprint.digest,
        study.date,
    )?;
    info!(model = %model.id, device, elapsed_ms = loading.elapsed().as_millis() as u64, "loaded model");
    Ok(ShardRunner {
        engine: Arc::new(engine),
        context: Arc::new(context),
        store: study.store.clone(),
    })
}

/// Counts of the shards and samples one worker committed.
#[derive(Debug, Default, Clone, Copy)]
struct WorkerCount {
    shards: usize,
    samples: u64,
}

/// Claims and runs shards of `model` until the queue is empty or the run
/// stops. The first failed shard stops this worker and the run.
async fn work(
    runner: ShardRunner,
    queue: Arc<dyn JobQueue>,
    model: &str,
    worker: &str,
    plan: &Plan,
    stop: Stop,
    progress: ProgressBar,
) -> anyhow::Result<WorkerCount> {
    let mut count = WorkerCount::default();
    while !stop.stopping() {
        let Some(lease) = queue.claim(model, worker).await? else {
            break;
        };
        let shard = &plan.shards[lease.job.shard_id as usize];
        let samples = plan.shard_samples(shard).to_vec();
        let shard_samples = samples.len() as u64;
        let heartbeat = Heartbeat::spawn(Arc::clone(&queue), lease.clone());
        let bar = progress.clone();
        let report = runner
            .run(
                shard.shard_id,
                samples,
                AttemptInfo {
                    worker: worker.to_string(),
                    attempt: lease.attempt,
                },
                Some((queue.as_ref(), &lease)),
                Arc::clone(&stop.abandon),
                Box::new(move |batch| bar.inc(batch.samples as u64)),
            )
            .await;
        drop(heartbeat);
        match report {
            Ok(report) => {
                queue.ack(&lease).await?;
                if report.outcome.is_none() {
                    // Finished from an earlier attempt's staging: no batch ran.
                    progress.inc(shard_samples);
                }
                count.shards += 1;
                count.samples += shard_samples;
                if !progress.is_hidden() {
                    continue;
                }
                info!(
                    model,
                    shard = shard.shard_id,
                    done = progress.position(),
                    total = progress.length().unwrap_or(0),
                    samples_per_s = format!("{:.2}", progress.per_sec()),
                    "shard committed"
                );
            }
            Err(error) => {
                let _ = queue
                    .release(&lease, ReleaseReason::Failed(error.to_string()))
                    .await;
                stop.abort();
                return Err(error).with_context(|| {
                    format!("shard {} of model {model} failed; nothing of it is committed, and rerunning the command retries it", shard.shard_id)
                });
            }
        }
    }
    Ok(count)
}

/// The run's stop flags. `stopping` is set by the first Ctrl-C or SIGTERM:
/// workers take no more shards and let the ones in flight commit.
/// A failed shard sets `abandon` as well, so that the other workers drop
/// their shards between batches. A second signal exits the process.
#[derive(Clone)]
struct Stop {
    stopping: Arc<AtomicBool>,
    abandon: Arc<AtomicBool>,
}

impl Stop {
    fn install() -> Stop {
        let stop = Stop {
            stopping: Arc::new(AtomicBool::new(false)),
            abandon: Arc::new(AtomicBool::new(false)),
        };
        let flag = Arc::clone(&stop.stopping);
        tokio::spawn(async move {
            let mut signals = 0;
            loop {
                wait_for_signal().await;
                signals += 1;
                if signals == 1 {
                    flag.store(true, Ordering::SeqCst);
                    warn!(
                        "stopping: taking no more shards; the shards in flight finish and commit. Press Ctrl-C again to exit at once"
                    );
                } else {
                    warn!(
                        "exiting at once; shards in flight are not committed and run again next time"
                    );
                    std::process::exit(130);
                }
            }
        });
        stop
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Stops the run after a failed shard: no more shards, and the ones in
    /// flight are abandoned.
    fn abort(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.abandon.store(true, Ordering::SeqCst);
    }
}

/// Completes at the next SIGINT or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Returns a bar with samples, samples/s and ETA on a terminal, and a
/// hidden one otherwise.
fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} samples  {per_sec}  ETA {eta}  elapsed {elapsed}",
        )
        .expect("the progress template is valid"),
    );
    bar.enable_steady_tick(Duration::from_millis(500));
    crate::log_writer::set_bar(&bar);
    bar
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".to_string())
}

/// Formats `time` as `YYYY-MM-DDTHH:MM:SSZ` in UTC.
pub(crate) fn utc_timestamp(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian date.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_timestamp_formats_known_instants() {
        // Values from `date -u -d @SECONDS +%Y-%m-%dT%H:%M:%SZ`.
        let at = |secs| utc_timestamp(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_798_761_599), "2026-12-31T23:59:59Z");
    }
}
