//! The study config: one TOML file that sets which models run which
//! vignettes, how samples are drawn and decoded, what attention is kept and
//! where results go.
//!
//! Parsing is strict: an unknown or misspelt key is an error that names the
//! key and the file. [`StudyConfig::load`] resolves relative paths against the
//! config file's folder and validates every range.

mod attention;
mod decision;
mod design;
mod error;
mod generation;
mod model;
mod output;
mod overrides;
mod prompt;
mod study;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use attention::{AttentionConfig, IndexSelection, SelectionError};
pub use decision::DecisionConfig;
pub use design::DesignConfig;
pub use error::ConfigError;
pub use generation::GenerationConfig;
pub use model::{Device, DeviceList, Dtype, InvalidDevice, ModelConfig};
pub use output::{OutputConfig, QueueConfig, QueueLocation};
pub use overrides::Overrides;
pub use prompt::{DEFAULT_RAW_TEMPLATE, PromptConfig, TemplateKind, VIGNETTE_PLACEHOLDER};
pub use study::{StudySection, is_identifier};

use error::Checker;

/// A parsed and validated study config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyConfig {
    pub study: StudySection,
    pub models: Vec<ModelConfig>,
    pub prompt: PromptConfig,
    pub design: DesignConfig,
    #[serde(default)]
    pub generation: GenerationConfig,
    pub decision: DecisionConfig,
    #[serde(default)]
    pub attention: AttentionConfig,
    pub output: OutputConfig,
    #[serde(default)]
    pub queue: QueueConfig,

    /// The file this config was read from; empty for [`StudyConfig::parse`]
    /// without a path.
    #[serde(skip)]
    pub source: PathBuf,
}

impl StudyConfig {
    /// Reads, parses and validates the config at `path`. Relative paths in
    /// it (models, vignettes, a local store) become paths relative to the
    /// folder that contains `path`.
    pub fn load(path: &Path) -> Result<StudyConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        StudyConfig::parse(&text, path)
    }

    /// Parses and validates `text` as if it were read from `path`, which
    /// names the file in errors and is the base of relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<StudyConfig, ConfigError> {
        let mut config: StudyConfig = toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: path.to_path_buf(),
            message: err.to_string().trim_end().to_string(),
        })?;
        config.source = path.to_path_buf();
        config.resolve_paths();
        config.validate()?;
        Ok(config)
    }

    /// Returns the folder that relative paths in the file are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        base_dir_of(&self.source)
    }

    /// Returns the URL to open the result store with, a relative folder
    /// path resolved against the config file's folder.
    pub fn store_url(&self) -> String {
        self.output.store_url(&self.base_dir())
    }

    /// Returns the model with identifier `id`.
    pub fn model(&self, id: &str) -> Option<&ModelConfig> {
        self.models.iter().find(|m| m.id == id)
    }

    fn resolve_paths(&mut self) {
        let base = self.base_dir();
        self.study.vignettes = join_lexically(&base, &self.study.vignettes);
        for model in &mut self.models {
            model.path = join_lexically(&base, &model.path);
        }
    }

    /// Checks every range and cross-field rule; errors name this config's file.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = Checker { path: &self.source };

        self.study.validate(&check)?;
        if self.models.is_empty() {
            return Err(check.invalid(
                "models",
                "[]",
                "add a [[models]] table with an id and a path",
            ));
        }
        let mut ids = std::collections::BTreeSet::new();
        for (index, model) in self.models.iter().enumerate() {
            model.validate(index, &check)?;
            if !ids.insert(&model.id) {
                return Err(check.invalid(
                    format!("models[{index}].id"),
                    format!("{:?}", model.id),
                    "model ids must be unique; rename one of the models",
                ));
            }
        }
        self.prompt.validate(&check)?;
        self.design.validate(&check)?;
        self.generation.validate(&check)?;
        self.decision.validate(&check)?;
        self.attention.validate(&check)?;
        self.output.validate(&check)?;
        self.queue.validate(&check)?;
        Ok(())
    }
}

/// Joins `path` onto `base` and folds `.` and `name/..` without touching
/// the file system, so `config/../models/x` reads `models/x`.
/// NOTE: like any lexical folding, this differs from the file system's
/// reading when `name` is a symbolic link to another folder.
pub(crate) fn join_lexically(base: &Path, path: &Path) -> PathBuf {
    use std::path::Component;

    let mut joined = PathBuf::new();
    for component in base.join(path).components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(joined.components().next_back(), Some(Component::Normal(_))) =>
            {
                joined.pop();
            }
            other => joined.push(other),
        }
    }
    if joined.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        joined
    }
}

fn base_dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
