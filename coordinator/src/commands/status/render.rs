//! The table and JSON forms of a [`StatusReport`].

use std::fmt::Write;

use super::{DeadLetterStatus, Progress, StatusReport, WorkerStatus};
use crate::commands::table::{Align, render, render_aligned};

/// Renders the report as JSON, pretty-printed, ending in a newline.
pub fn render_json(report: &StatusReport) -> String {
    let mut json =
        serde_json::to_string_pretty(report).expect("a report of plain fields serializes");
    json.push('\n');
    json
}

/// Renders the report as tables for people: progress per model, then the
/// workers and the dead letters of each model, then advice on what to do.
pub fn render_table(report: &StatusReport) -> String {
    let mut out = String::new();
    writeln!(
        out,
        "Study {} (config fingerprint {})",
        report.study, report.fingerprint
    )
    .unwrap();
    out.push('\n');
    out.push_str(&progress_table(report));

    for model in &report.models {
        if !model.workers.is_empty() {
            writeln!(out, "\nWorkers of {}:", model.model).unwrap();
            out.push_str(&workers_table(&model.workers));
        }
        if model.progress.shards.dead_lettered > 0 {
            let listed = model.dead_letters.len();
            let count = model.progress.shards.dead_lettered;
            if listed < count {
                writeln!(
                    out,
                    "\nDead letters of {} ({count}, oldest {listed} shown):",
                    model.model
                )
                .unwrap();
            } else {
                writeln!(out, "\nDead letters of {} ({count}):", model.model).unwrap();
            }
            out.push_str(&dead_letters_table(&model.dead_letters));
        }
    }

    let advice = advice(report);
    if !advice.is_empty() {
        out.push('\n');
        for line in advice {
            writeln!(out, "{line}").unwrap();
        }
    }
    out
}

fn progress_table(report: &StatusReport) -> String {
    let header = [
        "MODEL",
        "SHARDS",
        "COMMITTED",
        "QUEUED",
        "IN FLIGHT",
        "DEAD",
        "MISSING",
        "SAMPLES DONE",
        "RATE",
        "ETA",
    ];
    let mut rows = vec![
        header
            .iter()
            .map(|cell| cell.to_string())
            .collect::<Vec<_>>(),
    ];
    for model in &report.models {
        rows.push(progress_row(&model.model, &model.progress));
    }
    if report.models.len() > 1 {
        rows.push(progress_row("total", &report.total));
    }
    render(&rows)
}

fn progress_row(name: &str, progress: &Progress) -> Vec<String> {
    let shards = &progress.shards;
    let samples = &progress.samples;
    let done = if samples.planned == 0 {
        format!("{}/{}", samples.committed, samples.planned)
    } else {
        let percent = samples.committed as f64 * 100.0 / samples.planned as f64;
        format!("{}/{} ({percent:.1}%)", samples.committed, samples.planned)
    };
    vec![
        name.to_owned(),
        shards.planned.to_string(),
        shards.committed.to_string(),
        shards.queued.to_string(),
        shards.in_flight.to_string(),
        shards.dead_lettered.to_string(),
        shards.missing.to_string(),
        done,
        progress
            .samples_per_second
            .map_or("-".to_owned(), |rate| format!("{rate:.2}/s")),
        progress.eta_seconds.map_or("-".to_owned(), format_duration),
    ]
}

fn workers_table(workers: &[WorkerStatus]) -> String {
    let mut rows = vec![vec![
        "WORKER".to_owned(),
        "SHARD".to_owned(),
        "HEARTBEAT AGE".to_owned(),
        "LAST SEEN".to_owned(),
    ]];
    for worker in workers {
        let last_seen = format_duration(worker.last_seen_seconds);
        if worker.shards.is_empty() {
            rows.push(vec![
                worker.worker.clone(),
                "-".into(),
                "-".into(),
                last_seen,
            ]);
            continue;
        }
        for lease in &worker.shards {
            let mut age = format_duration(lease.heartbeat_age_seconds);
            if lease.lease_expired {
                age.push_str(" (expired)");
            }
            let shard = lease.shard_id.map_or("?".to_owned(), |id| id.to_string());
            rows.push(vec![worker.worker.clone(), shard, age, last_seen.clone()]);
        }
    }
    render_aligned(
        &rows,
        &[Align::Left, Align::Right, Align::Right, Align::Right],
    )
}

fn dead_letters_table(dead_letters: &[DeadLetterStatus]) -> String {
    let mut rows = vec![vec![
        "SHARD".to_owned(),
        "DELIVERIES".to_owned(),
        "WORKER".to_owned(),
        "REASON".to_owned(),
    ]];
    for dead in dead_letters {
        rows.push(vec![
            dead.shard_id.map_or("?".to_owned(), |id| id.to_string()),
            dead.deliveries.to_string(),
            dead.worker.clone().unwrap_or_else(|| "(reaper)".to_owned()),
            dead.reason.clone(),
        ]);
    }
    render_aligned(
        &rows,
        &[Align::Right, Align::Right, Align::Left, Align::Left],
    )
}

/// Lines telling the reader how to fix what the report shows.
fn advice(report: &StatusReport) -> Vec<String> {
    let mut lines = Vec::new();
    for model in &report.models {
        let missing = model.progress.shards.missing;
        if missing > 0 {
            lines.push(format!(
                "{missing} shard(s) of {} are neither committed, queued, in flight nor \
                 dead-lettered: run `gaze submit` to queue them (or, for a study run on \
                 one machine, `gaze run` without --limit).",
                model.model
            ));
        }
    }
    if report.total.shards.dead_lettered > 0 {
        lines.push(
            "Dead-lettered shards are not retried: fix the cause in the reason, then run \
             `gaze submit` to queue them again."
                .to_owned(),
        );
    }
    lines
}

/// Formats seconds as `42s`, `12m 5s`, `3h 18m` or `2d 4h`, rounded down.
fn format_duration(seconds: f64) -> String {
    let total = seconds.max(0.0) as u64;
    let (days, hours, minutes, secs) = (
        total / 86_400,
        total / 3600 % 24,
        total / 60 % 60,
        total % 60,
    );
    if total < 60 {
        format!("{secs}s")
    } else if total < 3600 {
        format!("{minutes}m {secs}s")
    } else if total < 86_400 {
        format!("{}h {minutes}m", total / 3600)
    } else {
        format!("{days}d {hours}h")
    }
}
