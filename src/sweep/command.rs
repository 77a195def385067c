//! `mnist-train sweep`: the command line of sweeps, and what it does.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand};

use super::report::{self, write_manifest};
use super::runner::{self, Outcome, RunOptions};
use super::{Shard, SweepSpec, default_out, shard_trials};
use crate::backend::Backend;
use crate::cli::DataArgs;
use crate::data::locate;
use crate::error::{Error, Result};
use crate::signals::StopFlag;

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
    /// Sweep file (JSON: base or base_config, grid, trials, seeds, name). See README § Sweeps.
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
    /// Jobs: the Job's completions).
    #[arg(long, env = "MNIST_SWEEP_SHARD_COUNT", value_name = "N")]
    pub shard_count: Option<usize>,

    /// List the trials and their state; run nothing.
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub data: DataArgs,

    /// Compute backend of the trials.
    #[arg(long, value_enum, env = "MNIST_TRAIN_BACKEND")]
    pub backend: Option<Backend>,
}

pub fn run(args: SweepArgs) -> Result<()> {
    match args.command {
        Some(SweepCommand::Report { dir }) => report_only(&dir),
        None => run_sweep(args.run),
    }
}

fn report_only(dir: &std::path::Path) -> Result<()> {
    let report = report::build(dir)?;
    let written = report.write(dir)?;
    println!("{}", report.markdown());
    print_written(&written);
    Ok(())
}

fn print_written(paths: &[PathBuf]) {
    if let Some(first) = paths.first() {
        let dir = first
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let names: Vec<String> = paths
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        eprintln!("wrote {} in {dir}", names.join(", "));
    }
}

fn spec_from_args(args: &SweepRunArgs) -> Result<SweepSpec> {
    let mut spec = match &args.file {
        Some(file) => SweepSpec::from_file(file)?,
        None if args.sets.is_empty() => {
            return Err(Error::Usage(
                "sweep needs a sweep file or at least one --set KEY=V1,V2 (e.g. mnist-train \
                 sweep configs/lecture-sweep.json, or mnist-train sweep --set init=he,xavier)"
                    .into(),
            ));
        }
        None => {
            let keys: Vec<String> = args
                .sets
                .iter()
                .map(|s| s.split('=').next().unwrap_or("").trim().replace('_', "-"))
                .collect();
            SweepSpec::empty(&format!("set-{}", keys.join("-")))
        }
    };
    for set in &args.sets {
        spec.apply_set(set)?;
    }
    Ok(spec)
}

fn run_sweep(args: SweepRunArgs) -> Result<()> {
    let started = Instant::now();
    let spec = spec_from_args(&args)?;
    // Every trial is resolved and validated before anything runs.
    let trials = spec.expand()?;
    let shard = match &args.shard {
        Some(s) => {
            let shard = Shard::parse(s)?;
            if args.shard_count.is_some_and(|n| n != shard.count) {
                return Err(Error::Usage(format!(
                    "--shard {s} and --shard-count {} disagree",
                    args.shard_count.unwrap_or_default()
                )));
            }
            Some(shard)
        }
        None => Shard::from_env(|k| std::env::var(k).ok(), args.shard_count)?,
    };
    if args.jobs == 0 {
        return Err(Error::OutOfRange {
            key: "jobs",
            value: "0".into(),
            allowed: "must be >= 1".into(),
        });
    }
    if args.threads == Some(0) {
        return Err(Error::OutOfRange {
            key: "threads",
            value: "0".into(),
            allowed: "must be >= 1".into(),
        });
    }
    let cores = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let jobs = if args.jobs > cores {
        eprintln!(
            "note: --jobs {} is more than the {cores} CPU threads; running {cores} at a time \
             so they are not oversubscribed",
            args.jobs
        );
        cores
    } else {
        args.jobs
    };
    let threads = (cores / jobs).max(1);

    let out = args.out.clone().unwrap_or_else(|| default_out(&spec.name));
    let mine = shard_trials(&trials, shard);
    let manifest = runner::manifest(&spec.name, &out, &trials);
    let done_before = mine
        .iter()
        .filter(|t| {
            report::trial_status(&runner::trial_dir(&out, t), &t.config)
                == report::TrialStatus::Done
        })
        .count();
    let shard_text = shard
        .map(|s| format!(" ({} in shard {}/{})", mine.len(), s.index, s.count))
        .unwrap_or_default();
    eprintln!(
        "sweep {}: {} trials{shard_text}, {done_before} finished before; {jobs} at a time × \
         {threads} thread{}; in {}",
        spec.name,
        trials.len(),
        if threads == 1 { "" } else { "s" },
        out.display()
    );
    if args.dry_run {
        for t in &mine {
            let dir = runner::trial_dir(&out, t);
            let status = report::trial_status(&dir, &t.config);
            println!("{:4}  {:<60} {status:?}", t.index, t.dir_name());
        }
        return Ok(());
    }

    // The children run --offline: fetch any missing dataset once, here.
    let mut datasets: Vec<_> = mine.iter().map(|t| t.config.dataset).collect();
    datasets.dedup();
    for name in datasets {
        if locate::find(name, args.data.data_dir.as_deref()).is_err() {
            crate::app::load_data(name, &args.data)?;
        }
    }

    std::fs::create_dir_all(&out).map_err(Error::io(format!(
        "cannot create sweep directory {}",
        out.display()
    )))?;
    write_manifest(&out, &manifest)?;

    let stop = StopFlag::install().map_err(Error::io("installing signal handlers"))?;
    let opts = RunOptions {
        exe: std::env::current_exe().map_err(Error::io("finding this program's path"))?,
        jobs,
        threads,
        data_dir: args.data.data_dir.clone(),
        backend: args.backend,
    };
    let outcomes = runner::run(&out, &mine, &opts, &stop)?;

    let report = report::build(&out)?;
    let written = report.write(&out)?;
    println!("{}", report.markdown());
    print_written(&written);

    let ran = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Finished { .. } | Outcome::Failed { .. }))
        .count();
    let skipped = outcomes.iter().filter(|o| **o == Outcome::Skipped).count();
    eprintln!(
        "ran {ran} trial{} ({skipped} already finished) in {:.1} s with {jobs} at a time × \
         {threads} thread{}",
        if ran == 1 { "" } else { "s" },
        started.elapsed().as_secs_f64(),
        if threads == 1 { "" } else { "s" },
    );

    if let Some((signal, code)) = stop.requested() {
        return Err(Error::Interrupted {
            signal,
            code,
            resume_command: std::env::args().collect::<Vec<_>>().join(" "),
        });
    }
    let failed: Vec<String> = mine
        .iter()
        .zip(&outcomes)
        .filter_map(|(t, o)| match o {
            Outcome::Failed { exit_code } => Some(format!("{} (exit {exit_code})", t.dir_name())),
            _ => None,
        })
        .collect();
    if !failed.is_empty() {
        return Err(Error::Other(format!(
            "{} of {} trials failed: {}",
            failed.len(),
            mine.len(),
            failed.join(", ")
        )));
    }
    Ok(())
}
