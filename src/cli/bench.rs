//! `mnist-train bench` arguments.

use clap::Args;

use super::{DataArgs, DeviceArgs};
use crate::backend::Backend;

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

    /// Use only the first N training images (CI smoke runs).
    #[arg(long, value_name = "N")]
    pub train_limit: Option<usize>,

    /// Use only the first N test images.
    #[arg(long, value_name = "N")]
    pub test_limit: Option<usize>,

    #[command(flatten)]
    pub data: DataArgs,

    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,

    /// Internal: measure one backend in this process and print its JSON.
    #[arg(long, hide = true, requires = "backends")]
    pub child: bool,
}
