//! Object keys: ids are validated, and no key can leave its study's folder.

use gaze_shared::store::{ModelId, ShardKey, StudyId, StudyKeys};
use gaze_shared::tables::Table;

const BAD_IDS: [&str; 14] = [
    "",
    ".",
    "..",
    "../other",
    "a/b",
    "/abs",
    "a\\b",
    "a b",
    "a.b",
    "naïve",
    "модель",
    "a\u{0}b",
    "%2e%2e",
    "a\nb",
];

#[test]
fn study_id_rejects_unsafe_names() {
    for bad in BAD_IDS {
        let error = StudyId::new(bad).expect_err(bad);
        assert!(error.to_string().contains("invalid study id"), "{error}");
    }
}

#[test]
fn model_id_rejects_unsafe_names() {
    for bad in BAD_IDS {
        assert!(ModelId::new(bad).is_err(), "model id {bad:?} was accepted");
    }
}

#[test]
fn id_length_is_capped() {
    assert!(StudyId::new(&"a".repeat(128)).is_ok());
    assert!(StudyId::new(&"a".repeat(129)).is_err());
}

#[test]
fn id_error_names_value_and_rule() {
    let message = ModelId::new("../x").unwrap_err().to_string();
    assert_eq!(
        message,
        "invalid model id \"../x\": it contains a character other than A-Z, a-z, 0-9, '_' and '-'; \
         use 1 to 128 ASCII letters, digits, '_' or '-'"
    );
}

#[test]
fn ids_deserialize_only_when_valid() {
    assert_eq!(
        serde_json::from_str::<StudyId>("\"uk-bias_1\"")
            .unwrap()
            .as_str(),
        "uk-bias_1"
    );
    assert!(serde_json::from_str::<StudyId>("\"../uk\"").is_err());
}

#[test]
fn keys_follow_the_layout() {
    let keys = StudyKeys::new(StudyId::new("uk-bias").unwrap());
    let shard = keys.shard(ModelId::new("llama-3-8b").unwrap(), 42);

    assert_eq!(keys.manifest().as_ref(), "uk-bias/manifest.json");
    assert_eq!(
        keys.table_folder(Table::AttentionTopk).as_ref(),
        "uk-bias/attention_topk"
    );
    assert_eq!(keys.commits_folder().as_ref(), "uk-bias/commits");
    assert_eq!(
        shard.table_object(Table::AttentionTopk).as_ref(),
        "uk-bias/attention_topk/llama-3-8b-shard-00042.parquet"
    );
    assert_eq!(
        shard.commit_marker().as_ref(),
        "uk-bias/commits/llama-3-8b-shard-00042.json"
    );
}

#[test]
fn large_shard_ids_keep_all_digits() {
    let shard =
        StudyKeys::new(StudyId::new("s").unwrap()).shard(ModelId::new("m").unwrap(), 1_234_567);
    assert_eq!(
        shard.commit_marker().as_ref(),
        "s/commits/m-shard-1234567.json"
    );
}

#[test]
fn every_key_stays_under_its_study() {
    let study = StudyId::new("s").unwrap();
    for model in ["m", "-", "_", "m-shard-1", "A-Z_09"] {
        for shard in [0, 1, 99_999, 100_000, u32::MAX] {
            let key = ShardKey::new(study.clone(), ModelId::new(model).unwrap(), shard);
            let mut paths = vec![key.commit_marker()];
            paths.extend(Table::ALL.map(|t| key.table_object(t)));
            for path in paths {
                let parts: Vec<String> = path.parts().map(|p| p.as_ref().to_string()).collect();
                assert_eq!(parts.len(), 3, "{path} is not study/folder/object");
                assert_eq!(parts[0], "s", "{path} left the study folder");
                assert!(
                    parts.iter().all(|p| p != ".." && p != "." && !p.is_empty()),
                    "{path}"
                );
            }
        }
    }
}

#[test]
fn object_names_parse_back_to_their_key() {
    let study = StudyId::new("s").unwrap();
    for model in ["m", "m-shard-1", "m-shard-00001"] {
        for shard in [0, 7, 123_456] {
            let key = ShardKey::new(study.clone(), ModelId::new(model).unwrap(), shard);
            let name = format!("{}.json", key.file_stem());
            assert_eq!(
                ShardKey::parse_object_name(&study, &name, "json"),
                Some(key)
            );
        }
    }
}

#[test]
fn foreign_object_names_do_not_parse() {
    let study = StudyId::new("s").unwrap();
    for name in [
        "m-shard-00001.parquet",
        "m-shard-1.json",
        "m-shard-000001.json",
        "m-shard-0000x.json",
        "-shard-00001.json",
        "m.b-shard-00001.json",
        "m-shard-99999999999.json",
        "notes.json",
        "m-shard-00001.json.tmp",
    ] {
        assert_eq!(
            ShardKey::parse_object_name(&study, name, "json"),
            None,
            "{name} parsed"
        );
    }
}

#[test]
fn table_names_parse_and_unknown_lists_valid() {
    for table in Table::ALL {
        assert_eq!(table.as_str().parse::<Table>().unwrap(), table);
    }
    let message = "attention".parse::<Table>().unwrap_err().to_string();
    assert_eq!(
        message,
        "unknown table \"attention\"; valid tables: samples, tokens, attention_topk, attention_fields, attention_rows"
    );
}
