//! Overrides of the study config from flags or `GAZE_*` variables.

mod plan_support;

use std::path::PathBuf;

use gaze_shared::config::{Device, DeviceList, Overrides, QueueLocation, StudyConfig};
use plan_support::{MINIMAL_CONFIG, parse_config};

fn two_models() -> StudyConfig {
    let text = MINIMAL_CONFIG.replace(
        "[[models]]\nid = \"m1\"\npath = \"model\"\n",
        "[[models]]\nid = \"base\"\npath = \"a\"\n\n[[models]]\nid = \"tuned\"\npath = \"b\"\n",
    );
    parse_config(&text).unwrap()
}

#[test]
fn model_override_replaces_single_model_path() {
    let mut config = parse_config(MINIMAL_CONFIG).unwrap();
    let overrides = Overrides {
        model: Some("/models/other".into()),
        ..Default::default()
    };

    overrides.apply(&mut config).unwrap();

    assert_eq!(config.models[0].path, PathBuf::from("/models/other"));
}

#[test]
fn model_override_picks_model_by_id() {
    let mut config = two_models();
    let overrides = Overrides {
        model: Some("tuned=/models/t".into()),
        ..Default::default()
    };

    overrides.apply(&mut config).unwrap();

    assert_eq!(config.models[0].path, PathBuf::from("/studies/test/a"));
    assert_eq!(config.models[1].path, PathBuf::from("/models/t"));
}

#[test]
fn model_override_without_id_fails_for_several_models() {
    let mut config = two_models();
    let overrides = Overrides {
        model: Some("/models/t".into()),
        ..Default::default()
    };

    let message = overrides.apply(&mut config).unwrap_err().to_string();

    assert!(message.contains("--model"), "{message}");
    assert!(message.contains("base, tuned"), "{message}");
    assert!(message.contains("ID=PATH"), "{message}");
}

#[test]
fn device_batch_store_and_redis_overrides_apply() {
    let mut config = two_models();
    let overrides = Overrides {
        device: Some("cuda:0,cuda:1".into()),
        batch_size: Some(32),
        store: Some("s3://bucket/run".into()),
        redis: Some("redis://127.0.0.1:6379".into()),
        ..Default::default()
    };

    overrides.apply(&mut config).unwrap();

    for model in &config.models {
        assert_eq!(
            model.device,
            DeviceList(vec![Device::Cuda(0), Device::Cuda(1)])
        );
    }
    assert_eq!(config.generation.batch_size, 32);
    assert_eq!(config.output.store, "s3://bucket/run");
    assert_eq!(
        config.queue.location().unwrap(),
        QueueLocation::Redis("redis://127.0.0.1:6379".into())
    );
}

#[test]
fn invalid_overrides_name_flag_and_variable() {
    let cases = [
        (
            Overrides {
                batch_size: Some(0),
                ..Default::default()
            },
            "GAZE_BATCH_SIZE",
        ),
        (
            Overrides {
                device: Some("gpu".into()),
                ..Default::default()
            },
            "GAZE_DEVICE",
        ),
        (
            Overrides {
                redis: Some("embedded".into()),
                ..Default::default()
            },
            "GAZE_REDIS",
        ),
        (
            Overrides {
                store: Some("ftp://x".into()),
                ..Default::default()
            },
            "GAZE_STORE",
        ),
    ];
    for (overrides, variable) in cases {
        let mut config = parse_config(MINIMAL_CONFIG).unwrap();

        let message = overrides.apply(&mut config).unwrap_err().to_string();

        assert!(message.contains(variable), "{message}");
    }
}

#[test]
fn relative_store_override_is_relative_to_current_folder() {
    let mut config = parse_config(MINIMAL_CONFIG).unwrap();
    let overrides = Overrides {
        store: Some("results".into()),
        ..Default::default()
    };

    overrides.apply(&mut config).unwrap();

    let expected = std::env::current_dir().unwrap().join("results");
    assert_eq!(config.store_url(), expected.to_string_lossy());
}
