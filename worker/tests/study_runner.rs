//! The runner of `gaze-worker serve` with the real shard processing, the
//! tiny test model, the in-process queue and an in-memory store: every
//! sample committed exactly once, a poison sample dead-lettered, and jobs
//! that do not match the plan rejected.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, Int64Array};
use gaze_shared::config::StudyConfig;
use gaze_shared::plan::Plan;
use gaze_shared::queue::{EmbeddedBroker, Job, JobQueue, LeaseSettings, StudyId as QueueStudy};
use gaze_shared::store::{Store, StudyId, committed_shard_keys};
use gaze_shared::tables::{Table, read_table};
use gaze_shared::vignettes::VignetteSet;
use gaze_worker::Engine;
use gaze_worker::model::DTypeChoice;
use gaze_worker::prompt::Date;
use gaze_worker::serve::{ServeOptions, ServeReport, ShutdownSignal, StudyShardRunner, serve};
use gaze_worker::shard::{self, StudyContext};

const MODEL: &str = "tiny";
const STUDY: &str = "runner-study";
const FINGERPRINT: &str = "fp";
/// 30 samples in shards of 6: shards 0 to 4.
const SAMPLES: u64 = 30;
const PER_SHARD: u64 = 6;

fn config(model: &Path) -> StudyConfig {
    let vignettes = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/vignettes/uk-immigration.json")
        .canonicalize()
        .unwrap();
    let text = format!(
        r#"
[study]
name = "{STUDY}"
vignettes = "{vignettes}"

[[models]]
id = "{MODEL}"
path = "{model}"

[prompt]
system = "You are a caseworker."
user = "Decide this case.\n\n{{vignette}}\n\nAnswer GRANTED or REFUSED."
assistant_prefix = "DECISION:"

[design]
total_samples = {SAMPLES}
stratify = ["gender"]
seed = 3

[generation]
max_new_tokens = 4
temperature = 0.8
batch_size = 3

[decision]
labels = ["GRANTED", "REFUSED"]

[attention]
sample_rate = 0.5
steps = 1
top_k = 3

[output]
store = "memory://runner"
samples_per_shard = {PER_SHARD}
"#,
        vignettes = vignettes.display(),
        model = model.display(),
    );
    StudyConfig::parse(&text, Path::new("study.toml")).unwrap()
}

struct Setup {
    _dir: tempfile::TempDir,
    store: Store,
    queue: Arc<dyn JobQueue>,
    runner: StudyShardRunner,
    plan: Arc<Plan>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    gaze_worker::testmodel::write_test_model(&model).unwrap();
    let config = config(&model);
    let vignettes = VignetteSet::load(&config.study.vignettes).unwrap();
    let plan = Arc::new(Plan::build(&config, &vignettes).unwrap());

    let engine = Engine::load(&model, DTypeChoice::Auto, &candle_core::Device::Cpu).unwrap();
    let date = Date::from_ymd(2026, 1, 2).unwrap();
    let context =
        StudyContext::new(&config, &vignettes, MODEL, &engine, FINGERPRINT, date).unwrap();

    let store = Store::open("memory://runner").unwrap();
    let settings = LeaseSettings {
        heartbeat_interval: Duration::from_millis(100),
        lease_timeout: Duration::from_secs(2),
        max_deliveries: 3,
    };
    let queue: Arc<dyn JobQueue> = Arc::new(
        EmbeddedBroker::new()
            .queue(QueueStudy::new(STUDY, FINGERPRINT), settings)
            .unwrap(),
    );

    let runner = StudyShardRunner::new(
        shard::ShardRunner {
            engine: Arc::new(engine),
            context: Arc::new(context),
            store: store.clone(),
        },
        Arc::clone(&plan),
        Arc::clone(&queue),
    );
    Setup {
        _dir: dir,
        store,
        queue,
        runner,
        plan,
    }
}

fn job(shard: u32, samples: u32) -> Job {
    Job {
        study: STUDY.into(),
        fingerprint: FINGERPRINT.into(),
        model: MODEL.into(),
        shard_id: shard,
        samples,
    }
}

fn options() -> ServeOptions {
    ServeOptions {
        poll_min: Duration::from_millis(10),
        poll_max: Duration::from_millis(50),
        exit_when_idle: Some(Duration::from_millis(300)),
        ..ServeOptions::new(MODEL, "worker-1")
    }
}

/// Serves the queue with `runner` until it has been empty for 300 ms.
async fn serve_until_idle(queue: &Arc<dyn JobQueue>, runner: StudyShardRunner) -> ServeReport {
    serve(
        Arc::clone(queue),
        Arc::new(runner),
        options(),
        ShutdownSignal::never(),
    )
    .await
    .unwrap()
}

async fn committed(store: &Store) -> Vec<u32> {
    let study = StudyId::new(STUDY).unwrap();
    let keys = committed_shard_keys(store, &study).await.unwrap();
    keys.into_iter().map(|key| key.shard).collect()
}

async fn sample_ids(store: &Store) -> Vec<i64> {
    let study = StudyId::new(STUDY).unwrap();
    let mut ids = Vec::new();
    for batch in read_table(store, &study, Table::Samples).await.unwrap() {
        let column = batch.column_by_name("sample_id").unwrap();
        let column = column.as_any().downcast_ref::<Int64Array>().unwrap();
        ids.extend((0..column.len()).map(|i| column.value(i)));
    }
    ids.sort_unstable();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_commits_every_sample_once() {
    let setup = setup();
    assert_eq!(setup.plan.shards.len() as u64, SAMPLES / PER_SHARD);
    let jobs: Vec<Job> = (0..5).map(|shard| job(shard, PER_SHARD as u32)).collect();
    setup.queue.submit(&jobs).await.unwrap();

    let report = serve_until_idle(&setup.queue, setup.runner).await;

    assert_eq!(report.completed, 5);
    assert_eq!(report.samples, SAMPLES);
    assert!(report.generated_tokens > 0, "the runner counts tokens");
    assert_eq!(committed(&setup.store).await, vec![0, 1, 2, 3, 4]);
    let expected: Vec<i64> = (0..SAMPLES as i64).collect();
    assert_eq!(sample_ids(&setup.store).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_sample_dead_letters_its_shard() {
    let setup = setup();
    let jobs: Vec<Job> = (0..5).map(|shard| job(shard, PER_SHARD as u32)).collect();
    setup.queue.submit(&jobs).await.unwrap();
    // Sample 13 is in shard 2 (samples 12..18).
    let runner = setup.runner.fail_sample(Some(13));

    let report = serve_until_idle(&setup.queue, runner).await;

    assert_eq!(report.completed, 4);
    assert_eq!(report.dead_lettered, 1);
    assert_eq!(committed(&setup.store).await, vec![0, 1, 3, 4]);
    let snapshot = setup.queue.snapshot(MODEL).await.unwrap();
    assert_eq!(snapshot.dead_letters.len(), 1);
    let letter = &snapshot.dead_letters[0];
    assert_eq!(letter.shard_id, Some(2));
    assert!(
        letter.reason.contains("sample 13"),
        "reason: {}",
        letter.reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_outside_plan_are_dead_lettered() {
    let setup = setup();
    let jobs = [job(9, PER_SHARD as u32), job(1, PER_SHARD as u32 + 1)];
    setup.queue.submit(&jobs).await.unwrap();

    let report = serve_until_idle(&setup.queue, setup.runner).await;

    assert_eq!(report.dead_lettered, 2);
    assert!(committed(&setup.store).await.is_empty());
    let snapshot = setup.queue.snapshot(MODEL).await.unwrap();
    let reason_of = |shard: u32| {
        snapshot
            .dead_letters
            .iter()
            .find(|letter| letter.shard_id == Some(shard))
            .map(|letter| letter.reason.clone())
            .unwrap_or_else(|| panic!("no dead letter for shard {shard}"))
    };
    assert!(reason_of(9).contains("not in the plan"), "{}", reason_of(9));
    assert!(
        reason_of(1).contains("requests 7 samples"),
        "{}",
        reason_of(1)
    );
}
