//! The CNN of lab 11: 28×28×1 → for each of `conv_channels`: 3×3 convolution (SAME padding) →
//! (batchnorm) → activation → 2×2 max-pooling (SAME) → flatten → for each of `hidden`: dense →
//! (batchnorm) → activation → (dropout) → dense 10.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, Dropout, Initializer, Linear, PaddingConfig2d};
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Tensor};

use super::{
    ActivationFn, DenseStack, DenseWeights, HiddenActivity, Input, ModelWeights, Network,
    NormWeights, WeightLayer, batch_norm, batch_statistics, dense_stack, dense_weights,
    host_dropout, initializer, linear, norm_weights,
};
use crate::config::ExperimentConfig;
use crate::data::IMAGE_SIDE;
use crate::kernel::activation::Activation;

/// Side of the square convolution kernels.
pub const KERNEL: usize = 3;

#[derive(Module, Debug)]
pub struct Cnn {
    convs: Vec<Conv2d>,
    /// One per convolution when batchnorm is on, else empty.
    conv_norms: Vec<BatchNorm>,
    hidden: Vec<Linear>,
    /// One per hidden dense layer when batchnorm is on, else empty.
    norms: Vec<BatchNorm>,
    dropout: Option<Dropout>,
    output: Linear,
    #[module(skip)]
    activation: ActivationFn,
}

/// How a pass treats batchnorm and dropout.
enum Pass<'a> {
    /// Burn's layers: training on an autodiff device, inference elsewhere.
    Plain,
    /// Training mode without autodiff: batch statistics, dropout masks from the host.
    TrainingMode(&'a mut dyn rand::RngCore),
    /// Batch statistics, no dropout, each hidden layer's outputs kept.
    Observe(&'a mut Vec<HiddenActivity>),
}

impl Pass<'_> {
    /// `n` applied to `x`: Burn's layer on a plain pass, the batch's statistics otherwise.
    fn norm<const D: usize>(&self, n: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
        match self {
            Pass::Plain => n.forward(x),
            _ => batch_statistics(n, x),
        }
    }
}

impl Cnn {
    /// Builds the model on `device`, drawing weights from the device RNG (seed it first): the
    /// convolutions in order, then the dense layers.
    pub fn new(config: &ExperimentConfig, device: &Device) -> Self {
        let init = initializer(config.init, config.init_std);
        let mut channels_in = 1;
        let mut convs = Vec::new();
        let mut conv_norms = Vec::new();
        for &channels in &config.conv_channels() {
            convs.push(conv(channels_in, channels, &init, device));
            if config.batchnorm {
                conv_norms.push(batch_norm(channels, config, device));
            }
            channels_in = channels;
        }
        let DenseStack {
            hidden,
            norms,
            dropout,
            output,
            activation,
        } = dense_stack(config.conv_output_size(), config, &init, device);
        Self {
            convs,
            conv_norms,
            hidden,
            norms,
            dropout,
            output,
            activation,
        }
    }

    /// The layers in order on images `[batch, 784]`, batchnorm and dropout as `pass` says.
    fn run(&self, images: Tensor<2>, mut pass: Pass) -> Tensor<2> {
        let [batch, _] = images.dims();
        let mut x: Tensor<4> = images.reshape([batch, 1, IMAGE_SIDE, IMAGE_SIDE]);
        for (i, conv) in self.convs.iter().enumerate() {
            let relu_only = self.conv_norms.is_empty() && self.activation.kind == Activation::Relu;
            if relu_only && !matches!(pass, Pass::Observe(_)) {
                // Nothing looks at the activations before the pooling: one operation.
                x = convolve_relu_pool(conv, x);
                continue;
            }
            let mut normalized = None;
            if let Some(n) = self.conv_norms.get(i) {
                x = pass.norm(n, convolve(conv, x, false));
                if matches!(pass, Pass::Observe(_)) {
                    normalized = Some(channels_as_units(x.clone()));
                }
                x = self.activate(x);
            } else if relu_only {
                x = convolve(conv, x, true);
            } else {
                x = self.activate(convolve(conv, x, false));
            }
            if let Pass::Observe(seen) = &mut pass {
                seen.push(HiddenActivity {
                    normalized,
                    activated: channels_as_units(x.clone()),
                });
            }
            x = pool(x);
        }
        let [batch, channels, height, width] = x.dims();
        let mut x: Tensor<2> = x.reshape([batch, channels * height * width]);
        for (i, layer) in self.hidden.iter().enumerate() {
            x = linear(layer, x);
            let mut normalized = None;
            if let Some(n) = self.norms.get(i) {
                x = pass.norm(n, x);
                if matches!(pass, Pass::Observe(_)) {
                    normalized = Some(x.clone());
                }
            }
            x = self.activation.apply_any(x);
            if let Pass::Observe(seen) = &mut pass {
                seen.push(HiddenActivity {
                    normalized,
                    activated: x.clone(),
                });
            }
            if let Some(d) = &self.dropout {
                x = match &mut pass {
                    Pass::Plain => d.forward(x),
                    Pass::TrainingMode(rng) => host_dropout(d, x, *rng),
                    Pass::Observe(_) => x,
                };
            }
        }
        linear(&self.output, x)
    }

    /// The activation of a convolution's output, through the same paths as a dense layer's
    /// (the host's vectorized loops where they stand in for Burn's).
    fn activate(&self, x: Tensor<4>) -> Tensor<4> {
        let dims = x.dims();
        let [batch, channels, height, width] = dims;
        let flat: Tensor<2> = x.reshape([batch, channels * height * width]);
        self.activation.apply_any(flat).reshape(dims)
    }
}

/// A 3×3 convolution with SAME padding, `init`'s kernel (fan-in 9 × `channels_in`, fan-out
/// 9 × `channels_out`, as Keras counts them) and a zero bias.
fn conv(channels_in: usize, channels_out: usize, init: &Initializer, device: &Device) -> Conv2d {
    let mut layer = Conv2dConfig::new([channels_in, channels_out], [KERNEL, KERNEL])
        .with_padding(PaddingConfig2d::Same)
        .with_initializer(init.clone())
        .init(device);
    // As for the dense layers: Keras starts the bias at zero, and the lazy weight is drawn
    // now, while the device RNG is in the state the caller seeded.
    layer.bias = Some(Initializer::Zeros.init([channels_out], device));
    let _ = layer.weight.val();
    layer
}

/// `conv` applied to `x`, through a relu with `relu`: the kernels on flex
/// ([`crate::kernel::conv`]), Burn's layer and relu elsewhere.
fn convolve(conv: &Conv2d, x: Tensor<4>, relu: bool) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if let Some(y) = crate::kernel::conv::conv3x3(conv, &x, relu) {
        return y;
    }
    let y = conv.forward(x);
    if relu {
        burn::tensor::activation::relu(y)
    } else {
        y
    }
}

/// `conv` applied to `x`, through a relu and [`pool`]: one operation on flex
/// ([`crate::kernel::conv::conv3x3_relu_pool`]), Burn's three elsewhere.
fn convolve_relu_pool(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if let Some(y) = crate::kernel::conv::conv3x3_relu_pool(conv, &x) {
        return y;
    }
    pool(convolve(conv, x, true))
}

/// 2×2 max-pooling with stride 2 and Keras' SAME padding: an odd side gets one more window,
/// padded at the end with −∞ so that it takes the maximum of the pixels it covers (7 → 4).
/// The kernels on flex, Burn's operation elsewhere.
fn pool(x: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if let Some(y) = crate::kernel::conv::max_pool2x2(&x) {
        return y;
    }
    let [_, _, height, width] = x.dims();
    let options = MaxPoolOptions::new([2, 2]).with_padding_pairs([(0, height % 2), (0, width % 2)]);
    burn::tensor::module::max_pool2d(x, options)
}

/// `[batch, channels, height, width]` as rows of channels, `[batch × height × width,
/// channels]`: each channel is one unit of the diagnostics, seen at every position.
fn channels_as_units(x: Tensor<4>) -> Tensor<2> {
    let [batch, channels, height, width] = x.dims();
    x.permute([0, 2, 3, 1])
        .reshape([batch * height * width, channels])
}

impl Network for Cnn {
    fn forward_from(&self, input: Input) -> Tensor<2> {
        self.run(images(input), Pass::Plain)
    }

    fn forward_training_mode(&self, input: Input, rng: &mut dyn rand::RngCore) -> Tensor<2> {
        self.run(images(input), Pass::TrainingMode(rng))
    }

    fn hidden_activity(&self, images: Tensor<2>) -> Vec<HiddenActivity> {
        let mut seen = Vec::new();
        self.run(images, Pass::Observe(&mut seen));
        seen
    }

    fn weight_layers(&self) -> Vec<WeightLayer<'_>> {
        let convs =
            (self.convs.iter().enumerate()).map(|(i, c)| WeightLayer::Conv(format!("conv.{i}"), c));
        let dense = (self.hidden.iter().enumerate())
            .map(|(i, l)| WeightLayer::Dense(format!("hidden.{i}"), l));
        convs
            .chain(dense)
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
        self.conv_norms.iter().chain(&self.norms).collect()
    }

    fn weights(&self) -> ModelWeights {
        let conv = |c: &Conv2d| {
            let [channels_out, channels_in, kernel, _] = c.weight.shape().dims::<4>();
            ConvWeights {
                channels_in,
                channels_out,
                kernel,
                weight: c.weight.val().into_data().iter::<f32>().collect(),
                bias: c.bias.as_ref().map_or_else(
                    || vec![0.0; channels_out],
                    |b| b.val().into_data().iter::<f32>().collect(),
                ),
            }
        };
        ModelWeights::Cnn(CnnWeights {
            convs: self.convs.iter().map(conv).collect(),
            conv_norms: self.conv_norms.iter().map(norm_weights).collect(),
            hidden: self.hidden.iter().map(dense_weights).collect(),
            norms: self.norms.iter().map(norm_weights).collect(),
            output: dense_weights(&self.output),
        })
    }
}

/// The images of a pass: the CNN offers no lit-pixel path ([`super::Model::lit_pixel_path`]),
/// so nothing else is ever passed to it.
fn images(input: Input) -> Tensor<2> {
    match input {
        Input::Images(x) => x,
        _ => unreachable!("the CNN starts from the images"),
    }
}

/// A convolution's parameters on the host: `weight` is `[out, in, 3, 3]` (OIHW, PyTorch's
/// and ONNX's layout).
#[derive(Debug, Clone, PartialEq)]
pub struct ConvWeights {
    pub channels_in: usize,
    pub channels_out: usize,
    pub kernel: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// Everything an exporter needs of a trained [`Cnn`].
#[derive(Debug, Clone, PartialEq)]
pub struct CnnWeights {
    pub convs: Vec<ConvWeights>,
    /// One per convolution with batchnorm, else empty.
    pub conv_norms: Vec<NormWeights>,
    pub hidden: Vec<DenseWeights>,
    /// One per hidden dense layer with batchnorm, else empty.
    pub norms: Vec<NormWeights>,
    pub output: DenseWeights,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Init, ModelKind};
    use crate::data::IMAGE_PIXELS;
    use crate::model::Model;
    use burn::tensor::{Distribution, TensorData};

    fn device() -> Device {
        crate::backend::Backend::default_cpu().device().unwrap()
    }

    fn lab11() -> ExperimentConfig {
        ExperimentConfig {
            model: ModelKind::Cnn,
            hidden: vec![256],
            init: Init::XavierUniform,
            dropout: 0.4,
            ..Default::default()
        }
    }

    #[test]
    fn the_lab11_network_has_the_notebooks_619786_parameters() {
        let config = lab11();
        assert_eq!(config.parameter_count(), 619_786);
        let model = Model::new(&config, &device());
        assert_eq!(model.num_params(), 619_786);
        let bn = ExperimentConfig {
            batchnorm: true,
            ..lab11()
        };
        // Batchnorm adds a scale and a shift per channel and per dense unit.
        let extra = 2 * (32 + 64 + 128 + 256);
        assert_eq!(bn.parameter_count(), 619_786 + extra as u64);
        // Burn counts the running mean and variance among a module's parameters too.
        assert_eq!(Model::new(&bn, &device()).num_params(), 619_786 + 2 * extra);
    }

    /// Keras' SAME pooling of an odd side: the last window covers the last pixel alone.
    #[test]
    fn pooling_an_odd_side_takes_the_last_pixel_alone_as_keras_does() {
        let d = device();
        // 1 × 1 × 3 × 3, values chosen negative so that a zero pad would win.
        let values: Vec<f32> = (1..=9).map(|v| -(v as f32)).collect();
        let x = Tensor::<4>::from_data(TensorData::new(values, [1, 1, 3, 3]), &d);
        let out: Vec<f32> = pool(x).into_data().iter::<f32>().collect();
        // Windows: rows {0,1}×cols {0,1} → max(-1,-2,-4,-5) = -1; {0,1}×{2} → -3;
        // {2}×{0,1} → -7; {2}×{2} → -9.
        assert_eq!(out, [-1.0, -3.0, -7.0, -9.0]);
        let even = Tensor::<4>::random([2, 3, 14, 14], Distribution::Default, &d);
        assert_eq!(pool(even).dims(), [2, 3, 7, 7]);
        let odd = Tensor::<4>::random([2, 3, 7, 7], Distribution::Default, &d);
        assert_eq!(pool(odd).dims(), [2, 3, 4, 4]);
    }

    /// Glorot's bound for a 3×3 kernel counts the receptive field: ±√(6 / (9·in + 9·out)).
    #[test]
    fn conv_kernels_are_drawn_with_kerass_fan_in_and_fan_out() {
        let d = device();
        d.seed(5);
        let layer = conv(32, 64, &initializer(Init::XavierUniform, 0.0), &d);
        let w: Vec<f32> = layer.weight.val().into_data().iter::<f32>().collect();
        assert_eq!(w.len(), 64 * 32 * 9);
        let bound = (6.0f64 / (9.0 * 32.0 + 9.0 * 64.0)).sqrt();
        let max = w.iter().fold(0f32, |m, &v| m.max(v.abs())) as f64;
        assert!(max <= bound && max > 0.99 * bound, "max {max} vs {bound}");
        let bias: Vec<f32> = layer
            .bias
            .unwrap()
            .val()
            .into_data()
            .iter::<f32>()
            .collect();
        assert!(bias.iter().all(|&b| b == 0.0));
        let he = conv(32, 64, &initializer(Init::HeUniform, 0.0), &d);
        let w: Vec<f32> = he.weight.val().into_data().iter::<f32>().collect();
        let bound = (6.0f64 / (9.0 * 32.0)).sqrt();
        let max = w.iter().fold(0f32, |m, &v| m.max(v.abs())) as f64;
        assert!(
            max <= bound && max > 0.99 * bound,
            "he: max {max} vs {bound}"
        );
    }

    #[test]
    fn passes_give_logits_and_the_diagnostics_see_each_channel() {
        let config = ExperimentConfig {
            conv_channels: Some(vec![4, 8, 8]),
            hidden: vec![16],
            batchnorm: true,
            ..lab11()
        };
        let d = device();
        d.seed(1);
        let model = Model::new(&config, &d);
        let x = Tensor::<2>::random([5, IMAGE_PIXELS], Distribution::Default, &d);
        assert_eq!(model.forward(x.clone()).dims(), [5, 10]);
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3);
        let training = model.forward_training_mode(Input::Images(x.clone()), &mut rng);
        assert_eq!(training.dims(), [5, 10]);
        let seen = model.hidden_activity(x);
        // 28 → 14 → 7 → 4: rows are images × positions, columns the channels.
        let dims: Vec<[usize; 2]> = seen.iter().map(|a| a.activated.dims()).collect();
        assert_eq!(dims, [[5 * 784, 4], [5 * 196, 8], [5 * 49, 8], [5, 16]]);
        assert!(seen.iter().all(|a| a.normalized.is_some()));
        let names: Vec<String> = model
            .weight_layers()
            .iter()
            .map(|l| l.name().to_string())
            .collect();
        assert_eq!(names, ["conv.0", "conv.1", "conv.2", "hidden.0", "output"]);
        assert!(model.lit_pixel_path().is_none());
    }

    #[test]
    fn dropout_is_active_in_training_and_off_in_eval() {
        let ad = device().autodiff();
        ad.seed(1);
        let config = ExperimentConfig {
            conv_channels: Some(vec![4]),
            hidden: vec![16],
            dropout: 0.5,
            ..lab11()
        };
        let model = Model::new(&config, &ad);
        let x = Tensor::<2>::random([8, IMAGE_PIXELS], Distribution::Default, &ad);
        let a = model.forward(x.clone()).into_data();
        let b = model.forward(x.clone()).into_data();
        assert_ne!(a, b, "two training passes draw different dropout masks");
        let eval = model.valid();
        let x = x.inner();
        assert_eq!(
            eval.forward(x.clone()).into_data(),
            eval.forward(x).into_data()
        );
    }
}
