//! Where the kernels stand in for Burn's operations, and where Burn's own path runs: the
//! settings are read from the environment once, into one [`FastPaths`] value, and every
//! decision asks it.

use std::sync::OnceLock;

use super::*;

/// The fast-path settings of this process. The variables exist to compare the paths on one
/// machine; a run records the paths it took in `run.json` ([`FastPaths::taken_on`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastPaths {
    /// `MNIST_TRAIN_DENSE` unset: on the CPU the kernels stand in for Burn's operations.
    pub kernels: bool,
    /// `MNIST_TRAIN_DENSE_EVAL` unset: evaluation takes its first layer from the lit pixels.
    pub sparse_eval: bool,
    /// The compiled version of the loops (`MNIST_TRAIN_KERNEL` may ask for a lesser one).
    pub kernel: KernelPath,
    /// `MNIST_TRAIN_EVAL_CHUNK`: images per evaluation chunk instead of the backend's default.
    pub eval_chunk: Option<usize>,
    /// `MNIST_TRAIN_BURN_CONV` unset: the CNN's convolutions and pooling run
    /// [`super::conv`]'s kernels (with the other kernels on).
    pub conv_kernels: bool,
    /// `MNIST_TRAIN_NO_WINOGRAD` unset: convolutions with enough input channels take
    /// Winograd's products ([`super::winograd`], [`super::winograd4`]) forward, and a pooled
    /// one's gradients too, rather than products over unfolded neighbourhoods.
    pub winograd: bool,
}

impl FastPaths {
    /// This process's settings, read from the environment the first time they are asked for
    /// (`main` asks first thing), so that no decision sees another value than the others.
    pub fn get() -> FastPaths {
        static PATHS: OnceLock<FastPaths> = OnceLock::new();
        *PATHS.get_or_init(Self::from_env)
    }

    fn from_env() -> FastPaths {
        FastPaths {
            kernels: std::env::var_os("MNIST_TRAIN_DENSE").is_none(),
            sparse_eval: std::env::var_os("MNIST_TRAIN_DENSE_EVAL").is_none(),
            kernel: KernelPath::detect(),
            eval_chunk: std::env::var("MNIST_TRAIN_EVAL_CHUNK")
                .ok()
                .and_then(|v| v.parse().ok()),
            conv_kernels: std::env::var_os("MNIST_TRAIN_BURN_CONV").is_none(),
            winograd: std::env::var_os("MNIST_TRAIN_NO_WINOGRAD").is_none(),
        }
    }

    /// Which implementation each replaceable operation takes on `device`, for `run.json`:
    /// `"kernel"` (hand-written, `docs/architecture.md`) or `"burn"`, for a run of `activation`.
    /// `fused_adam`: the run's optimizer is Adam without weight decay, the one the one-pass
    /// update serves; `model`: the MLP's first layer is the one the first-layer kernels
    /// compute, the CNN's convolutions and pooling the ones [`super::conv`] computes.
    pub fn taken_on(
        &self,
        device: &Device,
        activation: super::activation::Activation,
        fused_adam: bool,
        model: crate::config::ModelKind,
    ) -> serde_json::Value {
        use super::activation::Activation::{LeakyRelu, Relu};
        use crate::config::ModelKind;
        let which = |fast: bool| if fast { "kernel" } else { "burn" };
        let lit_pixels = model == ModelKind::Mlp;
        let (train, eval, any) = (trains_on(device), evaluates_on(device), runs_on(device));
        serde_json::json!({
            "first_layer_training": which(train && lit_pixels),
            "first_layer_evaluation": which(eval && lit_pixels),
            "dense_layers_training": which(train),
            // As ActivationFn::apply_any decides: Burn's relu is as fast as a host loop, and
            // so is its leaky relu outside autodiff.
            "activations_training": which(train && activation != Relu),
            "activations_inference": which(any && !matches!(activation, Relu | LeakyRelu)),
            "adam_update": which(train && fused_adam),
            // Training and evaluation alike; a model without convolutions has none.
            "convolutions": match model {
                ModelKind::Cnn => which(train && self.conv_kernels),
                ModelKind::Mlp => "none",
            },
            // How the kernels multiply from 8 input channels (the lab's second and third
            // convolutions).
            "convolution_products": match model {
                ModelKind::Cnn if train && self.conv_kernels => {
                    if self.winograd { "winograd" } else { "unfolded" }
                }
                ModelKind::Cnn => "burn",
                ModelKind::Mlp => "none",
            },
            "loops": if any { self.kernel.name() } else { "none" },
        })
    }
}

/// Whether `device` computes on this machine's CPU, where these kernels can stand in for the
/// first layer's dense products. `MNIST_TRAIN_DENSE=1` turns them off everywhere, for
/// comparison; `MNIST_TRAIN_DENSE_EVAL=1` in evaluation only.
pub fn runs_on(device: &Device) -> bool {
    let device = device.clone().without_autodiff();
    let cpu = {
        #[cfg(feature = "flex")]
        let flex = device == Device::flex();
        #[cfg(not(feature = "flex"))]
        let flex = false;
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        // Burn's ndarray backend, deprecated upstream, still one of ours.
        let ndarray = device == Device::ndarray();
        #[cfg(not(feature = "ndarray"))]
        let ndarray = false;
        flex || ndarray
    };
    cpu && FastPaths::get().kernels
}

/// Whether training steps on `device` take the first layer's product and weight gradient from
/// [`first_product`] and [`weight_gradient`]: on Burn's flex backend. The ndarray backend reads
/// a weight matrix back far slower than flex, and a step would pay that twice: more than the
/// kernels save (docs/speed.md).
pub fn trains_on(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    {
        runs_on(device) && device.clone().without_autodiff() == Device::flex()
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
        false
    }
}

/// Whether evaluations on `device` take their first layer from [`first_layer`].
pub fn evaluates_on(device: &Device) -> bool {
    runs_on(device) && FastPaths::get().sparse_eval
}
