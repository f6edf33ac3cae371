//! Helpers of the queue tests: finding the test Redis, private redis-server
//! processes for tests that need their own configuration, unique study
//! names, and bounded waits.

#![allow(dead_code)]

use std::future::Future;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gaze_shared::queue::{Job, LeaseSettings, StudyId};

pub const MODEL: &str = "llama-3-8b";

/// Short lease limits, so that expiry happens within a test.
pub fn fast_settings() -> LeaseSettings {
    LeaseSettings {
        heartbeat_interval: Duration::from_millis(100),
        lease_timeout: Duration::from_millis(500),
        max_deliveries: 3,
    }
}

/// A study name no other test or earlier run uses, so tests sharing one
/// Redis never touch each other's keys.
pub fn unique_study(tag: &str) -> StudyId {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    let name = format!(
        "{tag}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    StudyId::new(name, "fingerprint-1")
}

/// One job per shard id, for `model`.
pub fn jobs(study: &StudyId, model: &str, shards: impl IntoIterator<Item = u32>) -> Vec<Job> {
    shards
        .into_iter()
        .map(|shard_id| Job {
            study: study.name.clone(),
            fingerprint: study.fingerprint.clone(),
            model: model.to_owned(),
            shard_id,
            samples: 100,
        })
        .collect()
}

/// Handles a missing test service: fails when `GAZE_REQUIRE_SERVICES=1`,
/// else prints a skip line. Returns nothing so callers `return` after it.
pub fn skip(test: &str, why: &str) {
    if std::env::var("GAZE_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{test}: {why}, and GAZE_REQUIRE_SERVICES=1 requires it");
    }
    eprintln!("SKIPPED {test}: {why}");
}

/// The URL of the shared test Redis, or `None` after reporting the skip.
pub fn redis_url(test: &str) -> Option<String> {
    match std::env::var("GAZE_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            skip(
                test,
                "GAZE_TEST_REDIS_URL is unset (start Redis with `eval \"$(scripts/redis.sh start)\"`)",
            );
            None
        }
    }
}

/// Polls `condition` every 20 ms until it returns true, and panics naming
/// `what` after `limit`. The limit only bounds a hung test; no assertion
/// depends on how long the wait took.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !condition().await {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A redis-server child process on a free 127.0.0.1 port, killed on drop.
pub struct RedisServer {
    child: Child,
    pub port: u16,
    args: Vec<String>,
}

impl RedisServer {
    /// Starts a private server with `args` added to the test defaults, or
    /// returns `None` after reporting the skip when redis-server is missing.
    pub fn start(test: &str, args: &[&str]) -> Option<Self> {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !found {
            skip(
                test,
                "redis-server is not on PATH (Debian: apt-get install redis-server)",
            );
            return None;
        }

        let port = free_port();
        let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        let child = spawn_server(port, &args);
        let server = Self { child, port, args };
        server.wait_ready();
        Some(server)
    }

    /// The URL of this server, with `password` if given.
    pub fn url(&self, password: Option<&str>) -> String {
        match password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Kills the server and starts a new, empty one on the same port, as a
    /// crash and restart without persistence would.
    pub fn restart_empty(&mut self) {
        self.child.kill().expect("kill redis-server");
        self.child.wait().expect("reap redis-server");
        self.child = spawn_server(self.port, &self.args);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server on port {} did not start within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_server(port: u16, args: &[String]) -> Child {
    let port_args: Vec<String> = if args.iter().any(|arg| arg == "--tls-port") {
        // A TLS server listens on --tls-port only.
        vec!["--port".into(), "0".into()]
    } else {
        vec!["--port".into(), port.to_string()]
    };
    Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--maxmemory-policy", "noeviction"])
        .args(&port_args)
        .args(
            args.iter()
                .map(|arg| arg.replace("{port}", &port.to_string())),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server")
}

/// A port that was free a moment ago. Another process may take it before
/// the server binds; the server then fails to start and the test reports it.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// Whether `program` runs, for tests that need an extra tool.
pub fn has_program(program: &str) -> bool {
    Command::new(program)
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Writes a self-signed CA and a server certificate for 127.0.0.1 into
/// `dir` with openssl: ca.crt, server.crt, server.key.
pub fn write_tls_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run openssl");
        assert!(status.success(), "openssl {args:?} failed");
    };
    std::fs::write(dir.join("san.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=gaze test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.cnf",
        "-out",
        "server.crt",
    ]);
}
