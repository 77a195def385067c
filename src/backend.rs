//! Which Burn backend runs the model, chosen at run time.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// Burn's pure-Rust CPU backend (fastest on CPU here; the default).
    Flex,
    /// The classic ndarray CPU backend.
    Ndarray,
    /// Any GPU through wgpu (Vulkan, Metal, DX12); needs the `wgpu` cargo feature.
    Wgpu,
}

impl Backend {
    /// The fastest CPU backend compiled into this binary.
    pub fn default_cpu() -> Self {
        if cfg!(feature = "flex") {
            Backend::Flex
        } else {
            Backend::Ndarray
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Ndarray => "ndarray",
            Backend::Wgpu => "wgpu",
        }
    }

    /// The device to train on (without autodiff).
    pub fn device(self) -> Result<Device> {
        let missing = |feature: &str| {
            Error::Usage(format!(
                "--backend {} is not compiled into this binary; rebuild with \
                 `cargo build --release --features {feature}`",
                self.name()
            ))
        };
        match self {
            #[cfg(feature = "flex")]
            Backend::Flex => Ok(Device::flex()),
            #[cfg(not(feature = "flex"))]
            Backend::Flex => Err(missing("flex")),
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            // upstream deprecates ndarray; our users still ask for it
            Backend::Ndarray => Ok(Device::ndarray()),
            #[cfg(not(feature = "ndarray"))]
            Backend::Ndarray => Err(missing("ndarray")),
            Backend::Wgpu => Err(missing("wgpu")),
        }
    }
}

/// Sizes the CPU thread pool (rayon) shared by the CPU backends. Must run before any tensor work.
pub fn set_threads(threads: usize) -> Result<()> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| Error::Other(format!("cannot set up {threads} threads: {e}")))
}
