//! A study rebuilt from its manifest in the store: the config, the vignettes
//! and the sample plan, so that workers and `gaze status` need no copy of
//! the study's files.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::config::StudyConfig;
use crate::plan::{Plan, PlanError};
use crate::store::{Manifest, Store, StoreError, StudyId, read_manifest};
use crate::vignettes::{VignetteError, VignetteSet};

/// A study as its manifest describes it.
#[derive(Debug, Clone)]
pub struct StoredStudy {
    pub manifest: Manifest,
    /// The config the study was submitted with. Paths in it (models, the
    /// vignette file) are those of the submitting machine.
    pub config: StudyConfig,
    pub vignettes: VignetteSet,
    /// The whole plan: `--limit` does not change the manifest.
    pub plan: Plan,
}

/// An error that prevents rebuilding a study from the store.
#[derive(Debug, Error)]
pub enum StoredStudyError {
    #[error(transparent)]
    Store(Box<StoreError>),

    #[error(
        "study {study} has no manifest in the store {url}: submit it first (gaze submit \
         CONFIG), and check that --store names the store it was submitted to"
    )]
    NotFound { study: String, url: String },

    #[error(
        "the manifest of study {study} does not record {what}: it was written by an older \
         gaze; submit the study again with this version"
    )]
    Incomplete { study: String, what: &'static str },

    #[error("the config in the manifest of study {study} is invalid: {message}")]
    Config { study: String, message: String },

    #[error("the vignettes in the manifest of study {study} are invalid: {source}")]
    Vignettes {
        study: String,
        #[source]
        source: Box<VignetteError>,
    },

    #[error("the plan of study {study} cannot be rebuilt from its manifest: {source}")]
    Plan {
        study: String,
        #[source]
        source: Box<PlanError>,
    },
}

impl From<StoreError> for StoredStudyError {
    fn from(error: StoreError) -> Self {
        StoredStudyError::Store(Box::new(error))
    }
}

impl StoredStudy {
    /// Reads the manifest of `study` from `store` and rebuilds the study.
    pub async fn read(store: &Store, study: &StudyId) -> Result<StoredStudy, StoredStudyError> {
        let manifest =
            read_manifest(store, study)
                .await?
                .ok_or_else(|| StoredStudyError::NotFound {
                    study: study.to_string(),
                    url: store.url.clone(),
                })?;
        StoredStudy::from_manifest(manifest)
    }

    /// Rebuilds the config, the vignettes and the plan that `manifest`
    /// records. The same manifest always gives the same plan.
    pub fn from_manifest(manifest: Manifest) -> Result<StoredStudy, StoredStudyError> {
        let study = manifest.study.to_string();
        let config: StudyConfig = serde_json::from_value(manifest.config.clone()).map_err(|e| {
            StoredStudyError::Config {
                study: study.clone(),
                message: e.to_string(),
            }
        })?;
        config.validate().map_err(|e| StoredStudyError::Config {
            study: study.clone(),
            message: e.to_string(),
        })?;

        let text = manifest
            .vignettes
            .as_deref()
            .ok_or_else(|| StoredStudyError::Incomplete {
                study: study.clone(),
                what: "the vignettes",
            })?;
        let vignettes = VignetteSet::parse(
            text.as_bytes(),
            is_toml(&config.study.vignettes),
            &manifest_source(&study, &config.study.vignettes),
        )
        .map_err(|source| StoredStudyError::Vignettes {
            study: study.clone(),
            source: Box::new(source),
        })?;

        let plan = Plan::build(&config, &vignettes).map_err(|source| StoredStudyError::Plan {
            study,
            source: Box::new(source),
        })?;
        Ok(StoredStudy {
            manifest,
            config,
            vignettes,
            plan,
        })
    }
}

fn is_toml(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "toml")
}

/// The name that errors give the vignettes read from a manifest.
fn manifest_source(study: &str, vignettes: &Path) -> PathBuf {
    let file = vignettes.file_name().unwrap_or(vignettes.as_os_str());
    PathBuf::from(format!("manifest of study {study}")).join(file)
}
