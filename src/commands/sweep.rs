//! `mnist-train sweep`: expand the spec, pick this shard's trials, run them, write the report.

use std::path::PathBuf;
use std::time::Instant;

use crate::cli::{SweepArgs, SweepCommand, SweepRunArgs};
use crate::data::locate;
use crate::error::{Error, Result};
use crate::output::plot;
use crate::signals::StopFlag;
use crate::sweep::hparams;
use crate::sweep::results::{self, write_manifest};
use crate::sweep::runner::{self, Outcome, RunOptions};
use crate::sweep::{Shard, SweepSpec, default_out, shard_trials};

pub fn run(args: SweepArgs) -> Result<()> {
    match args.command {
        Some(SweepCommand::Report { dir }) => report_only(&dir),
        None => run_sweep(args.run),
    }
}

/// Writes the tables and plots of a sweep directory; returns the files written.
fn write_report(dir: &std::path::Path, report: &results::SweepReport) -> Result<Vec<PathBuf>> {
    let mut written = report.write(dir)?;
    match plot::sweep_plots(dir, report) {
        Ok(paths) => written.extend(paths),
        Err(e) => eprintln!("warning: could not draw the sweep plots: {e}"),
    }
    Ok(written)
}

fn report_only(dir: &std::path::Path) -> Result<()> {
    let report = results::build(dir)?;
    let mut written = write_report(dir, &report)?;
    page(dir, &report, &mut written);
    crate::outln!("{}", report.markdown());
    print_written(&written);
    Ok(())
}

/// The sweep's report.html; a page that cannot be written is a warning, not a failed sweep.
fn page(dir: &std::path::Path, report: &results::SweepReport, written: &mut Vec<PathBuf>) {
    match crate::report::write_sweep(dir, Some(report)) {
        Ok(path) => written.push(path),
        Err(e) => eprintln!("warning: no report: {e}"),
    }
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
    if let Some(t) = args.threads {
        crate::backend::check_threads(t)?;
    }
    let cores = args.threads.unwrap_or_else(crate::backend::cores);
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
            results::trial_status(&runner::trial_dir(&out, t), &t.config)
                == results::TrialStatus::Done
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
            let status = results::trial_status(&dir, &t.config);
            crate::outln!("{:4}  {:<60} {status:?}", t.index, t.dir_name());
        }
        return Ok(());
    }

    // The children run --offline: fetch any missing dataset once, here.
    let mut datasets: Vec<_> = mine.iter().map(|t| t.config.dataset).collect();
    datasets.dedup();
    for name in datasets {
        if locate::find(name, args.data.data_dir.as_deref()).is_err() {
            crate::data::load(name, &args.data.source())?;
        }
    }

    std::fs::create_dir_all(&out).map_err(Error::io(format!(
        "cannot create sweep directory {}",
        out.display()
    )))?;
    write_manifest(&out, &manifest)?;
    if hparams::wanted(&trials) {
        hparams::write_experiment(&out, &spec.name, &trials)?;
    }

    let stop = StopFlag::install().map_err(Error::io("installing signal handlers"))?;
    let opts = RunOptions {
        exe: std::env::current_exe().map_err(Error::io("finding this program's path"))?,
        jobs,
        threads,
        data_dir: args.data.data_dir.clone(),
        backend: args.backend,
        sessions: hparams::Sessions::new(&trials),
    };
    let outcomes = runner::run(&out, &mine, &opts, &stop)?;

    let report = results::build(&out)?;
    let mut written = write_report(&out, &report)?;
    if !args.no_report {
        page(&out, &report, &mut written);
    }
    crate::outln!("{}", report.markdown());
    print_written(&written);

    let ran = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Finished { .. } | Outcome::Failed { .. }))
        .count();
    let skipped = outcomes.iter().filter(|o| **o == Outcome::Skipped).count();
    let elsewhere = outcomes
        .iter()
        .filter(|o| **o == Outcome::Elsewhere)
        .count();
    eprintln!(
        "ran {ran} trial{} ({skipped} already finished{}) in {:.1} s with {jobs} at a time × \
         {threads} thread{}",
        if ran == 1 { "" } else { "s" },
        if elsewhere > 0 {
            format!(", {elsewhere} running in another sweep process")
        } else {
            String::new()
        },
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
