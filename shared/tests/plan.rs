//! The sample plan: determinism, cell and marginal balance, prefixes,
//! shards, spans, name agreement and the design errors.

mod plan_support;

use std::collections::BTreeMap;

use gaze_shared::layout::Region;
use gaze_shared::plan::{Plan, Sample, factorial_digits};
use plan_support::{config_with, demo_config, demo_plan, demo_vignettes, factorial_vignettes};

/// Returns samples per cell key over every cell of the plan, zeros included.
fn cell_counts<'a>(plan: &'a Plan, samples: &[Sample]) -> BTreeMap<&'a str, usize> {
    let mut counts: BTreeMap<&str, usize> =
        plan.cells.iter().map(|c| (c.key.as_str(), 0)).collect();
    for sample in samples {
        *counts
            .get_mut(sample.cell.as_str())
            .expect("sample cell is a plan cell") += 1;
    }
    counts
}

fn spread<'a>(counts: impl Iterator<Item = &'a usize> + Clone) -> usize {
    counts.clone().max().unwrap() - counts.min().unwrap()
}

/// Returns, per topic and stratified field, samples per value (values the
/// topic allows start at zero), over `samples`.
fn topic_marginals(
    plan_samples: &[Sample],
    fields: &[&str],
    vignettes: &gaze_shared::vignettes::VignetteSet,
) -> Vec<(String, String, BTreeMap<String, usize>)> {
    let mut result = Vec::new();
    for topic in &vignettes.topics {
        for field in fields {
            let mut counts: BTreeMap<String, usize> = topic.pools[*field]
                .values
                .iter()
                .map(|v| (v.value.clone(), 0))
                .collect();
            for sample in plan_samples.iter().filter(|s| s.topic == topic.id) {
                *counts.get_mut(&sample.fields[*field]).unwrap() += 1;
            }
            result.push((topic.id.clone(), field.to_string(), counts));
        }
    }
    result
}

#[test]
fn same_inputs_give_equal_plans() {
    assert_eq!(demo_plan(), demo_plan());
}

#[test]
fn different_seed_gives_different_plan() {
    let mut config = demo_config();
    let vignettes = demo_vignettes();
    let first = Plan::build(&config, &vignettes).unwrap();
    config.design.seed += 1;

    let second = Plan::build(&config, &vignettes).unwrap();

    assert_ne!(first, second);
    let same_cell = first
        .samples
        .iter()
        .zip(&second.samples)
        .filter(|(a, b)| a.cell == b.cell)
        .count();
    assert!(
        same_cell < first.samples.len() / 10,
        "{same_cell} samples keep their cell"
    );
    let same_seed = first
        .samples
        .iter()
        .zip(&second.samples)
        .filter(|(a, b)| a.seed == b.seed)
        .count();
    assert_eq!(same_seed, 0);
}

#[test]
fn demo_plan_has_requested_samples_and_shards() {
    let plan = demo_plan();

    assert_eq!(plan.samples.len(), 25_000);
    assert_eq!(plan.shards.len(), 250);
    for (index, sample) in plan.samples.iter().enumerate() {
        assert_eq!(sample.sample_id, index as u64);
        assert_eq!(sample.shard_id, (index / 100) as u32);
        assert!(sample.seed < 1 << 63);
    }
    for (index, shard) in plan.shards.iter().enumerate() {
        assert_eq!(shard.shard_id, index as u32);
        assert_eq!(plan.shard_samples(shard).len(), 100);
    }
}

#[test]
fn demo_cells_differ_by_at_most_one() {
    let plan = demo_plan();
    let counts = cell_counts(&plan, &plan.samples);

    // 7 topics allow 14 countries and 1 topic 6; 2 asylum-style topics allow 8: see the demo vignettes.
    assert_eq!(counts.len(), 5 * 2 * 7 * 14 + 2 * 2 * 7 * 8 + 2 * 7 * 6);
    assert!(
        spread(counts.values()) <= 1,
        "cell counts spread {}",
        spread(counts.values())
    );
}

#[test]
fn awkward_totals_keep_cells_within_one() {
    let vignettes = demo_vignettes();
    for total in [1, 97, 1009, 1287, 1289, 4999, 25_013] {
        let mut config = demo_config();
        config.design.total_samples = Some(total);

        let plan = Plan::build(&config, &vignettes).unwrap();
        let counts = cell_counts(&plan, &plan.samples);

        assert_eq!(plan.samples.len() as u64, total);
        assert!(
            spread(counts.values()) <= 1,
            "total {total}: spread {}",
            spread(counts.values())
        );
    }
}

#[test]
fn fewer_samples_than_cells() {
    let mut config = demo_config();
    config.design.total_samples = Some(97);

    let plan = Plan::build(&config, &demo_vignettes()).unwrap();
    let counts = cell_counts(&plan, &plan.samples);

    assert_eq!(counts.values().filter(|&&n| n == 1).count(), 97);
    assert_eq!(
        counts.values().filter(|&&n| n == 0).count(),
        counts.len() - 97
    );
}

#[test]
fn every_prefix_keeps_cells_within_one() {
    let plan = demo_plan();
    for limit in [1, 100, 1287, 1288, 1289, 3000, 12_345] {
        let counts = cell_counts(&plan, &plan.samples[..limit]);

        assert!(
            spread(counts.values()) <= 1,
            "prefix {limit}: spread {}",
            spread(counts.values())
        );
    }
}

#[test]
fn demo_prefixes_keep_topic_marginals_within_one() {
    let plan = demo_plan();
    let vignettes = demo_vignettes();
    for limit in [10, 100, 500, 1000, 2000, 25_000] {
        let samples = &plan.samples[..limit];
        for (topic, field, counts) in
            topic_marginals(samples, &["gender", "religion", "country"], &vignettes)
        {
            assert!(
                spread(counts.values()) <= 1,
                "prefix {limit}, topic {topic}, field {field}: {counts:?}"
            );
        }
    }
}

#[test]
fn topics_take_turns_while_all_have_cells() {
    let plan = demo_plan();
    // The smallest topic (eu_settlement) has 2 x 7 x 6 = 84 cells, so the first
    // 8 x 84 samples come from rounds in which every topic still has a cell.
    for limit in [1, 8, 100, 500, 8 * 84] {
        let mut per_topic: BTreeMap<&str, usize> = BTreeMap::new();
        for sample in &plan.samples[..limit] {
            *per_topic.entry(&sample.topic).or_default() += 1;
        }
        let counts: Vec<usize> = per_topic
            .values()
            .copied()
            .chain(std::iter::repeat_n(0, 8 - per_topic.len()))
            .collect();

        assert!(
            spread(counts.iter()) <= 1,
            "prefix {limit}: topics {per_topic:?}"
        );
    }
}

#[test]
fn marginals_balance_when_cells_exceed_total() {
    // 3 topics x 2 x 3 x 4 = 72 cells.
    let vignettes = factorial_vignettes(3);
    for total in 1..72 {
        let config = config_with(&format!(
            "total_samples = {total}\nstratify = [\"gender\", \"religion\", \"country\"]\nseed = 3"
        ));

        let plan = Plan::build(&config, &vignettes).unwrap();

        for (topic, field, counts) in topic_marginals(
            &plan.samples,
            &["gender", "religion", "country"],
            &vignettes,
        ) {
            let present = plan.samples.iter().any(|s| s.topic == topic);
            assert!(
                !present || spread(counts.values()) <= 1,
                "total {total}, topic {topic}, field {field}: {counts:?}"
            );
        }
    }
}

#[test]
fn single_topic_marginals_balance_for_every_total() {
    // One topic: 2 x 3 x 4 = 24 cells; overall marginals are the topic's.
    let vignettes = factorial_vignettes(1);
    for total in 1..=24 {
        let config = config_with(&format!(
            "total_samples = {total}\nstratify = [\"gender\", \"religion\", \"country\"]\nseed = 11"
        ));

        let plan = Plan::build(&config, &vignettes).unwrap();

        for field in ["gender", "religion", "country"] {
            let mut counts: BTreeMap<&str, usize> = vignettes.topics[0].pools[field]
                .values
                .iter()
                .map(|v| (v.value.as_str(), 0))
                .collect();
            for sample in &plan.samples {
                *counts.get_mut(sample.fields[field].as_str()).unwrap() += 1;
            }
            assert!(
                spread(counts.values()) <= 1,
                "total {total}, field {field}: {counts:?}"
            );
        }
    }
}

#[test]
fn factorial_digits_visit_every_cell_once() {
    for sizes in [
        vec![2, 3, 4],
        vec![2, 7, 14],
        vec![4, 6],
        vec![5],
        vec![3, 3, 3],
    ] {
        let count: usize = sizes.iter().product();
        let mut seen = std::collections::BTreeSet::new();
        for position in 0..count {
            let digits = factorial_digits(position, &sizes);
            assert!(digits.iter().zip(&sizes).all(|(d, n)| d < n));
            assert!(
                seen.insert(digits),
                "sizes {sizes:?}: position {position} repeats a cell"
            );
        }
    }
}

#[test]
fn samples_per_cell_gives_full_factorial() {
    let vignettes = factorial_vignettes(2);
    let config = config_with(
        "samples_per_cell = 3\nstratify = [\"gender\", \"religion\", \"country\"]\nseed = 1",
    );

    let plan = Plan::build(&config, &vignettes).unwrap();

    assert_eq!(plan.samples.len(), 2 * 24 * 3);
    assert!(cell_counts(&plan, &plan.samples).values().all(|&n| n == 3));
}

#[test]
fn conflicting_total_and_samples_per_cell_is_rejected() {
    let vignettes = factorial_vignettes(2);
    let config = config_with(
        "total_samples = 100\nsamples_per_cell = 3\nstratify = [\"gender\", \"religion\", \"country\"]\nseed = 1",
    );

    let message = Plan::build(&config, &vignettes).unwrap_err().to_string();

    for part in [
        "design.total_samples = 100",
        "samples_per_cell = 3",
        "48 cells",
        "144",
    ] {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }
}

#[test]
fn stratify_field_without_pool_names_field_and_topic() {
    let vignettes = factorial_vignettes(2);
    let config = config_with("total_samples = 10\nstratify = [\"gender\", \"caste\"]\nseed = 1");

    let message = Plan::build(&config, &vignettes).unwrap_err().to_string();

    for part in [
        "design.stratify",
        "\"caste\"",
        "topic \"t0\"",
        "/studies/test/vignettes.json",
    ] {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }
}

#[test]
fn stratify_field_with_agree_rule_is_rejected() {
    let vignettes = demo_vignettes();
    let mut config = demo_config();
    config.design.stratify = vec!["name".into()];

    let message = Plan::build(&config, &vignettes).unwrap_err().to_string();

    assert!(message.contains("\"name\""), "{message}");
    assert!(message.contains("agree rule"), "{message}");
}

#[test]
fn field_spans_match_values_in_characters() {
    let plan = demo_plan();
    let mut non_ascii_checked = 0;
    for sample in &plan.samples {
        let chars: Vec<char> = sample.user_message.chars().collect();
        let template_fields = demo_vignettes_field_count(sample);
        assert_eq!(
            sample.layout.fields.len(),
            template_fields,
            "sample {}",
            sample.sample_id
        );
        for field in &sample.layout.fields {
            let text: String = chars[field.span.start..field.span.end].iter().collect();
            assert_eq!(
                text, sample.fields[&field.field],
                "sample {} field {}",
                sample.sample_id, field.field
            );
            if !text.is_ascii() {
                non_ascii_checked += 1;
            }
        }
    }
    assert!(
        non_ascii_checked > 1000,
        "only {non_ascii_checked} non-ASCII values checked"
    );
}

/// Counts the placeholder occurrences of the sample's topic template, from
/// the template text itself.
fn demo_vignettes_field_count(sample: &Sample) -> usize {
    thread_local! {
        static TEMPLATES: BTreeMap<String, usize> = {
            let json: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(plan_support::demo_config().study.vignettes).unwrap(),
            )
            .unwrap();
            json["topics"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| (t["id"].as_str().unwrap().to_string(), t["template"].as_str().unwrap().matches('{').count()))
                .collect()
        };
    }
    TEMPLATES.with(|t| t[&sample.topic])
}

#[test]
fn regions_split_user_message_around_vignette() {
    let plan = demo_plan();
    let config = demo_config();
    let (prefix, suffix) = config.prompt.user_parts();
    for sample in plan.samples.iter().take(500) {
        let chars: Vec<char> = sample.user_message.chars().collect();
        let text = |start: usize, end: usize| chars[start..end].iter().collect::<String>();
        let regions = &sample.layout.regions;

        assert_eq!(regions.len(), 3);
        assert_eq!(regions[0].0, Region::InstructionPrefix);
        assert_eq!(text(regions[0].1.start, regions[0].1.end), prefix);
        assert_eq!(regions[1].0, Region::Vignette);
        assert_eq!(regions[2].0, Region::InstructionSuffix);
        assert_eq!(text(regions[2].1.start, regions[2].1.end), suffix);
        assert_eq!(regions[2].1.end, chars.len());
        for field in &sample.layout.fields {
            assert!(
                field.span.start >= regions[1].1.start,
                "sample {}",
                sample.sample_id
            );
            assert!(
                field.span.end <= regions[1].1.end,
                "sample {}",
                sample.sample_id
            );
        }
    }
}

#[test]
fn names_agree_with_gender_and_country() {
    let plan = demo_plan();
    let vignettes = demo_vignettes();
    for sample in &plan.samples {
        let topic = vignettes.topic(&sample.topic).unwrap();
        let name = topic.pools["name"]
            .values
            .iter()
            .find(|v| v.value == sample.fields["name"])
            .unwrap();
        let country = topic.pools["country"]
            .values
            .iter()
            .find(|v| v.value == sample.fields["country"])
            .unwrap();

        assert_eq!(
            name.attributes["gender"], sample.fields["gender"],
            "sample {}",
            sample.sample_id
        );
        let origin = &name.attributes["origin"];
        assert!(
            *origin == country.value || *origin == country.attributes["region"],
            "sample {}: {} from {origin} drawn for {}",
            sample.sample_id,
            name.value,
            country.value
        );
    }
}

#[test]
fn topic_restrictions_hold_in_samples() {
    let plan = demo_plan();
    let eu = [
        "Poland",
        "Romania",
        "Spain",
        "Netherlands",
        "Switzerland",
        "Norway",
    ];
    for sample in plan.samples.iter().filter(|s| s.topic == "eu_settlement") {
        assert!(
            eu.contains(&sample.fields["country"].as_str()),
            "sample {}",
            sample.sample_id
        );
    }
    for sample in plan.samples.iter().filter(|s| s.topic == "student") {
        assert!(
            ["19", "24", "29"].contains(&sample.fields["age"].as_str()),
            "sample {}",
            sample.sample_id
        );
    }
}

#[test]
fn limit_keeps_prefix_and_cuts_last_shard() {
    let full = demo_plan();
    let mut limited = full.clone();

    limited.limit(250);

    assert_eq!(limited.samples, full.samples[..250]);
    assert_eq!(limited.shards.len(), 3);
    assert_eq!(limited.shards[2].samples, 200..250);
}

#[test]
fn larger_total_extends_plan_without_changing_draws() {
    let vignettes = demo_vignettes();
    let mut config = demo_config();
    config.design.total_samples = Some(3000);
    let small = Plan::build(&config, &vignettes).unwrap();

    let large = demo_plan();

    for (a, b) in small.samples.iter().zip(&large.samples) {
        assert_eq!(
            (a.sample_id, &a.cell, &a.fields, a.seed),
            (b.sample_id, &b.cell, &b.fields, b.seed)
        );
    }
}
