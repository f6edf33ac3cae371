//! Rebuilding a study from its manifest, as workers and `gaze status` do:
//! the demo study's config and vignettes written into a manifest give back
//! the same plan, and a manifest that lacks them is reported.

mod plan_support;

use std::collections::BTreeMap;

use gaze_shared::store::{Manifest, StudyId};
use gaze_shared::study::{StoredStudy, StoredStudyError};
use plan_support::{demo_config, demo_plan};

/// Returns a manifest of the demo study, as `gaze submit` writes it.
fn demo_manifest() -> Manifest {
    let config = demo_config();
    let vignettes = std::fs::read_to_string(&config.study.vignettes).unwrap();
    Manifest {
        study: StudyId::new(&config.study.name).unwrap(),
        fingerprint: "fingerprint".into(),
        fingerprint_parts: BTreeMap::new(),
        config: serde_json::to_value(&config).unwrap(),
        plan: serde_json::json!({}),
        gaze_version: "0.1.0".into(),
        models: BTreeMap::new(),
        vignettes: Some(vignettes),
        created_at: Some("2026-12-04T21:00:00Z".into()),
    }
}

#[test]
fn manifest_gives_back_the_plan() {
    let study = StoredStudy::from_manifest(demo_manifest()).unwrap();

    assert_eq!(study.plan, demo_plan());
    assert_eq!(study.config.study.name, "uk-immigration");
}

#[test]
fn manifest_gives_back_vignette_digest() {
    let config = demo_config();
    let expected = gaze_shared::vignettes::VignetteSet::load(&config.study.vignettes).unwrap();

    let study = StoredStudy::from_manifest(demo_manifest()).unwrap();

    assert_eq!(study.vignettes.sha256, expected.sha256);
}

#[test]
fn manifest_without_vignettes_is_reported() {
    let manifest = Manifest {
        vignettes: None,
        ..demo_manifest()
    };

    let error = StoredStudy::from_manifest(manifest).unwrap_err();

    assert!(
        matches!(error, StoredStudyError::Incomplete { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("submit the study again"),
        "{error}"
    );
}

#[test]
fn manifest_with_bad_config_is_reported() {
    let manifest = Manifest {
        config: serde_json::json!({"study": {"name": "x"}}),
        ..demo_manifest()
    };

    let error = StoredStudy::from_manifest(manifest).unwrap_err();

    assert!(matches!(error, StoredStudyError::Config { .. }), "{error}");
}
