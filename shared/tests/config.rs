//! The study config: strict parsing, range checks, path resolution and
//! attention selections.

mod plan_support;

use std::path::PathBuf;

use gaze_shared::config::{Device, DeviceList, Dtype, IndexSelection, QueueLocation};
use plan_support::{CONFIG_PATH, MINIMAL_CONFIG, parse_config};

/// Returns the error of `MINIMAL_CONFIG` with `from` replaced by `to`.
fn error_with(from: &str, to: &str) -> String {
    assert!(
        MINIMAL_CONFIG.contains(from),
        "test edits a line that is not in the config: {from}"
    );
    parse_config(&MINIMAL_CONFIG.replace(from, to)).expect_err("edited config must be invalid")
}

fn assert_contains(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "message {message:?} lacks {part:?}");
    }
}

#[test]
fn minimal_config_parses_with_defaults() {
    let config = parse_config(MINIMAL_CONFIG).unwrap();

    assert_eq!(config.generation.batch_size, 8);
    assert_eq!(config.generation.temperature, 1.0);
    assert_eq!(config.attention.sample_rate, 0.0);
    assert_eq!(config.output.samples_per_shard, 100);
    assert_eq!(config.queue.location().unwrap(), QueueLocation::Embedded);
    assert_eq!(config.models[0].device, DeviceList(vec![Device::Cpu]));
}

#[test]
fn relative_paths_resolve_against_config_folder() {
    let config = parse_config(MINIMAL_CONFIG).unwrap();

    assert_eq!(
        config.study.vignettes,
        PathBuf::from("/studies/test/vignettes.json")
    );
    assert_eq!(config.models[0].path, PathBuf::from("/studies/test/model"));
    assert_eq!(config.store_url(), "/studies/test/out");
}

#[test]
fn parent_folders_fold_in_resolved_paths() {
    let config =
        parse_config(&MINIMAL_CONFIG.replace("path = \"model\"", "path = \"../models/tiny\""))
            .unwrap();

    assert_eq!(config.models[0].path, PathBuf::from("/studies/models/tiny"));
}

#[test]
fn unknown_key_names_key_and_file() {
    let message = error_with("seed = 7", "seed = 7\nsed = 8");

    assert_contains(&message, &["sed", CONFIG_PATH, "unknown field"]);
}

#[test]
fn misspelt_key_in_generation_names_it() {
    let text = format!("{MINIMAL_CONFIG}\n[generation]\ntempreature = 0.7\n");
    let message = parse_config(&text).unwrap_err();

    assert_contains(&message, &["tempreature", CONFIG_PATH, "temperature"]);
}

#[test]
fn unknown_top_level_table_is_rejected() {
    let text = format!("{MINIMAL_CONFIG}\n[sampling]\nseed = 1\n");
    let message = parse_config(&text).unwrap_err();

    assert_contains(&message, &["sampling", CONFIG_PATH]);
}

#[test]
fn study_name_with_space_names_value_and_fix() {
    let message = error_with("name = \"test-study\"", "name = \"uk immigration\"");

    assert_contains(
        &message,
        &[
            CONFIG_PATH,
            "study.name",
            "\"uk immigration\"",
            "\"uk-immigration\"",
        ],
    );
}

#[test]
fn study_name_longer_than_store_ids_is_rejected() {
    let long = "s".repeat(129);
    let message = error_with("name = \"test-study\"", &format!("name = \"{long}\""));

    assert_contains(&message, &["study.name", "1 to 128"]);
}

#[test]
fn model_ids_must_be_unique() {
    let text = MINIMAL_CONFIG.replace(
        "[[models]]\nid = \"m1\"\npath = \"model\"\n",
        "[[models]]\nid = \"m1\"\npath = \"a\"\n\n[[models]]\nid = \"m1\"\npath = \"b\"\n",
    );
    let message = parse_config(&text).unwrap_err();

    assert_contains(&message, &["models[1].id", "\"m1\"", "unique"]);
}

#[test]
fn user_prompt_needs_vignette_once() {
    let missing = error_with(
        "user = \"Case:\\n{vignette}\\nDecide.\"",
        "user = \"Decide.\"",
    );
    let twice = error_with(
        "user = \"Case:\\n{vignette}\\nDecide.\"",
        "user = \"{vignette} {vignette}\"",
    );

    assert_contains(&missing, &["prompt.user", "0 times", "exactly once"]);
    assert_contains(&twice, &["prompt.user", "2 times"]);
}

#[test]
fn raw_template_needs_user_once() {
    let text = MINIMAL_CONFIG.replace(
        "user = \"Case:\\n{vignette}\\nDecide.\"",
        "user = \"{vignette}\"\ntemplate = \"raw\"\nraw_template = \"{system} only\"",
    );
    let message = parse_config(&text).unwrap_err();

    assert_contains(&message, &["prompt.raw_template", "{user}", "exactly once"]);
}

#[test]
fn generation_ranges_are_checked() {
    let cases = [
        ("temperature = -0.5", "generation.temperature", "-0.5"),
        ("top_p = 0.0", "generation.top_p", "0"),
        ("top_p = 1.5", "generation.top_p", "1.5"),
        ("batch_size = 0", "generation.batch_size", "0"),
        ("max_new_tokens = 0", "generation.max_new_tokens", "0"),
        ("stop = [\"\"]", "generation.stop[0]", "\"\""),
    ];
    for (line, key, value) in cases {
        let text = format!("{MINIMAL_CONFIG}\n[generation]\n{line}\n");
        let message = parse_config(&text).unwrap_err();

        assert_contains(&message, &[CONFIG_PATH, key, value]);
    }
}

#[test]
fn attention_ranges_are_checked() {
    let cases = [
        ("sample_rate = 1.5", "attention.sample_rate", "1.5"),
        ("sample_rate = -0.1", "attention.sample_rate", "-0.1"),
        ("layers = []", "attention.layers", "[]"),
        ("heads = []", "attention.heads", "[]"),
        ("layers = [3, 3]", "attention.layers", "3"),
        (
            "layers = { evenly_spaced = 0 }",
            "attention.layers",
            "evenly_spaced = 0",
        ),
    ];
    for (line, key, value) in cases {
        let text = format!("{MINIMAL_CONFIG}\n[attention]\n{line}\n");
        let message = parse_config(&text).unwrap_err();

        assert_contains(&message, &[CONFIG_PATH, key, value]);
    }
}

#[test]
fn layers_keyword_other_than_all_is_rejected() {
    let text = format!("{MINIMAL_CONFIG}\n[attention]\nlayers = \"some\"\n");
    let message = parse_config(&text).unwrap_err();

    assert_contains(&message, &["some", "\"all\"", "evenly_spaced"]);
}

#[test]
fn output_and_design_ranges_are_checked() {
    let shard = error_with("store = \"out\"", "store = \"out\"\nsamples_per_shard = 0");
    let total = error_with("total_samples = 100", "total_samples = 0");
    let missing_total = error_with("total_samples = 100\n", "");
    let topic = error_with("stratify = [\"gender\"]", "stratify = [\"topic\"]");

    assert_contains(&shard, &["output.samples_per_shard", "at least 1"]);
    assert_contains(&total, &["design.total_samples", "at least 1"]);
    assert_contains(
        &missing_total,
        &["design.total_samples", "samples_per_cell"],
    );
    assert_contains(&topic, &["design.stratify", "always a stratum"]);
}

#[test]
fn decision_labels_are_checked() {
    let empty = error_with("labels = [\"GRANTED\", \"REFUSED\"]", "labels = []");
    let repeated = error_with(
        "labels = [\"GRANTED\", \"REFUSED\"]",
        "labels = [\"GRANTED\", \"GRANTED\"]",
    );
    let pattern = error_with(
        "labels = [\"GRANTED\", \"REFUSED\"]",
        "labels = [\"GRANTED\"]\npattern = '(GRANTED'",
    );

    assert_contains(&empty, &["decision.labels", "[]"]);
    assert_contains(
        &repeated,
        &["decision.labels[1]", "\"GRANTED\"", "distinct"],
    );
    assert_contains(
        &pattern,
        &["decision.pattern", "(GRANTED", "does not compile"],
    );
}

#[test]
fn default_decision_pattern_matches_labels() {
    let config = parse_config(MINIMAL_CONFIG).unwrap();
    let regex = config.decision.regex();

    assert_eq!(config.decision.pattern(), r"\b(GRANTED|REFUSED)\b");
    assert_eq!(&regex.captures("DECISION: REFUSED.").unwrap()[1], "REFUSED");
    assert!(regex.captures("UNGRANTED").is_none());
}

#[test]
fn devices_parse_and_reject_bad_names() {
    assert_eq!("cuda:1".parse::<Device>().unwrap(), Device::Cuda(1));
    assert_eq!(
        "cpu,cuda:0".parse::<DeviceList>().unwrap(),
        DeviceList(vec![Device::Cpu, Device::Cuda(0)])
    );
    let message = "gpu0".parse::<Device>().unwrap_err().to_string();
    assert_contains(&message, &["\"gpu0\"", "cuda:N"]);
    assert!("cuda".parse::<Device>().is_err());
    assert!("cuda:-1".parse::<Device>().is_err());
}

#[test]
fn device_list_in_toml_is_checked() {
    let good = parse_config(&MINIMAL_CONFIG.replace(
        "path = \"model\"",
        "path = \"model\"\ndevice = [\"cuda:0\", \"cuda:1\"]",
    ))
    .unwrap();
    let bad = error_with("path = \"model\"", "path = \"model\"\ndevice = \"tpu\"");

    assert_eq!(
        good.models[0].device,
        DeviceList(vec![Device::Cuda(0), Device::Cuda(1)])
    );
    assert_contains(&bad, &["\"tpu\"", CONFIG_PATH]);
}

#[test]
fn dtype_defaults_follow_devices() {
    let cpu = parse_config(MINIMAL_CONFIG).unwrap();
    let gpu = parse_config(
        &MINIMAL_CONFIG.replace("path = \"model\"", "path = \"model\"\ndevice = \"cuda:0\""),
    )
    .unwrap();
    let set = parse_config(
        &MINIMAL_CONFIG.replace("path = \"model\"", "path = \"model\"\ndtype = \"f16\""),
    )
    .unwrap();

    assert_eq!(cpu.models[0].dtype(), Dtype::F32);
    assert_eq!(gpu.models[0].dtype(), Dtype::Bf16);
    assert_eq!(set.models[0].dtype(), Dtype::F16);
}

#[test]
fn store_urls_are_checked_and_resolved() {
    let with_store =
        |store: &str| MINIMAL_CONFIG.replace("store = \"out\"", &format!("store = \"{store}\""));

    for url in [
        "memory://",
        "memory://tests",
        "file:///data/out",
        "s3://bucket/a/b",
    ] {
        assert_eq!(parse_config(&with_store(url)).unwrap().store_url(), url);
    }
    let relative = parse_config(&with_store("../results")).unwrap();
    assert_eq!(relative.store_url(), "/studies/results");
    let scheme = parse_config(&with_store("gs://bucket")).unwrap_err();
    assert_contains(&scheme, &["output.store", "gs://", "s3://"]);
    let bucket = parse_config(&with_store("s3:///prefix")).unwrap_err();
    assert_contains(&bucket, &["output.store", "name the bucket"]);
    let file = parse_config(&with_store("file://data")).unwrap_err();
    assert_contains(&file, &["output.store", "absolute path"]);
}

#[test]
fn queue_url_is_checked_without_showing_password() {
    let message = error_with(
        "store = \"out\"",
        "store = \"out\"\n\n[queue]\nurl = \"http://user:secret@host\"",
    );

    assert_contains(&message, &["queue.url", "redis://"]);
    assert!(
        !message.contains("secret"),
        "message shows the password: {message}"
    );
}

#[test]
fn layers_resolve_to_indices() {
    let all = IndexSelection::All.resolve(4, "layers", "layer").unwrap();
    let list = IndexSelection::List(vec![20, 10])
        .resolve(32, "layers", "layer")
        .unwrap();
    // Centres of 3 equal parts of 32 layers: 32/6, 3*32/6, 5*32/6 rounded down.
    let spaced = IndexSelection::EvenlySpaced(3)
        .resolve(32, "layers", "layer")
        .unwrap();
    let every = IndexSelection::EvenlySpaced(5)
        .resolve(5, "layers", "layer")
        .unwrap();

    assert_eq!(all, vec![0, 1, 2, 3]);
    assert_eq!(list, vec![10, 20]);
    assert_eq!(spaced, vec![5, 16, 26]);
    assert_eq!(every, vec![0, 1, 2, 3, 4]);
}

#[test]
fn out_of_range_layer_is_named() {
    let config = parse_config(&format!(
        "{MINIMAL_CONFIG}\n[attention]\nlayers = [10, 40]\nheads = {{ evenly_spaced = 9 }}\n"
    ))
    .unwrap();

    let layers = config.attention.resolve_layers(32).unwrap_err().to_string();
    let heads = config.attention.resolve_heads(8).unwrap_err().to_string();

    assert_contains(&layers, &["attention.layers", "40", "32 layers", "0 to 31"]);
    assert_contains(&heads, &["attention.heads", "9", "only 8"]);
}
