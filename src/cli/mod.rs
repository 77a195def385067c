//! The command line: clap types only. Doc comments here (and on the experiment keys in
//! `config.rs`) are the `--help` text; `commands` turns these into library calls.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::backend::Backend;
use crate::backend::gpu::AdapterChoice;
use crate::config::PartialConfig;
use crate::data::{DataSource, DatasetName};

/// The exit codes, as `error::exit` defines them.
const EXIT_CODES: &str = crate::error::exit::HELP;

/// Train the classic MNIST MLP (784→256→256→10, Adam) and see what activations, weight
/// initialization, dropout and batch normalization do to it.
///
/// With no subcommand, `mnist-train` trains: `mnist-train --init he --dropout 0.5`.
#[derive(Debug, Parser)]
#[command(
    name = "mnist-train",
    version,
    args_conflicts_with_subcommands = true,
    // `--lr -1` is a value, to be refused by name, not a flag `-1` clap has never heard of.
    allow_negative_numbers = true,
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
    #[command(after_help = EXIT_CODES, allow_negative_numbers = true)]
    Train(Box<TrainArgs>),
    /// Report a checkpoint's test accuracy, loss, per-class accuracy and confusion matrix,
    /// and draw the confusion heatmap and its most confident mistakes.
    #[command(after_help = EXIT_CODES)]
    Eval(Box<EvalArgs>),
    /// Download and verify a dataset.
    #[command(after_help = EXIT_CODES)]
    Download(DownloadArgs),
    /// Measure training and evaluation speed per backend (medians of several runs).
    Bench(Box<BenchArgs>),
    /// Run a sweep of trainings (grid / list of configs × seeds) and tabulate the results.
    #[command(after_help = EXIT_CODES, allow_negative_numbers = true)]
    Sweep(Box<SweepArgs>),
    /// Classify image files (PNG, JPEG, BMP, PGM/PPM; a directory means its images) and
    /// test-set images with a trained model.
    #[command(after_help = EXIT_CODES)]
    Predict(Box<PredictArgs>),
    /// Write a checkpoint's model as safetensors (PyTorch's names and layout) or ONNX.
    #[command(after_help = EXIT_CODES)]
    Export(Box<ExportArgs>),
    /// Write report.html into a run or sweep directory: one self-contained page (no network,
    /// no other file) with the config, results, curves, diagnostics and, after `eval`, the
    /// confusion matrix; for a sweep the results table, the charts and links to each run's
    /// page. Prints the page's path. `train`, `eval` and `sweep` write it at their end too.
    #[command(after_help = EXIT_CODES)]
    Report(ReportArgs),
    /// Print a shell completion script to stdout, e.g.
    /// `mnist-train completions bash > ~/.local/share/bash-completion/completions/mnist-train`.
    Completions(CompletionsArgs),
    /// Print the man page (roff) to stdout, e.g. `mnist-train man > ~/.local/share/man/man1/mnist-train.1`.
    Man,
}

#[derive(Debug, Clone, Args)]
pub struct PredictArgs {
    /// A checkpoint directory, or a run directory (its newest checkpoint is used). Repeat it
    /// to predict with the ensemble of several models (the sum of their logits).
    #[arg(long, value_name = "PATH", required = true)]
    pub checkpoint: Vec<PathBuf>,

    /// Image files or directories. Each image is brought to MNIST's form first: grayscale,
    /// inverted when the paper is light, cropped to the digit, scaled to fit 20×20, centred
    /// by its centre of mass in 28×28.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Test-set images to classify, by index (repeatable or comma-separated).
    #[arg(long, value_name = "N", value_delimiter = ',')]
    pub test_index: Vec<usize>,

    /// How many of the most likely classes to show.
    #[arg(long, value_name = "K", default_value_t = 3)]
    pub top: usize,

    /// One JSON object per image: file (or test_index and label), prediction, probabilities.
    #[arg(long)]
    pub json: bool,

    /// Write each image's 28×28 input (what the network saw) as a PNG into DIR.
    #[arg(long, value_name = "DIR")]
    pub save_preprocessed: Option<PathBuf>,

    #[command(flatten)]
    pub data: DataArgs,

    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// Tensors `hidden.{i}.weight` [out, in], `hidden.{i}.bias`, `norm.{i}.*`, `output.*`;
    /// architecture, activation and input format in the metadata.
    Safetensors,
    /// An ONNX graph (opset 13): input `input` [N, 784] in [0, 1], output `logits` [N, 10].
    Onnx,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// A checkpoint directory, or a run directory (its newest checkpoint is used).
    #[arg(long, value_name = "PATH")]
    pub checkpoint: PathBuf,

    /// The file format.
    #[arg(long, value_enum)]
    pub format: ExportFormat,

    /// The file to write.
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// A run directory (runs/<name>) or a sweep directory (runs/sweep-<name>).
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
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

    #[command(flatten)]
    pub mirrors: MirrorArgs,
}

#[derive(Debug, Clone, Args)]
pub struct MirrorArgs {
    /// Mirror base URL to download from first (repeatable, or comma-separated in the
    /// environment variable); the public mirrors follow.
    #[arg(
        long,
        env = "MNIST_TRAIN_MIRROR",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub mirror: Vec<String>,
}

impl DataArgs {
    pub fn source(&self) -> DataSource {
        DataSource {
            dir: self.data_dir.clone(),
            offline: self.offline,
            mirrors: self.mirrors.mirror.clone(),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Experiment config (JSON); flags override its values. See configs/ for the lecture's.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub overrides: PartialConfig,

    /// Same as `--tensorboard=false`.
    #[arg(long, conflicts_with = "tensorboard")]
    pub no_tensorboard: bool,

    #[command(flatten)]
    pub data: DataArgs,

    #[command(flatten)]
    pub runtime: RuntimeArgs,

    /// Run directory (default: runs/<config label>-<date>-<time>).
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    pub run_dir: Option<PathBuf>,

    /// Continue an interrupted run from its newest checkpoint that loads. Its saved config is
    /// used; flags may change how long it trains and how often it evaluates and saves (e.g. a
    /// larger --epochs), the data order only between epochs, the model never.
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

    /// Do not write report.html into the run directory at the end.
    #[arg(long)]
    pub no_report: bool,
}

/// How the computation runs; none of these change the results' definition.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// Compute backend.
    #[arg(long, value_enum, env = "MNIST_TRAIN_BACKEND")]
    pub backend: Option<Backend>,

    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Threads and GPU adapter, for whichever backend runs.
#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// CPU threads for the CPU backends (default: one per core; at most 8 per core).
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

#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// A checkpoint directory, or a run directory (its newest checkpoint is used). Repeat it
    /// to score an ensemble: the sum of the models' logits, as labs 11-4 and 11-5 do, beside
    /// each model's own accuracy.
    #[arg(long, value_name = "PATH", required = true)]
    pub checkpoint: Vec<PathBuf>,

    /// Evaluate on another dataset than the one trained on.
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetName>,

    /// Evaluate on only the first N test images [default: the whole test set, whatever the
    /// run trained with].
    #[arg(long, value_name = "N")]
    pub test_limit: Option<usize>,

    #[command(flatten)]
    pub data: DataArgs,

    #[command(flatten)]
    pub runtime: RuntimeArgs,

    /// Print the result as one JSON object (accuracy, loss, per-class accuracy, confusion
    /// matrix).
    #[arg(long)]
    pub json: bool,

    /// Directory for `confusion.svg/.png`, `mistakes.png` and `eval.json` [default: the run
    /// directory; for an ensemble, none is written without --out].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Do not refresh the run's report.html.
    #[arg(long)]
    pub no_report: bool,
}

#[derive(Debug, Clone, Args)]
pub struct DownloadArgs {
    /// Dataset to fetch.
    #[arg(long, value_enum, default_value = "mnist")]
    pub dataset: DatasetName,

    /// Directory to download into (the dataset goes in a subfolder named after it).
    #[arg(long, env = "MNIST_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    #[command(flatten)]
    pub mirrors: MirrorArgs,
}

/// Measure training and evaluation speed per backend (medians of several runs).
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Backends to measure (default: every CPU backend compiled in, and wgpu when compiled in
    /// and an adapter fits `--adapter`).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub backends: Vec<Backend>,

    /// Repetitions of each measurement after the warm-up. Training epochs are timed twice over:
    /// with the train columns from each step's forward pass, as PyTorch, Keras and JAX loops
    /// take theirs, and with the lecture's (the trainer's default: one more forward pass).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,

    /// Repetitions of the lecture-protocol epoch (test pass after every step), each way; 0
    /// skips it.
    #[arg(long, default_value_t = 3)]
    pub protocol_reps: usize,

    #[command(flatten)]
    pub device: DeviceArgs,

    /// Experiment config (JSON) to measure; flags override its values, as for `train`.
    /// Without it, the experiment the peers of `../shared/peers` run: configs/he.json (relu, He
    /// uniform, 784→256→256→10), or with `--model cnn` configs/lab11-cnn.json (lab 11-1: 32,
    /// 64, 128 filters, dense 256, dropout 0.4, Xavier uniform, batch 100).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub overrides: PartialConfig,

    #[command(flatten)]
    pub data: DataArgs,

    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,

    /// Internal: measure one backend in this process and print its JSON.
    #[arg(long, hide = true, requires = "backends")]
    pub child: bool,

    /// Internal: the experiment a child measures, as the parent resolved it (JSON).
    #[arg(long, hide = true, requires = "child")]
    pub experiment: Option<String>,
}

/// Run many trainings (a grid and/or a list of configs, over seeds) and tabulate them.
///
/// `mnist-train sweep configs/lecture-sweep.json --jobs 2` runs every trial as a child
/// `mnist-train train` in its own run directory under runs/sweep-<name>/, skips trials that
/// finished before, resumes interrupted ones, and ends with results.md/.csv/.json and plots.
/// `mnist-train sweep --set init=he,xavier --set dropout=0,0.5` sweeps without a file.
#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SweepArgs {
    #[command(subcommand)]
    pub command: Option<SweepCommand>,

    #[command(flatten)]
    pub run: SweepRunArgs,
}

#[derive(Debug, Clone, Subcommand)]
pub enum SweepCommand {
    /// Build the results table and plots of a sweep directory from whatever has finished
    /// (e.g. while it runs, or after the shards of a cluster job).
    Report {
        /// The sweep directory (holding sweep.json).
        dir: PathBuf,
    },
}

#[derive(Debug, Clone, Args)]
pub struct SweepRunArgs {
    /// Sweep file (JSON: base or base_config, grid, trials, seeds, name). See docs/sweeps.md.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// A grid axis KEY=V1,V2,.. over every trial (repeatable); replaces the file's axis of the
    /// same key and overrides trial entries. `seed=0,1,2` sets the seeds.
    #[arg(long = "set", value_name = "KEY=V1,V2")]
    pub sets: Vec<String>,

    /// Trials run at once; each gets THREADS / JOBS CPU threads.
    #[arg(long, short, default_value_t = 1, value_name = "N")]
    pub jobs: usize,

    /// CPU threads to use in all (default: one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Sweep directory (default: runs/sweep-<name>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Run only trial k with k mod COUNT = INDEX (0-based), e.g. 0/4. Default: from
    /// SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT or JOB_COMPLETION_INDEX, else all.
    #[arg(long, value_name = "INDEX/COUNT")]
    pub shard: Option<String>,

    /// Number of shards when the index comes from JOB_COMPLETION_INDEX (Kubernetes Indexed
    /// Jobs: the Job's completions), or from SLURM_ARRAY_TASK_ID itself, for one task of an
    /// array numbered from 0 resubmitted alone (`sbatch --array=2`).
    #[arg(long, env = "MNIST_SWEEP_SHARD_COUNT", value_name = "N")]
    pub shard_count: Option<usize>,

    /// List the trials and their state; run nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Do not write report.html into the sweep directory at the end (each trial's run still
    /// writes its own, which the sweep's page links to).
    #[arg(long)]
    pub no_report: bool,

    #[command(flatten)]
    pub data: DataArgs,

    /// Compute backend of the trials.
    #[arg(long, value_enum, env = "MNIST_TRAIN_BACKEND")]
    pub backend: Option<Backend>,
}
