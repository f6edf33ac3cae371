//! Parsing the `--device` and `--dtype` options into candle's types.

use candle_core::{DType, Device};

use super::error::{ModelError, Result};

/// Parses `cpu`, `cuda` (device 0) or `cuda:N`. CUDA devices need a build
/// with the `cuda` cargo feature.
pub fn parse_device(value: &str) -> Result<Device> {
    let ordinal = match value {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(ordinal)) => ordinal,
            _ => {
                return Err(ModelError::Device {
                    value: value.to_string(),
                    message: "use cpu, cuda or cuda:N".to_string(),
                });
            }
        },
    };
    cuda_device(value, ordinal)
}

#[cfg(feature = "cuda")]
fn cuda_device(value: &str, ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal).map_err(|e| ModelError::Device {
        value: value.to_string(),
        message: format!("cannot open CUDA device {ordinal}: {e}"),
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(value: &str, _ordinal: usize) -> Result<Device> {
    Err(ModelError::Device {
        value: value.to_string(),
        message: "this gaze-worker was built without CUDA; rebuild with `--features cuda`"
            .to_string(),
    })
}

/// The dtype the weights are loaded and computed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DTypeChoice {
    /// f32 on the CPU, where half-precision matmuls are slow; on a GPU the
    /// checkpoint's `torch_dtype`, or bf16 when it names none.
    #[default]
    Auto,
    Fixed(DType),
}

impl std::str::FromStr for DTypeChoice {
    type Err = ModelError;

    fn from_str(value: &str) -> Result<Self> {
        match value {
            "auto" => Ok(Self::Auto),
            "f32" | "float32" => Ok(Self::Fixed(DType::F32)),
            "f16" | "float16" => Ok(Self::Fixed(DType::F16)),
            "bf16" | "bfloat16" => Ok(Self::Fixed(DType::BF16)),
            other => Err(ModelError::DType {
                value: other.to_string(),
            }),
        }
    }
}

impl DTypeChoice {
    /// Picks the dtype for `device` and a checkpoint whose config names
    /// `config_dtype` (such as `bfloat16`).
    pub fn resolve(self, device: &Device, config_dtype: Option<&str>) -> DType {
        match self {
            Self::Fixed(dtype) => dtype,
            Self::Auto if device.is_cpu() => DType::F32,
            Self::Auto => match config_dtype {
                Some("float16") => DType::F16,
                Some("float32") => DType::F32,
                _ => DType::BF16,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_device_parses() {
        assert!(parse_device("cpu").unwrap().is_cpu());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_feature_says_how_to_build() {
        let message = parse_device("cuda:0").unwrap_err().to_string();
        assert!(message.contains("--features cuda"), "{message}");
    }

    #[test]
    fn unknown_device_rejected() {
        let message = parse_device("tpu").unwrap_err().to_string();
        assert!(message.contains("\"tpu\""), "{message}");
    }

    #[test]
    fn auto_dtype_is_f32_on_cpu() {
        assert_eq!(
            DTypeChoice::Auto.resolve(&Device::Cpu, Some("bfloat16")),
            DType::F32
        );
    }

    #[test]
    fn dtype_names_parse() {
        assert_eq!(
            "bf16".parse::<DTypeChoice>().unwrap(),
            DTypeChoice::Fixed(DType::BF16)
        );
        assert!(
            "int8"
                .parse::<DTypeChoice>()
                .unwrap_err()
                .to_string()
                .contains("int8")
        );
    }
}
