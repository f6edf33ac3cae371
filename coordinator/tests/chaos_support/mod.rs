//! Helpers of the chaos tests: a private redis-server and s3s-fs per test,
//! a small study on the tiny test model, `gaze-worker serve` processes to
//! kill, stop and restart, and the exactly-once check over the tables.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arrow::array::{Array, Int64Array};
use gaze_shared::store::{
    ModelId, ShardKey, Store, StoreOptions, StudyId, StudyKeys, committed_shard_keys, read_claim,
    read_commit_marker,
};
use gaze_shared::tables::{Table, read_table};
use tempfile::TempDir;

/// Model id of the test studies.
pub const MODEL: &str = "tiny";
/// Samples and shards of the test studies.
pub const SAMPLES: u64 = 48;
pub const SAMPLES_PER_SHARD: u64 = 8;
pub const SHARDS: u32 = (SAMPLES / SAMPLES_PER_SHARD) as u32;

const BUCKET: &str = "gaze-chaos";
const ACCESS_KEY: &str = "gaze-chaos-access";
const SECRET_KEY: &str = "gaze-chaos-secret";

/// Maximum wait for any one condition, so that a broken case fails instead
/// of hanging.
pub const WAIT_LIMIT: Duration = Duration::from_secs(60);

/// Serialises the chaos tests: each runs several model processes, and on a
/// machine with 2 cores parallel tests would only slow each other down.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Handles a missing test service: fails when `GAZE_REQUIRE_SERVICES=1`,
/// otherwise prints why the test is skipped.
pub fn skip(test: &str, why: &str) {
    if std::env::var("GAZE_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{test}: {why}, and GAZE_REQUIRE_SERVICES=1 requires it");
    }
    eprintln!("skipping {test}: {why}");
}

fn runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

fn wait_for_port(port: u16, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what} on port {port} did not start within 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `condition` holds, checking every 50 ms, and panics with
/// `what` after [`WAIT_LIMIT`].
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < WAIT_LIMIT,
            "timed out after {WAIT_LIMIT:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A redis-server and an s3s-fs server of one test, on free 127.0.0.1 ports,
/// killed on drop.
pub struct Services {
    redis: Child,
    pub redis_port: u16,
    s3: Option<Child>,
    pub s3_port: u16,
    s3_root: TempDir,
}

impl Services {
    /// Starts both servers, or returns `None` after reporting the skip when
    /// a program is missing.
    pub fn start(test: &str) -> Option<Services> {
        if !runs("redis-server", "--version") {
            skip(
                test,
                "redis-server is not on PATH (Debian: apt-get install redis-server)",
            );
            return None;
        }
        if !runs("s3s-fs", "--version") {
            skip(
                test,
                "s3s-fs is not on PATH (cargo install s3s-fs --version 0.14.1 --features binary --locked)",
            );
            return None;
        }
        if worker_binary().is_none() {
            skip(
                test,
                "the gaze-worker binary was not found next to gaze: run cargo test --workspace, \
                 or set GAZE_TEST_WORKER_BIN",
            );
            return None;
        }

        let s3_root = tempfile::tempdir().expect("temporary S3 root");
        std::fs::create_dir(s3_root.path().join(BUCKET)).expect("create the bucket folder");
        let redis_port = free_port();
        let redis = spawn_redis(redis_port);
        let mut services = Services {
            redis,
            redis_port,
            s3: None,
            s3_port: free_port(),
            s3_root,
        };
        wait_for_port(redis_port, "redis-server");
        services.start_s3();
        Some(services)
    }

    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.redis_port)
    }

    /// Kills Redis and starts an empty one on the same port, as a crash of
    /// a server without persistence.
    pub fn restart_redis_empty(&mut self) {
        self.redis.kill().expect("kill redis-server");
        self.redis.wait().expect("reap redis-server");
        self.redis = spawn_redis(self.redis_port);
        wait_for_port(self.redis_port, "redis-server");
    }

    /// Kills the S3 server; its files stay.
    pub fn stop_s3(&mut self) {
        if let Some(mut child) = self.s3.take() {
            child.kill().expect("kill s3s-fs");
            child.wait().expect("reap s3s-fs");
        }
    }

    /// Starts the S3 server on its port over its root folder.
    pub fn start_s3(&mut self) {
        let child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &self.s3_port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.s3_root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        self.s3 = Some(child);
        wait_for_port(self.s3_port, "s3s-fs");
    }

    /// Returns the `AWS_*` variables that reach this S3 server.
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.s3_port),
            ),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
        ]
    }

    /// Opens the result store of study `name` over S3.
    pub fn store(&self, name: &str) -> Store {
        let options = StoreOptions {
            s3_endpoint: Some(format!("http://127.0.0.1:{}", self.s3_port)),
            s3_config: vec![
                ("aws_region".into(), "us-east-1".into()),
                ("aws_access_key_id".into(), ACCESS_KEY.into()),
                ("aws_secret_access_key".into(), SECRET_KEY.into()),
            ],
            ..StoreOptions::default()
        };
        Store::open_with(&store_url(name), &options).expect("open the S3 store")
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        let _ = self.redis.kill();
        let _ = self.redis.wait();
        self.stop_s3();
    }
}

fn spawn_redis(port: u16) -> Child {
    Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .args(["--maxmemory-policy", "noeviction"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server")
}

fn store_url(study: &str) -> String {
    format!("s3://{BUCKET}/{study}")
}

/// Returns the `gaze` binary: `GAZE_TEST_GAZE_BIN`, or the one cargo built
/// for these tests. The variables of both binaries serve a target folder
/// shared by several checkouts, where another build may replace them.
fn gaze_binary() -> PathBuf {
    std::env::var_os("GAZE_TEST_GAZE_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_gaze")), PathBuf::from)
}

/// Returns the `gaze-worker` binary: `GAZE_TEST_WORKER_BIN`, or the one
/// cargo built next to `gaze`.
fn worker_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("GAZE_TEST_WORKER_BIN") {
        return Some(PathBuf::from(path));
    }
    let gaze = Path::new(env!("CARGO_BIN_EXE_gaze"));
    let worker = gaze.with_file_name(format!("gaze-worker{}", std::env::consts::EXE_SUFFIX));
    worker.is_file().then_some(worker)
}

/// A study of [`SAMPLES`] samples in [`SHARDS`] shards on the tiny test
/// model, in a temporary folder that also contains the worker logs.
pub struct Study {
    pub name: String,
    dir: TempDir,
    pub config: PathBuf,
    logs: Vec<PathBuf>,
}

impl Study {
    /// Writes the test model and the config of study `name`, whose store is
    /// on the S3 server of `services` and whose queue is its Redis.
    pub fn new(services: &Services, name: &str) -> Study {
        let dir = tempfile::tempdir().expect("temporary study folder");
        gaze_worker::testmodel::write_test_model(&dir.path().join("model"))
            .expect("write the test model");
        let vignettes =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/vignettes/uk-immigration.json");
        let config = dir.path().join("study.toml");
        std::fs::write(
            &config,
            format!(
                r#"[study]
name = "{name}"
vignettes = "{vignettes}"

[[models]]
id = "{MODEL}"
path = "model"
device = "cpu"

[prompt]
system = "You are a caseworker for UK Visas and Immigration."
user = """Read the case below and decide the application.

{{vignette}}

Answer GRANTED or REFUSED."""
assistant_prefix = "DECISION:"
template = "chat"

[design]
total_samples = {SAMPLES}
stratify = ["gender"]
seed = 11

[generation]
max_new_tokens = 12
temperature = 0.7
batch_size = 2

[decision]
labels = ["GRANTED", "REFUSED"]

[attention]
sample_rate = 0.25
steps = 2
top_k = 5

[output]
store = "{store}"
samples_per_shard = {SAMPLES_PER_SHARD}

[queue]
url = "{redis}"
"#,
                vignettes = vignettes.display(),
                store = store_url(name),
                redis = services.redis_url(),
            ),
        )
        .expect("write the study config");
        Study {
            name: name.to_owned(),
            dir,
            config,
            logs: Vec::new(),
        }
    }

    /// Runs `gaze ARGS` with the services' settings and returns its output.
    pub fn gaze(&self, services: &Services, args: &[&str]) -> Output {
        let mut command = Command::new(gaze_binary());
        command.args(args);
        clear_gaze_env(&mut command);
        command.envs(services.aws_env());
        command.output().expect("run gaze")
    }

    /// Runs `gaze submit` on the study config and checks that it succeeded.
    pub fn submit(&self, services: &Services) {
        let output = self.gaze(services, &["submit", self.config.to_str().unwrap()]);
        assert!(
            output.status.success(),
            "gaze submit failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Runs `gaze status --json` from the study name, the store and Redis,
    /// and parses the report.
    pub fn status(&self, services: &Services) -> serde_json::Value {
        let store = store_url(&self.name);
        let redis = services.redis_url();
        let output = self.gaze(
            services,
            &[
                "status", &self.name, "--store", &store, "--redis", &redis, "--json",
            ],
        );
        assert!(
            output.status.success(),
            "gaze status failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("gaze status --json prints JSON")
    }

    /// Starts `gaze-worker serve` as `name`, with leases of 1.5 s and the
    /// extra `args`. It logs to a file in the study folder.
    pub fn worker(&mut self, services: &Services, name: &str, args: &[&str]) -> Worker {
        let log = self.dir.path().join(format!("{name}.log"));
        let stderr = File::create(&log).expect("create the worker log");
        self.logs.push(log);
        let mut command = Command::new(worker_binary().expect("checked by Services::start"));
        command
            .args(["serve", &self.name])
            .args(["--store", &store_url(&self.name)])
            .args(["--redis", &services.redis_url()])
            .args(["--model", self.dir.path().join("model").to_str().unwrap()])
            .args(["--worker-name", name])
            .args(["--heartbeat-interval", "0.25", "--lease-timeout", "1.5"])
            .args(["--poll-max", "0.2"])
            .args(args);
        clear_gaze_env(&mut command);
        command
            .envs(services.aws_env())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(stderr);
        Worker {
            name: name.to_owned(),
            child: command.spawn().expect("start gaze-worker"),
        }
    }

    /// Returns the ids of the committed shards, from the commit markers.
    pub fn committed(&self, services: &Services) -> BTreeSet<u32> {
        let store = services.store(&self.name);
        let study = StudyId::new(&self.name).unwrap();
        block_on(async {
            committed_shard_keys(&store, &study)
                .await
                .expect("list the commit markers")
                .into_iter()
                .map(|key| key.shard)
                .collect()
        })
    }

    fn shard_key(&self, shard: u32) -> ShardKey {
        let study = StudyId::new(&self.name).unwrap();
        StudyKeys::new(study).shard(ModelId::new(MODEL).unwrap(), shard)
    }

    /// Returns whether an attempt has claimed shard `shard`: its tables are
    /// staged and only their publication and the marker remain.
    pub fn claimed(&self, services: &Services, shard: u32) -> bool {
        let store = services.store(&self.name);
        block_on(read_claim(&store, &self.shard_key(shard)))
            .expect("read the shard claim")
            .is_some()
    }

    /// Returns the worker and attempt that shard `shard`'s commit marker
    /// records.
    pub fn marker(&self, services: &Services, shard: u32) -> (String, u32) {
        let store = services.store(&self.name);
        let key = self.shard_key(shard);
        let marker = block_on(read_commit_marker(&store, &key))
            .expect("read the commit marker")
            .unwrap_or_else(|| panic!("shard {shard} has no commit marker"));
        (marker.worker, marker.attempt)
    }

    /// Reads the `sample_id` column of the committed shards' samples tables.
    pub fn committed_sample_ids(&self, services: &Services) -> Vec<i64> {
        let store = services.store(&self.name);
        let study = StudyId::new(&self.name).unwrap();
        let batches =
            block_on(read_table(&store, &study, Table::Samples)).expect("read the samples table");
        let mut ids = Vec::new();
        for batch in batches {
            let column = batch
                .column_by_name("sample_id")
                .expect("the samples table has sample_id");
            let column = column
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("sample_id is Int64");
            ids.extend((0..column.len()).map(|i| column.value(i)));
        }
        ids
    }

    /// Checks that the committed tables hold every sample of `shards` exactly
    /// once, and no other sample.
    pub fn assert_each_sample_once(&self, services: &Services, shards: &BTreeSet<u32>) {
        let mut ids = self.committed_sample_ids(services);
        ids.sort_unstable();
        let expected: Vec<i64> = shards
            .iter()
            .flat_map(|&shard| {
                let start = u64::from(shard) * SAMPLES_PER_SHARD;
                (start..start + SAMPLES_PER_SHARD).map(|id| id as i64)
            })
            .collect();
        assert_eq!(ids, expected, "sample ids in the committed samples tables");
    }

    /// Waits until every shard of the study is committed.
    pub fn wait_all_committed(&self, services: &Services) {
        wait_until("every shard is committed", || {
            self.committed(services).len() == SHARDS as usize
        });
    }

    /// Returns the shard that worker `name` holds, from `gaze status`.
    pub fn shard_held_by(&self, services: &Services, name: &str) -> Option<u32> {
        let status = self.status(services);
        let workers = status["models"][0]["workers"].as_array()?.clone();
        workers
            .iter()
            .find(|worker| worker["worker"] == name)
            .and_then(|worker| worker["shards"].as_array()?.first().cloned())
            .and_then(|lease| lease["shard_id"].as_u64())
            .map(|shard| shard as u32)
    }
}

impl Drop for Study {
    /// Prints the worker logs when the test failed, to show what happened.
    fn drop(&mut self) {
        if std::thread::panicking() {
            for log in &self.logs {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                eprintln!("--- last lines of {} ---", log.display());
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

fn clear_gaze_env(command: &mut Command) {
    for (name, _) in std::env::vars() {
        if name.starts_with("GAZE_") || name.starts_with("AWS_") {
            command.env_remove(name);
        }
    }
}

/// A `gaze-worker serve` process, killed on drop.
pub struct Worker {
    pub name: String,
    child: Child,
}

impl Worker {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (such as `KILL`, `STOP`, `CONT`, `TERM`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Waits for the process to exit, at most [`WAIT_LIMIT`].
    pub fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the worker") {
                return status;
            }
            assert!(
                start.elapsed() < WAIT_LIMIT,
                "worker {} did not exit within {WAIT_LIMIT:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Returns whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("poll the worker").is_none()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // A stopped process dies on SIGKILL too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `future` on a new single-threaded Tokio runtime.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build a Tokio runtime")
        .block_on(future)
}
