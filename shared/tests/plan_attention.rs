//! Attention samples: the rate applies within every cell and over the plan,
//! and prefixes contain about the same share.

mod plan_support;

use std::collections::BTreeMap;

use gaze_shared::plan::Plan;
use plan_support::{demo_config, demo_plan, demo_vignettes};

fn attention_per_cell(plan: &Plan) -> BTreeMap<&str, (u64, u64)> {
    let mut counts: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for sample in &plan.samples {
        let entry = counts.entry(&sample.cell).or_default();
        entry.0 += 1;
        entry.1 += u64::from(sample.collect_attention);
    }
    counts
}

#[test]
fn each_cell_gets_floor_or_ceil_of_rate() {
    let vignettes = demo_vignettes();
    for rate in [0.1, 0.25, 0.5, 0.07, 1.0, 0.0] {
        let mut config = demo_config();
        config.attention.sample_rate = rate;

        let plan = Plan::build(&config, &vignettes).unwrap();

        for (cell, (n, attention)) in attention_per_cell(&plan) {
            let exact = n as f64 * rate;
            assert!(
                attention == exact.floor() as u64 || attention == exact.ceil() as u64,
                "rate {rate}, cell {cell}: {attention} of {n}"
            );
        }
        let total = plan.samples.iter().filter(|s| s.collect_attention).count() as f64;
        assert_eq!(total, (25_000.0 * rate).round(), "rate {rate}");
    }
}

#[test]
fn cell_counts_report_attention_samples() {
    let plan = demo_plan();
    let counted = attention_per_cell(&plan);

    for cell in &plan.cells {
        assert_eq!(
            counted[cell.key.as_str()],
            (cell.samples, cell.attention_samples),
            "cell {}",
            cell.key
        );
    }
}

#[test]
fn prefixes_hold_about_the_rate() {
    let plan = demo_plan();
    for limit in [200, 1000, 5000] {
        let attention = plan.samples[..limit]
            .iter()
            .filter(|s| s.collect_attention)
            .count();
        let expected = limit / 10;

        assert!(
            attention.abs_diff(expected) <= expected / 5 + 2,
            "prefix {limit}: {attention} attention samples"
        );
    }
}

#[test]
fn topics_get_attention_in_proportion() {
    let plan = demo_plan();
    let mut per_topic: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for sample in &plan.samples {
        let entry = per_topic.entry(&sample.topic).or_default();
        entry.0 += 1;
        entry.1 += usize::from(sample.collect_attention);
    }

    for (topic, (n, attention)) in per_topic {
        let share = attention as f64 / n as f64;
        assert!(
            (share - 0.1).abs() < 0.005,
            "topic {topic}: {attention} of {n}"
        );
    }
}
