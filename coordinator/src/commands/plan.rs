//! `gaze plan`: builds a study's sample plan, prints its summary and
//! fingerprint, and writes it to Parquet on request.
//!
//! The model folders need not exist yet: a missing folder is logged as a
//! warning and its part of the fingerprint reads "missing", so the printed
//! fingerprint is final only once every model is in place.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use gaze_shared::config::StudyConfig;
use gaze_shared::plan::{
    Fingerprint, ModelStatus, Plan, PlanSummary, model_status, plan_record_batch,
};
use gaze_shared::vignettes::{Category, VignetteSet};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Serialize;
use tracing::{info, warn};

use crate::args::{OverrideArgs, load_config};

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The study config (TOML).
    #[arg(value_name = "CONFIG")]
    pub config: PathBuf,

    /// Write the plan to FILE as Parquet (zstd), one row per sample.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Print the summary and fingerprint as JSON instead of text.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub overrides: OverrideArgs,
}

/// The `--json` output.
#[derive(Serialize)]
struct PlanReport<'a> {
    study: &'a str,
    summary: &'a PlanSummary,
    fingerprint: &'a Fingerprint,
    models: Vec<ModelReport<'a>>,
    out: Option<&'a Path>,
}

#[derive(Serialize)]
struct ModelReport<'a> {
    id: &'a str,
    path: &'a Path,
    dtype: &'static str,
    identity: &'a ModelStatus,
}

pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    let overrides = args.overrides.overrides();
    let config = load_config(&args.config, &overrides)?;
    let vignettes = VignetteSet::load(&config.study.vignettes)?;

    let started = Instant::now();
    let mut plan = Plan::build(&config, &vignettes)?;
    info!(
        study = %config.study.name,
        samples = plan.samples.len(),
        cells = plan.cells.len(),
        shards = plan.shards.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "built plan"
    );
    let empty_cells = plan.cells.iter().filter(|c| c.samples == 0).count();
    if empty_cells > 0 {
        warn!(
            study = %config.study.name,
            empty_cells,
            cells = plan.cells.len(),
            "some cells get no sample; raise design.total_samples to at least the number of cells to cover them all"
        );
    }
    if let Some(limit) = overrides.limit {
        plan.limit(limit);
    }
    let statuses = model_statuses(&config)?;
    let pairs: Vec<_> = config.models.iter().zip(&statuses).collect();
    let fingerprint = Fingerprint::compute(&config, &vignettes, &pairs);
    let summary = PlanSummary::of(&plan, &vignettes);

    if let Some(out) = &args.out {
        write_parquet(&plan, out)?;
        info!(path = %out.display(), rows = plan.samples.len(), "wrote plan");
    }

    let mut stdout = std::io::stdout().lock();
    if args.json {
        let report = PlanReport {
            study: &config.study.name,
            summary: &summary,
            fingerprint: &fingerprint,
            models: config
                .models
                .iter()
                .zip(&statuses)
                .map(|(m, s)| ModelReport {
                    id: &m.id,
                    path: &m.path,
                    dtype: m.dtype().as_str(),
                    identity: s,
                })
                .collect(),
            out: args.out.as_deref(),
        };
        serde_json::to_writer_pretty(&mut stdout, &report)?;
        writeln!(stdout)?;
    } else {
        print_summary(
            &mut stdout,
            &config,
            &summary,
            &fingerprint,
            &statuses,
            args.out.as_deref(),
        )?;
    }
    Ok(())
}

fn model_statuses(config: &StudyConfig) -> anyhow::Result<Vec<ModelStatus>> {
    config
        .models
        .iter()
        .map(|model| {
            let status = model_status(&model.path).with_context(|| format!("identifying model {:?}", model.id))?;
            if let ModelStatus::Missing { path } = &status {
                warn!(
                    model = %model.id,
                    path = %path.display(),
                    "model folder not found; the fingerprint marks this model as missing until it exists"
                );
            }
            Ok(status)
        })
        .collect()
}

/// Writes the plan table to `path` through a temporary file in the same
/// folder, so an existing file is replaced whole or not at all.
fn write_parquet(plan: &Plan, path: &Path) -> anyhow::Result<()> {
    let batch = plan_record_batch(plan).context("building the plan table")?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();

    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".partial");
    let temporary = PathBuf::from(temporary);
    let file =
        File::create(&temporary).with_context(|| format!("creating {}", temporary.display()))?;
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(properties))?;
    writer.write(&batch)?;
    writer
        .close()
        .with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("moving {} to {}", temporary.display(), path.display()))?;
    Ok(())
}

/// Values longer than this many characters are cut in the text summary.
const MAX_VALUE_CHARS: usize = 40;

fn shorten(value: &str) -> String {
    if value.chars().count() <= MAX_VALUE_CHARS {
        return value.to_string();
    }
    let truncated: String = value.chars().take(MAX_VALUE_CHARS - 1).collect();
    format!("{truncated}…")
}

/// Returns the width of a text column: its longest entry, in characters.
fn column_width<T>(rows: &[T], width: impl Fn(&T) -> usize) -> usize {
    rows.iter().map(width).max().unwrap_or(0)
}

fn print_summary(
    out: &mut impl Write,
    config: &StudyConfig,
    summary: &PlanSummary,
    fingerprint: &Fingerprint,
    statuses: &[ModelStatus],
    written: Option<&Path>,
) -> std::io::Result<()> {
    let strata = std::iter::once("topic")
        .chain(config.design.stratify.iter().map(String::as_str))
        .collect::<Vec<_>>();
    writeln!(
        out,
        "Study {}: {} samples, {} with attention",
        config.study.name, summary.samples, summary.attention_samples
    )?;
    writeln!(
        out,
        "Shards: {} of up to {} samples",
        summary.shards, config.output.samples_per_shard
    )?;
    writeln!(
        out,
        "Cells: {} ({}), {} with samples, {} to {} samples per cell",
        summary.cells,
        strata.join(" x "),
        summary.cells_with_samples,
        summary.min_cell_samples,
        summary.max_cell_samples
    )?;

    writeln!(out, "\nSamples per topic:")?;
    let id_width = column_width(&summary.topics, |t| t.topic.chars().count());
    let route_width = column_width(&summary.topics, |t| t.route.chars().count());
    for topic in &summary.topics {
        writeln!(
            out,
            "  {:id_width$}  {:route_width$}  {:>7} samples  {:>6} with attention",
            topic.topic, topic.route, topic.samples, topic.attention_samples
        )?;
    }

    for category in [Category::Demographic, Category::CaseFact] {
        writeln!(
            out,
            "\nSamples per value of {} fields:",
            category.as_str().replace('_', "-")
        )?;
        for (name, counts) in summary
            .fields
            .iter()
            .filter(|(_, counts)| counts.category == category)
        {
            let values: Vec<String> = counts
                .values
                .iter()
                .map(|(value, n)| format!("{}: {n}", shorten(value)))
                .collect();
            writeln!(out, "  {name}: {}", values.join(", "))?;
        }
    }

    writeln!(out, "\nFingerprint: {}", fingerprint.digest)?;
    let name_width = column_width(&fingerprint.parts, |p| p.name.chars().count());
    for part in &fingerprint.parts {
        writeln!(
            out,
            "  {:name_width$}  {}",
            part.name,
            &part.digest[..part.digest.len().min(16)]
        )?;
    }
    for (model, status) in config.models.iter().zip(statuses) {
        match status {
            ModelStatus::Present(identity) => writeln!(
                out,
                "  model {} ({}, {}): {} files hashed",
                model.id,
                model.path.display(),
                model.dtype().as_str(),
                identity.files.len()
            )?,
            ModelStatus::Missing { path } => writeln!(
                out,
                "  model {}: folder {} not found; the fingerprint is provisional until it exists",
                model.id,
                path.display()
            )?,
        }
    }

    if let Some(path) = written {
        writeln!(
            out,
            "\nPlan written to {} ({} rows)",
            path.display(),
            summary.samples
        )?;
    }
    Ok(())
}
