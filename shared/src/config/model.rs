//! The `[[models]]` entries: which checkpoints to run, in which precision,
//! on which devices.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use super::error::{Checker, ConfigError};
use super::study::check_identifier;

/// One model that runs the whole plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Identifier used in object keys and table columns: `[A-Za-z0-9_-]+`,
    /// unique within the study.
    pub id: String,
    /// Hugging Face model folder. Relative paths in the file are resolved
    /// against the config file's folder by [`super::StudyConfig::load`].
    pub path: PathBuf,
    /// Weight and activation precision; `None` means [`ModelConfig::dtype`]'s default.
    #[serde(default)]
    pub dtype: Option<Dtype>,
    /// Devices to run on, one in-process worker per device.
    #[serde(default)]
    pub device: DeviceList,
}

impl ModelConfig {
    /// Returns the precision to run in: the configured one, or `f32` when any
    /// device is the CPU (candle widens bf16 to f32 on every CPU matmul) and
    /// `bf16` when every device is a GPU.
    pub fn dtype(&self) -> Dtype {
        if let Some(dtype) = self.dtype {
            return dtype;
        }
        if self.device.0.contains(&Device::Cpu) {
            Dtype::F32
        } else {
            Dtype::Bf16
        }
    }

    pub(crate) fn validate(&self, index: usize, check: &Checker) -> Result<(), ConfigError> {
        let key = format!("models[{index}].id");
        check_identifier(check, &key, &self.id)?;
        if self.path.as_os_str().is_empty() {
            return Err(check.invalid(
                format!("models[{index}].path"),
                "\"\"",
                "set it to a Hugging Face model folder (config.json, tokenizer.json, *.safetensors)",
            ));
        }
        if self.device.0.is_empty() {
            return Err(check.invalid(
                format!("models[{index}].device"),
                "[]",
                "list at least one device, such as \"cpu\" or [\"cuda:0\", \"cuda:1\"]",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for device in &self.device.0 {
            if !seen.insert(*device) {
                return Err(check.invalid(
                    format!("models[{index}].device"),
                    format!("\"{device}\""),
                    "each device may appear once; remove the repeated entry",
                ));
            }
        }
        Ok(())
    }
}

/// Floating-point precision of weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    F32,
    F16,
    Bf16,
}

impl Dtype {
    pub fn as_str(&self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
            Dtype::Bf16 => "bf16",
        }
    }
}

/// A compute device: the CPU or one CUDA GPU by ordinal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Device {
    Cpu,
    Cuda(u32),
}

/// An invalid device string. The message lists the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid device {0:?}: write \"cpu\" or \"cuda:N\" with N the GPU ordinal, such as \"cuda:0\""
)]
pub struct InvalidDevice(pub String);

impl FromStr for Device {
    type Err = InvalidDevice;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "cpu" {
            return Ok(Device::Cpu);
        }
        text.strip_prefix("cuda:")
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse().ok())
            .map(Device::Cuda)
            .ok_or_else(|| InvalidDevice(text.to_string()))
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// One or more devices; in TOML a single string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceList(pub Vec<Device>);

impl Default for DeviceList {
    fn default() -> Self {
        DeviceList(vec![Device::Cpu])
    }
}

impl FromStr for DeviceList {
    type Err = InvalidDevice;

    /// Parses a comma-separated list such as `cuda:0,cuda:1`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.split(',')
            .map(|part| part.trim().parse())
            .collect::<Result<_, _>>()
            .map(DeviceList)
    }
}

impl fmt::Display for DeviceList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.0.iter().map(Device::to_string).collect();
        write!(f, "{}", names.join(","))
    }
}

impl Serialize for DeviceList {
    /// Writes the devices as a list of strings, as the config file may.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(Device::to_string))
    }
}

impl<'de> Deserialize<'de> for DeviceList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            One(String),
            Many(Vec<String>),
        }

        let names = match Repr::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "expected a device string such as \"cpu\" or \"cuda:0\", or a list of them",
            )
        })? {
            Repr::One(name) => vec![name],
            Repr::Many(names) => names,
        };
        names
            .iter()
            .map(|name| name.parse().map_err(serde::de::Error::custom))
            .collect::<Result<_, _>>()
            .map(DeviceList)
    }
}
