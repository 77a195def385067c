//! `mnist-train [train]`: resolve the config (file, flags, or the run being resumed), load the
//! data, train, and print the final line.

use std::path::{Path, PathBuf};

use crate::backend::Backend;
use crate::cli::TrainArgs;
use crate::config::ExperimentConfig;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::output::plot;
use crate::output::progress::{HumanReporter, JsonReporter};
use crate::run::{self, RunDir, RunInfo};
use crate::signals::StopFlag;
use crate::train::Reporter;
use crate::train::checkpoint::{self, Damaged};
use crate::train::{Outcome, Trainer, optimizer};

/// The config a `train` invocation asks for, where its run goes, and whether it continues
/// from a checkpoint there.
fn resolve(args: &TrainArgs) -> Result<(ExperimentConfig, PathBuf, bool)> {
    let mut overrides = args.overrides.clone();
    if args.no_tensorboard {
        overrides.tensorboard = Some(false);
    }
    if let Some(run) = &args.resume {
        if args.config.is_some() {
            return Err(Error::Usage(
                "--config cannot be combined with --resume: the run's saved config is used \
                 (flags may still override single keys)"
                    .into(),
            ));
        }
        let saved = run::read_config(run)?;
        let mut config = saved.clone();
        overrides.apply_to(&mut config);
        // Another member of the family is another architecture (exit 4, as a changed
        // `hidden`), refused before the other model's keys are checked against it.
        if config.model != saved.model {
            return Err(Error::Checkpoint(format!(
                "run {} was trained with architecture {}, but --model {} asks for another; \
                 resume without --model, or start a new run",
                run.display(),
                saved.architecture(),
                crate::config::enum_name(&config.model)
            )));
        }
        // Stopped before its first checkpoint: nothing to lose by starting over.
        let has_checkpoints = !checkpoint::list(&run.join("checkpoints")).is_empty();
        return Ok((config, run.clone(), has_checkpoints));
    }
    let mut config = match &args.config {
        Some(path) => ExperimentConfig::from_file(path)?,
        None => ExperimentConfig::default(),
    };
    overrides.apply_to(&mut config);
    let path = match &args.run_dir {
        Some(dir) => {
            if dir.join(run::CONFIG_FILE).exists() {
                return Err(Error::Usage(format!(
                    "{} already holds a run; continue it with --resume {}, or choose another \
                     --run-dir",
                    dir.display(),
                    dir.display()
                )));
            }
            dir.clone()
        }
        None => run::generate_path(Path::new("runs"), &config),
    };
    Ok((config, path, false))
}

fn resume_command(run: &Path, args: &TrainArgs) -> String {
    let mut cmd = format!("mnist-train --resume {}", run.display());
    if let Some(dir) = &args.data.data_dir {
        cmd.push_str(&format!(" --data-dir {}", dir.display()));
    }
    if let Some(b) = args.runtime.backend {
        cmd.push_str(&format!(" --backend {}", b.name()));
        let adapter = args.runtime.device.adapter;
        if b == Backend::Wgpu && adapter != crate::backend::gpu::AdapterChoice::Auto {
            cmd.push_str(&format!(" --adapter {adapter}"));
        }
    }
    cmd
}

pub fn run(args: TrainArgs) -> Result<()> {
    let stop = StopFlag::install().map_err(Error::io("installing signal handlers"))?;
    let (config, run_path, resuming) = resolve(&args)?;
    config.validate()?;
    let (backend, device) = super::setup_runtime(&args.runtime)?;
    let data = {
        // Nothing to checkpoint yet: Ctrl-C during a download or the data load exits at once.
        let _exit = stop.exit_at_once();
        let source = match args.resume.is_some() {
            true => super::data_source_for_run(&args.data, &run_path, config.dataset),
            false => args.data.source(),
        };
        crate::data::load_limited(&config.subset(), &source)?
    };
    // A batch larger than the data is refused before a run directory is made for it.
    crate::train::steps_per_epoch(&config, data.train.len())?;
    let run = RunDir::open(&run_path)?;

    let resume = if resuming {
        let ad = device.clone().autodiff();
        let loaded = checkpoint::load_newest(
            &run.path,
            Some(&config),
            Damaged::MoveAside,
            &|c| Model::new(c, &ad),
            Some(&optimizer),
        )?;
        for line in &loaded.skipped {
            eprintln!("warning: {line}");
        }
        Some(loaded)
    } else {
        None
    };
    let fused_adam =
        config.optimizer == crate::config::Optimizer::Adam && config.weight_decay == 0.0;
    run.write_info(&RunInfo {
        data_dir: Some(std::path::absolute(&data.dir).unwrap_or_else(|_| data.dir.clone())),
        fast_paths: Some(crate::kernel::FastPaths::get().taken_on(
            &device,
            config.activation,
            fused_adam,
            config.model,
        )),
        cpu: crate::backend::cpu_model(),
        backend: Some(backend.name().to_string()),
        threads: Some(rayon::current_num_threads()),
    })?;

    // What the augmentation does to a digit, for the report; a picture, so a failure is a
    // warning.
    if let Some(augment) = config.augment
        && let Err(e) = plot::augmented(&run.path, &data.train.images, augment, config.seed)
    {
        eprintln!("warning: could not draw the augmented samples: {e}");
    }
    let mut reporter: Box<dyn Reporter> = if args.json {
        Box::new(JsonReporter::default())
    } else {
        Box::new(HumanReporter::new(!args.quiet))
    };
    let resume_command = resume_command(&run.path, &args);
    let eval_chunk = backend.eval_chunk(config.model);
    let trainer = Trainer {
        resume_command: resume_command.clone(),
        max_steps: args.max_steps,
        config,
        backend_name: backend.name().to_string(),
        eval_chunk,
        device,
        data: &data,
        run: &run,
        resume,
        stop,
    };
    let outcome = match backend.run_on_pool(|| trainer.run(reporter.as_mut())) {
        Ok(outcome) => outcome,
        Err(e) => {
            // Stopped by a signal, a closed stdout or a diverged loss: the run has its
            // checkpoint and metrics, and its page says how far it got.
            let stopped = matches!(
                e,
                Error::Interrupted { .. } | Error::OutputClosed { .. } | Error::Diverged { .. }
            );
            if stopped && !args.no_report {
                super::report::after_command(&run.path);
            }
            return Err(e);
        }
    };
    let summary = match outcome {
        Outcome::Finished(summary) => summary,
        Outcome::Paused { global_step } => {
            eprintln!(
                "stopped after {global_step} steps (--max-steps); checkpoint saved. Resume \
                 with: {resume_command}"
            );
            if !args.no_report {
                super::report::after_command(&run.path);
            }
            return Ok(());
        }
    };

    // With a validation split, "best" is the model chosen on it, and its test accuracy the
    // one to report; the best of the test evaluations would be a selected, optimistic number.
    let best = match (
        summary.valid_accuracy_best,
        summary.test_accuracy_at_best_valid,
    ) {
        (Some(valid), Some(test)) => format!(
            "best on validation {valid:.4} at step {}: test_accuracy {test:.4} (checkpoints/{})",
            summary.best_valid_step.unwrap_or_default(),
            crate::train::checkpoint::BEST_DIR
        ),
        _ => format!("best {:.4}", summary.best_test_accuracy),
    };
    let line = format!(
        "final test_accuracy: {:.4} ({best}), test_loss: {:.4}, {} steps in {:.1} s \
         ({:.0} images/s); run: {}",
        summary.final_test_accuracy,
        summary.final_test_loss,
        summary.steps,
        summary.wall_time_s,
        summary.images_per_s,
        summary.run_dir
    );
    if args.json {
        eprintln!("{line}");
    } else {
        crate::outln!("{line}");
    }
    plot::after_run(&run.path);
    if !args.no_report {
        super::report::after_command(&run.path);
    }
    Ok(())
}
