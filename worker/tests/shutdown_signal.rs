//! The OS side of the shutdown signal: SIGTERM and SIGINT sent to this test
//! process move the stage. Kept in its own test binary because tokio keeps
//! its signal handlers installed for the rest of the process.

#![cfg(unix)]

use std::process::Command;
use std::time::Duration;

use gaze_worker::serve::{ShutdownSignal, ShutdownStage};

/// Sends `signal` (a name `kill` accepts) to this process.
fn send_to_self(signal: &str) {
    let status = Command::new("kill")
        .args(["-s", signal, &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -s {signal} failed");
}

/// Waits for a stage change; the limit only stops a hung test.
async fn bounded(what: &str, future: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(30), future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

#[tokio::test]
async fn sigterm_drains_then_sigint_stops() {
    // No repeat window: the test sends its second signal right after the
    // first, and both must count.
    let signal = ShutdownSignal::from_os_signals_with_repeat_window(Duration::ZERO)
        .expect("install signal handlers");
    assert_eq!(signal.stage(), ShutdownStage::Running);

    send_to_self("TERM");
    bounded("SIGTERM starts draining", signal.draining()).await;
    assert_eq!(signal.stage(), ShutdownStage::Draining);

    send_to_self("INT");
    bounded("SIGINT stops at once", signal.immediate()).await;
    assert_eq!(signal.stage(), ShutdownStage::Immediate);
}
