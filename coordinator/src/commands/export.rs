//! `gaze export`: writes one table of a study, from its committed shards,
//! as CSV or JSON lines. It only reads the store.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use gaze_shared::store::{Store, StoreOptions, StudyId};
use gaze_shared::tables::{ExportFormat, ExportSummary, Table, export_table};

/// Arguments of `gaze export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Store URL: a folder, file:///path or s3://bucket/prefix. S3 settings
    /// come from the AWS_* variables (AWS_ENDPOINT_URL, AWS_REGION, ...).
    pub store: String,

    /// Study id, as named in the study config.
    pub study: String,

    /// Table to export: samples, tokens, attention_topk, attention_fields
    /// or attention_rows.
    #[arg(long)]
    pub table: Table,

    /// Output format: csv (a header row, then one row per record; no list
    /// columns) or jsonl (one JSON object per line, nulls left out).
    #[arg(long, default_value = "csv")]
    pub format: ExportFormat,

    /// File to write [default: standard output]. The file appears only when
    /// the export succeeds.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs `gaze export`. Only shards with a commit marker are exported.
pub async fn run(args: ExportArgs) -> anyhow::Result<()> {
    let options = StoreOptions {
        create: false,
        ..StoreOptions::default()
    };
    let store = Store::open_with(&args.store, &options)?;
    let study = StudyId::new(&args.study)?;

    let summary = match &args.out {
        Some(path) => export_to_file(&store, &study, &args, path).await?,
        None => match export_to_stdout(&store, &study, &args).await {
            Ok(summary) => summary,
            // A reader such as `head` that closes the pipe early wants no more rows.
            Err(e) if is_broken_pipe(&e) => return Ok(()),
            Err(e) => return Err(e),
        },
    };

    tracing::info!(
        study = %study, table = %args.table, format = %args.format,
        shards = summary.shards, rows = summary.rows, "exported table"
    );
    Ok(())
}

async fn export_to_stdout(
    store: &Store,
    study: &StudyId,
    args: &ExportArgs,
) -> anyhow::Result<ExportSummary> {
    let mut out = BufWriter::new(io::stdout().lock());
    let summary = export_table(store, study, args.table, args.format, &mut out).await?;
    out.flush().context("writing to standard output failed")?;
    Ok(summary)
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Writes to `<path>.partial` and renames it into place, so that a failed
/// export never leaves a file that looks complete.
async fn export_to_file(
    store: &Store,
    study: &StudyId,
    args: &ExportArgs,
    path: &Path,
) -> anyhow::Result<ExportSummary> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);

    let file = File::create(&partial).with_context(|| {
        format!(
            "cannot write --out {}; check that its folder exists and that you can write to it",
            path.display()
        )
    })?;
    let written = write_export(store, study, args, file).await;
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    let summary = written.with_context(|| format!("export to {} failed", path.display()))?;

    std::fs::rename(&partial, path)
        .with_context(|| format!("cannot move {} to {}", partial.display(), path.display()))?;
    Ok(summary)
}

async fn write_export(
    store: &Store,
    study: &StudyId,
    args: &ExportArgs,
    file: File,
) -> anyhow::Result<ExportSummary> {
    let mut out = BufWriter::new(file);
    let summary = export_table(store, study, args.table, args.format, &mut out).await?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(summary)
}
