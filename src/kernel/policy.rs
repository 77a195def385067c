//! Where the kernels stand in for Burn's dense products, and where Burn's own path runs.

use super::*;

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
    cpu && std::env::var_os("MNIST_TRAIN_DENSE").is_none()
}

/// Whether training steps on `device` take the first layer's product and weight gradient from
/// [`first_product`] and [`weight_gradient`]: on Burn's flex backend. The ndarray backend reads
/// a weight matrix back in 5.5 ms (flex: 0.04 ms), which a step would pay twice for the 0.5 ms
/// the kernels save.
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
    runs_on(device) && std::env::var_os("MNIST_TRAIN_DENSE_EVAL").is_none()
}
