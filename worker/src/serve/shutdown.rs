//! Graceful shutdown for long-running commands: on the first SIGTERM or
//! SIGINT they finish their current work, on a second one they stop at once.
//!
//! Slurm and Kubernetes both send SIGTERM and then SIGKILL after a delay, so
//! a worker that drains on the first signal keeps the work it can finish in
//! that delay and hands back the rest.

use std::future::pending;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{info, warn};

/// Signals this close to the last counted one are taken as the same
/// request. Slurm, when it cancels or preempts a job, sends SIGTERM to every
/// process of the job, so a worker whose batch script also forwards the
/// signal receives it twice at once.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(2);

/// How far a shutdown has gone. Stages only move forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ShutdownStage {
    /// No shutdown requested.
    Running,
    /// Stop taking new work and finish the current work within the grace
    /// period.
    Draining,
    /// Stop at once and leave unfinished work to be reclaimed.
    Immediate,
}

/// The receiving side of a shutdown. Clones are cheap and all read the
/// same stage.
#[derive(Debug, Clone)]
pub struct ShutdownSignal {
    stage: watch::Receiver<ShutdownStage>,
}

/// The sending side of a manual [`ShutdownSignal`], for tests and for
/// callers that decide to stop for their own reasons. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger {
    stage: Arc<watch::Sender<ShutdownStage>>,
}

impl ShutdownSignal {
    /// Creates a signal moved only by the returned trigger.
    pub fn manual() -> (ShutdownTrigger, ShutdownSignal) {
        let (sender, stage) = watch::channel(ShutdownStage::Running);
        let trigger = ShutdownTrigger {
            stage: Arc::new(sender),
        };
        (trigger, ShutdownSignal { stage })
    }

    /// Creates a signal that never fires.
    pub fn never() -> ShutdownSignal {
        // Dropping the sender leaves the stage at `Running` forever, and the
        // waits below stay pending once the sender is gone.
        Self::manual().1
    }

    /// Listens for SIGTERM and SIGINT (Ctrl-C) on the current tokio runtime.
    /// Each signal moves the stage one step: the first to
    /// [`Draining`](ShutdownStage::Draining), the second to
    /// [`Immediate`](ShutdownStage::Immediate). A signal within
    /// [`REPEAT_WINDOW`] of the last one that counted is ignored.
    ///
    /// The process keeps tokio's handlers installed once this is called, so
    /// signals after the second one no longer kill it: the caller must exit
    /// when the stage is `Immediate`. Fails when the handlers cannot be
    /// installed. Outside Unix only Ctrl-C is watched.
    pub fn from_os_signals() -> std::io::Result<ShutdownSignal> {
        Self::from_os_signals_with_repeat_window(REPEAT_WINDOW)
    }

    /// Like [`from_os_signals`](Self::from_os_signals), ignoring signals
    /// within `repeat_window` of the last one that counted.
    pub fn from_os_signals_with_repeat_window(
        repeat_window: Duration,
    ) -> std::io::Result<ShutdownSignal> {
        let (trigger, signal) = Self::manual();
        let mut signals = OsSignals::install()?;
        let mut repeats = RepeatFilter::new(repeat_window);
        tokio::spawn(async move {
            while let Some(name) = signals.next().await {
                if !repeats.counts(Instant::now()) {
                    info!(
                        signal = name,
                        window_ms = repeat_window.as_millis() as u64,
                        "ignoring a shutdown signal that repeats the last one within the window; send it again later to stop at once"
                    );
                    continue;
                }
                match trigger.escalate() {
                    ShutdownStage::Running => unreachable!("escalate never returns Running"),
                    ShutdownStage::Draining => info!(
                        signal = name,
                        "shutdown requested: finishing the current work; send the signal again to stop at once"
                    ),
                    ShutdownStage::Immediate => {
                        warn!(signal = name, "second shutdown signal, stopping at once");
                        return;
                    }
                }
            }
        });
        Ok(signal)
    }

    /// Returns the current stage.
    pub fn stage(&self) -> ShutdownStage {
        *self.stage.borrow()
    }

    /// Completes once the stage is [`Draining`](ShutdownStage::Draining) or
    /// later, at once if it already is.
    pub async fn draining(&self) {
        self.reached(ShutdownStage::Draining).await
    }

    /// Completes once the stage is [`Immediate`](ShutdownStage::Immediate),
    /// at once if it already is.
    pub async fn immediate(&self) {
        self.reached(ShutdownStage::Immediate).await
    }

    async fn reached(&self, stage: ShutdownStage) {
        let mut receiver = self.stage.clone();
        if receiver.wait_for(|now| *now >= stage).await.is_err() {
            // The trigger is gone, so the stage can no longer change.
            pending::<()>().await;
        }
    }
}

impl ShutdownTrigger {
    /// Moves the stage one step forward (`Running` to `Draining`, `Draining`
    /// to `Immediate`) and returns the new stage. At `Immediate` it stays.
    pub fn escalate(&self) -> ShutdownStage {
        let mut reached = ShutdownStage::Immediate;
        self.stage.send_modify(|stage| {
            *stage = match *stage {
                ShutdownStage::Running => ShutdownStage::Draining,
                _ => ShutdownStage::Immediate,
            };
            reached = *stage;
        });
        reached
    }

    /// Moves the stage to at least `Draining`.
    pub fn drain(&self) {
        self.stage.send_if_modified(|stage| {
            let running = *stage == ShutdownStage::Running;
            if running {
                *stage = ShutdownStage::Draining;
            }
            running
        });
    }

    /// Moves the stage to `Immediate`.
    pub fn stop_now(&self) {
        self.stage.send_replace(ShutdownStage::Immediate);
    }
}

/// Drops signals that repeat the last counted one within a window.
#[derive(Debug)]
struct RepeatFilter {
    window: Duration,
    last_counted: Option<Instant>,
}

impl RepeatFilter {
    fn new(window: Duration) -> Self {
        Self {
            window,
            last_counted: None,
        }
    }

    /// Returns whether a signal received at `now` counts, and if so records
    /// it as the last counted one.
    fn counts(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last_counted
            && now.saturating_duration_since(last) < self.window
        {
            return false;
        }
        self.last_counted = Some(now);
        true
    }
}

/// The OS signals that request a shutdown.
struct OsSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl OsSignals {
    #[cfg(unix)]
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> std::io::Result<Self> {
        Ok(Self {})
    }

    /// Waits for the next signal and returns its name, or `None` when the
    /// runtime stops delivering signals.
    #[cfg(unix)]
    async fn next(&mut self) -> Option<&'static str> {
        tokio::select! {
            received = self.terminate.recv() => received.map(|()| "SIGTERM"),
            received = self.interrupt.recv() => received.map(|()| "SIGINT"),
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) -> Option<&'static str> {
        tokio::signal::ctrl_c().await.ok().map(|()| "Ctrl-C")
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[test]
    fn escalate_moves_one_stage_per_call() {
        let (trigger, signal) = ShutdownSignal::manual();
        assert_eq!(signal.stage(), ShutdownStage::Running);
        assert_eq!(trigger.escalate(), ShutdownStage::Draining);
        assert_eq!(signal.stage(), ShutdownStage::Draining);
        assert_eq!(trigger.escalate(), ShutdownStage::Immediate);
        assert_eq!(trigger.escalate(), ShutdownStage::Immediate);
        assert_eq!(signal.stage(), ShutdownStage::Immediate);
    }

    #[test]
    fn drain_never_moves_back() {
        let (trigger, signal) = ShutdownSignal::manual();
        trigger.stop_now();
        trigger.drain();
        assert_eq!(signal.stage(), ShutdownStage::Immediate);
    }

    #[tokio::test]
    async fn draining_completes_for_later_stages() {
        let (trigger, signal) = ShutdownSignal::manual();
        trigger.stop_now();
        signal.draining().await;
        signal.immediate().await;
    }

    #[test]
    fn repeat_within_window_ignored() {
        let start = Instant::now();
        let mut repeats = RepeatFilter::new(Duration::from_secs(2));
        assert!(repeats.counts(start));
        assert!(!repeats.counts(start + Duration::from_millis(1999)));
        assert!(repeats.counts(start + Duration::from_secs(2)));
        assert!(!repeats.counts(start + Duration::from_secs(3)));
    }

    #[test]
    fn zero_window_counts_every_signal() {
        let start = Instant::now();
        let mut repeats = RepeatFilter::new(Duration::ZERO);
        assert!(repeats.counts(start));
        assert!(repeats.counts(start));
    }

    #[test]
    fn never_stays_pending() {
        let signal = ShutdownSignal::never();
        assert!(signal.draining().now_or_never().is_none());
        assert_eq!(signal.stage(), ShutdownStage::Running);
    }
}
