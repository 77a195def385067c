//! The hidden layers' activations ([`Activation`], [`ActivationFn`]): Burn's, and on the CPU the
//! same functions vectorized on the host, for inference and, with their derivative, training.
//!
//! Burn's CPU backends compute tanh and sigmoid with one call to the C library per value
//! (docs/speed.md has the cost of each), and elu and selu as five passes around such an
//! `exp`: a 10,000-image test pass of a tanh net spent twice as long in tanh as in everything
//! else. Here each is a loop of plain arithmetic that the compiler vectorizes (16 values at a
//! time with AVX-512), around a polynomial `exp` (Cephes' `expf`, within 2 ulp). No crate in our
//! tree offers a vectorized `exp` for stable Rust, so it is written out.
//!
//! Passes without autodiff on the CPU (evaluation, the lecture's train columns, `predict`) take
//! tanh, sigmoid, elu and selu from here; training on flex takes every activation but relu,
//! the values and the derivative, from here and the chain rule from Burn's autodiff
//! ([`apply_tracked`]); [`ActivationFn::apply_any`] decides. The results agree with Burn's to a
//! few units in the last place (tanh near 0: within 1e-7 absolute), far below what moves a
//! prediction; the tests of `evaluate` hold this path to the dense one.

use burn::tensor::{Tensor, TensorData};

use super::KernelPath;
use serde::{Deserialize, Serialize};

/// Hidden-layer activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    Sigmoid,
    Tanh,
    Relu,
    /// ELU with alpha 1.0.
    Elu,
    Selu,
    /// Leaky ReLU; slope set by `leaky_relu_slope` (default 0.01 as in PyTorch and Burn;
    /// Keras' LeakyReLU layer defaults to 0.3).
    LeakyRelu,
}

/// The activation applied after each hidden layer (and its batchnorm).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActivationFn {
    pub kind: Activation,
    pub leaky_slope: f64,
}

impl ActivationFn {
    /// For the activations built on `exp`, on the CPU: the same function vectorized on the
    /// host ([`crate::kernel::activation`]), several times faster than the CPU backends'.
    /// Burn's relu and leaky relu work in place and are as fast as the host's there: the round
    /// trip through the host made a relu test pass slower (docs/speed.md).
    /// In training (autodiff tracks `x`), on flex, every activation but relu takes its values
    /// and derivative from the host: Burn's leaky relu costs several passes forward and back
    /// (with Burn's, a leaky relu epoch took clearly longer than a relu one; from the host, about
    /// as long: docs/speed.md). Elsewhere Burn's activation.
    pub fn apply_any(&self, x: Tensor<2>) -> Tensor<2> {
        let exp_based = !matches!(self.kind, Activation::Relu | Activation::LeakyRelu);
        let tracked = x.is_autodiff();
        if exp_based && !tracked && crate::kernel::runs_on(&x.device()) {
            crate::kernel::activation::apply_tensor(self.kind, self.leaky_slope, x)
        } else if self.kind != Activation::Relu && tracked && crate::kernel::trains_on(&x.device())
        {
            crate::kernel::activation::apply_tracked(self.kind, self.leaky_slope, x)
        } else {
            self.apply(x)
        }
    }

    pub fn apply<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self.kind {
            Activation::Sigmoid => burn::tensor::activation::sigmoid(x),
            Activation::Tanh => burn::tensor::activation::tanh(x),
            Activation::Relu => burn::tensor::activation::relu(x),
            Activation::Elu => burn::tensor::activation::elu(x, 1.0),
            Activation::Selu => burn::tensor::activation::selu(x),
            Activation::LeakyRelu => burn::tensor::activation::leaky_relu(x, self.leaky_slope),
        }
    }
}

/// SELU's constants, as Burn's `selu` (from the SELU paper / ONNX).
const SELU_ALPHA: f32 = 1.673_263_2;
const SELU_GAMMA: f32 = 1.050_701;

/// `kind` applied to `x`, a tensor on the CPU without autodiff, through the host.
pub fn apply_tensor(kind: Activation, leaky_slope: f64, x: Tensor<2>) -> Tensor<2> {
    let device = x.device();
    let dims = x.dims();
    let mut values = crate::kernel::host_f32(x.into_data());
    apply(kind, leaky_slope as f32, &mut values);
    Tensor::from_data(TensorData::new(values, dims), &device)
}

/// `kind` applied to every value, in place.
pub fn apply(kind: Activation, leaky_slope: f32, values: &mut [f32]) {
    apply_on(KernelPath::detect(), kind, leaky_slope, values)
}

fn apply_on(path: KernelPath, kind: Activation, leaky_slope: f32, values: &mut [f32]) {
    match path {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `detect` found the CPU features these versions are compiled for.
        KernelPath::Avx512 => unsafe { apply_avx512(kind, leaky_slope, values) },
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 => unsafe { apply_avx2(kind, leaky_slope, values) },
        _ => apply_inline(kind, leaky_slope, values),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn apply_avx512(kind: Activation, leaky_slope: f32, values: &mut [f32]) {
    apply_inline(kind, leaky_slope, values)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn apply_avx2(kind: Activation, leaky_slope: f32, values: &mut [f32]) {
    apply_inline(kind, leaky_slope, values)
}

/// `kind` applied to `x`, a tensor that autodiff tracks, on the CPU, for training: the values
/// from [`apply`] and the derivative from [`derivative`], both computed on the host; Burn's
/// autodiff applies the chain rule. The result is `y + (x − x̄)·y′`, with `x̄` and the
/// host's `y` and `y′` constants: its value is `y` (the difference is zero) and its gradient
/// `y′` times the one coming back, which is the activation's. Burn's own tanh, sigmoid, elu
/// and selu call the C library once per value forward and again backward; this is three cheap
/// passes instead. (An infinite input gives NaN here where tanh would give ±1: training has
/// diverged by then.)
pub fn apply_tracked(kind: Activation, leaky_slope: f64, x: Tensor<2>) -> Tensor<2> {
    let device = x.device();
    let dims = x.dims();
    let input = crate::kernel::host_f32(x.clone().into_data());
    let mut y = input.clone();
    apply(kind, leaky_slope as f32, &mut y);
    let mut dy = vec![0.0; y.len()];
    derivative(kind, leaky_slope as f32, &input, &y, &mut dy);
    let constant =
        |values: Vec<f32>| Tensor::<2>::from_data(TensorData::new(values, dims), &device);
    let (y, dy) = (constant(y), constant(dy));
    y + (x.clone() - x.detach()) * dy
}

/// The derivative of `kind` at each `x`, from its value `y` there where that is cheaper.
pub fn derivative(kind: Activation, leaky_slope: f32, x: &[f32], y: &[f32], out: &mut [f32]) {
    assert!(x.len() == y.len() && out.len() == y.len(), "lengths");
    match kind {
        Activation::Relu => each_xy(out, x, y, |x, _| if x > 0.0 { 1.0 } else { 0.0 }),
        Activation::LeakyRelu => {
            each_xy(out, x, y, |x, _| if x >= 0.0 { 1.0 } else { leaky_slope })
        }
        Activation::Sigmoid => each_xy(out, x, y, |_, y| y * (1.0 - y)),
        Activation::Tanh => each_xy(out, x, y, |_, y| 1.0 - y * y),
        // e^x = y + 1 below zero.
        Activation::Elu => each_xy(out, x, y, |x, y| if x > 0.0 { 1.0 } else { y + 1.0 }),
        Activation::Selu => each_xy(out, x, y, |x, y| {
            if x >= 0.0 {
                SELU_GAMMA
            } else {
                y + SELU_ALPHA * SELU_GAMMA
            }
        }),
    }
}

/// One loop per activation, each with the same NaN behaviour as Burn's (NaN stays NaN).
#[inline(always)]
fn apply_inline(kind: Activation, leaky_slope: f32, values: &mut [f32]) {
    match kind {
        // As Burn's flex backend: NaN passes through.
        Activation::Relu => each(values, |x| if x.is_nan() || x > 0.0 { x } else { 0.0 }),
        Activation::LeakyRelu => each(values, |x| if x >= 0.0 { x } else { x * leaky_slope }),
        Activation::Sigmoid => each(values, |x| 1.0 / (1.0 + exp(-x))),
        Activation::Tanh => each(values, |x| {
            // tanh |x| = (1 − e^{−2|x|}) / (1 + e^{−2|x|}), with the sign put back.
            let t = exp(-2.0 * x.abs());
            ((1.0 - t) / (1.0 + t)).copysign(x)
        }),
        Activation::Elu => each(values, |x| if x > 0.0 { x } else { exp(x) - 1.0 }),
        Activation::Selu => each(values, |x| {
            if x >= 0.0 {
                SELU_GAMMA * x
            } else {
                SELU_ALPHA * SELU_GAMMA * (exp(x) - 1.0)
            }
        }),
    }
}

#[inline(always)]
fn each_xy(out: &mut [f32], x: &[f32], y: &[f32], f: impl Fn(f32, f32) -> f32) {
    for ((o, &x), &y) in out.iter_mut().zip(x).zip(y) {
        *o = f(x, y);
    }
}

#[inline(always)]
fn each(values: &mut [f32], f: impl Fn(f32) -> f32) {
    for v in values.iter_mut() {
        *v = f(*v);
    }
}

/// `e^x` for f32, vectorizable: x = n·ln 2 + r with |r| ≤ ln 2 / 2, e^r from Cephes' degree-6
/// polynomial, 2^n put into the exponent bits. Clamped to the normal range (e^x of x beyond
/// ±87.3 gives 2^±126-ish instead of 0 or ∞: what a sigmoid or tanh makes of it is the same).
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.3, 88.3);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p.mul_add(r, 1.398_199_9e-3);
    let p = p.mul_add(r, 8.333_452e-3);
    let p = p.mul_add(r, 4.166_579_6e-2);
    let p = p.mul_add(r, 1.666_666_5e-1);
    let p = p.mul_add(r, 0.5);
    let e_r = p * r * r + r + 1.0;
    // NaN: `n as i32` is 0 and `e_r` NaN, so NaN comes out.
    e_r * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::host_f32;

    fn grid() -> Vec<f32> {
        let mut x: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.005).collect();
        x.extend([-100.0, -88.0, -30.0, -1e-6, 0.0, 1e-6, 30.0, 88.0, 100.0]);
        x
    }

    /// Within a few ulp of the f64 functions over [-20, 20] and at the extremes, on every
    /// version this CPU runs.
    #[test]
    fn matches_the_functions_in_f64() {
        let slope = 0.2f32;
        for kind in [
            Activation::Relu,
            Activation::LeakyRelu,
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::Elu,
            Activation::Selu,
        ] {
            let x = grid();
            for path in KernelPath::supported() {
                let mut y = x.clone();
                apply_on(path, kind, slope, &mut y);
                for (&x, &y) in x.iter().zip(&y) {
                    let x64 = x as f64;
                    let want = match kind {
                        Activation::Relu => x64.max(0.0),
                        Activation::LeakyRelu => {
                            if x64 >= 0.0 {
                                x64
                            } else {
                                x64 * slope as f64
                            }
                        }
                        Activation::Sigmoid => 1.0 / (1.0 + (-x64).exp()),
                        Activation::Tanh => x64.tanh(),
                        Activation::Elu => {
                            if x64 > 0.0 {
                                x64
                            } else {
                                x64.exp_m1()
                            }
                        }
                        Activation::Selu => {
                            let (a, g) = (SELU_ALPHA as f64, SELU_GAMMA as f64);
                            if x64 >= 0.0 {
                                g * x64
                            } else {
                                a * g * x64.exp_m1()
                            }
                        }
                    };
                    let err = (y as f64 - want).abs();
                    assert!(
                        err <= 4.0 * f32::EPSILON as f64 * want.abs() + 1.5e-7,
                        "{path:?} {kind:?}({x}) = {y}, want {want}"
                    );
                }
            }
        }
    }

    /// Training's activations through autodiff: the values are the host loop's, bit for bit,
    /// and the gradient agrees with Burn's own activation's to within a few ulp.
    #[test]
    fn tracked_activations_differentiate_as_burns() {
        use burn::tensor::Device;
        let ad = Device::flex().autodiff();
        let x: Vec<f32> = (-1600..1600).map(|i| i as f32 * 0.005).collect();
        let upstream: Vec<f32> = (0..x.len()).map(|i| 0.5 + (i % 7) as f32 * 0.25).collect();
        let tensor =
            |v: &[f32]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [200, 16]), &ad);
        for kind in [
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::Elu,
            Activation::Selu,
            Activation::LeakyRelu,
        ] {
            let f = super::ActivationFn {
                kind,
                leaky_slope: 0.2,
            };
            let run = |tracked: bool| {
                let input = tensor(&x).require_grad();
                let y = match tracked {
                    true => apply_tracked(kind, 0.2, input.clone()),
                    false => f.apply(input.clone()),
                };
                let grads = (y.clone() * tensor(&upstream)).sum().backward();
                let grad = input.grad(&grads).expect("a gradient for the input");
                (host_f32(y.into_data()), host_f32(grad.into_data()))
            };
            let (ours, burns) = (run(true), run(false));
            let mut expected = x.clone();
            apply(kind, 0.2, &mut expected);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&ours.0), bits(&expected), "{kind:?}: values");
            for (i, (a, b)) in ours.1.iter().zip(&burns.1).enumerate() {
                let tolerance = 4.0 * f32::EPSILON * b.abs().max(upstream[i]) + 1e-7;
                assert!(
                    (a - b).abs() <= tolerance,
                    "{kind:?} at {}: {a} vs Burn's {b}",
                    x[i]
                );
            }
        }
    }

    #[test]
    fn nan_stays_nan() {
        for kind in [Activation::Relu, Activation::Sigmoid, Activation::Tanh] {
            let mut y = [f32::NAN];
            apply(kind, 0.01, &mut y);
            assert!(y[0].is_nan(), "{kind:?}");
        }
    }

    #[test]
    fn exp_is_within_two_ulp() {
        for x in grid().into_iter().filter(|x| x.abs() < 87.0) {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            assert!(
                (got - want).abs() <= 2.0 * f32::EPSILON as f64 * want,
                "exp({x}) = {got}, want {want}"
            );
        }
    }
}
