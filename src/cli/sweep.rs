//! `mnist-train sweep` arguments.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::DataArgs;
use crate::backend::Backend;

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
