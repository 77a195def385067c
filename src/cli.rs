//! Command-line interface. Doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::backend::Backend;
use crate::config::{Activation, ExperimentConfig, Init};
use crate::data::DatasetName;
use crate::gpu::AdapterChoice;

const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    other failure (cannot write the run directory, run directory in use)
  2    bad command line or config (malformed JSON, unknown key, out-of-range value)
  3    dataset missing, corrupt or not downloadable
  4    checkpoint missing, corrupt or from another architecture
  5    training diverged (NaN or infinite loss)
  6    requested compute device unavailable (--backend wgpu: no GPU adapter fits --adapter)
  130  stopped by SIGINT (Ctrl-C) after writing a checkpoint
  143  stopped by SIGTERM after writing a checkpoint";

/// Train the classic MNIST MLP (784→256→256→10, Adam) and see what activations, weight
/// initialization, dropout and batch normalization do to it.
///
/// With no subcommand, `mnist-train` trains: `mnist-train --init he --dropout 0.5`.
#[derive(Debug, Parser)]
#[command(
    name = "mnist-train",
    version,
    args_conflicts_with_subcommands = true,
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub train: TrainArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model (the default when no subcommand is given).
    #[command(after_help = EXIT_CODES)]
    Train(Box<TrainArgs>),
    /// Report test accuracy and loss of a saved checkpoint.
    #[command(after_help = EXIT_CODES)]
    Eval(Box<EvalArgs>),
    /// Download and verify a dataset.
    #[command(after_help = EXIT_CODES)]
    Download(DownloadArgs),
    /// Measure training and evaluation speed per backend (medians of several runs).
    Bench(Box<crate::bench::BenchArgs>),
    /// Run a sweep of trainings (grid / list of configs × seeds) and tabulate the results.
    #[command(after_help = EXIT_CODES)]
    Sweep(Box<crate::sweep::command::SweepArgs>),
}

/// Where the data is and how to get it.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Directory holding the dataset (either directly or in a `mnist/` or `fashion-mnist/`
    /// subfolder). Default: the platform cache directory.
    #[arg(long, env = "MNIST_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Never download: fail if the files are not already present.
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Experiment config (JSON); flags override its values. See configs/ for the lecture's.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub overrides: ConfigOverrides,

    #[command(flatten)]
    pub data: DataArgs,

    #[command(flatten)]
    pub runtime: RuntimeArgs,

    /// Run directory (default: runs/<config label>-<date>-<time>).
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    pub run_dir: Option<PathBuf>,

    /// Continue an interrupted run from its newest checkpoint. Its saved config is used;
    /// flags given here override it (e.g. a larger --epochs).
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,

    /// Stop after N steps in total, with a checkpoint, as an interruption would; `--resume`
    /// continues. For splitting long runs and for testing resume.
    #[arg(long, value_name = "N")]
    pub max_steps: Option<usize>,

    /// Print JSON lines (one object per step) on stdout instead of the lecture's lines.
    #[arg(long, conflicts_with = "quiet")]
    pub json: bool,

    /// No per-step lines; only the final summary.
    #[arg(long, short)]
    pub quiet: bool,
}

/// How the computation runs; none of these change the results' definition.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// Compute backend.
    #[arg(long, value_enum, env = "MNIST_TRAIN_BACKEND")]
    pub backend: Option<Backend>,

    /// CPU threads for the CPU backends (default: one per core).
    #[arg(long, env = "MNIST_TRAIN_THREADS", value_name = "N")]
    pub threads: Option<usize>,

    /// GPU adapter for `--backend wgpu`: `auto` (a discrete GPU, else integrated, else
    /// virtual), `discrete[:N]`, `integrated[:N]`, `virtual[:N]`, or `cpu` (a software
    /// adapter such as lavapipe: slow, but needs no GPU).
    #[arg(
        long,
        env = "MNIST_TRAIN_ADAPTER",
        value_name = "KIND[:N]",
        default_value = "auto"
    )]
    pub adapter: AdapterChoice,
}

/// Every experiment key as a flag; a flag given wins over the config file.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigOverrides {
    /// Hidden-layer activation.
    #[arg(long, value_enum)]
    pub activation: Option<Activation>,
    /// Negative slope of leaky-relu [default: 0.01].
    #[arg(long, value_name = "SLOPE")]
    pub leaky_relu_slope: Option<f64>,
    /// Weight initializer (`xavier` = xavier-uniform, `he` = he-uniform, as in Keras)
    /// [default: random-normal].
    #[arg(long, value_enum)]
    pub init: Option<Init>,
    /// Standard deviation of random-normal init [default: 0.05].
    #[arg(long, value_name = "STD")]
    pub init_std: Option<f64>,
    /// Dropout rate after each hidden activation, in [0, 1) [default: 0].
    #[arg(long, value_name = "RATE")]
    pub dropout: Option<f64>,
    /// Batch normalization between each dense layer and its activation
    /// (`--batchnorm` or `--batchnorm=false`).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub batchnorm: Option<bool>,
    /// Hidden layer sizes [default: 256,256].
    #[arg(long, value_delimiter = ',', value_name = "N,N,..")]
    pub hidden: Option<Vec<usize>>,
    /// Epochs [default: 1].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Batch size [default: 128].
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Adam learning rate [default: 0.001].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Adam epsilon [default: 1e-7, as Keras].
    #[arg(long, value_name = "EPS")]
    pub adam_epsilon: Option<f64>,
    /// Seed for initialization, data order and dropout [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Dataset.
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetName>,
    /// Use only the first N training images.
    #[arg(long, value_name = "N")]
    pub train_limit: Option<usize>,
    /// Evaluate on only the first N test images.
    #[arg(long, value_name = "N")]
    pub test_limit: Option<usize>,
    /// Evaluate on the test set every N steps; 0 = only at each epoch's end [default: 1].
    #[arg(long, value_name = "N")]
    pub eval_every: Option<usize>,
    /// Checkpoint every N steps; 0 = only at epoch ends and the end [default: 100].
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<usize>,
    /// Keep the newest N checkpoints [default: 3].
    #[arg(long, value_name = "N")]
    pub keep_checkpoints: Option<usize>,
}

impl ConfigOverrides {
    /// Applies the flags that were given on top of `config`.
    pub fn apply(&self, config: &mut ExperimentConfig) {
        macro_rules! set {
            ($($field:ident),*) => {$(
                if let Some(v) = &self.$field { config.$field = v.clone(); }
            )*};
        }
        set!(
            activation,
            leaky_relu_slope,
            init,
            init_std,
            dropout,
            batchnorm,
            hidden,
            epochs,
            batch_size,
            lr,
            adam_epsilon,
            seed,
            dataset,
            eval_every,
            checkpoint_every,
            keep_checkpoints
        );
        if self.train_limit.is_some() {
            config.train_limit = self.train_limit;
        }
        if self.test_limit.is_some() {
            config.test_limit = self.test_limit;
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// A checkpoint directory, or a run directory (its newest checkpoint is used).
    #[arg(long, value_name = "PATH")]
    pub checkpoint: PathBuf,

    /// Evaluate on another dataset than the one trained on.
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetName>,

    /// Evaluate on only the first N test images.
    #[arg(long, value_name = "N")]
    pub test_limit: Option<usize>,

    #[command(flatten)]
    pub data: DataArgs,

    #[command(flatten)]
    pub runtime: RuntimeArgs,

    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct DownloadArgs {
    /// Dataset to fetch.
    #[arg(long, value_enum, default_value = "mnist")]
    pub dataset: DatasetName,

    /// Directory to download into (the dataset goes in a subfolder named after it).
    #[arg(long, env = "MNIST_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Mirror base URL to try first (repeatable); the public mirrors follow.
    #[arg(long, value_name = "URL")]
    pub mirror: Vec<String>,
}
