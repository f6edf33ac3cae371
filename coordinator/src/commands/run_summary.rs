//! The summary `gaze run` prints at the end: counts read back from the
//! committed `samples` table, the run's speed, and where the tables are.

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::array::{Array, BooleanArray, StringArray};
use gaze_shared::config::StudyConfig;
use gaze_shared::store::{Store, StudyId, committed_shard_keys};
use gaze_shared::tables::{Table, read_table};

/// Counts of what this run itself did.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunTotals {
    /// Shards this run committed (or finished from an earlier claim).
    pub shards_run: usize,
    /// Shards that were committed before this run started.
    pub shards_skipped: usize,
    /// Samples of the shards this run committed.
    pub samples_run: u64,
}

/// Prints the study's committed samples, attention samples and decisions
/// by label, with this run's shards, time and speed, to standard output.
pub async fn print_summary(
    store: &Store,
    study: &StudyId,
    config: &StudyConfig,
    planned: u64,
    elapsed: Duration,
    totals: &RunTotals,
    stopped: bool,
) -> anyhow::Result<()> {
    let batches = read_table(store, study, Table::Samples).await?;
    let mut samples = 0u64;
    let mut attention = 0u64;
    let mut decisions: BTreeMap<String, u64> = BTreeMap::new();
    for batch in &batches {
        samples += batch.num_rows() as u64;
        let decision = column::<StringArray>(batch, "decision")?;
        let collect = column::<BooleanArray>(batch, "collect_attention")?;
        for row in 0..batch.num_rows() {
            let label = if decision.is_null(row) {
                "(none)".to_string()
            } else {
                decision.value(row).to_string()
            };
            *decisions.entry(label).or_default() += 1;
            attention += u64::from(collect.value(row));
        }
    }
    let shards = committed_shard_keys(store, study).await?.len();
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        totals.samples_run as f64 / seconds
    } else {
        0.0
    };

    let location = study_location(store, study);
    println!();
    if stopped {
        println!("Stopped early; rerun the same command to go on.");
    }
    let models = config.models.len();
    let noun = if models == 1 { "model" } else { "models" };
    println!("Study {study} ({models} {noun})");
    println!("  samples            {samples} committed ({planned} planned per model in this run)");
    println!("  attention samples  {attention}");
    let by_label: Vec<String> = decisions
        .iter()
        .map(|(label, n)| format!("{label} {n}"))
        .collect();
    println!("  decisions          {}", by_label.join(", "));
    println!(
        "  shards             {shards} committed: {} this run, {} before",
        totals.shards_run, totals.shards_skipped
    );
    println!(
        "  elapsed            {seconds:.1} s, {rate:.2} samples/s ({} samples this run)",
        totals.samples_run
    );
    println!("  tables             {location}/<table>/*.parquet");
    println!();
    println!("Read them with DuckDB or pandas (only shards with a commit marker are complete):");
    println!(
        "  duckdb -c \"SELECT decision, count(*) FROM read_parquet('{location}/samples/*.parquet') GROUP BY 1\""
    );
    println!(
        "  python -c \"import pandas as pd; print(pd.read_parquet('{location}/samples').decision.value_counts())\""
    );
    println!(
        "  gaze export {} {study} --table samples --format csv",
        store.url
    );
    Ok(())
}

/// Returns where a study's tables are, as a path or URL a reader takes.
fn study_location(store: &Store, study: &StudyId) -> String {
    let root = store.url.trim_end_matches('/');
    match root.split_once("://") {
        Some(("file", path)) => format!("{path}/{study}"),
        _ => format!("{root}/{study}"),
    }
}

fn column<'a, T: 'static>(
    batch: &'a arrow::record_batch::RecordBatch,
    name: &str,
) -> anyhow::Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| anyhow::anyhow!("the samples table has no {name} column of the expected type; was it written by another gaze version?"))
}
