//! Which burn device a model runs on: the pure-Rust `flex` CPU backend, or a wgpu GPU
//! adapter (cargo feature `gpu`). Software rasterisers such as Mesa's llvmpipe pose as
//! GPUs; `auto` never takes one, and `gpu` takes one only when nothing better exists,
//! with a warning.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;
use thiserror::Error;

/// What the operator asked for with `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The `flex` CPU backend.
    Cpu,
    /// A wgpu adapter; an error when there is none.
    Gpu,
    /// The faster of the CPU and a hardware GPU, measured at load.
    #[default]
    Auto,
}

impl FromStr for DeviceChoice {
    type Err = DeviceError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "cpu" => Ok(DeviceChoice::Cpu),
            "gpu" => Ok(DeviceChoice::Gpu),
            "auto" => Ok(DeviceChoice::Auto),
            other => Err(DeviceError::UnknownChoice(other.to_string())),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Gpu => "gpu",
            DeviceChoice::Auto => "auto",
        })
    }
}

/// Why no device could be chosen.
#[derive(Debug, Error, PartialEq)]
pub enum DeviceError {
    /// `--device` named something else.
    #[error("device must be one of cpu, gpu, auto; got {0:?}")]
    UnknownChoice(String),
    /// `--device gpu` on a machine without a wgpu adapter.
    #[error(
        "--device gpu: no GPU adapter was found (is a Vulkan, Metal or DX12 driver installed?); use --device cpu or auto"
    )]
    NoGpu,
    /// `--device gpu` on a build without the `gpu` feature.
    #[error("--device gpu: this build has no GPU support (cargo feature `gpu` is off)")]
    GpuNotBuilt,
}

/// A device that a model can run on, with what it is in words.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The burn device.
    pub device: Device,
    /// What it is, e.g. `cpu (flex)` or `gpu: NVIDIA H100 (wgpu)`.
    pub description: String,
    /// Whether it is a GPU adapter (hardware or software).
    pub is_gpu: bool,
    /// Whether it is a software rasteriser posing as a GPU.
    pub is_software: bool,
}

impl Candidate {
    /// The `flex` CPU backend.
    pub fn cpu() -> Self {
        Candidate {
            device: Device::flex(),
            description: "cpu (flex)".to_string(),
            is_gpu: false,
            is_software: false,
        }
    }
}

/// Every wgpu adapter on this machine, hardware ones first.
#[cfg(feature = "gpu")]
pub fn gpu_adapters() -> Vec<Candidate> {
    use burn::tensor::DeviceType;
    let mut adapters: Vec<Candidate> = Device::enumerate(DeviceType::Wgpu)
        .into_iter()
        .map(|device| {
            let identity = device.identity();
            let is_software = identity
                .as_ref()
                .is_none_or(|identity| identity.physical.is_none());
            let name = identity.map_or_else(|| format!("{device:?}"), |identity| identity.name);
            let kind = if is_software { "software " } else { "" };
            Candidate {
                description: format!("gpu: {name} ({kind}wgpu)"),
                device,
                is_gpu: true,
                is_software,
            }
        })
        .collect();
    adapters.sort_by_key(|candidate| candidate.is_software);
    adapters
}

/// Every wgpu adapter on this machine: none, since this build has no GPU support.
#[cfg(not(feature = "gpu"))]
pub fn gpu_adapters() -> Vec<Candidate> {
    Vec::new()
}

/// The devices to consider for `choice`: one for `cpu` and `gpu`, the CPU and the
/// first hardware GPU (if any) for `auto`, to be timed by the caller.
pub fn candidates(choice: DeviceChoice) -> Result<Vec<Candidate>, DeviceError> {
    match choice {
        DeviceChoice::Cpu => Ok(vec![Candidate::cpu()]),
        DeviceChoice::Gpu => {
            if !cfg!(feature = "gpu") {
                return Err(DeviceError::GpuNotBuilt);
            }
            let adapter = gpu_adapters()
                .into_iter()
                .next()
                .ok_or(DeviceError::NoGpu)?;
            if adapter.is_software {
                tracing::warn!(
                    adapter = %adapter.description,
                    "the only GPU adapter is a software rasteriser; it runs on the CPU and is slower than --device cpu"
                );
            }
            Ok(vec![adapter])
        }
        DeviceChoice::Auto => {
            let mut candidates = vec![Candidate::cpu()];
            candidates.extend(
                gpu_adapters()
                    .into_iter()
                    .filter(|candidate| !candidate.is_software)
                    .take(1),
            );
            Ok(candidates)
        }
    }
}
