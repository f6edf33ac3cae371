//! Helpers of the worker loop tests: a scripted shard runner that records
//! every attempt and simulates commit markers, and short serve options.

#![allow(dead_code)]

use std::collections::HashSet;
use std::future::{Future, pending};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use gaze_shared::queue::Job;
use gaze_worker::serve::{
    AttemptInfo, CommitStatus, ServeOptions, ShardError, ShardOutcome, ShardRunner,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Tokens the fake runner reports per generated sample.
pub const TOKENS_PER_SAMPLE: u64 = 12;

/// Bounds every wait for a worker to return or a runner to start. The limit
/// only stops a hung test; no assertion depends on how long a step took.
pub const HANG_LIMIT: Duration = Duration::from_secs(30);

/// What the fake runner does for one attempt.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// Commit the shard at once.
    Commit,
    /// Fail with a retryable error with this message.
    Retryable(&'static str),
    /// Fail with a poison error with this message.
    Poison(&'static str),
    /// Block a thread of the blocking pool for this long, then commit.
    BlockThread(Duration),
    /// Wait until the test opens the gate, then commit.
    WaitForGate,
    /// Wait until the attempt is cancelled, then return `Cancelled`.
    WaitForCancel,
    /// Never return, ignoring cancellation.
    Hang,
}

/// One call of the fake runner.
#[derive(Debug, Clone)]
pub struct Run {
    pub shard: u32,
    pub attempt: u64,
    pub delivery: u32,
    pub worker: String,
    /// What `still_owner` returned at the commit step or after cancellation;
    /// `None` until the runner got there.
    pub owner_at_end: Option<bool>,
    pub cancel: CancellationToken,
}

type Script = Box<dyn Fn(u32, u64) -> Step + Send + Sync>;

/// A [`ShardRunner`] whose behaviour per (shard, attempt) comes from a
/// script, and whose commit markers are a set of shard ids.
pub struct FakeRunner {
    script: Script,
    runs: Mutex<Vec<Run>>,
    committed: Mutex<HashSet<u32>>,
    gate: watch::Sender<bool>,
}

impl FakeRunner {
    /// A runner that follows `script(shard, attempt)`.
    pub fn new(script: impl Fn(u32, u64) -> Step + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            script: Box::new(script),
            runs: Mutex::new(Vec::new()),
            committed: Mutex::new(HashSet::new()),
            gate: watch::channel(false).0,
        })
    }

    /// A runner that commits every shard at once.
    pub fn committing() -> Arc<Self> {
        Self::new(|_, _| Step::Commit)
    }

    /// Lets every attempt waiting at [`Step::WaitForGate`] commit.
    pub fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    pub fn runs(&self) -> Vec<Run> {
        lock(&self.runs).clone()
    }

    /// The attempts of one shard, in call order.
    pub fn runs_of(&self, shard: u32) -> Vec<Run> {
        self.runs()
            .into_iter()
            .filter(|run| run.shard == shard)
            .collect()
    }

    /// Shard ids with a commit marker, sorted.
    pub fn committed(&self) -> Vec<u32> {
        let mut shards: Vec<u32> = lock(&self.committed).iter().copied().collect();
        shards.sort_unstable();
        shards
    }

    /// Waits until the runner has been called `count` times.
    pub async fn wait_for_runs(&self, count: usize) {
        wait_until(&format!("the runner was called {count} times"), || {
            lock(&self.runs).len() >= count
        })
        .await;
    }

    fn record(&self, job: &Job, attempt: &AttemptInfo, cancel: &CancellationToken) -> usize {
        let mut runs = lock(&self.runs);
        runs.push(Run {
            shard: job.shard_id,
            attempt: attempt.attempt,
            delivery: attempt.delivery,
            worker: attempt.worker.clone(),
            owner_at_end: None,
            cancel: cancel.clone(),
        });
        runs.len() - 1
    }

    fn set_owner(&self, index: usize, owner: bool) {
        lock(&self.runs)[index].owner_at_end = Some(owner);
    }

    async fn run(
        &self,
        job: &Job,
        attempt: &AttemptInfo,
        cancel: CancellationToken,
    ) -> Result<ShardOutcome, ShardError> {
        let index = self.record(job, attempt, &cancel);
        match (self.script)(job.shard_id, attempt.attempt) {
            Step::Commit => {}
            Step::Retryable(message) => return Err(ShardError::retryable(message)),
            Step::Poison(message) => return Err(ShardError::poison(message)),
            Step::BlockThread(duration) => {
                tokio::task::spawn_blocking(move || std::thread::sleep(duration))
                    .await
                    .expect("blocking sleep");
            }
            Step::WaitForGate => {
                let mut gate = self.gate.subscribe();
                gate.wait_for(|open| *open)
                    .await
                    .expect("gate sender alive");
            }
            Step::WaitForCancel => {
                cancel.cancelled().await;
                let owner = attempt.still_owner().await.expect("queue reachable");
                self.set_owner(index, owner);
                return Err(ShardError::Cancelled);
            }
            Step::Hang => pending::<()>().await,
        }

        let owner = attempt.still_owner().await.expect("queue reachable");
        self.set_owner(index, owner);
        if !owner {
            return Err(ShardError::Cancelled);
        }
        let fresh = lock(&self.committed).insert(job.shard_id);
        let samples = if fresh { u64::from(job.samples) } else { 0 };
        Ok(ShardOutcome {
            samples,
            generated_tokens: samples * TOKENS_PER_SAMPLE,
            commit: if fresh {
                CommitStatus::Written
            } else {
                CommitStatus::FoundCommitted
            },
        })
    }
}

impl ShardRunner for FakeRunner {
    fn run_shard<'a>(
        &'a self,
        job: &'a Job,
        attempt: &'a AttemptInfo,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ShardOutcome, ShardError>> {
        Box::pin(self.run(job, attempt, cancel))
    }
}

/// Options with short poll delays that stop once the queue has been empty
/// for a moment.
pub fn options(model: &str, worker: &str) -> ServeOptions {
    ServeOptions {
        poll_min: Duration::from_millis(10),
        poll_max: Duration::from_millis(50),
        exit_when_idle: Some(Duration::from_millis(300)),
        ..ServeOptions::new(model, worker)
    }
}

/// Options that serve until shutdown.
pub fn options_until_shutdown(model: &str, worker: &str) -> ServeOptions {
    ServeOptions {
        exit_when_idle: None,
        ..options(model, worker)
    }
}

/// Awaits `future`, panicking naming `what` after [`HANG_LIMIT`].
pub async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG_LIMIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {HANG_LIMIT:?} waiting until {what}"))
}

/// Polls `condition` every 10 ms until it holds, for at most [`HANG_LIMIT`].
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    bounded(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
