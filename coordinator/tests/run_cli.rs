//! `gaze run` end to end on the demo study with the test model: every
//! planned sample exactly once, attention tables for exactly the attention
//! samples, resume after a kill, manifest checks, exports and bad stores.

mod run_support;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use gaze_shared::tables::Table;
use run_support::{
    Settings, StudyDir, attention_ids, gaze_command, partition_masses, prompt_lengths,
    rows_per_sample, sample_ids, text,
};

const STUDY: &str = "uk-demo";

fn assert_success(output: &std::process::Output) {
    assert!(
        output.status.success(),
        "gaze run failed:\nstdout: {}\nstderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// Checks that the committed tables hold samples `0..limit` of the plan once
/// each, and attention rows for exactly the plan's attention samples.
fn assert_exactly_once(study: &StudyDir, limit: u64) {
    let plan = study.plan(limit);
    let samples = study.table(STUDY, Table::Samples);

    let mut ids = sample_ids(&samples);
    ids.sort_unstable();
    let expected: Vec<i64> = (0..limit as i64).collect();
    assert_eq!(ids, expected, "each planned sample once");

    let planned_attention: BTreeSet<i64> = plan
        .samples
        .iter()
        .filter(|s| s.collect_attention)
        .map(|s| s.sample_id as i64)
        .collect();
    assert!(
        !planned_attention.is_empty(),
        "the test plan has attention samples"
    );
    assert_eq!(attention_ids(&samples), planned_attention);

    let tokens = study.table(STUDY, Table::Tokens);
    let lengths = prompt_lengths(&samples);
    let token_rows = rows_per_sample(&tokens);
    assert_eq!(
        token_rows.keys().copied().collect::<BTreeSet<_>>(),
        planned_attention
    );
    for (sample, rows) in &token_rows {
        assert_eq!(
            *rows as i32, lengths[sample],
            "token rows of sample {sample}"
        );
    }

    let topk = study.table(STUDY, Table::AttentionTopk);
    assert_eq!(
        rows_per_sample(&topk)
            .keys()
            .copied()
            .collect::<BTreeSet<_>>(),
        planned_attention
    );
    let fields = study.table(STUDY, Table::AttentionFields);
    let masses = partition_masses(&fields);
    assert_eq!(
        masses.keys().map(|k| k.0).collect::<BTreeSet<_>>(),
        planned_attention
    );
    for (row, mass) in &masses {
        assert!(
            (mass - 1.0).abs() < 1e-4,
            "row {row:?}: masses add up to {mass}"
        );
    }
}

#[test]
fn run_commits_every_planned_sample_once() {
    let study = StudyDir::new(&Settings::default());

    let output = study.run(&["--limit", "32"]);

    assert_success(&output);
    assert_exactly_once(&study, 32);
    let stdout = text(&output.stdout);
    for part in [
        "Study uk-demo",
        "32 committed",
        "shards             4 committed: 4 this run, 0 before",
        "read_parquet(",
    ] {
        assert!(stdout.contains(part), "stdout lacks {part:?}:\n{stdout}");
    }
}

#[test]
fn rerun_resumes_and_runs_nothing_twice() {
    let study = StudyDir::new(&Settings::default());
    assert_success(&study.run(&["--limit", "16"]));

    // The same command again runs nothing; a larger limit runs the rest.
    let again = study.run(&["--limit", "16"]);
    assert_success(&again);
    assert!(text(&again.stdout).contains("2 committed: 0 this run, 2 before"));
    let more = study.run(&["--limit", "24"]);
    assert_success(&more);
    assert!(text(&more.stdout).contains("3 committed: 1 this run, 2 before"));

    assert_exactly_once(&study, 24);
}

#[test]
fn limit_rounds_up_to_whole_shards() {
    let study = StudyDir::new(&Settings::default());

    // Shards hold 8 samples: 10 runs two whole shards, and a later run
    // with a larger limit adds the third without losing samples 10 to 15.
    assert_success(&study.run(&["--limit", "10"]));
    assert_exactly_once(&study, 16);
    assert_success(&study.run(&["--limit", "20"]));
    assert_exactly_once(&study, 24);
}

#[test]
fn killed_run_resumes_without_loss_or_duplicates() {
    let study = StudyDir::new(&Settings {
        samples_per_shard: 4,
        ..Settings::default()
    });
    let limit = "80";
    let mut child = study
        .command(&["--limit", limit])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Kill it once at least one shard is committed and while others run.
    let commits = study.store().join(STUDY).join("commits");
    let committed = loop {
        let count = std::fs::read_dir(&commits).map_or(0, |d| d.count());
        if count >= 1 {
            break count;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("gaze run ended ({status}) before the test could kill it");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run was killed, not finished");
    assert!(committed < 20, "the kill came before the last shard");

    // What is visible now is whole: every committed shard has all its samples.
    let plan = study.plan(80);
    let samples = study.table(STUDY, Table::Samples);
    let visible: BTreeSet<i64> = sample_ids(&samples).into_iter().collect();
    for shard in &plan.shards {
        let ids: BTreeSet<i64> = (shard.samples.start as i64..shard.samples.end as i64).collect();
        let shown = ids.intersection(&visible).count();
        assert!(
            shown == 0 || shown == ids.len(),
            "shard {} is torn: {shown} of {} samples visible",
            shard.shard_id,
            ids.len()
        );
    }

    assert_success(&study.run(&["--limit", limit]));
    assert_exactly_once(&study, 80);
}

#[test]
fn interrupt_stops_after_the_shard_in_flight() {
    let study = StudyDir::new(&Settings {
        samples_per_shard: 4,
        ..Settings::default()
    });
    let child = study
        .command(&["--limit", "80"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let commits = study.store().join(STUDY).join("commits");
    while std::fs::read_dir(&commits).map_or(0, |d| d.count()) == 0 {
        std::thread::sleep(Duration::from_millis(20));
    }

    let signal = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signal.success());
    let output = child.wait_with_output().unwrap();

    assert_success(&output);
    let stdout = text(&output.stdout);
    assert!(stdout.contains("Stopped early"), "{stdout}");
    let committed = std::fs::read_dir(&commits).unwrap().count();
    assert!(committed < 20, "the run stopped before the last shard");
    // Every committed shard is whole, and no claim is left unmarked.
    let claims = std::fs::read_dir(study.store().join(STUDY).join("claims"))
        .unwrap()
        .count();
    assert_eq!(claims, committed);
    assert_eq!(
        sample_ids(&study.table(STUDY, Table::Samples)).len(),
        committed * 4
    );

    assert_success(&study.run(&["--limit", "80"]));
    assert_exactly_once(&study, 80);
}

#[test]
fn changed_config_rejected_unless_renamed() {
    let study = StudyDir::new(&Settings::default());
    assert_success(&study.run(&["--limit", "8"]));

    study.write_config(&Settings {
        system: "You are a strict caseworker.",
        ..Settings::default()
    });
    let refused = study.run(&["--limit", "8"]);
    assert!(!refused.status.success());
    let stderr = text(&refused.stderr);
    for part in ["config.prompt changed", "--study uk-demo-2"] {
        assert!(stderr.contains(part), "stderr lacks {part:?}:\n{stderr}");
    }
    assert_eq!(stderr.matches("uk-demo-2").count(), 1, "{stderr}");

    let renamed = study.run(&["--limit", "8", "--study", "uk-demo-strict"]);
    assert_success(&renamed);
    assert_eq!(
        sample_ids(&study.table("uk-demo-strict", Table::Samples)).len(),
        8
    );
    // The first study is untouched.
    assert_eq!(sample_ids(&study.table(STUDY, Table::Samples)).len(), 8);
}

#[test]
fn layer_out_of_range_leaves_study_unstarted() {
    let study = StudyDir::new(&Settings {
        layers: "[0, 99]",
        ..Settings::default()
    });
    let rejected = study.run(&["--limit", "8"]);
    assert!(!rejected.status.success());
    let stderr = text(&rejected.stderr);
    assert!(stderr.contains("layer 99"), "{stderr}");

    // The corrected config starts the study instead of being rejected as
    // a change of the study's inputs.
    study.write_config(&Settings::default());
    assert_success(&study.run(&["--limit", "8"]));
}

#[test]
fn missing_model_folder_names_the_fixes() {
    let study = StudyDir::new(&Settings::default());
    let model = study.dir.path().join("model");
    let moved = study.dir.path().join("model-elsewhere");
    std::fs::rename(&model, &moved).unwrap();

    let rejected = study.run(&["--limit", "8"]);
    assert!(!rejected.status.success());
    let stderr = text(&rejected.stderr);
    assert!(stderr.contains(model.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("--model"), "{stderr}");
    assert!(stderr.contains("make-test-model"), "{stderr}");
    assert!(!study.store().join(STUDY).join("manifest.json").exists());

    let moved_arg = format!("test-model={}", moved.display());
    assert_success(&study.run(&["--limit", "8", "--model", &moved_arg]));
}

#[test]
fn failed_load_leaves_study_restartable() {
    let study = StudyDir::new(&Settings::default());
    let tokenizer = study.dir.path().join("model/tokenizer.json");
    let original = std::fs::read(&tokenizer).unwrap();
    // The model identity only hashes tokenizer.json, so a broken one is
    // found when the engine loads the model, after the manifest is written.
    std::fs::write(&tokenizer, br#"{"version": "1.0"}"#).unwrap();
    let failed = study.run(&["--limit", "8"]);
    assert!(!failed.status.success());
    let stderr = text(&failed.stderr);
    assert!(stderr.contains("cannot load tokenizer"), "{stderr}");
    assert!(study.store().join(STUDY).join("manifest.json").exists());

    // The repaired model changes the fingerprint, but the study has no
    // committed or claimed shard, so the run takes the study's name.
    std::fs::write(&tokenizer, &original).unwrap();
    assert_success(&study.run(&["--limit", "8"]));
    assert_eq!(sample_ids(&study.table(STUDY, Table::Samples)).len(), 8);
}

#[test]
fn export_writes_the_run_samples_as_json_lines() {
    let study = StudyDir::new(&Settings::default());
    assert_success(&study.run(&["--limit", "16"]));

    let output = gaze_command()
        .args(["export", study.store().to_str().unwrap(), STUDY])
        .args(["--table", "samples", "--format", "jsonl"])
        .output()
        .unwrap();

    assert_success(&output);
    let mut ids: Vec<i64> = text(&output.stdout)
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            record["sample_id"].as_i64().unwrap()
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..16).collect::<Vec<i64>>());
}

#[test]
fn export_into_missing_folder_names_out_and_fix() {
    let study = StudyDir::new(&Settings::default());
    assert_success(&study.run(&["--limit", "8"]));
    let out = study.dir.path().join("absent").join("samples.csv");

    let output = gaze_command()
        .args(["export", study.store().to_str().unwrap(), STUDY])
        .args(["--table", "samples", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot write --out {}", out.display())),
        "{stderr}"
    );
    assert!(stderr.contains("check that its folder exists"), "{stderr}");
}

#[test]
fn store_under_a_file_fails_before_any_work() {
    let study = StudyDir::new(&Settings::default());
    let blocker = study.dir.path().join("blocker");
    std::fs::write(&blocker, "a file, not a folder").unwrap();
    let store = blocker.join("store");

    let output = study.run(&["--limit", "8", "--store", store.to_str().unwrap()]);

    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains(store.to_str().unwrap()), "{stderr}");
}

#[test]
fn unwritable_commit_folder_commits_nothing_until_fixed() {
    let study = StudyDir::new(&Settings::default());
    // A folder where the first shard's commit marker must go makes its
    // write fail after the tables are staged and claimed.
    let study_folder = study.store().join(STUDY);
    let marker = study_folder.join("commits/test-model-shard-00000.json");
    std::fs::create_dir_all(&marker).unwrap();

    let output = study.run(&["--limit", "8"]);

    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("commits/test-model-shard-00000.json"),
        "{stderr}"
    );
    assert!(
        stderr.contains("rerunning the command retries it"),
        "{stderr}"
    );
    assert!(
        study_folder
            .join("claims/test-model-shard-00000.json")
            .is_file()
    );

    // Once the folder can be written, the next run finishes the claimed
    // shard from its staged tables.
    std::fs::remove_dir(&marker).unwrap();
    assert_success(&study.run(&["--limit", "8"]));
    assert_exactly_once(&study, 8);
}
