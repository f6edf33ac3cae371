//! The study fingerprint: SHA-256 over everything that changes a result, so
//! that a resumed or extended run can check it continues the same study.
//!
//! Parts, each hashed on its own so a mismatch can name what changed:
//! `config.study` (name, description), `config.prompt`, `config.design`,
//! `config.generation` (without `batch_size`), `config.decision`,
//! `config.attention`, `config.samples_per_shard`, `vignettes` (the file's
//! bytes) and `model:ID` per model (its precision and [`ModelIdentity`]).
//! Config parts are hashed as JSON of the parsed values, so comments,
//! formatting and key order in the TOML file do not count. Paths, devices,
//! the store and the queue do not count either.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::model_identity::ModelStatus;
use crate::config::{ModelConfig, StudyConfig};
use crate::vignettes::VignetteSet;

/// Domain tag of the overall digest; changing it changes every fingerprint.
const FINGERPRINT_DOMAIN: &str = "gaze/fingerprint/v1";

/// The digest recorded for a model whose folder does not exist yet.
pub const MISSING_MODEL: &str = "missing";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fingerprint {
    /// SHA-256 over the parts in order, lowercase hex.
    pub digest: String,
    pub parts: Vec<FingerprintPart>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FingerprintPart {
    /// Such as `config.prompt`, `vignettes` or `model:post-brexit`.
    pub name: String,
    /// SHA-256 of the part, lowercase hex, or [`MISSING_MODEL`].
    pub digest: String,
}

impl Fingerprint {
    /// Computes the fingerprint. `models` pairs each of the config's models,
    /// in config order, with its folder's status.
    pub fn compute(
        config: &StudyConfig,
        vignettes: &VignetteSet,
        models: &[(&ModelConfig, &ModelStatus)],
    ) -> Fingerprint {
        let mut generation = serde_json::to_value(&config.generation).expect("config serialises");
        if let Some(object) = generation.as_object_mut() {
            object.remove("batch_size");
        }

        let mut parts = vec![
            json_part(
                "config.study",
                &serde_json::json!({ "name": config.study.name, "description": config.study.description }),
            ),
            json_part("config.prompt", &config.prompt),
            json_part("config.design", &config.design),
            json_part("config.generation", &generation),
            json_part("config.decision", &config.decision),
            json_part("config.attention", &config.attention),
            json_part("config.samples_per_shard", &config.output.samples_per_shard),
            FingerprintPart {
                name: "vignettes".into(),
                digest: vignettes.sha256.clone(),
            },
        ];
        for (model, status) in models {
            let digest = match status {
                ModelStatus::Missing { .. } => MISSING_MODEL.to_string(),
                ModelStatus::Present(identity) => hash_json(
                    &serde_json::json!({ "dtype": model.dtype().as_str(), "identity": identity.digest }),
                ),
            };
            parts.push(FingerprintPart {
                name: format!("model:{}", model.id),
                digest,
            });
        }

        let mut hasher = Sha256::new();
        hasher.update(FINGERPRINT_DOMAIN.as_bytes());
        for part in &parts {
            hasher.update([0]);
            hasher.update(part.name.as_bytes());
            hasher.update([0]);
            hasher.update(part.digest.as_bytes());
        }
        Fingerprint {
            digest: hex::encode(hasher.finalize()),
            parts,
        }
    }

    /// Returns whether every model's identity is known.
    pub fn is_complete(&self) -> bool {
        self.parts.iter().all(|p| p.digest != MISSING_MODEL)
    }

    /// Returns the names of the parts that differ from `earlier`, including
    /// parts present in only one of the two, in this fingerprint's order
    /// followed by parts only `earlier` has.
    pub fn changed_parts(&self, earlier: &Fingerprint) -> Vec<String> {
        let find = |parts: &[FingerprintPart], name: &str| {
            parts
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.digest.clone())
        };
        let mut changed: Vec<String> = self
            .parts
            .iter()
            .filter(|part| find(&earlier.parts, &part.name).as_ref() != Some(&part.digest))
            .map(|part| part.name.clone())
            .collect();
        changed.extend(
            earlier
                .parts
                .iter()
                .filter(|part| find(&self.parts, &part.name).is_none())
                .map(|part| part.name.clone()),
        );
        changed
    }
}

fn json_part(name: &str, value: &impl Serialize) -> FingerprintPart {
    FingerprintPart {
        name: name.into(),
        digest: hash_json(value),
    }
}

fn hash_json(value: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(value).expect("config values serialise to JSON");
    hex::encode(Sha256::digest(&bytes))
}
