//! The `gaze` command: plans, runs and exports vignette studies.

mod args;
mod commands;
mod log_writer;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Run vignette studies on a language model and record, for every sampled
/// decision, which prompt tokens the model attended to.
#[derive(Parser)]
#[command(name = "gaze", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the sample plan of a study and print its summary.
    Plan(commands::plan::PlanArgs),
    /// Run a study on this machine: plan it, run every pending shard with
    /// in-process workers, and commit each shard's tables to the store.
    /// Rerun the same command to resume.
    Run(commands::run::RunArgs),
    /// Write one table of a study, from its committed shards, as CSV or JSON lines.
    Export(commands::export::ExportArgs),
    /// Queue every shard of a study that is neither committed nor queued,
    /// for workers on other machines (`gaze-worker serve`).
    Submit(commands::submit::SubmitArgs),
    /// Show a study's progress: shards committed, queued, in flight and
    /// dead-lettered, the rate, the ETA and the workers.
    Status(commands::status::StatusArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(log_writer::LogWriter)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let result = match Cli::parse().command {
        Command::Plan(args) => commands::plan::run(args),
        Command::Run(args) => block_on(commands::run::run(args)),
        Command::Export(args) => block_on(commands::export::run(args)),
        Command::Submit(args) => block_on(commands::submit::run(args)),
        Command::Status(args) => block_on(commands::status::run(args)),
    };

    // Print the error and its causes on one line, without a backtrace: the
    // messages name the value and the fix, which is what a user needs.
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", gaze_shared::error_report::error_report(&err));
            ExitCode::FAILURE
        }
    }
}

/// Runs an async command to completion on a new Tokio runtime.
fn block_on(command: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the Tokio runtime failed")?;
    runtime.block_on(command)
}
