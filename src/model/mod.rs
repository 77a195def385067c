//! The model family: what every network offers the trainer, the evaluator, the diagnostics and
//! the exporters ([`Network`]), the [`Model`] a run holds — the MLP of lab 10 ([`mlp`]) or the
//! CNN of lab 11 ([`cnn`]), each in its own file — and the layers and losses they share.

pub mod cnn;
pub mod mlp;

use burn::module::{Module, ParamId};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Initializer, Linear, LinearConfig,
};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData, activation};

use crate::config::{ExperimentConfig, Init, ModelKind};
use crate::data::NUM_CLASSES;
pub use crate::kernel::activation::ActivationFn;
pub use cnn::{Cnn, CnnWeights, ConvWeights};
pub use mlp::{FirstLayerHost, Mlp, MlpWeights};

/// What a network of the family offers. The trainer, the evaluator, the diagnostics and the
/// exporters ask this and nothing else of a model ([`Model`] holds one of them).
pub trait Network {
    /// Logits `[batch, 10]` from `input`; on an autodiff device this is the training forward
    /// pass (batchnorm on the batch's statistics, dropout), elsewhere inference.
    fn forward_from(&self, input: Input) -> Tensor<2>;

    /// Logits in training mode — batchnorm on the batch's statistics, dropout with masks from
    /// `rng` on the host — on a model without autodiff (`valid()`), leaving the batchnorm
    /// running statistics untouched: the lecture's `train_loss` with `training=True`.
    fn forward_training_mode(&self, input: Input, rng: &mut dyn rand::RngCore) -> Tensor<2>;

    /// Each hidden layer's outputs for `images` as training computes them, dropout aside, as
    /// rows of units: `[batch, units]` for a dense layer, `[batch × positions, channels]`
    /// for a convolution (a channel is a unit). Run on a model without autodiff.
    fn hidden_activity(&self, images: Tensor<2>) -> Vec<HiddenActivity>;

    /// The layers with weights, from the input to the output, named as the diagnostics and the
    /// exporters name them (`conv.0`, …, `hidden.0`, …, `output`).
    fn weight_layers(&self) -> Vec<WeightLayer<'_>>;

    /// The hidden layers' activation.
    fn activation(&self) -> ActivationFn;

    /// The batchnorm layers, for [`Model::settle_running_stats`].
    fn norms(&self) -> Vec<&BatchNorm>;

    /// The trained parameters on the host, for exporters.
    fn weights(&self) -> ModelWeights;
}

/// The network a run trains, as Burn sees it: one module whatever the member, so that the
/// optimizer, the checkpoints and autodiff take either. A checkpoint holds the member's own
/// record ([`Model::save_file`]), so an MLP checkpoint reads the same as before the family.
#[derive(Module, Debug)]
pub enum Model {
    Mlp(Mlp),
    Cnn(Cnn),
}

impl Model {
    /// Builds the config's model on `device`, drawing weights from the device RNG (seed it
    /// first).
    pub fn new(config: &ExperimentConfig, device: &Device) -> Self {
        match config.model {
            ModelKind::Mlp => Model::Mlp(Mlp::new(config, device)),
            ModelKind::Cnn => Model::Cnn(Cnn::new(config, device)),
        }
    }

    /// The member, as the family's interface.
    pub fn network(&self) -> &dyn Network {
        match self {
            Model::Mlp(m) => m,
            Model::Cnn(c) => c,
        }
    }

    /// The MLP, when this model is one whose first layer the kernels can compute from the
    /// images' lit pixels ([`crate::kernel`]); `None` sends every pass through Burn.
    pub fn lit_pixel_path(&self) -> Option<&Mlp> {
        match self {
            Model::Mlp(m) => Some(m),
            Model::Cnn(_) => None,
        }
    }

    /// Logits `[batch, 10]` for images `[batch, 784]` scaled to [0, 1].
    pub fn forward(&self, images: Tensor<2>) -> Tensor<2> {
        self.forward_from(Input::Images(images))
    }

    pub fn forward_from(&self, input: Input) -> Tensor<2> {
        self.network().forward_from(input)
    }

    pub fn forward_training_mode(&self, input: Input, rng: &mut dyn rand::RngCore) -> Tensor<2> {
        self.network().forward_training_mode(input, rng)
    }

    pub fn hidden_activity(&self, images: Tensor<2>) -> Vec<HiddenActivity> {
        self.network().hidden_activity(images)
    }

    pub fn weight_layers(&self) -> Vec<WeightLayer<'_>> {
        self.network().weight_layers()
    }

    pub fn activation(&self) -> ActivationFn {
        self.network().activation()
    }

    /// The trained parameters on the host, in Burn's layout, for exporters.
    pub fn weights(&self) -> ModelWeights {
        self.settle_running_stats();
        self.network().weights()
    }

    /// Folds the batchnorm statistics of the last training step into the values that get saved.
    ///
    /// Burn's `RunningState` keeps each step's update pending until the next read, and a
    /// module record reads the settled value without settling it first: a checkpoint taken
    /// without this lags one step behind in its running mean and variance.
    pub fn settle_running_stats(&self) {
        for norm in self.network().norms() {
            let _ = norm.running_mean.value_sync();
            let _ = norm.running_var.value_sync();
        }
    }

    /// Every parameter and batchnorm statistic, flattened in a fixed order: what "the same
    /// weights" means when comparing two runs bit for bit.
    pub fn parameters_flat(&self) -> Vec<f32> {
        self.settle_running_stats();
        let mut out = Vec::new();
        let mut push = |data: TensorData| out.extend(data.iter::<f32>());
        for layer in self.weight_layers() {
            push(layer.weight_data());
            if let Some(bias) = layer.bias_data() {
                push(bias);
            }
        }
        for norm in self.network().norms() {
            push(norm.gamma.val().into_data());
            push(norm.beta.val().into_data());
            push(norm.running_mean.value().into_data());
            push(norm.running_var.value().into_data());
        }
        out
    }

    /// Writes the member's record (Burn's burnpack) to `path`.
    pub fn save_file(&self, path: std::path::PathBuf) -> Result<(), String> {
        self.settle_running_stats();
        match self {
            Model::Mlp(m) => m.clone().save_file(path).map_err(|e| e.to_string()),
            Model::Cnn(c) => c.clone().save_file(path).map_err(|e| e.to_string()),
        }
    }

    /// Loads the member's record from `path` into this model (of the checkpoint's config).
    pub fn try_load_file(self, path: &std::path::Path) -> Result<Model, String> {
        match self {
            Model::Mlp(m) => m.try_load_file(path).map(Model::Mlp),
            Model::Cnn(c) => c.try_load_file(path).map(Model::Cnn),
        }
        .map_err(|e| e.to_string())
    }
}

/// Class probabilities of an ensemble (the softmax of the sum of its models' logits, as labs
/// 11-4 and 11-5 do; one model is an ensemble of one), one row of 10 per image.
pub fn ensemble_probabilities(models: &[Model], images: Tensor<2>) -> Vec<[f32; NUM_CLASSES]> {
    let logits = models
        .iter()
        .map(|m| m.forward(images.clone()))
        .reduce(|a, b| a + b)
        .expect("at least one model");
    let p: Vec<f32> = activation::softmax(logits, 1)
        .into_data()
        .iter::<f32>()
        .collect();
    p.chunks_exact(NUM_CLASSES)
        .map(|row| row.try_into().expect("rows of NUM_CLASSES"))
        .collect()
}

/// Where a forward pass starts: from the images, or — for the MLP, whose first layer the
/// kernels compute from the images' lit pixels ([`Model::lit_pixel_path`]) — from that layer.
#[derive(Debug, Clone)]
pub enum Input {
    /// `[batch, 784]`, scaled to [0, 1].
    Images(Tensor<2>),
    /// The first dense layer's output, bias included (`x·W1 + b1`).
    FirstLayer(Tensor<2>),
    /// The first dense layer's product without its bias (`x·W1`); the model adds the bias.
    FirstProduct(Tensor<2>),
    /// The first hidden layer's output after its activation, as [`Mlp::first_layer_from`]
    /// asked the first layer's loop to compute it.
    FirstActivated(Tensor<2>),
}

/// One hidden layer's outputs on a batch, as rows of units: after batchnorm (when the model
/// has it) and after the activation.
#[derive(Debug, Clone)]
pub struct HiddenActivity {
    pub normalized: Option<Tensor<2>>,
    pub activated: Tensor<2>,
}

/// A layer with weights, as the diagnostics read it.
pub enum WeightLayer<'a> {
    Dense(String, &'a Linear),
    Conv(String, &'a burn::nn::conv::Conv2d),
}

impl WeightLayer<'_> {
    pub fn name(&self) -> &str {
        match self {
            WeightLayer::Dense(name, _) | WeightLayer::Conv(name, _) => name,
        }
    }

    /// The weight's parameter id, where the optimizer finds its gradient.
    pub fn weight_id(&self) -> ParamId {
        match self {
            WeightLayer::Dense(_, l) => l.weight.id,
            WeightLayer::Conv(_, c) => c.weight.id,
        }
    }

    /// The weight's values, without autodiff.
    pub fn weight_data(&self) -> TensorData {
        match self {
            WeightLayer::Dense(_, l) => l.weight.val().inner().into_data(),
            WeightLayer::Conv(_, c) => c.weight.val().inner().into_data(),
        }
    }

    fn bias_data(&self) -> Option<TensorData> {
        match self {
            WeightLayer::Dense(_, l) => l.bias.as_ref().map(|b| b.val().inner().into_data()),
            WeightLayer::Conv(_, c) => c.bias.as_ref().map(|b| b.val().inner().into_data()),
        }
    }

    /// The weight's gradient in `grads`, when it has one.
    pub fn weight_grad(&self, grads: &GradientsParams) -> Option<TensorData> {
        match self {
            WeightLayer::Dense(_, l) => grads.get::<2>(l.weight.id).map(|g| g.into_data()),
            WeightLayer::Conv(_, c) => grads.get::<4>(c.weight.id).map(|g| g.into_data()),
        }
    }
}

/// Everything an exporter needs of a trained model.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelWeights {
    Mlp(MlpWeights),
    Cnn(CnnWeights),
}

/// A dense layer's parameters on the host: `weight` is `[d_in, d_out]`, row-major (Burn's
/// layout; PyTorch's is the transpose).
#[derive(Debug, Clone, PartialEq)]
pub struct DenseWeights {
    pub d_in: usize,
    pub d_out: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// A batchnorm layer's parameters and running statistics on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct NormWeights {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub running_mean: Vec<f32>,
    pub running_var: Vec<f32>,
    pub epsilon: f64,
}

/// Burn's initializer equal to the Keras one the config names.
pub fn initializer(init: Init, std: f64) -> Initializer {
    // Burn's Kaiming formulas scale 1/√fan by `gain`; gain √2 makes them He's (Keras'
    // he_uniform is ±√(6/fan_in), i.e. √3·√2/√fan_in).
    let he_gain = std::f64::consts::SQRT_2;
    match init {
        Init::RandomNormal => Initializer::Normal { mean: 0.0, std },
        Init::XavierUniform => Initializer::XavierUniform { gain: 1.0 },
        Init::XavierNormal => Initializer::XavierNormal { gain: 1.0 },
        Init::HeUniform => Initializer::KaimingUniform {
            gain: he_gain,
            fan_out_only: false,
        },
        Init::HeNormal => Initializer::KaimingNormal {
            gain: he_gain,
            fan_out_only: false,
        },
    }
}

/// A dense layer with `init`'s weights and a zero bias.
fn dense(d_in: usize, d_out: usize, init: &Initializer, device: &Device) -> Linear {
    let mut layer = LinearConfig::new(d_in, d_out)
        .with_initializer(init.clone())
        .init(device);
    // Burn would draw the bias from the weight initializer too; Keras starts it at zero.
    layer.bias = Some(Initializer::Zeros.init([d_out], device));
    // Parameters are lazy in Burn: draw the weights now, while the device RNG is in the state
    // the caller seeded, so the initial weights depend on the seed alone.
    let _ = layer.weight.val();
    layer
}

/// `layer` applied to `x`: in training on flex, with the products scheduled for the step
/// ([`crate::kernel::dense`]), elsewhere Burn's `Linear::forward`. Same values either way.
fn linear(layer: &Linear, x: Tensor<2>) -> Tensor<2> {
    #[cfg(feature = "flex")]
    return crate::kernel::dense::forward(layer, x);
    #[cfg(not(feature = "flex"))]
    layer.forward(x)
}

/// The dense layers both models end with: `hidden` → (batchnorm) → activation → (dropout),
/// then the output layer; built from the config's keys after a first layer of `d_in` inputs.
struct DenseStack {
    hidden: Vec<Linear>,
    norms: Vec<BatchNorm>,
    dropout: Option<Dropout>,
    output: Linear,
    activation: ActivationFn,
}

fn dense_stack(
    mut d_in: usize,
    config: &ExperimentConfig,
    init: &Initializer,
    device: &Device,
) -> DenseStack {
    let mut hidden = Vec::with_capacity(config.hidden.len());
    let mut norms = Vec::new();
    for &d_out in &config.hidden {
        hidden.push(dense(d_in, d_out, init, device));
        if config.batchnorm {
            norms.push(batch_norm(d_out, config, device));
        }
        d_in = d_out;
    }
    DenseStack {
        hidden,
        norms,
        output: dense(d_in, NUM_CLASSES, init, device),
        dropout: (config.dropout > 0.0).then(|| DropoutConfig::new(config.dropout).init()),
        activation: ActivationFn {
            kind: config.activation,
            leaky_slope: config.leaky_relu_slope,
        },
    }
}

/// A batchnorm layer over `features` (units or channels) with the config's settings.
fn batch_norm(features: usize, config: &ExperimentConfig, device: &Device) -> BatchNorm {
    BatchNormConfig::new(features)
        // Keras' momentum is the weight of the old average; Burn's is the weight of the new
        // batch.
        .with_momentum(1.0 - config.batchnorm_momentum)
        .with_epsilon(config.batchnorm_epsilon)
        .init(device)
}

/// Batchnorm on the batch's own statistics, without touching the running ones.
fn batch_statistics<const D: usize>(norm: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    burn::tensor::module::batch_norm_train(x, norm.gamma.val(), norm.beta.val(), norm.epsilon)
        .output
}

/// Dropout with a mask drawn on the host from `rng`, as Burn's Dropout computes it: keep with
/// probability 1 - p, scale the kept by 1 / (1 - p). Burn's CPU `random_like` samples element
/// by element and costs more than the rest of a training-mode pass.
fn host_dropout(dropout: &Dropout, x: Tensor<2>, rng: &mut dyn rand::RngCore) -> Tensor<2> {
    let keep = 1.0 - dropout.prob;
    let dims = x.dims();
    let threshold = (keep * 4_294_967_296.0) as u64;
    let scale = (1.0 / keep) as f32;
    let mask: Vec<f32> = (0..dims[0] * dims[1])
        .map(|_| {
            if (rng.next_u32() as u64) < threshold {
                scale
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_data(TensorData::new(mask, dims), &x.device());
    x * mask
}

/// A dense layer's parameters read back to the host.
fn dense_weights(layer: &Linear) -> DenseWeights {
    let [d_in, d_out] = layer.weight.shape().dims::<2>();
    DenseWeights {
        d_in,
        d_out,
        weight: layer.weight.val().into_data().iter::<f32>().collect(),
        bias: layer
            .bias
            .as_ref()
            .map_or_else(|| vec![0.0; d_out], |b| host(b.val())),
    }
}

fn norm_weights(n: &BatchNorm) -> NormWeights {
    NormWeights {
        gamma: host(n.gamma.val()),
        beta: host(n.beta.val()),
        running_mean: host(n.running_mean.value()),
        running_var: host(n.running_var.value()),
        epsilon: n.epsilon,
    }
}

fn host(t: Tensor<1>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// Mean cross-entropy of `logits` against integer `labels`.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits, labels)
}

/// Number of rows whose arg-max equals the label, as a 1-element tensor (no host sync).
pub fn correct_count(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1, Int> {
    logits
        .argmax(1)
        .squeeze_dim::<1>(1)
        .equal(labels)
        .int()
        .sum()
}
