//! The subcommands, wired together: CLI → config → data → model → training loop → reports.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Parser;

use crate::backend::{self, Backend};
use crate::batcher::ResidentSet;
use crate::cli::{Cli, Command, DataArgs, DownloadArgs, EvalArgs, RuntimeArgs, TrainArgs};
use crate::config::ExperimentConfig;
use crate::data::{DatasetName, MnistData, locate};
use crate::error::{Error, Result};
use crate::model::Mlp;
use crate::report::{HumanReporter, JsonReporter, Reporter};
use crate::run_dir::{self, RunDir};
use crate::signals::StopFlag;
use crate::train::{Outcome, Trainer, checkpoint, evaluate};

/// Parses the command line and runs the chosen subcommand.
pub fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => train(cli.train),
        Some(Command::Train(args)) => train(*args),
        Some(Command::Eval(args)) => eval(*args),
        Some(Command::Download(args)) => download(args),
        Some(Command::Bench(args)) => crate::bench::run(*args),
        Some(Command::Sweep(args)) => crate::sweep::command::run(*args),
    }
}

/// Picks the backend and sizes the thread pool; returns the device.
fn setup_runtime(runtime: &RuntimeArgs) -> Result<(Backend, burn::tensor::Device)> {
    if let Some(threads) = runtime.threads {
        if threads == 0 {
            return Err(Error::OutOfRange {
                key: "threads",
                value: "0".into(),
                allowed: "must be >= 1".into(),
            });
        }
        backend::set_threads(threads)?;
    }
    let backend = runtime.backend.unwrap_or_else(Backend::default_cpu);
    Ok((backend, backend.device_on(runtime.adapter)?))
}

/// Finds the dataset, downloading it when it is missing (unless `--offline`).
pub fn load_data(name: DatasetName, args: &DataArgs) -> Result<MnistData> {
    let data_dir = args.data_dir.as_deref();
    let missing = match locate::find(name, data_dir) {
        Ok(dir) => return Ok(MnistData::load_from(name, &dir)?),
        Err(e) => e,
    };
    if args.offline || !cfg!(feature = "download") {
        return Err(missing.into());
    }
    #[cfg(feature = "download")]
    {
        let dest = locate::download_dir(name, data_dir)?;
        eprintln!("{name} not found; downloading into {}", dest.display());
        if let Err(e) = crate::data::download::download(name, &dest, &download_options(name, &[])) {
            return Err(Error::DataUnavailable(format!(
                "{missing}; downloading failed too: {e}"
            )));
        }
        Ok(MnistData::load_from(name, &dest)?)
    }
    #[cfg(not(feature = "download"))]
    unreachable!()
}

#[cfg(feature = "download")]
fn download_options(name: DatasetName, extra: &[String]) -> crate::data::download::DownloadOptions {
    let mut mirrors = extra.to_vec();
    mirrors.extend(crate::data::download::default_mirrors(name));
    crate::data::download::DownloadOptions {
        mirrors,
        retries: 2,
        timeout: std::time::Duration::from_secs(60),
        progress: std::io::stderr().is_terminal(),
    }
}

/// The config's dataset, cut to its `train_limit` / `test_limit`.
pub fn load_limited(config: &ExperimentConfig, args: &DataArgs) -> Result<MnistData> {
    let mut data = load_data(config.dataset, args)?;
    if let Some(n) = config.train_limit {
        data.train.truncate(n);
    }
    if let Some(n) = config.test_limit {
        data.test.truncate(n);
    }
    Ok(data)
}

/// The config a `train` invocation asks for, where its run goes, and what it resumes.
fn resolve_train(
    args: &TrainArgs,
) -> Result<(ExperimentConfig, PathBuf, Option<checkpoint::Checkpoint>)> {
    if let Some(run) = &args.resume {
        if args.config.is_some() {
            return Err(Error::Usage(
                "--config cannot be combined with --resume: the run's saved config is used \
                 (flags may still override single keys)"
                    .into(),
            ));
        }
        let mut config = run_dir::read_config(run)?;
        args.overrides.apply(&mut config);
        let ckpts = checkpoint::list(&run.join("checkpoints"));
        let resume = match ckpts.is_empty() {
            // Stopped before its first checkpoint: nothing to lose by starting over.
            true => None,
            false => Some(checkpoint::open(run)?),
        };
        return Ok((config, run.clone(), resume));
    }
    let mut config = match &args.config {
        Some(path) => ExperimentConfig::from_file(path)?,
        None => ExperimentConfig::default(),
    };
    args.overrides.apply(&mut config);
    let path = match &args.run_dir {
        Some(dir) => {
            if dir.join(run_dir::CONFIG_FILE).exists() {
                return Err(Error::Usage(format!(
                    "{} already holds a run; continue it with --resume {}, or choose another \
                     --run-dir",
                    dir.display(),
                    dir.display()
                )));
            }
            dir.clone()
        }
        None => run_dir::generate_path(Path::new("runs"), &config),
    };
    Ok((config, path, None))
}

fn resume_command(run: &Path, args: &TrainArgs) -> String {
    let mut cmd = format!("mnist-train --resume {}", run.display());
    if let Some(dir) = &args.data.data_dir {
        cmd.push_str(&format!(" --data-dir {}", dir.display()));
    }
    if let Some(b) = args.runtime.backend {
        cmd.push_str(&format!(" --backend {}", b.name()));
        if b == Backend::Wgpu && args.runtime.adapter != crate::gpu::AdapterChoice::Auto {
            cmd.push_str(&format!(" --adapter {}", args.runtime.adapter));
        }
    }
    cmd
}

fn train(args: TrainArgs) -> Result<()> {
    let (config, run_path, resume) = resolve_train(&args)?;
    config.validate()?;
    let (backend, device) = setup_runtime(&args.runtime)?;
    let stop = StopFlag::install().map_err(Error::io("installing signal handlers"))?;
    let data = load_limited(&config, &args.data)?;
    // A batch larger than the data is refused before a run directory is made for it.
    crate::train::steps_per_epoch(&config, data.train.len())?;
    let run = RunDir::open(&run_path)?;
    run.write_config(&config)?;

    let mut reporter: Box<dyn Reporter> = if args.json {
        Box::new(JsonReporter)
    } else {
        Box::new(HumanReporter::new(!args.quiet))
    };
    reporter.note(&format!(
        "{} {}: {} on {} ({} train / {} test images from {}), backend {}, run {}",
        if resume.is_some() {
            "resuming"
        } else {
            "training"
        },
        config.label(),
        config.architecture(),
        config.dataset,
        data.train.len(),
        data.test.len(),
        data.dir.display(),
        backend.name(),
        run.path.display(),
    ));
    if let Some(ckpt) = &resume {
        reporter.note(&format!(
            "from checkpoint {} (step {})",
            ckpt.dir.display(),
            ckpt.state.global_step
        ));
    }

    let resume_command = resume_command(&run.path, &args);
    let outcome = Trainer {
        resume_command: resume_command.clone(),
        max_steps: args.max_steps,
        config,
        backend_name: backend.name().to_string(),
        eval_chunk: backend.eval_chunk(),
        device,
        data: &data,
        run: &run,
        resume,
        stop,
    }
    .run(reporter.as_mut())?;
    let summary = match outcome {
        Outcome::Finished(summary) => summary,
        Outcome::Paused { global_step } => {
            eprintln!(
                "stopped after {global_step} steps (--max-steps); checkpoint saved. Resume \
                 with: {resume_command}"
            );
            return Ok(());
        }
    };

    let line = format!(
        "final test_accuracy: {:.4} (best {:.4}), test_loss: {:.4}, {} steps in {:.1} s \
         ({:.0} images/s); run: {}",
        summary.final_test_accuracy,
        summary.best_test_accuracy,
        summary.final_test_loss,
        summary.steps,
        summary.wall_time_s,
        summary.images_per_s,
        summary.run_dir
    );
    if args.json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
    crate::plot::after_run(&run.path);
    Ok(())
}

fn eval(args: EvalArgs) -> Result<()> {
    // An unusable backend is the first thing to report: nothing else can help then.
    let (backend, device) = setup_runtime(&args.runtime)?;
    let ckpt = checkpoint::open(&args.checkpoint)?;
    let mut config = ckpt.state.config.clone();
    if let Some(d) = args.dataset {
        config.dataset = d;
    }
    config.test_limit = args.test_limit.or(config.test_limit);
    config.train_limit = None;
    let model = ckpt.load_model(Mlp::new(&config, &device))?;
    let data = load_limited(&config, &args.data)?;
    let test = ResidentSet::new(
        &data.test.images,
        &data.test.labels,
        &device,
        backend.eval_chunk(),
    );
    let result = evaluate(&burn::module::Module::valid(&model), &test);
    if args.json {
        let json = serde_json::json!({
            "checkpoint": ckpt.dir.display().to_string(),
            "dataset": config.dataset,
            "step": ckpt.state.global_step,
            "test_accuracy": result.accuracy,
            "test_loss": result.loss,
            "test_images": result.images,
        });
        println!("{json}");
    } else {
        println!(
            "test_accuracy: {:.4}, test_loss: {:.4} ({} {} test images; checkpoint {} at step {})",
            result.accuracy,
            result.loss,
            result.images,
            config.dataset,
            ckpt.dir.display(),
            ckpt.state.global_step
        );
    }
    Ok(())
}

fn download(args: DownloadArgs) -> Result<()> {
    #[cfg(feature = "download")]
    {
        let dest = locate::download_dir(args.dataset, args.data_dir.as_deref())?;
        let served = crate::data::download::download(
            args.dataset,
            &dest,
            &download_options(args.dataset, &args.mirror),
        )?;
        for (file, source) in served {
            println!("{file}: {source}");
        }
        println!("{} is ready in {}", args.dataset, dest.display());
        Ok(())
    }
    #[cfg(not(feature = "download"))]
    {
        let _ = args;
        Err(Error::Usage(
            "this binary was built without the `download` feature; fetch the four IDX files \
             yourself into --data-dir"
                .into(),
        ))
    }
}
