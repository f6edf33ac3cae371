//! `gaze-worker serve`: a long-running worker that takes shards of one model
//! from the Redis queue. It reads the study from its manifest in the store,
//! so it needs no copy of the study's files, only the model's folder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use gaze_shared::config::{QueueLocation, StudyConfig};
use gaze_shared::plan::model_identity;
use gaze_shared::queue::{JobQueue, LeaseSettings, RedisOptions, RedisQueue, redact_url};
use gaze_shared::store::{Store, StudyId};
use gaze_shared::study::StoredStudy;
use gaze_worker::Engine;
use gaze_worker::model::{DTypeChoice, parse_device};
use gaze_worker::prompt::Date;
use gaze_worker::serve::{
    ServeOptions, ShutdownSignal, StudyShardRunner, default_worker_name, serve,
};
use gaze_worker::shard::{self, StudyContext, date_of};
use tracing::info;

/// Arguments of `gaze-worker serve`. Each flag falls back to its `GAZE_*`
/// environment variable.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// The study: its name, or the path of its config file, which gives the
    /// name, and the store and queue when --store and --redis are absent.
    /// The worker reads everything else from the study's manifest.
    #[arg(value_name = "STUDY", env = "GAZE_STUDY")]
    study: String,

    /// Redis URL of the shard queue: redis://HOST:PORT, or rediss:// for TLS.
    #[arg(long, env = "GAZE_REDIS", value_name = "URL", hide_env_values = true)]
    redis: Option<String>,

    /// Result store the study was submitted to: a folder, file:///path,
    /// s3://bucket/prefix or memory://prefix. S3 settings come from the
    /// AWS_* variables.
    #[arg(long, env = "GAZE_STORE", value_name = "URL")]
    store: Option<String>,

    /// Model folder on this machine: PATH, or ID=PATH. Defaults to the path
    /// in the submitted config. Its files must match those the study was
    /// submitted with.
    #[arg(long, env = "GAZE_MODEL", value_name = "[ID=]DIR")]
    model: Option<String>,

    /// Id of the model to serve, as in the study config; required when the
    /// study has several models.
    #[arg(long, env = "GAZE_MODEL_ID", value_name = "ID")]
    model_id: Option<String>,

    /// Device: cpu, cuda or cuda:N (CUDA needs a build with --features cuda).
    #[arg(
        long,
        env = "GAZE_DEVICE",
        value_name = "DEVICE",
        default_value = "cpu"
    )]
    device: String,

    /// Prompts per forward pass, replacing generation.batch_size. Results
    /// do not depend on it.
    #[arg(long, env = "GAZE_BATCH_SIZE", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: Option<u32>,

    /// Consumer name in the queue, unique among live workers [default:
    /// HOST-PID].
    #[arg(long, env = "GAZE_WORKER_NAME", value_name = "NAME")]
    worker_name: Option<String>,

    /// Serve Prometheus metrics at http://ADDR/metrics, such as 0.0.0.0:9464.
    #[arg(long, env = "GAZE_METRICS_ADDR", value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,

    /// Seconds the shard in flight may run after SIGTERM before it is
    /// released to another worker.
    #[arg(
        long,
        env = "GAZE_SHUTDOWN_GRACE",
        value_name = "SECS",
        default_value_t = 120.0
    )]
    shutdown_grace: f64,

    /// Exit after this many seconds without a job [default: never].
    #[arg(long, env = "GAZE_EXIT_WHEN_IDLE", value_name = "SECS")]
    exit_when_idle: Option<f64>,

    /// Seconds between two heartbeats of a lease.
    #[arg(
        long,
        env = "GAZE_HEARTBEAT_INTERVAL",
        value_name = "SECS",
        default_value_t = 10.0
    )]
    heartbeat_interval: f64,

    /// Seconds after the last heartbeat when a lease expires and another
    /// worker may take the shard; at least 3 heartbeat intervals.
    #[arg(
        long,
        env = "GAZE_LEASE_TIMEOUT",
        value_name = "SECS",
        default_value_t = 60.0
    )]
    lease_timeout: f64,

    /// Deliveries of a job before it is dead-lettered.
    #[arg(
        long,
        env = "GAZE_MAX_DELIVERIES",
        value_name = "N",
        default_value_t = 3
    )]
    max_deliveries: u32,

    /// Maximum seconds between two claims on an empty queue.
    #[arg(long, hide = true, value_name = "SECS", default_value_t = 10.0)]
    poll_max: f64,

    /// Fault injection for tests: fail every shard holding this sample id
    /// as a sample whose inference fails.
    #[arg(long, hide = true, env = "GAZE_TEST_FAIL_SAMPLE", value_name = "ID")]
    fail_sample: Option<u64>,
}

/// The study's name, store URL and queue URL.
struct StudyLocation {
    name: String,
    store: String,
    redis: String,
}

/// Runs `gaze-worker serve` until a shutdown signal or, with
/// --exit-when-idle, an empty queue.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the Tokio runtime failed")?;
    let result = runtime.block_on(serve_study(args));
    // A cancelled shard may still be generating on a blocking thread: exit
    // without waiting for it, since its lease is released or will expire.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn serve_study(args: ServeArgs) -> anyhow::Result<()> {
    let location = locate(&args)?;
    let store = Store::open(&location.store)?;
    let study_id = StudyId::new(&location.name)?;
    let study = StoredStudy::read(&store, &study_id).await?;
    let fingerprint = study.manifest.fingerprint.clone();

    let model_id = model_id(&args, &study.config)?;
    let mut config = study.config.clone();
    let folder = model_folder(&args, &config, &model_id)?;
    check_model_files(&study, &model_id, &folder)?;
    let model = config
        .models
        .iter_mut()
        .find(|model| model.id == model_id)
        .expect("model_id checked it is in the config");
    model.path = folder.clone();
    let dtype: DTypeChoice = model.dtype().as_str().parse()?;
    if let Some(batch_size) = args.batch_size {
        config.generation.batch_size = batch_size as usize;
    }

    let device = parse_device(&args.device)?;
    let engine = tokio::task::spawn_blocking(move || Engine::load(&folder, dtype, &device))
        .await
        .context("the model loading task failed")?
        .with_context(|| format!("cannot load model {model_id}"))?;
    let date = study
        .manifest
        .created_at
        .as_deref()
        .and_then(date_of)
        .unwrap_or_else(Date::today_utc);
    let context = StudyContext::new(
        &config,
        &study.vignettes,
        &model_id,
        &engine,
        &fingerprint,
        date,
    )?;
    info!(study = %study_id, model = %model_id, device = %args.device, "loaded model");

    let queue: Arc<dyn JobQueue> = Arc::new(
        RedisQueue::connect(
            &location.redis,
            gaze_shared::queue::StudyId::new(&location.name, &fingerprint),
            lease_settings(&args)?,
            &RedisOptions::default(),
        )
        .await
        .context("opening the shard queue")?,
    );
    let runner = StudyShardRunner::new(
        shard::ShardRunner {
            engine: Arc::new(engine),
            context: Arc::new(context),
            store,
        },
        Arc::new(study.plan),
        Arc::clone(&queue),
    )
    .fail_sample(args.fail_sample);

    let mut options = ServeOptions::new(
        model_id,
        args.worker_name.clone().unwrap_or_else(default_worker_name),
    );
    options.shutdown_grace = seconds("--shutdown-grace", args.shutdown_grace)?;
    options.exit_when_idle = args
        .exit_when_idle
        .map(|secs| seconds("--exit-when-idle", secs))
        .transpose()?;
    options.metrics_addr = args.metrics_addr;
    options.poll_max = seconds("--poll-max", args.poll_max)?.max(options.poll_min);
    let shutdown = ShutdownSignal::from_os_signals().context("installing the signal handlers")?;

    let report = serve(queue, Arc::new(runner), options, shutdown).await?;
    info!(
        stop = ?report.stop,
        completed = report.completed,
        samples = report.samples,
        dead_lettered = report.dead_lettered,
        "serve finished"
    );
    Ok(())
}

/// Finds the study's name, store and queue from the flags, or from the
/// config file that `STUDY` names.
fn locate(args: &ServeArgs) -> anyhow::Result<StudyLocation> {
    let path = Path::new(&args.study);
    let config = if path.is_file() {
        Some(StudyConfig::load(path)?)
    } else {
        None
    };
    let name = config
        .as_ref()
        .map_or_else(|| args.study.clone(), |c| c.study.name.clone());

    let store = args
        .store
        .clone()
        .or_else(|| config.as_ref().map(StudyConfig::store_url))
        .with_context(|| {
            format!("no store given for study {name:?}: pass --store URL or set GAZE_STORE")
        })?;
    let redis = match (&args.redis, &config) {
        (Some(url), _) => url.clone(),
        (None, Some(config)) => match config.queue.location() {
            Ok(QueueLocation::Redis(url)) => url,
            _ => bail!(
                "study {name:?} has no Redis queue (queue.url is {:?}): pass --redis URL or set \
                 GAZE_REDIS",
                redact_url(&config.queue.url)
            ),
        },
        (None, None) => {
            bail!("no queue given for study {name:?}: pass --redis URL or set GAZE_REDIS")
        }
    };
    Ok(StudyLocation { name, store, redis })
}

/// Returns the model to serve: --model-id, the id in --model ID=PATH, or
/// the study's only model.
fn model_id(args: &ServeArgs, config: &StudyConfig) -> anyhow::Result<String> {
    let from_model_flag = args
        .model
        .as_deref()
        .and_then(|value| value.split_once('='))
        .map(|(id, _)| id.to_owned());
    let id = match (args.model_id.clone(), from_model_flag) {
        (Some(id), _) | (None, Some(id)) => id,
        (None, None) => match config.models.as_slice() {
            [only] => only.id.clone(),
            models => bail!(
                "study {} has {} models: pass --model-id with one of {}",
                config.study.name,
                models.len(),
                model_ids(config)
            ),
        },
    };
    if config.model(&id).is_none() {
        bail!(
            "model {id:?} is not in study {}: pass --model-id with one of {}",
            config.study.name,
            model_ids(config)
        );
    }
    Ok(id)
}

fn model_ids(config: &StudyConfig) -> String {
    let ids: Vec<&str> = config.models.iter().map(|m| m.id.as_str()).collect();
    ids.join(", ")
}

/// Returns the folder of model `id` on this machine: --model, or the path
/// in the submitted config.
fn model_folder(args: &ServeArgs, config: &StudyConfig, id: &str) -> anyhow::Result<PathBuf> {
    let Some(value) = &args.model else {
        let model = config
            .model(id)
            .expect("model_id checked it is in the config");
        return Ok(model.path.clone());
    };
    match value.split_once('=') {
        Some((named, path)) if named == id => Ok(PathBuf::from(path)),
        Some((named, _)) => bail!(
            "--model names model {named:?}, but this worker serves {id:?}: pass --model {id}=PATH"
        ),
        None => Ok(PathBuf::from(value)),
    }
}

/// Checks that the model files in `folder` are those the study was
/// submitted with, since jobs carry a fingerprint that covers them.
fn check_model_files(study: &StoredStudy, id: &str, folder: &Path) -> anyhow::Result<()> {
    let identity = model_identity(folder)
        .with_context(|| format!("identifying the model files in {}", folder.display()))?;
    match study.manifest.models.get(id) {
        Some(expected) if *expected == identity.digest => Ok(()),
        Some(expected) => bail!(
            "the model files in {} (identity {}) differ from those study {} was submitted with \
             (identity {expected}): load the same checkpoint, or submit the study again under \
             a new name",
            folder.display(),
            identity.digest,
            study.manifest.study
        ),
        None => bail!(
            "the manifest of study {} records no identity for model {id:?}: submit the study \
             again with this version of gaze",
            study.manifest.study
        ),
    }
}

fn lease_settings(args: &ServeArgs) -> anyhow::Result<LeaseSettings> {
    let settings = LeaseSettings {
        heartbeat_interval: seconds("--heartbeat-interval", args.heartbeat_interval)?,
        lease_timeout: seconds("--lease-timeout", args.lease_timeout)?,
        max_deliveries: args.max_deliveries,
    };
    settings.validate()?;
    Ok(settings)
}

fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|duration| !duration.is_zero())
        .with_context(|| format!("invalid {flag} {value}: pass a positive number of seconds"))
}
