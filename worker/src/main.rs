//! `gaze-worker`: the worker's command line. Subcommands parse their
//! options here and call into the library.

mod cli;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use gaze_worker::Engine;
use gaze_worker::capture::Selection;
use gaze_worker::golden::{self, GoldenRecord, compare_with_golden};
use gaze_worker::model::{DTypeChoice, parse_device};
use gaze_worker::probe::{ProbeOptions, probe, render_table};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "gaze-worker",
    version,
    about = "Attention-capturing inference worker for gaze"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one prompt and print its tokens and the attention of the first
    /// generated tokens.
    Probe(ProbeArgs),
    /// Take shards of one model from the Redis queue until stopped.
    Serve(cli::serve::ServeArgs),
    /// Compare greedy tokens and attention with a golden record of
    /// transformers (tests/golden/NAME), on any device and dtype, and
    /// measure how much a row changes between a padded batch and alone.
    CompareGolden(CompareGoldenArgs),
    /// Write the tiny test checkpoint (config, tokenizer, weights) into DIR.
    MakeTestModel {
        /// Folder to write; created if missing, existing model files replaced.
        dir: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(clap::Args)]
struct ProbeArgs {
    /// Hugging Face model folder (config.json, tokenizer.json, safetensors).
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// The prompt: the user message, or the whole text with --raw.
    #[arg(long, value_name = "TEXT")]
    prompt: String,
    /// Tokenize the prompt as it is (with the tokenizer's BOS) instead of
    /// rendering it through the model's chat template.
    #[arg(long)]
    raw: bool,
    /// System message for the chat template.
    #[arg(long, value_name = "TEXT", conflicts_with = "raw")]
    system: Option<String>,
    /// Text the assistant's reply starts with, such as "DECISION:".
    #[arg(long, value_name = "TEXT", default_value = "", conflicts_with = "raw")]
    assistant_prefix: String,
    /// Maximum number of tokens to generate.
    #[arg(long, value_name = "N", default_value_t = 8)]
    max_new_tokens: usize,
    /// Sampling temperature; 0 is greedy decoding.
    #[arg(long, value_name = "T", default_value_t = 0.0)]
    temperature: f64,
    /// Seed of the sampler.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Layers to capture: "all" or a list such as 0,4-7.
    #[arg(long, value_name = "all|LIST", default_value = "all")]
    layers: Selection,
    /// Query heads to capture: "all" or a list such as 0,4-7.
    #[arg(long, value_name = "all|LIST", default_value = "all")]
    heads: Selection,
    /// Number of generation steps to capture, from step 0 (the prefill's last
    /// query, which produces the first token).
    #[arg(long, value_name = "N", default_value_t = 1)]
    steps: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Weight and compute dtype: auto (f32 on CPU, the checkpoint's dtype on
    /// GPU), f32, f16 or bf16.
    #[arg(long, value_name = "DTYPE", default_value = "auto")]
    dtype: DTypeChoice,
    /// Device: cpu, cuda or cuda:N (CUDA needs a build with --features cuda).
    #[arg(long, value_name = "DEVICE", default_value = "cpu")]
    device: String,
}

#[derive(clap::Args)]
struct CompareGoldenArgs {
    /// Folder with golden.json, such as tests/golden/llama3.
    #[arg(value_name = "GOLDEN_DIR")]
    golden: PathBuf,
    /// Model folder [default: GOLDEN_DIR]. The test-model record needs the
    /// folder that `gaze-worker make-test-model` writes.
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Weight and compute dtype: f32, f16, bf16, or auto (f32 on CPU, the
    /// checkpoint's dtype on GPU).
    #[arg(long, value_name = "DTYPE", default_value = "f32")]
    dtype: DTypeChoice,
    /// Device: cpu, cuda or cuda:N (CUDA needs a build with --features cuda).
    #[arg(long, value_name = "DEVICE", default_value = "cpu")]
    device: String,
    /// Output format. Per prompt, the table shows whether the greedy tokens
    /// match the record, the steps compared (up to the first differing
    /// token) and the largest attention difference. For batch rows it also
    /// shows the difference between the row in the batch and alone. The
    /// exit status is 0 whatever the differences are.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Also write the comparison as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json_out: Option<PathBuf>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let result = match Cli::parse().command {
        Command::Probe(args) => run_probe(args),
        Command::Serve(args) => cli::serve::run(args),
        Command::CompareGolden(args) => run_compare_golden(args),
        Command::MakeTestModel { dir } => gaze_worker::testmodel::write_test_model(&dir)
            .with_context(|| format!("cannot write the test model to {}", dir.display())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", gaze_shared::error_report::error_report(&error));
            ExitCode::FAILURE
        }
    }
}

fn run_probe(args: ProbeArgs) -> anyhow::Result<()> {
    let device = parse_device(&args.device)?;
    let engine = Engine::load(&args.model, args.dtype, &device)
        .with_context(|| format!("cannot load the model in {}", args.model.display()))?;
    let options = ProbeOptions {
        prompt: args.prompt,
        raw: args.raw,
        system: args.system,
        assistant_prefix: args.assistant_prefix,
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        seed: args.seed,
        layers: args.layers,
        heads: args.heads,
        steps: args.steps,
    };
    let report = probe(&engine, &args.model, &options)?;
    match args.format {
        Format::Table => print!("{}", render_table(&report)),
        Format::Json => println!("{}", serde_json::to_string(&report)?),
    }
    Ok(())
}

fn run_compare_golden(args: CompareGoldenArgs) -> anyhow::Result<()> {
    let golden = GoldenRecord::read(&args.golden)?;
    let model = args.model.as_ref().unwrap_or(&args.golden);
    if !model.join("config.json").is_file() {
        anyhow::bail!(
            "{} has no config.json, so it holds no model; pass --model DIR with the checkpoint \
             the record was made from (for tests/golden/test-model, the folder that \
             `gaze-worker make-test-model DIR` writes)",
            model.display()
        );
    }
    let device = parse_device(&args.device)?;
    let engine = Engine::load(model, args.dtype, &device)
        .with_context(|| format!("cannot load the model in {}", model.display()))?;
    let comparison = compare_with_golden(&engine, &golden)?;
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_string(&comparison)?)
            .with_context(|| format!("cannot write --json-out {}", path.display()))?;
    }
    match args.format {
        Format::Table => print!("{}", golden::render_table(&comparison)),
        Format::Json => println!("{}", serde_json::to_string(&comparison)?),
    }
    Ok(())
}
