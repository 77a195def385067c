//! Burn's Adam with its update done in one pass over each parameter on the CPU.
//!
//! Burn's Adam (`burn::optim::Adam`) updates a parameter in thirteen tensor operations (scale
//! and add each moment, square, square root, divide, scale, subtract), each a pass over the
//! tensor into a new buffer. On the CPU that was a sizeable part of a training step for the
//! lecture's 270k parameters (docs/speed.md). Burn has no fused Adam for its CPU backends,
//! so this does the same arithmetic in one loop: the same operations in the same order, each
//! rounded to f32 as Burn rounds it, so the weights and moments are bit-identical to Burn's
//! (tested). The state is Burn's own `AdamState`, so checkpoints do not change either.
//!
//! Off the CPU (wgpu), with weight decay or with `MNIST_TRAIN_DENSE=1` it is Burn's Adam.

use burn::optim::{Adam, AdamConfig, AdamState, AdaptiveMomentumState, LearningRate, Optimizer};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use crate::kernel::host_f32;
use crate::kernel::{self, KernelPath};

/// Adam without weight decay; see the module's comment.
#[derive(Clone)]
pub struct FusedAdam {
    burn: Adam,
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
}

impl FusedAdam {
    pub fn new(beta_1: f32, beta_2: f32, epsilon: f32) -> Self {
        let burn = AdamConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(epsilon)
            .build();
        Self {
            burn,
            beta_1,
            beta_2,
            epsilon,
        }
    }
}

impl FusedAdam {
    /// The scalars of step `time` (1-based), computed as Burn computes them.
    fn constants(&self, time: usize, lr: LearningRate) -> Constants {
        let t = time as i32;
        let bias_correction2_sqrt = (1.0 - self.beta_2.powi(t)).sqrt();
        Constants {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            factor_1: 1.0 - self.beta_1,
            factor_2: 1.0 - self.beta_2,
            combined: bias_correction2_sqrt / (1.0 - self.beta_1.powi(t)),
            epsilon: self.epsilon * bias_correction2_sqrt,
            lr: lr as f32,
            first: time == 1,
        }
    }
}

impl Optimizer for FusedAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let device = tensor.device();
        if !kernel::trains_on(&device) {
            return self.burn.step(lr, tensor, grad, state);
        }
        let shape = tensor.shape();
        let mut param = host_f32(tensor.into_data());
        let grad = host_f32(grad.into_data());
        let (time, mut m, mut v) = match state {
            Some(state) => {
                let momentum = state.momentum;
                (
                    momentum.time + 1,
                    host_f32(momentum.moment_1.into_data()),
                    host_f32(momentum.moment_2.into_data()),
                )
            }
            None => (1, vec![0.0; grad.len()], vec![0.0; grad.len()]),
        };
        let constants = self.constants(time, lr);
        update(
            KernelPath::detect(),
            &constants,
            &mut param,
            &grad,
            &mut m,
            &mut v,
        );
        let tensor = |values: Vec<f32>| {
            Tensor::<D>::from_data(TensorData::new(values, shape.clone()), &device)
        };
        let momentum = AdaptiveMomentumState::new(time, tensor(m), tensor(v));
        (tensor(param), Some(AdamState::new(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        Adam::to_device(state, device)
    }
}

/// The scalars of one step.
struct Constants {
    beta_1: f32,
    beta_2: f32,
    factor_1: f32,
    factor_2: f32,
    combined: f32,
    epsilon: f32,
    lr: f32,
    /// Burn's first step starts the moments from the gradient alone (not from zeros times
    /// beta, which would round the same but is not what Burn does).
    first: bool,
}

fn update(
    path: KernelPath,
    c: &Constants,
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    assert!(param.len() == grad.len() && m.len() == grad.len() && v.len() == grad.len());
    const CHUNK: usize = 1 << 14;
    param
        .par_chunks_mut(CHUNK)
        .zip(grad.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
        .for_each(|((param, grad), (m, v))| match path {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `detect` found the CPU features these versions are compiled for.
            KernelPath::Avx512 => unsafe { update_avx512(c, param, grad, m, v) },
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx2 => unsafe { update_avx2(c, param, grad, m, v) },
            _ => update_inline(c, param, grad, m, v),
        });
}

// One wrapper per CPU feature level, written out as in `kernel.rs`: a generic wrapper around
// a closure compiles the closure without the features.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2")]
unsafe fn update_avx512(
    c: &Constants,
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    update_inline(c, param, grad, m, v)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn update_avx2(
    c: &Constants,
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    update_inline(c, param, grad, m, v)
}

/// Burn's operations, one rounding each and in its order (Rust never fuses a multiply and an
/// add on its own), so the compiler vectorizes this without changing a bit.
#[inline(always)]
fn update_inline(c: &Constants, param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32]) {
    let items = param
        .iter_mut()
        .zip(grad)
        .zip(m.iter_mut().zip(v.iter_mut()));
    if c.first {
        for ((p, &g), (m, v)) in items {
            *m = g * c.factor_1;
            *v = (g * g) * c.factor_2;
            *p = step(c, *p, *m, *v);
        }
    } else {
        for ((p, &g), (m, v)) in items {
            *m = *m * c.beta_1 + g * c.factor_1;
            *v = *v * c.beta_2 + (g * g) * c.factor_2;
            *p = step(c, *p, *m, *v);
        }
    }
}

#[inline(always)]
fn step(c: &Constants, p: f32, m: f32, v: f32) -> f32 {
    p - ((m * c.combined) / (v.sqrt() + c.epsilon)) * c.lr
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn bits(t: Tensor<2>) -> Vec<u32> {
        host_f32(t.into_data())
            .iter()
            .map(|x| x.to_bits())
            .collect()
    }

    /// Each compiled version of the loop, three steps from no state, against Burn's Adam on the
    /// same gradients: weights and both moments equal bit for bit.
    #[test]
    fn every_version_updates_as_burns_adam_bit_for_bit() {
        let device = Device::flex();
        let fused = FusedAdam::new(0.9, 0.999, 1e-7);
        let shape = [37, 19];
        let start: Tensor<2> = Tensor::random(shape, Distribution::Normal(0.0, 0.1), &device);
        let grads: Vec<Tensor<2>> = (0..3)
            .map(|i| Tensor::random(shape, Distribution::Normal(0.0, 10f64.powi(-i)), &device))
            .collect();
        let lrs = [1e-3, 1e-3, 3e-4];

        let mut expected = (start.clone(), None);
        for (grad, &lr) in grads.iter().zip(&lrs) {
            expected = fused.burn.step(lr, expected.0, grad.clone(), expected.1);
        }
        let state = expected.1.unwrap().momentum;
        assert_eq!(state.time, 3);

        for path in KernelPath::supported() {
            let mut param = host_f32(start.clone().into_data());
            let (mut m, mut v) = (vec![0.0; param.len()], vec![0.0; param.len()]);
            for (i, (grad, &lr)) in grads.iter().zip(&lrs).enumerate() {
                let grad = host_f32(grad.clone().into_data());
                update(
                    path,
                    &fused.constants(i + 1, lr),
                    &mut param,
                    &grad,
                    &mut m,
                    &mut v,
                );
            }
            let as_bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                as_bits(&param),
                bits(expected.0.clone()),
                "{path:?}: weights"
            );
            assert_eq!(
                as_bits(&m),
                bits(state.moment_1.clone()),
                "{path:?}: first moment"
            );
            assert_eq!(
                as_bits(&v),
                bits(state.moment_2.clone()),
                "{path:?}: second moment"
            );
        }
    }

    /// Through the `Optimizer` trait, as training calls it: the state it leaves is Burn's, so
    /// a checkpoint written by either continues in the other.
    #[test]
    fn state_passes_between_burns_adam_and_the_fused_one() {
        let device = Device::flex();
        let fused = FusedAdam::new(0.9, 0.999, 1e-7);
        let shape = [5, 300];
        let w: Tensor<2> = Tensor::random(shape, Distribution::Uniform(-1.0, 1.0), &device);
        let g = |s: f64| Tensor::<2>::random(shape, Distribution::Normal(0.0, s), &device);
        let (g1, g2) = (g(1.0), g(0.5));

        let (w_burn, state) = fused.burn.step(1e-3, w.clone(), g1.clone(), None);
        let (w_burn, _) = fused.burn.step(1e-3, w_burn, g2.clone(), state.clone());
        let (w_mixed, _) = fused.step(1e-3, fused.burn.step(1e-3, w, g1, None).0, g2, state);
        assert_eq!(bits(w_mixed), bits(w_burn));
    }
}
