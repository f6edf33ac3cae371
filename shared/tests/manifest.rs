//! The study manifest: written once, then compared, with a mismatch that
//! names what changed.

use std::collections::BTreeMap;

use gaze_shared::store::{
    Manifest, ManifestChange, ManifestStatus, Store, StoreError, StudyId, StudyKeys,
    check_manifest, read_manifest, write_or_check_manifest,
};
use serde_json::json;

fn manifest() -> Manifest {
    Manifest {
        study: StudyId::new("uk-bias").unwrap(),
        fingerprint: "aaaaaaaaaaaaaaaa0000".to_string(),
        fingerprint_parts: BTreeMap::from([
            (
                "config.sampling".to_string(),
                "1111111111111111".to_string(),
            ),
            ("config.prompt".to_string(), "2222222222222222".to_string()),
            ("vignettes".to_string(), "3333333333333333".to_string()),
        ]),
        config: json!({"sampling": {"temperature": 0.7}, "prompt": {"system": "You decide."}, "run": {"workers": 2}}),
        plan: json!({"samples": 25000, "shards": 250}),
        gaze_version: "0.1.0".to_string(),
        models: BTreeMap::from([("llama".to_string(), "9999999999999999".to_string())]),
        vignettes: None,
        created_at: None,
    }
}

#[test]
fn identical_manifests_match() {
    assert_eq!(check_manifest(&manifest(), &manifest()), Ok(()));
}

#[test]
fn runtime_only_differences_match() {
    let mut new = manifest();
    new.config["run"]["workers"] = json!(8);
    new.gaze_version = "0.2.0".to_string();
    new.plan = json!({"samples": 25000, "shards": 250, "note": "resumed"});
    assert_eq!(check_manifest(&manifest(), &new), Ok(()));
}

#[test]
fn changed_vignettes_are_named() {
    let mut new = manifest();
    new.fingerprint = "bbbb".to_string();
    new.fingerprint_parts
        .insert("vignettes".to_string(), "4444444444444444".to_string());

    let mismatch = check_manifest(&manifest(), &new).unwrap_err();
    assert_eq!(
        mismatch.changes,
        vec![ManifestChange::Part {
            part: "vignettes".to_string(),
            existing: Some("3333333333333333".to_string()),
            new: Some("4444444444444444".to_string()),
        }]
    );
    let message = mismatch.to_string();
    assert!(message.starts_with("study uk-bias was started with other inputs: vignettes changed (333333333333 -> 444444444444)"), "{message}");
    assert!(
        message.contains("set study.name to a new name (such as uk-bias-2)"),
        "{message}"
    );
}

#[test]
fn changed_config_section_is_named() {
    let mut new = manifest();
    new.fingerprint = "bbbb".to_string();
    new.fingerprint_parts.insert(
        "config.sampling".to_string(),
        "5555555555555555".to_string(),
    );
    new.config["sampling"]["temperature"] = json!(1.0);

    let message = check_manifest(&manifest(), &new).unwrap_err().to_string();
    assert!(
        message.contains("config.sampling changed (111111111111 -> 555555555555)"),
        "{message}"
    );
    assert!(
        message.contains("config section [sampling] differs"),
        "{message}"
    );
    assert!(!message.contains("[prompt]"), "{message}");
}

#[test]
fn moved_files_are_not_named_as_changes() {
    let mut existing = manifest();
    existing.config["study"] = json!({"name": "uk-bias", "vignettes": "config/v.json"});
    existing.config["models"] = json!([{"id": "llama", "path": "models/llama", "device": ["cpu"]}]);
    existing.config["output"] = json!({"store": "out", "samples_per_shard": 100});
    let mut new = existing.clone();
    new.config["study"]["vignettes"] = json!("/tmp/copy/v.json");
    new.config["models"][0]["path"] = json!("/data/llama");
    new.config["models"][0]["device"] = json!(["cuda:0"]);
    new.config["output"]["store"] = json!("s3://bucket/out");
    new.config["prompt"]["system"] = json!("You decide strictly.");
    new.fingerprint = "bbbb".to_string();
    new.fingerprint_parts
        .insert("config.prompt".to_string(), "6666666666666666".to_string());

    let message = check_manifest(&existing, &new).unwrap_err().to_string();
    assert!(
        message.contains("config section [prompt] differs"),
        "{message}"
    );
    for section in ["[study]", "[models]", "[output]"] {
        assert!(!message.contains(section), "{section} named: {message}");
    }
}

#[test]
fn changed_added_and_removed_models_are_named() {
    let mut new = manifest();
    new.models
        .insert("llama".to_string(), "8888888888888888".to_string());
    new.models
        .insert("qwen".to_string(), "7777777777777777".to_string());
    let message = check_manifest(&manifest(), &new).unwrap_err().to_string();
    assert!(
        message.contains(
            "model llama has other weights, config or tokenizer (999999999999 -> 888888888888)"
        ),
        "{message}"
    );
    assert!(message.contains("model qwen was added"), "{message}");

    let mut fewer = manifest();
    fewer.models.clear();
    let message = check_manifest(&manifest(), &fewer).unwrap_err().to_string();
    assert!(message.contains("model llama was removed"), "{message}");
}

#[test]
fn removed_fingerprint_part_is_named() {
    let mut new = manifest();
    new.fingerprint_parts.remove("config.prompt");
    let message = check_manifest(&manifest(), &new).unwrap_err().to_string();
    assert!(
        message.contains("config.prompt changed (222222222222 -> absent)"),
        "{message}"
    );
}

#[test]
fn fingerprint_change_alone_is_reported() {
    let mut new = manifest();
    new.fingerprint = "cccccccccccccccc".to_string();
    let mismatch = check_manifest(&manifest(), &new).unwrap_err();
    assert_eq!(
        mismatch.changes,
        vec![ManifestChange::Fingerprint {
            existing: "aaaaaaaaaaaaaaaa0000".to_string(),
            new: "cccccccccccccccc".to_string()
        }]
    );
}

#[tokio::test]
async fn first_write_creates_and_second_matches() {
    let store = Store::open("memory://").unwrap();
    assert_eq!(
        write_or_check_manifest(&store, &manifest()).await.unwrap(),
        ManifestStatus::Created
    );
    assert_eq!(
        write_or_check_manifest(&store, &manifest()).await.unwrap(),
        ManifestStatus::Matches
    );
    assert_eq!(
        read_manifest(&store, &manifest().study).await.unwrap(),
        Some(manifest())
    );
}

#[tokio::test]
async fn mismatching_run_is_rejected_and_manifest_kept() {
    let store = Store::open("memory://").unwrap();
    write_or_check_manifest(&store, &manifest()).await.unwrap();
    let mut new = manifest();
    new.fingerprint_parts
        .insert("vignettes".to_string(), "4444444444444444".to_string());

    let error = write_or_check_manifest(&store, &new).await.unwrap_err();
    assert!(matches!(error, StoreError::ManifestMismatch(_)), "{error}");
    assert_eq!(
        read_manifest(&store, &manifest().study).await.unwrap(),
        Some(manifest())
    );
}

#[tokio::test]
async fn corrupt_manifest_names_key_and_fix() {
    let store = Store::open("memory://").unwrap();
    let key = StudyKeys::new(manifest().study).manifest();
    store
        .put(&key, bytes::Bytes::from_static(b"not json"))
        .await
        .unwrap();

    let message = write_or_check_manifest(&store, &manifest())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("manifest uk-bias/manifest.json in store memory:// is corrupt"),
        "{message}"
    );
    assert!(message.contains("name a new study"), "{message}");
}

#[tokio::test]
async fn unknown_study_has_no_manifest() {
    let store = Store::open("memory://").unwrap();
    assert_eq!(
        read_manifest(&store, &StudyId::new("nothing").unwrap())
            .await
            .unwrap(),
        None
    );
}
