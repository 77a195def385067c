//! The experiment config: one serde struct, read from JSON, overridden by flags, validated,
//! and written back into every run directory so a run can be repeated exactly.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::DatasetName;
use crate::error::{Error, Result};
/// The activations live with their implementations; the config names them.
pub use crate::kernel::activation::Activation;

/// Weight initializer of the dense and convolution layers (a 3×3 kernel's fan-in is
/// 9 × input channels, its fan-out 9 × filters, as Keras and PyTorch count them). Biases always
/// start at zero, as in Keras.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// Normal(0, init_std); Keras' RandomNormal (default stddev 0.05).
    RandomNormal,
    /// Uniform(±√(6/(fan_in+fan_out))); Keras' glorot_uniform. Alias: `xavier`.
    #[serde(alias = "xavier")]
    #[value(alias = "xavier")]
    XavierUniform,
    /// Normal(0, √(2/(fan_in+fan_out))), untruncated.
    XavierNormal,
    /// Uniform(±√(6/fan_in)); Keras' he_uniform. Alias: `he`.
    #[serde(alias = "he")]
    #[value(alias = "he")]
    HeUniform,
    /// Normal(0, √(2/fan_in)), untruncated (PyTorch's kaiming_normal_).
    HeNormal,
}

/// The network a run trains: one family, each member in its own file under `model/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// The multilayer perceptron of lab 10: 784 → hidden… → 10.
    Mlp,
    /// The convolutional network of lab 11: 3×3 convolutions (`conv_channels`), each followed
    /// by 2×2 max-pooling, then the dense layers of `hidden` and the output.
    Cnn,
}

/// On-the-fly augmentation of each training batch: a rotation by up to `rotate` degrees and a
/// shift by up to `shift` pixels each way, drawn per image from the run's seed and the step,
/// so that a resumed run draws the same. Written `rotate=15,shift=2` (either part may be
/// left out) in flags and config files.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Augment {
    pub rotate: f64,
    pub shift: f64,
}

impl std::str::FromStr for Augment {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let mut augment = Augment::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected KEY=VALUE, e.g. rotate=15,shift=2"))?;
            let value: f64 = value
                .trim()
                .parse()
                .map_err(|_| format!("`{part}`: {value:?} is not a number"))?;
            match key.trim() {
                "rotate" => augment.rotate = value,
                "shift" => augment.shift = value,
                other => {
                    return Err(format!(
                        "unknown augmentation `{other}` (known: rotate=DEGREES, shift=PIXELS)"
                    ));
                }
            }
        }
        Ok(augment)
    }
}

impl std::fmt::Display for Augment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rotate={},shift={}", self.rotate, self.shift)
    }
}

impl Serialize for Augment {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Augment {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The CNN's filters when `conv_channels` is not given: lab 11's.
pub const DEFAULT_CONV_CHANNELS: [usize; 3] = [32, 64, 128];
/// Most convolutions: five 2×2 poolings take 28×28 down to 1×1.
pub const MAX_CONV_LAYERS: usize = 5;
/// Most filters in one convolution; beyond this a batch's activations outgrow memory.
const MAX_CONV_CHANNELS: usize = 1024;

/// How the per-step `train_loss` / `train_accuracy` columns are measured. Neither changes
/// training: the extra forward passes of `lecture` draw no randomness from the training stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TrainMetrics {
    /// The lecture's: on the step's batch, after the Adam update, the loss in training mode
    /// (dropout on, batch statistics) and the accuracy in inference mode.
    Lecture,
    /// Free: loss and accuracy of the training forward pass, before the update (PyTorch's
    /// habit). With dropout the accuracy reads low.
    Batch,
}

/// The optimizer: the lecture series' path from plain gradient descent to Adam. All are
/// Burn's (`burn::optim`); on the CPU, Adam's update runs as one pass with the same bits
/// ([`crate::train::fused_adam`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Optimizer {
    /// Plain stochastic gradient descent: w ← w − lr·g.
    Sgd,
    /// SGD with (heavy-ball) momentum: v ← μ·v + g, w ← w − lr·v (`momentum` = μ).
    Momentum,
    /// SGD with Nesterov momentum: v ← μ·v + g, w ← w − lr·(g + μ·v).
    Nesterov,
    /// RMSprop: divides by a running RMS of the gradient (`rho`, `epsilon`).
    Rmsprop,
    /// AdaGrad: divides by the root of the summed squared gradients (`epsilon`).
    Adagrad,
    /// Adam (`adam_beta1`, `adam_beta2`, `epsilon`).
    Adam,
    /// Adam with decoupled weight decay (Loshchilov & Hutter): `weight_decay` shrinks the
    /// weights directly instead of entering the gradient.
    Adamw,
}

/// How the learning rate moves over the run. Each starts after the optional linear warm-up
/// (`lr_warmup_steps`) from `lr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    /// `lr` throughout.
    Constant,
    /// `lr` multiplied by `lr_decay_rate` every `lr_decay_steps` steps.
    Step,
    /// `lr · lr_decay_rate^(k / lr_decay_steps)` at step k: smooth, the same decay per step.
    Exponential,
    /// Half a cosine from `lr` down to `lr_min` over the rest of the run.
    Cosine,
}

/// Declares every experiment key once: the full [`ExperimentConfig`] (JSON keys = field
/// names, with defaults), and [`PartialConfig`] (every key optional) that config files' overlays,
/// command-line flags (doc comments are the `--help` text), sweep bases, trials and grid values,
/// and resume overrides all go through. Keys marked `opt` are absent by default. A key renamed
/// keeps its old name as an `alias` (config files, sweep files and saved runs' `config.json`
/// still read); the flag's old spelling is a clap `alias` in the brackets.
macro_rules! experiment_keys {
    ($(
        $(#[doc = $doc:literal])*
        [$($arg:tt)*]
        $key:ident : $kind:ident $ty:ty $(= $default:expr)? $(, alias $old:literal)?;
    )*) => {
        /// Everything that decides what a run computes. Field names are the JSON keys.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct ExperimentConfig {
            $(
                $(#[doc = $doc])*
                $(#[serde(alias = $old)])?
                pub $key: experiment_keys!(@full $kind $ty),
            )*
        }

        impl Default for ExperimentConfig {
            fn default() -> Self {
                Self { $($key: experiment_keys!(@default $kind $($default)?),)* }
            }
        }

        /// Some experiment keys, each optional: a config file's overlay, the command-line
        /// flags, a sweep's trial entry or grid point, or a resume's overrides.
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
        #[serde(deny_unknown_fields)]
        pub struct PartialConfig {
            $(
                $(#[doc = $doc])*
                #[arg(long, $($arg)*)]
                #[serde(default, skip_serializing_if = "Option::is_none")]
                $(#[serde(alias = $old)])?
                pub $key: Option<$ty>,
            )*
        }

        /// Every experiment key, in declaration order.
        pub const KEYS: &[&str] = &[$(stringify!($key)),*];

        /// Old names of renamed keys: (old, current).
        pub const KEY_ALIASES: &[(&str, &str)] = &[$($(($old, stringify!($key)),)?)*];

        impl PartialConfig {
            /// Sets the keys given here on `config`.
            pub fn apply_to(&self, config: &mut ExperimentConfig) {
                $(
                    if let Some(v) = &self.$key {
                        config.$key = experiment_keys!(@wrap $kind v.clone());
                    }
                )*
            }

            /// The keys given here.
            pub fn keys(&self) -> Vec<&'static str> {
                let mut keys = Vec::new();
                $(if self.$key.is_some() { keys.push(stringify!($key)); })*
                keys
            }
        }

        impl ExperimentConfig {
    /// The images of the dataset this experiment uses.
    pub fn subset(&self) -> crate::data::Subset {
        crate::data::Subset {
            dataset: self.dataset,
            train_limit: self.train_limit,
            test_limit: self.test_limit,
            valid_split: self.valid_split,
            seed: self.seed,
        }
    }

            /// The keys whose values differ between `self` and `other`.
            pub fn differing_keys(&self, other: &Self) -> Vec<&'static str> {
                let mut keys = Vec::new();
                $(if self.$key != other.$key { keys.push(stringify!($key)); })*
                keys
            }
        }
    };
    (@full req $ty:ty) => { $ty };
    (@full opt $ty:ty) => { Option<$ty> };
    (@default req $default:expr) => { $default };
    (@default opt) => { None };
    (@wrap req $v:expr) => { $v };
    (@wrap opt $v:expr) => { Some($v) };
}

experiment_keys! {
    /// Label for the run directory and result tables (letters, digits, `-_.`)
    /// [default: derived from the keys].
    [value_name = "NAME"]
    name: opt String;
    /// Dataset.
    [value_enum]
    dataset: req DatasetName = DatasetName::Mnist;
    /// The network: `mlp` (lab 10) or `cnn` (lab 11's convolutions, then the dense layers of
    /// `hidden`) [default: mlp].
    [value_enum]
    model: req ModelKind = ModelKind::Mlp;
    /// Filters of the CNN's 3×3 convolutions (SAME padding), each followed by 2×2
    /// max-pooling; `--model cnn` only [default: 32,64,128].
    [value_delimiter = ',', value_name = "N,N,.."]
    conv_channels: opt Vec<usize>;
    /// Augment each training batch on the fly: rotate each image by up to DEG degrees and
    /// shift it by up to PX pixels, drawn from the seed [default: none].
    [value_name = "rotate=DEG,shift=PX"]
    augment: opt Augment;
    /// Hidden-layer activation [default: relu].
    [value_enum]
    activation: req Activation = Activation::Relu;
    /// Negative slope of leaky-relu [default: 0.01].
    [value_name = "SLOPE"]
    leaky_relu_slope: req f64 = 0.01;
    /// Weight initializer (`xavier` = xavier-uniform, `he` = he-uniform, as in Keras)
    /// [default: random-normal].
    [value_enum]
    init: req Init = Init::RandomNormal;
    /// Standard deviation of random-normal init [default: 0.05].
    [value_name = "STD"]
    init_std: req f64 = 0.05;
    /// Dropout rate after each hidden dense layer's activation, in [0, 1) [default: 0].
    [value_name = "RATE"]
    dropout: req f64 = 0.0;
    /// Batch normalization between each dense layer (and each convolution) and its
    /// activation (`--batchnorm` or `--batchnorm=false`).
    [num_args = 0..=1, default_missing_value = "true", value_name = "BOOL"]
    batchnorm: req bool = false;
    /// Batchnorm moving-average momentum in Keras' convention: 0.99 keeps 99% of the old
    /// average (PyTorch and Burn call the same setting 0.01) [default: 0.99].
    [value_name = "M"]
    batchnorm_momentum: req f64 = 0.99;
    /// Batchnorm epsilon [default: 0.001, as Keras].
    [value_name = "EPS"]
    batchnorm_epsilon: req f64 = 1e-3;
    /// Hidden (dense) layer sizes; the CNN's come after its convolutions [default: 256,256].
    [value_delimiter = ',', value_name = "N,N,.."]
    hidden: req Vec<usize> = vec![256, 256];
    /// Epochs [default: 1].
    [value_name = "N"]
    epochs: req usize = 1;
    /// Batch size; the last partial batch of an epoch is dropped [default: 128].
    [value_name = "N"]
    batch_size: req usize = 128;
    /// Optimizer [default: adam].
    [value_enum]
    optimizer: req Optimizer = Optimizer::Adam;
    /// Learning rate; with a schedule, its peak (reached after the warm-up) [default: 0.001].
    [value_name = "LR"]
    lr: req f64 = 0.001;
    /// Momentum μ of the momentum and nesterov optimizers, in [0, 1) [default: 0.9].
    [value_name = "M"]
    momentum: req f64 = 0.9;
    /// RMSprop's decay of its average of squared gradients, in [0, 1) [default: 0.9, as
    /// Keras; PyTorch's alpha is 0.99].
    [value_name = "RHO"]
    rho: req f64 = 0.9;
    /// Adam and AdamW beta 1 [default: 0.9].
    [value_name = "B1"]
    adam_beta1: req f64 = 0.9;
    /// Adam and AdamW beta 2 [default: 0.999].
    [value_name = "B2"]
    adam_beta2: req f64 = 0.999;
    /// Epsilon of rmsprop, adagrad, adam and adamw (formerly `adam_epsilon`) [default: 1e-7,
    /// as Keras; Burn's own is 1e-5].
    [value_name = "EPS", alias = "adam-epsilon"]
    epsilon: req f64 = 1e-7, alias "adam_epsilon";
    /// Weight decay λ: an L2 term λ·w added to the gradient, or with adamw the decoupled
    /// decay w ← w·(1 − lr·λ) [default: 0].
    [value_name = "LAMBDA"]
    weight_decay: req f64 = 0.0;
    /// Clip each parameter tensor's gradient to this L2 norm (Burn's clipping: per tensor,
    /// not over the whole model) [default: none].
    [value_name = "NORM"]
    grad_clip: opt f64;
    /// Learning-rate schedule [default: constant].
    [value_enum]
    lr_schedule: req LrSchedule = LrSchedule::Constant;
    /// Linear warm-up: step k < N trains at lr·(k+1)/N, then the schedule starts [default: 0].
    [value_name = "N"]
    lr_warmup_steps: req usize = 0;
    /// Factor of the step and exponential schedules, in (0, 1] [default: 0.1].
    [value_name = "RATE"]
    lr_decay_rate: req f64 = 0.1;
    /// Steps over which the step and exponential schedules multiply the lr by
    /// lr_decay_rate [default: one epoch].
    [value_name = "N"]
    lr_decay_steps: opt usize;
    /// Floor of the cosine schedule, reached at the end of the run [default: 0].
    [value_name = "LR"]
    lr_min: req f64 = 0.0;
    /// Seed for initialization, data order and dropout [default: 0].
    [value_name = "N"]
    seed: req u64 = 0;
    /// Evaluate on the test set every N steps; 0 = only at each epoch's end [default: 1].
    [value_name = "N"]
    eval_every: req usize = 1;
    /// Record per-layer diagnostics (gradient, weight and update norms, activation
    /// statistics) on the first step and every N-th; 0 = never [default: 20].
    [value_name = "N"]
    diagnostics_every: req usize = 20;
    /// How the train_loss / train_accuracy columns are measured [default: lecture].
    [value_enum]
    train_metrics: req TrainMetrics = TrainMetrics::Lecture;
    /// Use only the first N training images [default: all].
    [value_name = "N"]
    train_limit: opt usize;
    /// Evaluate on only the first N test images [default: all].
    [value_name = "N"]
    test_limit: opt usize;
    /// Hold out N images of the (limited) training set, chosen by the seed and never trained
    /// on: evaluations also score them, and the best model is chosen on them [default: 0].
    [value_name = "N"]
    valid_split: req usize = 0;
    /// Stop after P evaluations without a better validation accuracy (needs valid_split)
    /// [default: never].
    [value_name = "P"]
    early_stopping: opt usize;
    /// Checkpoint every N steps; 0 = only at epoch ends and the end [default: 100].
    [value_name = "N"]
    checkpoint_every: req usize = 100;
    /// Keep the newest N checkpoints [default: 3].
    [value_name = "N"]
    keep_checkpoints: req usize = 3;
    /// Write a TensorBoard event file of the metrics into the run directory
    /// (`--tensorboard=false` or `--no-tensorboard` to skip it) [default: true].
    [num_args = 0..=1, default_missing_value = "true", value_name = "BOOL"]
    tensorboard: req bool = true;
}

/// Largest hidden layer we accept; beyond this an MLP on 784 inputs is a typo, not a plan.
const MAX_LAYER: usize = 65_536;
/// Most parameters we accept: 2 GB of f32 weights, about 8 GB with gradients and Adam's two
/// moments. Beyond this the allocation fails (an abort, not an error) on ordinary machines.
pub const MAX_PARAMETERS: u64 = 500_000_000;

fn out_of_range(key: &'static str, value: impl ToString, allowed: &str) -> Error {
    Error::OutOfRange {
        key,
        value: value.to_string(),
        allowed: allowed.to_string(),
    }
}

impl ExperimentConfig {
    /// Reads a config file; keys not given take their defaults.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::ConfigFile {
            path: path.to_path_buf(),
            message: format!("cannot read: {e}"),
        })?;
        Self::from_json(&text).map_err(|message| Error::ConfigFile {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses JSON text; the error names the key and position.
    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    /// Checks every value against its allowed range; the error names the key.
    pub fn validate(&self) -> Result<()> {
        let finite_pos = |key, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(out_of_range(key, v, "must be a finite number > 0"))
            }
        };
        finite_pos("lr", self.lr)?;
        finite_pos("init_std", self.init_std)?;
        finite_pos("epsilon", self.epsilon)?;
        finite_pos("batchnorm_epsilon", self.batchnorm_epsilon)?;
        if let Some(clip) = self.grad_clip {
            finite_pos("grad_clip", clip)?;
        }
        if !(self.dropout.is_finite() && (0.0..1.0).contains(&self.dropout)) {
            return Err(out_of_range("dropout", self.dropout, "must be in [0, 1)"));
        }
        for (key, v) in [
            ("adam_beta1", self.adam_beta1),
            ("adam_beta2", self.adam_beta2),
            ("momentum", self.momentum),
            ("rho", self.rho),
        ] {
            if !(v.is_finite() && (0.0..1.0).contains(&v)) {
                return Err(out_of_range(key, v, "must be in [0, 1)"));
            }
        }
        self.validate_schedule()?;
        for (key, v) in [("weight_decay", self.weight_decay), ("lr_min", self.lr_min)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(out_of_range(key, v, "must be a finite number >= 0"));
            }
        }
        if !(self.batchnorm_momentum.is_finite() && (0.0..1.0).contains(&self.batchnorm_momentum)) {
            return Err(out_of_range(
                "batchnorm_momentum",
                self.batchnorm_momentum,
                "must be in [0, 1) (Keras convention: 0.99 keeps 99% of the running average)",
            ));
        }
        if !(self.leaky_relu_slope.is_finite() && self.leaky_relu_slope >= 0.0) {
            return Err(out_of_range(
                "leaky_relu_slope",
                self.leaky_relu_slope,
                "must be a finite number >= 0",
            ));
        }
        if self.hidden.is_empty() {
            return Err(out_of_range(
                "hidden",
                "[]",
                "needs at least one hidden layer, e.g. 256,256",
            ));
        }
        if let Some(bad) = self.hidden.iter().find(|&&h| h == 0 || h > MAX_LAYER) {
            return Err(out_of_range(
                "hidden",
                format!("{:?} (layer of {bad})", self.hidden),
                &format!("each layer must have 1..={MAX_LAYER} units"),
            ));
        }
        self.validate_model()?;
        let parameters = self.parameter_count();
        if parameters > MAX_PARAMETERS {
            return Err(out_of_range(
                "hidden",
                format!("{:?} ({parameters} parameters)", self.hidden),
                &format!(
                    "at most {MAX_PARAMETERS} parameters in all, so that weights, gradients \
                     and Adam state fit in memory"
                ),
            ));
        }
        if self.epochs == 0 {
            return Err(out_of_range("epochs", 0, "must be >= 1"));
        }
        if self.batch_size == 0 || self.batch_size > 60_000 {
            return Err(out_of_range(
                "batch_size",
                self.batch_size,
                "must be in 1..=60000",
            ));
        }
        if self.train_limit == Some(0) {
            return Err(out_of_range(
                "train_limit",
                0,
                "must be >= 1 (or absent for all)",
            ));
        }
        if self.test_limit == Some(0) {
            return Err(out_of_range(
                "test_limit",
                0,
                "must be >= 1 (or absent for all)",
            ));
        }
        if self.early_stopping == Some(0) {
            return Err(out_of_range(
                "early_stopping",
                0,
                "must be >= 1 evaluations (or absent for never)",
            ));
        }
        if self.early_stopping.is_some() && self.valid_split == 0 {
            return Err(out_of_range(
                "early_stopping",
                self.early_stopping.unwrap_or_default(),
                "needs a validation set to watch: set valid_split too (stopping on the test \
                 set would make its accuracy a selected, optimistic number)",
            ));
        }
        if let Some(name) = &self.name {
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !ok || name.starts_with('.') {
                return Err(out_of_range(
                    "name",
                    format!("{name:?}"),
                    "letters, digits, '-', '_' and '.' only (it names directories)",
                ));
            }
        }
        if self.keep_checkpoints == 0 {
            return Err(out_of_range(
                "keep_checkpoints",
                0,
                "must be >= 1 (resume needs at least one)",
            ));
        }
        Ok(())
    }

    /// The model's own keys: convolutions only for the CNN, and an augmentation that keeps
    /// the digit in the picture.
    fn validate_model(&self) -> Result<()> {
        if let Some(channels) = &self.conv_channels {
            if self.model != ModelKind::Cnn {
                return Err(out_of_range(
                    "conv_channels",
                    format!("{channels:?}"),
                    "only the CNN has convolutions: add --model cnn, or leave conv_channels out",
                ));
            }
            if channels.is_empty() || channels.len() > MAX_CONV_LAYERS {
                return Err(out_of_range(
                    "conv_channels",
                    format!("{channels:?}"),
                    &format!("needs 1..={MAX_CONV_LAYERS} convolutions, e.g. 32,64,128"),
                ));
            }
            if let Some(bad) = channels.iter().find(|&&c| c == 0 || c > MAX_CONV_CHANNELS) {
                return Err(out_of_range(
                    "conv_channels",
                    format!("{channels:?} (convolution of {bad})"),
                    &format!("each convolution must have 1..={MAX_CONV_CHANNELS} filters"),
                ));
            }
        }
        if let Some(a) = self.augment {
            if !(a.rotate.is_finite() && (0.0..=180.0).contains(&a.rotate)) {
                return Err(out_of_range(
                    "augment",
                    a,
                    "rotate must be in [0, 180] degrees",
                ));
            }
            if !(a.shift.is_finite() && (0.0..=14.0).contains(&a.shift)) {
                return Err(out_of_range(
                    "augment",
                    a,
                    "shift must be in [0, 14] pixels",
                ));
            }
        }
        Ok(())
    }

    /// The CNN's convolutions: `conv_channels`, or lab 11's when not given.
    pub fn conv_channels(&self) -> Vec<usize> {
        self.conv_channels
            .clone()
            .unwrap_or_else(|| DEFAULT_CONV_CHANNELS.to_vec())
    }

    /// What the dense layers after the convolutions read: channels × height × width after
    /// the last pooling (each 2×2 SAME pooling halves a side, rounding up).
    pub fn conv_output_size(&self) -> usize {
        let channels = self.conv_channels();
        let side = channels.iter().fold(28usize, |side, _| side.div_ceil(2));
        channels.last().copied().unwrap_or(1) * side * side
    }

    /// The schedule's own keys, and the learning rates Burn's schedulers accept.
    fn validate_schedule(&self) -> Result<()> {
        if !(self.lr_decay_rate.is_finite()
            && self.lr_decay_rate > 0.0
            && self.lr_decay_rate <= 1.0)
        {
            return Err(out_of_range(
                "lr_decay_rate",
                self.lr_decay_rate,
                "must be in (0, 1]",
            ));
        }
        if self.lr_decay_steps == Some(0) {
            return Err(out_of_range(
                "lr_decay_steps",
                0,
                "must be >= 1 (or absent for one epoch)",
            ));
        }
        if self.lr_schedule == LrSchedule::Cosine && self.lr_min > self.lr {
            return Err(out_of_range(
                "lr_min",
                self.lr_min,
                &format!(
                    "the cosine schedule's floor must not exceed lr ({})",
                    self.lr
                ),
            ));
        }
        // Burn's cosine, exponential and linear (warm-up) schedulers take rates in (0, 1].
        let bounded = matches!(
            self.lr_schedule,
            LrSchedule::Cosine | LrSchedule::Exponential
        ) || self.lr_warmup_steps > 1;
        if bounded && self.lr > 1.0 {
            return Err(out_of_range(
                "lr",
                self.lr,
                "must be at most 1 with a cosine or exponential schedule or a warm-up",
            ));
        }
        Ok(())
    }

    /// Trainable parameters of the model (saturating, so absurd sizes compare as huge).
    pub fn parameter_count(&self) -> u64 {
        let mut total = 0u64;
        let mut fan_in = 784u64;
        if self.model == ModelKind::Cnn {
            let mut channels_in = 1u64;
            for &c in &self.conv_channels() {
                let c = c as u64;
                let bn = if self.batchnorm { 2 * c } else { 0 };
                total = total
                    .saturating_add(channels_in.saturating_mul(c).saturating_mul(9))
                    .saturating_add(c)
                    .saturating_add(bn);
                channels_in = c;
            }
            fan_in = self.conv_output_size() as u64;
        }
        for &h in self.hidden.iter().chain(&[10]) {
            let h = h as u64;
            let bn = if self.batchnorm && h != 10 { 2 * h } else { 0 };
            total = total
                .saturating_add(fan_in.saturating_mul(h))
                .saturating_add(h)
                .saturating_add(bn);
            fan_in = h;
        }
        total
    }

    /// The part of the config that fixes parameter shapes; checkpoints must match it.
    pub fn architecture(&self) -> String {
        let dense: Vec<String> = self.hidden.iter().map(|h| h.to_string()).collect();
        let input = match self.model {
            ModelKind::Mlp => "784".to_string(),
            ModelKind::Cnn => {
                let convs: Vec<String> = self
                    .conv_channels()
                    .iter()
                    .map(|c| format!("conv3×3 {c} → pool"))
                    .collect();
                format!(
                    "28×28 → {} → {}",
                    convs.join(" → "),
                    self.conv_output_size()
                )
            }
        };
        format!(
            "{input} → {} → 10{}",
            dense.join(" → "),
            if self.batchnorm { ", batchnorm" } else { "" }
        )
    }

    /// A short human label, e.g. `relu-he-uniform-d0.5-bn`, used in run names.
    pub fn label(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        let mut s = match self.model {
            ModelKind::Mlp => String::new(),
            ModelKind::Cnn => "cnn-".to_string(),
        };
        s.push_str(&format!(
            "{}-{}",
            enum_name(&self.activation),
            enum_name(&self.init)
        ));
        if self.init == Init::RandomNormal {
            s.push_str(&format!("{}", self.init_std));
        }
        if self.dropout > 0.0 {
            s.push_str(&format!("-d{}", self.dropout));
        }
        if self.batchnorm {
            s.push_str("-bn");
        }
        if self.model == ModelKind::Cnn && self.conv_channels() != DEFAULT_CONV_CHANNELS {
            let channels: Vec<String> =
                self.conv_channels().iter().map(|c| c.to_string()).collect();
            s.push_str(&format!("-c{}", channels.join("x")));
        }
        if let Some(a) = self.augment {
            s.push_str(&format!("-aug{}r{}s", a.rotate, a.shift));
        }
        let default_hidden: &[usize] = match self.model {
            ModelKind::Mlp => &[256, 256],
            ModelKind::Cnn => &[256],
        };
        if self.hidden != default_hidden {
            // `first()`: the label is also built for configs not validated yet (empty `hidden`).
            let first = self.hidden.first().copied().unwrap_or(0);
            s.push_str(&format!("-{}x{first}", self.hidden.len()));
        }
        s.push_str(&self.optimizer_label());
        if self.valid_split > 0 {
            s.push_str(&format!("-valid{}", self.valid_split));
        }
        if let Some(p) = self.early_stopping {
            s.push_str(&format!("-es{p}"));
        }
        s
    }

    /// The optimizer and schedule keys that differ from the defaults, as a label suffix
    /// (`-sgd-lr0.1-cosine-warmup100`); a hyperparameter shows only where it has an effect.
    fn optimizer_label(&self) -> String {
        let d = Self::default();
        let mut s = String::new();
        let mut push = |differs: bool, part: String| {
            if differs {
                s.push('-');
                s.push_str(&part);
            }
        };
        let o = self.optimizer;
        push(o != d.optimizer, enum_name(&o));
        push(self.lr != d.lr, format!("lr{}", self.lr));
        push(
            matches!(o, Optimizer::Momentum | Optimizer::Nesterov) && self.momentum != d.momentum,
            format!("m{}", self.momentum),
        );
        push(
            o == Optimizer::Rmsprop && self.rho != d.rho,
            format!("rho{}", self.rho),
        );
        let adam = matches!(o, Optimizer::Adam | Optimizer::Adamw);
        push(
            adam && self.adam_beta1 != d.adam_beta1,
            format!("b1_{}", self.adam_beta1),
        );
        push(
            adam && self.adam_beta2 != d.adam_beta2,
            format!("b2_{}", self.adam_beta2),
        );
        push(
            !matches!(
                o,
                Optimizer::Sgd | Optimizer::Momentum | Optimizer::Nesterov
            ) && self.epsilon != d.epsilon,
            format!("eps{}", self.epsilon),
        );
        push(
            self.weight_decay != d.weight_decay,
            format!("wd{}", self.weight_decay),
        );
        if let Some(clip) = self.grad_clip {
            push(true, format!("clip{clip}"));
        }
        let schedule = self.lr_schedule;
        push(schedule != d.lr_schedule, enum_name(&schedule));
        let decays = matches!(schedule, LrSchedule::Step | LrSchedule::Exponential);
        push(
            decays && self.lr_decay_rate != d.lr_decay_rate,
            format!("rate{}", self.lr_decay_rate),
        );
        if let (true, Some(n)) = (decays, self.lr_decay_steps) {
            push(true, format!("every{n}"));
        }
        push(
            schedule == LrSchedule::Cosine && self.lr_min != d.lr_min,
            format!("min{}", self.lr_min),
        );
        push(
            self.lr_warmup_steps != d.lr_warmup_steps,
            format!("warmup{}", self.lr_warmup_steps),
        );
        s
    }

    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serializes")
    }
}

/// The serde spelling of a unit enum variant (`he-uniform`).
pub fn enum_name<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_lecture_settings() {
        let c = ExperimentConfig::default();
        assert_eq!(c.hidden, vec![256, 256]);
        assert_eq!(c.batch_size, 128);
        assert_eq!(c.lr, 0.001);
        assert_eq!(c.epsilon, 1e-7);
        assert_eq!(c.optimizer, Optimizer::Adam);
        assert_eq!(c.lr_schedule, LrSchedule::Constant);
        assert_eq!(c.lr_warmup_steps, 0);
        assert_eq!(c.weight_decay, 0.0);
        assert_eq!(c.grad_clip, None);
        assert_eq!(c.batchnorm_momentum, 0.99);
        assert_eq!(c.batchnorm_epsilon, 1e-3);
        assert_eq!(c.eval_every, 1);
        c.validate().unwrap();
    }

    #[test]
    fn partial_json_fills_defaults_and_aliases_work() {
        let c = ExperimentConfig::from_json(r#"{"init": "he", "dropout": 0.5}"#).unwrap();
        assert_eq!(c.init, Init::HeUniform);
        assert_eq!(c.dropout, 0.5);
        assert_eq!(c.hidden, vec![256, 256]);
        let c = ExperimentConfig::from_json(r#"{"init": "xavier"}"#).unwrap();
        assert_eq!(c.init, Init::XavierUniform);
        let c = ExperimentConfig::from_json(r#"{"activation": "leaky-relu"}"#).unwrap();
        assert_eq!(c.activation, Activation::LeakyRelu);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = ExperimentConfig::from_json(r#"{"learning_rate": 0.1}"#).unwrap_err();
        assert!(err.contains("unknown field `learning_rate`"), "{err}");
        assert!(err.contains("`lr`"), "error should list valid keys: {err}");
    }

    #[test]
    fn wrong_type_and_bad_enum_are_errors() {
        let err = ExperimentConfig::from_json(r#"{"epochs": "three"}"#).unwrap_err();
        assert!(err.contains("invalid type"), "{err}");
        let err = ExperimentConfig::from_json(r#"{"activation": "swish"}"#).unwrap_err();
        assert!(err.contains("unknown variant `swish`"), "{err}");
        let err = ExperimentConfig::from_json(r#"{"epochs": 1"#).unwrap_err();
        assert!(err.contains("EOF"), "{err}");
    }

    fn range_error(edit: impl FnOnce(&mut ExperimentConfig)) -> String {
        let mut c = ExperimentConfig::default();
        edit(&mut c);
        let err = c.validate().unwrap_err();
        assert!(matches!(err, Error::OutOfRange { .. }));
        err.to_string()
    }

    #[test]
    fn out_of_range_values_name_key_and_range() {
        assert!(range_error(|c| c.dropout = 1.0).contains("`dropout`: 1 (must be in [0, 1))"));
        assert!(range_error(|c| c.lr = 0.0).contains("`lr`"));
        assert!(range_error(|c| c.lr = -1.0).contains("`lr`"));
        assert!(range_error(|c| c.lr = f64::NAN).contains("`lr`"));
        assert!(range_error(|c| c.batch_size = 0).contains("`batch_size`"));
        assert!(range_error(|c| c.hidden.clear()).contains("`hidden`"));
        assert!(range_error(|c| c.hidden = vec![256, 0]).contains("layer of 0"));
        assert!(range_error(|c| c.epochs = 0).contains("`epochs`"));
        assert!(range_error(|c| c.init_std = 0.0).contains("`init_std`"));
        assert!(range_error(|c| c.adam_beta2 = 1.0).contains("`adam_beta2`"));
        assert!(range_error(|c| c.batchnorm_momentum = 1.5).contains("`batchnorm_momentum`"));
        assert!(range_error(|c| c.train_limit = Some(0)).contains("`train_limit`"));
        assert!(range_error(|c| c.keep_checkpoints = 0).contains("`keep_checkpoints`"));
        assert!(range_error(|c| c.hidden = vec![65_536, 65_536]).contains("parameters"));
    }

    #[test]
    fn optimizer_and_schedule_keys_are_checked_by_name() {
        assert!(range_error(|c| c.momentum = 1.0).contains("`momentum`: 1"));
        assert!(range_error(|c| c.rho = -0.1).contains("`rho`"));
        assert!(range_error(|c| c.epsilon = 0.0).contains("`epsilon`"));
        assert!(range_error(|c| c.weight_decay = -1e-4).contains("`weight_decay`"));
        assert!(range_error(|c| c.weight_decay = f64::INFINITY).contains("`weight_decay`"));
        assert!(range_error(|c| c.grad_clip = Some(0.0)).contains("`grad_clip`"));
        assert!(range_error(|c| c.lr_decay_rate = 0.0).contains("`lr_decay_rate`"));
        assert!(range_error(|c| c.lr_decay_rate = 1.5).contains("`lr_decay_rate`"));
        assert!(range_error(|c| c.lr_decay_steps = Some(0)).contains("`lr_decay_steps`"));
        assert!(range_error(|c| c.lr_min = f64::NAN).contains("`lr_min`"));
        let e = range_error(|c| c.early_stopping = Some(3));
        assert!(
            e.contains("`early_stopping`") && e.contains("valid_split"),
            "{e}"
        );
        let e = range_error(|c| {
            c.valid_split = 100;
            c.early_stopping = Some(0);
        });
        assert!(e.contains("`early_stopping`: 0"), "{e}");
        let e = range_error(|c| {
            c.lr_schedule = LrSchedule::Cosine;
            c.lr_min = 0.01;
        });
        assert!(
            e.contains("`lr_min`") && e.contains("must not exceed lr"),
            "{e}"
        );
        let e = range_error(|c| {
            c.lr_warmup_steps = 10;
            c.lr = 2.0;
        });
        assert!(e.contains("`lr`: 2"), "{e}");
        // A constant or step schedule takes any positive lr.
        ExperimentConfig {
            optimizer: Optimizer::Sgd,
            lr: 2.0,
            lr_schedule: LrSchedule::Step,
            ..Default::default()
        }
        .validate()
        .unwrap();
    }

    /// `adam_epsilon` was renamed `epsilon` when other optimizers came to use it; old config
    /// files, sweep entries and saved runs keep reading.
    #[test]
    fn the_old_adam_epsilon_key_still_reads() {
        let c = ExperimentConfig::from_json(r#"{"adam_epsilon": 1e-8}"#).unwrap();
        assert_eq!(c.epsilon, 1e-8);
        assert!(c.to_json_pretty().contains("\"epsilon\": 1e-8"));
        let p: PartialConfig = serde_json::from_str(r#"{"adam_epsilon": 1e-8}"#).unwrap();
        assert_eq!(p.epsilon, Some(1e-8));
        assert_eq!(KEY_ALIASES, &[("adam_epsilon", "epsilon")]);
    }

    #[test]
    fn labels_show_optimizer_keys_that_differ_and_matter() {
        let c = ExperimentConfig {
            optimizer: Optimizer::Nesterov,
            lr: 0.05,
            momentum: 0.95,
            rho: 0.5, // not an RMSprop run: no effect, not shown
            weight_decay: 1e-4,
            grad_clip: Some(1.0),
            lr_schedule: LrSchedule::Cosine,
            lr_warmup_steps: 100,
            ..Default::default()
        };
        assert_eq!(
            c.label(),
            "relu-random-normal0.05-nesterov-lr0.05-m0.95-wd0.0001-clip1-cosine-warmup100"
        );
        assert_eq!(
            ExperimentConfig::default().label(),
            "relu-random-normal0.05",
            "the defaults add nothing"
        );
    }

    #[test]
    fn parameter_count_matches_the_lecture_net() {
        let c = ExperimentConfig::default();
        assert_eq!(
            c.parameter_count(),
            784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10
        );
        let deep = ExperimentConfig {
            hidden: vec![512; 4],
            ..Default::default()
        };
        deep.validate().unwrap();
        let widest = ExperimentConfig {
            hidden: vec![65_536],
            ..Default::default()
        };
        widest.validate().unwrap();
    }

    #[test]
    fn json_round_trip_is_exact() {
        let c = ExperimentConfig {
            init: Init::HeNormal,
            dropout: 0.25,
            hidden: vec![512, 512, 512, 512],
            seed: 42,
            test_limit: Some(2000),
            ..Default::default()
        };
        let back = ExperimentConfig::from_json(&c.to_json_pretty()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn label_and_architecture() {
        let c = ExperimentConfig {
            init: Init::HeUniform,
            dropout: 0.5,
            batchnorm: true,
            ..Default::default()
        };
        assert_eq!(c.label(), "relu-he-uniform-d0.5-bn");
        assert_eq!(c.architecture(), "784 → 256 → 256 → 10, batchnorm");
    }

    /// Regression (found by fuzzing): without serde_json's `float_roundtrip`, 4e-39 read back
    /// from config.json as 4.0000000000000004e-39, so a resumed run could differ.
    #[test]
    fn floats_round_trip_through_config_json_bit_for_bit() {
        for text in [
            r#"{"lr": 4e-39}"#,
            r#"{"lr": 0.30000000000000004}"#,
            r#"{"init_std": 2.2250738585072014e-308}"#,
            r#"{"dropout": 0.49999999999999994}"#,
        ] {
            let c = ExperimentConfig::from_json(text).unwrap();
            let back = ExperimentConfig::from_json(&c.to_json_pretty()).unwrap();
            assert_eq!(back, c, "{text}");
        }
    }

    /// Regression: the run name is derived before validation, and an empty `hidden` panicked.
    #[test]
    fn label_of_an_unvalidated_config_does_not_panic() {
        let c = ExperimentConfig::from_json(r#"{"hidden": []}"#).unwrap();
        assert_eq!(c.label(), "relu-random-normal0.05-0x0");
        assert!(c.validate().unwrap_err().to_string().contains("`hidden`"));
    }
}
