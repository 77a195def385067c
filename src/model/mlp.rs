//! The MLP of lab 10: 784 → hidden… → 10, each hidden layer
//! dense → (batchnorm) → activation → (dropout).

use burn::module::Module;
use burn::nn::{BatchNorm, Dropout, Linear};
use burn::tensor::{Device, Tensor, TensorData};

use super::{
    ActivationFn, DenseStack, DenseWeights, HiddenActivity, Input, ModelWeights, Network,
    NormWeights, WeightLayer, batch_statistics, dense_stack, dense_weights, host_dropout,
    initializer, linear, norm_weights,
};
use crate::config::{Activation, ExperimentConfig};
use crate::data::IMAGE_PIXELS;
use crate::kernel::{HostWeights, SparseImages, Then, host_f32};

/// A model's first dense layer read back to the host, as the kernels read it: its weight
/// ([`HostWeights`]) and bias. Reading it back costs about 0.1 ms, once per version of the
/// weights when callers pass it on: the lecture's train columns make it for the updated model,
/// which the test pass and the next step then use ([`crate::train::run_step`]).
pub type FirstLayerHost = (HostWeights, Vec<f32>);

#[derive(Module, Debug)]
pub struct Mlp {
    hidden: Vec<Linear>,
    /// One per hidden layer when batchnorm is on, else empty.
    norms: Vec<BatchNorm>,
    dropout: Option<Dropout>,
    output: Linear,
    #[module(skip)]
    activation: ActivationFn,
}

impl Mlp {
    /// Builds the model on `device`, drawing weights from the device RNG (seed it first).
    pub fn new(config: &ExperimentConfig, device: &Device) -> Self {
        let init = initializer(config.init, config.init_std);
        let DenseStack {
            hidden,
            norms,
            dropout,
            output,
            activation,
        } = dense_stack(IMAGE_PIXELS, config, &init, device);
        Self {
            hidden,
            norms,
            dropout,
            output,
            activation,
        }
    }

    /// Logits `[batch, 10]` for images `[batch, 784]` scaled to [0, 1].
    pub fn forward(&self, images: Tensor<2>) -> Tensor<2> {
        self.forward_from(Input::Images(images))
    }

    /// Logits from `input` ([`Input`]: the images, or the first dense layer's product computed
    /// elsewhere, [`crate::kernel`]), the rest as [`Mlp::forward`]. On an autodiff device this
    /// is the training forward pass.
    pub fn forward_from(&self, input: Input) -> Tensor<2> {
        self.forward_with(
            input,
            |norm, x| norm.forward(x),
            |dropout, x| dropout.forward(x),
            None,
        )
    }

    /// The first dense layer: it reads the images.
    fn first_dense(&self) -> &Linear {
        self.hidden.first().unwrap_or(&self.output)
    }

    /// The first dense layer's weight (`[784, width]`, row-major) on the host.
    pub fn first_weight_host(&self) -> HostWeights {
        let weight = self.first_dense().weight.val();
        let [pixels, width] = weight.dims();
        HostWeights::new(&host_f32(weight.into_data()), pixels, width)
    }

    /// The first dense layer's weight (`[784, width]`, row-major) and bias on the host.
    pub fn first_layer_host(&self) -> FirstLayerHost {
        let layer = self.first_dense();
        let width = layer.weight.dims()[1];
        let bias = layer.bias.as_ref().map_or_else(
            || vec![0.0; width],
            |b| b.val().into_data().iter::<f32>().collect(),
        );
        (self.first_weight_host(), bias)
    }

    /// What the first layer's loop can apply before storing its outputs in an inference pass:
    /// the first hidden layer's activation when it is relu or leaky relu and no batchnorm
    /// comes between ([`Mlp::first_layer_from`]).
    fn first_layer_then(&self) -> Then {
        if self.hidden.is_empty() || !self.norms.is_empty() {
            return Then::Store;
        }
        match self.activation.kind {
            Activation::Relu => Then::Relu,
            Activation::LeakyRelu => Then::LeakyRelu(self.activation.leaky_slope as f32),
            _ => Then::Store,
        }
    }

    /// The first layer of an inference pass over `images`, from their lit pixels
    /// ([`crate::kernel::first_layer`]) with this model's weights and bias as
    /// [`Mlp::first_layer_host`] read them, as the input of the rest of the pass on `device`.
    pub fn first_layer_from(
        &self,
        images: &SparseImages,
        (weights, bias): &FirstLayerHost,
        device: &Device,
    ) -> Input {
        let then = self.first_layer_then();
        let mut first = vec![0f32; images.rows() * bias.len()];
        crate::kernel::first_layer(images, weights, bias, then, &mut first);
        let first = Tensor::from_data(TensorData::new(first, [images.rows(), bias.len()]), device);
        match then {
            Then::Store => Input::FirstLayer(first),
            Then::Relu | Then::LeakyRelu(_) => Input::FirstActivated(first),
        }
    }

    /// The parameter id of the first dense layer's weight: where a gradient computed outside
    /// autodiff ([`crate::kernel::weight_gradient`]) is registered for the optimizer.
    pub fn first_weight_id(&self) -> burn::module::ParamId {
        self.first_dense().weight.id
    }

    /// The layers in order, with batchnorm and dropout as the caller computes them; `observe`
    /// sees each hidden layer's batchnorm output and activation. (Only when asked: a second
    /// reference to a tensor keeps the next operation from working in place.)
    fn forward_with(
        &self,
        input: Input,
        norm: impl Fn(&BatchNorm, Tensor<2>) -> Tensor<2>,
        mut dropout: impl FnMut(&Dropout, Tensor<2>) -> Tensor<2>,
        mut observe: Option<&mut dyn FnMut(HiddenActivity)>,
    ) -> Tensor<2> {
        let first_activated = matches!(input, Input::FirstActivated(_));
        let (mut x, first_done) = match input {
            Input::Images(x) => (x, false),
            Input::FirstLayer(x) | Input::FirstActivated(x) => (x, true),
            // The bias as `Linear::forward` adds it, so its gradient is autodiff's as before.
            Input::FirstProduct(x) => match &self.first_dense().bias {
                Some(bias) => (x + bias.val().unsqueeze_dim(0), true),
                None => (x, true),
            },
        };
        if first_done && self.hidden.is_empty() {
            return x;
        }
        for (i, layer) in self.hidden.iter().enumerate() {
            if !(first_done && i == 0) {
                x = linear(layer, x);
            }
            let mut normalized = None;
            if first_activated && i == 0 {
                // Activated by the first layer's loop (`first_layer_then`): no batchnorm here.
            } else {
                if let Some(n) = self.norms.get(i) {
                    x = norm(n, x);
                    normalized = observe.is_some().then(|| x.clone());
                }
                x = self.activation.apply_any(x);
            }
            if let Some(observe) = observe.as_mut() {
                observe(HiddenActivity {
                    normalized,
                    activated: x.clone(),
                });
            }
            if let Some(d) = &self.dropout {
                x = dropout(d, x);
            }
        }
        linear(&self.output, x)
    }
}

impl Network for Mlp {
    fn forward_from(&self, input: Input) -> Tensor<2> {
        Mlp::forward_from(self, input)
    }

    // Burn's layers take their training path only on an autodiff device, where they also
    // update the running statistics, so the two training-mode operations are spelled out here.
    fn forward_training_mode(&self, input: Input, rng: &mut dyn rand::RngCore) -> Tensor<2> {
        self.forward_with(
            input,
            batch_statistics,
            |d, x| host_dropout(d, x, rng),
            None,
        )
    }

    fn hidden_activity(&self, images: Tensor<2>) -> Vec<HiddenActivity> {
        let mut seen = Vec::with_capacity(self.hidden.len());
        self.forward_with(
            Input::Images(images),
            batch_statistics,
            |_, x| x,
            Some(&mut |activity| seen.push(activity)),
        );
        seen
    }

    fn weight_layers(&self) -> Vec<WeightLayer<'_>> {
        self.hidden
            .iter()
            .enumerate()
            .map(|(i, l)| WeightLayer::Dense(format!("hidden.{i}"), l))
            .chain(std::iter::once(WeightLayer::Dense(
                "output".to_string(),
                &self.output,
            )))
            .collect()
    }

    fn activation(&self) -> ActivationFn {
        self.activation
    }

    fn norms(&self) -> Vec<&BatchNorm> {
        self.norms.iter().collect()
    }

    fn weights(&self) -> ModelWeights {
        ModelWeights::Mlp(MlpWeights {
            hidden: self.hidden.iter().map(dense_weights).collect(),
            norms: self.norms.iter().map(norm_weights).collect(),
            output: dense_weights(&self.output),
        })
    }
}

/// Everything an exporter needs of a trained [`Mlp`].
#[derive(Debug, Clone, PartialEq)]
pub struct MlpWeights {
    pub hidden: Vec<DenseWeights>,
    /// One per hidden layer with batchnorm, else empty.
    pub norms: Vec<NormWeights>,
    pub output: DenseWeights,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Init;
    use crate::model::dense;
    use burn::tensor::Distribution;

    fn device() -> Device {
        crate::backend::Backend::default_cpu().device().unwrap()
    }

    fn values(t: Tensor<1>) -> Vec<f32> {
        t.into_data().iter::<f32>().collect()
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn activations_compute_their_formulas() {
        let d = device();
        let x = || Tensor::<1>::from_floats([-2.0, -0.5, 0.0, 1.5], &d);
        let f = |kind| {
            values(
                ActivationFn {
                    kind,
                    leaky_slope: 0.1,
                }
                .apply(x()),
            )
        };
        let xs = [-2.0f32, -0.5, 0.0, 1.5];
        let map = |g: fn(f32) -> f32| xs.iter().map(|&v| g(v)).collect::<Vec<_>>();
        close(&f(Activation::Relu), &[0.0, 0.0, 0.0, 1.5]);
        close(&f(Activation::LeakyRelu), &[-0.2, -0.05, 0.0, 1.5]);
        close(&f(Activation::Sigmoid), &map(|v| 1.0 / (1.0 + (-v).exp())));
        close(&f(Activation::Tanh), &map(f32::tanh));
        close(
            &f(Activation::Elu),
            &map(|v| if v > 0.0 { v } else { v.exp() - 1.0 }),
        );
        close(
            &f(Activation::Selu),
            &map(|v| {
                1.050_701
                    * if v > 0.0 {
                        v
                    } else {
                        1.673_263_2 * (v.exp() - 1.0)
                    }
            }),
        );
    }

    /// Weights of a 784 → 256 layer under `init`, with biases.
    fn first_layer(init: Init, std: f64) -> (Vec<f32>, Vec<f32>) {
        let d = device();
        d.seed(3);
        let layer = dense(784, 256, &initializer(init, std), &d);
        let w = layer.weight.val().into_data().iter::<f32>().collect();
        let b = layer
            .bias
            .unwrap()
            .val()
            .into_data()
            .iter::<f32>()
            .collect();
        (w, b)
    }

    fn mean_std(v: &[f32]) -> (f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt())
    }

    #[test]
    fn initializers_match_the_keras_formulas() {
        let (fan_in, fan_out) = (784.0f64, 256.0f64);
        let check = |init, std_arg, want_std: f64, bound: Option<f64>| {
            let (w, b) = first_layer(init, std_arg);
            assert!(
                b.iter().all(|&x| x == 0.0),
                "{init:?}: biases start at zero"
            );
            let (mean, std) = mean_std(&w);
            assert!(
                mean.abs() < 0.01 * want_std.max(0.01),
                "{init:?} mean {mean}"
            );
            assert!(
                (std / want_std - 1.0).abs() < 0.02,
                "{init:?}: std {std}, expected {want_std}"
            );
            if let Some(limit) = bound {
                let max = w.iter().fold(0f32, |m, &x| m.max(x.abs())) as f64;
                assert!(
                    max <= limit && max > 0.99 * limit,
                    "{init:?}: max {max} vs {limit}"
                );
            }
        };
        check(Init::RandomNormal, 0.05, 0.05, None);
        check(Init::RandomNormal, 1.0, 1.0, None);
        let glorot = (6.0 / (fan_in + fan_out)).sqrt();
        check(Init::XavierUniform, 0.0, glorot / 3f64.sqrt(), Some(glorot));
        check(
            Init::XavierNormal,
            0.0,
            (2.0 / (fan_in + fan_out)).sqrt(),
            None,
        );
        let he = (6.0 / fan_in).sqrt();
        check(Init::HeUniform, 0.0, he / 3f64.sqrt(), Some(he));
        check(Init::HeNormal, 0.0, (2.0 / fan_in).sqrt(), None);
    }

    fn config(dropout: f64, batchnorm: bool) -> ExperimentConfig {
        ExperimentConfig {
            dropout,
            batchnorm,
            hidden: vec![32],
            init: Init::HeUniform,
            ..Default::default()
        }
    }

    #[test]
    fn dropout_is_active_in_training_and_off_in_eval() {
        let ad = device().autodiff();
        ad.seed(1);
        let model = Mlp::new(&config(0.5, false), &ad);
        let x = Tensor::<2>::random([16, IMAGE_PIXELS], Distribution::Default, &ad);
        let a = model.forward(x.clone()).into_data();
        let b = model.forward(x.clone()).into_data();
        assert_ne!(a, b, "two training passes draw different dropout masks");

        let eval = model.valid();
        let x = x.inner();
        let c = eval.forward(x.clone()).into_data();
        let d = eval.forward(x).into_data();
        assert_eq!(c, d, "evaluation is deterministic: no dropout");
    }

    #[test]
    fn batchnorm_uses_batch_statistics_in_training_and_running_ones_in_eval() {
        let ad = device().autodiff();
        ad.seed(1);
        let model = Mlp::new(&config(0.0, true), &ad);
        let norm = &model.norms[0];
        assert!(
            (norm.momentum - 0.01).abs() < 1e-12,
            "Keras 0.99 is Burn 0.01"
        );
        assert_eq!(norm.epsilon, 1e-3);

        let x = Tensor::<2>::random([64, IMAGE_PIXELS], Distribution::Default, &ad);
        let h = model.hidden[0].forward(x.clone());
        // Training: each feature is normalized over the batch (mean 0, variance ~1).
        let out = norm.forward(h.clone());
        let mean: Vec<f32> = out.clone().mean_dim(0).into_data().iter::<f32>().collect();
        assert!(mean.iter().all(|m| m.abs() < 1e-4), "{mean:?}");
        // The running mean moved 1% of the way from 0 to the batch mean.
        let batch_mean: Vec<f32> = h.clone().mean_dim(0).into_data().iter::<f32>().collect();
        let running: Vec<f32> = norm
            .running_mean
            .value_sync()
            .into_data()
            .iter::<f32>()
            .collect();
        for (r, b) in running.iter().zip(&batch_mean) {
            assert!((r - 0.01 * b).abs() < 1e-5, "running {r} vs batch {b}");
        }
        // Eval: the running statistics (mostly the initial 0/1) are used, not the batch's.
        let eval = model.valid();
        let out_eval = eval.norms[0].forward(h.inner());
        let mean_eval: Vec<f32> = out_eval.mean_dim(0).into_data().iter::<f32>().collect();
        assert!(
            mean_eval
                .iter()
                .zip(&batch_mean)
                .any(|(e, b)| (e - 0.99 * b).abs() < 1e-2 && b.abs() > 0.1),
            "eval output keeps most of the batch mean"
        );
    }
}
