//! Inputs shared by the study tests: the demo study and small
//! hand-written configs and vignette files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use gaze_shared::config::StudyConfig;
use gaze_shared::plan::Plan;
use gaze_shared::vignettes::VignetteSet;

/// The path used as the source of configs parsed from strings.
pub const CONFIG_PATH: &str = "/studies/test/study.toml";

/// A valid config; tests replace lines of it to make it invalid.
pub const MINIMAL_CONFIG: &str = r#"
[study]
name = "test-study"
vignettes = "vignettes.json"

[[models]]
id = "m1"
path = "model"

[prompt]
system = "You decide cases."
user = "Case:\n{vignette}\nDecide."

[design]
total_samples = 100
stratify = ["gender"]
seed = 7

[decision]
labels = ["GRANTED", "REFUSED"]

[output]
store = "out"
"#;

pub fn demo_config_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/uk-immigration.toml")
}

pub fn demo_config() -> StudyConfig {
    StudyConfig::load(&demo_config_path()).expect("the demo config is valid")
}

pub fn demo_vignettes() -> VignetteSet {
    VignetteSet::load(&demo_config().study.vignettes).expect("the demo vignette file is valid")
}

pub fn demo_plan() -> Plan {
    Plan::build(&demo_config(), &demo_vignettes()).expect("the demo plan builds")
}

/// Parses `text` as a config read from [`CONFIG_PATH`].
pub fn parse_config(text: &str) -> Result<StudyConfig, String> {
    StudyConfig::parse(text, Path::new(CONFIG_PATH)).map_err(|err| err.to_string())
}

pub fn config_with(design: &str) -> StudyConfig {
    let text = MINIMAL_CONFIG.replace(
        "[design]\ntotal_samples = 100\nstratify = [\"gender\"]\nseed = 7\n",
        &format!("[design]\n{design}\n"),
    );
    parse_config(&text).expect("test config is valid")
}

/// Parses JSON vignettes as if read from `/studies/test/vignettes.json`.
pub fn parse_vignettes(json: &str) -> Result<VignetteSet, String> {
    VignetteSet::parse(
        json.as_bytes(),
        false,
        Path::new("/studies/test/vignettes.json"),
    )
    .map_err(|err| err.to_string())
}

/// Returns a full factorial without restrictions: `topics` topics over gender (2),
/// religion (3) and country (4), all used by every template.
pub fn factorial_vignettes(topics: usize) -> VignetteSet {
    let topic_list: Vec<String> = (0..topics)
        .map(|t| format!(r#"{{"id": "t{t}", "route": "Route {t}", "template": "{{gender}} {{religion}} {{country}}"}}"#))
        .collect();
    let json = format!(
        r#"{{"fields": {{
            "gender": {{"category": "demographic", "values": ["woman", "man"]}},
            "religion": {{"category": "demographic", "values": ["r1", "r2", "r3"]}},
            "country": {{"category": "demographic", "values": ["c1", "c2", "c3", "c4"]}}
        }}, "topics": [{}]}}"#,
        topic_list.join(",")
    );
    parse_vignettes(&json).expect("factorial vignettes are valid")
}
