//! The training loop: the lecture's eager loop (shuffle, forward, cross-entropy, backward,
//! optimizer step) with per-step metrics, test evaluation on a cadence, checkpoints and exact resume.

pub mod checkpoint;
pub mod diagnostics;
pub mod evaluate;
pub mod fused_adam;
pub mod optim;
mod reporter;
pub mod resume;
pub mod selection;
pub mod step;

use std::time::Instant;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;

use crate::config::ExperimentConfig;
use crate::data::MnistData;
use crate::data::batcher::{ResidentSet, epoch_order};
use crate::error::{Error, Result};
use crate::model::Mlp;
use crate::run::RunDir;
use crate::run::metrics::StepMetrics;
use crate::run::summary::Summary;
use crate::signals::StopFlag;
use checkpoint::{Best, TrainState};
pub use evaluate::{Evaluation, evaluate, evaluate_with};
pub use optim::{LrScheduleState, optimizer};
pub use reporter::Reporter;
pub use step::{StepOutput, run_step};

/// How a call to [`Trainer::run`] ended.
#[derive(Debug)]
pub enum Outcome {
    /// All epochs done; `summary.json` written.
    Finished(Box<Summary>),
    /// Stopped at `--max-steps` with a checkpoint at this global step.
    Paused { global_step: usize },
}

/// Everything a run needs, resolved by the caller.
pub struct Trainer<'a> {
    pub config: ExperimentConfig,
    pub backend_name: String,
    /// Rows per evaluation chunk ([`crate::backend::Backend::eval_chunk`]).
    pub eval_chunk: usize,
    pub device: Device,
    pub data: &'a MnistData,
    pub run: &'a RunDir,
    /// The checkpoint to continue from, loaded ([`checkpoint::load_newest`]).
    pub resume: Option<checkpoint::Loaded>,
    pub stop: StopFlag,
    /// The command that resumes this run, printed when it is interrupted.
    pub resume_command: String,
    /// Stop (with a checkpoint) once this many steps are done in total.
    pub max_steps: Option<usize>,
}

/// Steps per epoch. As in the lecture (`total_batch = int(n / batch_size)`), the last partial
/// batch is dropped, so every step sees a full batch.
pub fn steps_per_epoch(config: &ExperimentConfig, train_images: usize) -> Result<usize> {
    let steps = train_images / config.batch_size;
    if steps == 0 {
        return Err(Error::OutOfRange {
            key: "batch_size",
            value: config.batch_size.to_string(),
            allowed: format!("must not exceed the {train_images} training images in use"),
        });
    }
    Ok(steps)
}

/// Whether the step after `done` steps takes the per-layer diagnostics: the first step (the
/// initial gradients) and every `diagnostics_every`-th.
pub fn diagnose_step(config: &ExperimentConfig, done: usize) -> bool {
    config.diagnostics_every > 0
        && (done == 0 || (done + 1).is_multiple_of(config.diagnostics_every))
}

impl Trainer<'_> {
    pub fn run(self, reporter: &mut dyn Reporter) -> Result<Outcome> {
        let config = &self.config;
        let ad = self.device.clone().autodiff();
        let steps_per_epoch = steps_per_epoch(config, self.data.train.len())?;
        let total_steps = steps_per_epoch * config.epochs;
        let batch = config.batch_size;

        let from = self.resume.as_ref().map(|l| {
            format!(
                "\nfrom checkpoint {} (step {})",
                l.checkpoint.dir.display(),
                l.checkpoint.state.global_step
            )
        });
        let (mut model, mut optim, mut state, mut best) = match self.resume {
            Some(loaded) => {
                let saved = &loaded.checkpoint.state;
                resume::check_changes(&saved.config, config, saved.epoch, saved.step_in_epoch)?;
                // The position must lie inside the epoch as this config cuts it; the rules
                // above keep it there, and this keeps a gap in them from looping forever.
                if saved.step_in_epoch >= steps_per_epoch {
                    return Err(Error::Usage(format!(
                        "the checkpoint stands at step {} of epoch {}, past this config's {} \
                         steps per epoch",
                        saved.step_in_epoch, saved.epoch, steps_per_epoch
                    )));
                }
                let state = TrainState {
                    config: config.clone(),
                    backend: self.backend_name.clone(),
                    ..saved.clone()
                };
                let optim = loaded
                    .optimizer
                    .ok_or_else(|| Error::Other("resume needs the optimizer state".into()))?;
                (loaded.model, optim, state, loaded.best)
            }
            None => {
                // Initialization is drawn from the seeded device RNG.
                ad.seed(config.seed);
                (
                    Mlp::new(config, &ad),
                    optimizer(config),
                    TrainState::new(config, &self.backend_name),
                    None,
                )
            }
        };
        // Only now, with any resume accepted: a refused one leaves config.json as it was.
        self.run.write_config(config)?;
        let valid_images = match self.data.valid.len() {
            0 => String::new(),
            n => format!("{n} validation / "),
        };
        reporter.note(&format!(
            "{} {}: {} on {} ({} train / {valid_images}{} test images from {}), backend {}, \
             run {}{}",
            if from.is_some() {
                "resuming"
            } else {
                "training"
            },
            config.label(),
            config.architecture(),
            config.dataset,
            self.data.train.len(),
            self.data.test.len(),
            self.data.dir.display(),
            self.backend_name,
            self.run.path.display(),
            from.unwrap_or_default(),
        ));
        // The loaded position is where the old epoch count left off; a longer --epochs
        // continues from there.
        if state.epoch >= config.epochs {
            reporter.note(&format!(
                "run {} already finished its {} epoch(s); pass a larger --epochs to continue",
                self.run.path.display(),
                config.epochs
            ));
        } else if selection::patience_spent(config, &state) {
            reporter.note(&format!(
                "run {} already stopped early ({} evaluations without a better validation \
                 accuracy); pass a larger --early-stopping to continue",
                self.run.path.display(),
                state.evals_since_best
            ));
        }

        let test = ResidentSet::new(
            &self.data.test.images,
            &self.data.test.labels,
            &self.device,
            self.eval_chunk,
        );
        let valid = (!self.data.valid.is_empty()).then(|| {
            ResidentSet::new(
                &self.data.valid.images,
                &self.data.valid.labels,
                &self.device,
                self.eval_chunk,
            )
        });
        let mut schedule =
            LrScheduleState::starting_at(config, steps_per_epoch, state.global_step)?;
        let mut metrics = self
            .run
            .open_metrics(state.global_step, config.tensorboard)?;
        let elapsed_before = state.elapsed_s;
        let started = Instant::now();
        let mut last_eval: Option<Evaluation> = None;
        reporter.start(total_steps, state.global_step);

        // `checkpoints/best/` is rewritten with the checkpoints, when the best has changed
        // since (or when this session has not written it yet: after a resume from an older
        // checkpoint, the one on disk may be from steps the run is about to redo).
        let mut best_unsaved = best.is_some();
        let save = |model: &Mlp,
                    optim: &ModuleOptimizer,
                    state: &TrainState,
                    best: Option<&Best>,
                    best_unsaved: &mut bool|
         -> Result<()> {
            let dir = self.run.checkpoints();
            checkpoint::save(&dir, model, optim, state, best, config.keep_checkpoints)?;
            if let (Some(best), true) = (best, *best_unsaved) {
                checkpoint::save_best(&dir, best)?;
                *best_unsaved = false;
            }
            Ok(())
        };
        // The newest checkpoint on disk, for the divergence message.
        let mut saved_step = checkpoint::list(&self.run.checkpoints())
            .last()
            .map(|(step, _)| *step);
        let interrupted = |signal, code| Error::Interrupted {
            signal,
            code,
            resume_command: self.resume_command.clone(),
        };

        // The first layer of `model` on the host, when a step or a test pass read it back.
        let mut host = None;
        'epochs: while state.epoch < config.epochs && !selection::patience_spent(config, &state) {
            if let Some((signal, code)) = self.stop.requested() {
                reporter.finish();
                save(&model, &optim, &state, best.as_ref(), &mut best_unsaved)?;
                return Err(interrupted(signal, code));
            }
            let order = epoch_order(self.data.train.len(), config.seed, state.epoch);
            while state.step_in_epoch < steps_per_epoch {
                let (epoch, step) = (state.epoch, state.step_in_epoch);
                let idx = &order[step * batch..(step + 1) * batch];
                let lr = schedule.next_lr();
                let out = run_step(
                    model,
                    &mut host,
                    &mut optim,
                    lr,
                    config,
                    &self.data.train,
                    idx,
                    &ad,
                    state.global_step,
                    diagnose_step(config, state.global_step),
                );
                model = out.model;
                if !out.train_loss.is_finite() {
                    reporter.finish();
                    return Err(Error::Diverged {
                        value: out.train_loss,
                        epoch,
                        step,
                        global_step: state.global_step + 1,
                        kept: saved_step
                            .map(|s| format!("the last good checkpoint (step {s}) was kept"))
                            .unwrap_or_else(|| "no checkpoint had been written yet".into()),
                    });
                }
                state.last_train_loss = Some(out.train_loss as f64);

                state.global_step += 1;
                state.step_in_epoch += 1;
                let epoch_end = state.step_in_epoch == steps_per_epoch;
                let eval_now = epoch_end
                    || (config.eval_every > 0
                        && state.global_step.is_multiple_of(config.eval_every));
                let inference = eval_now.then(|| model.valid());
                let eval = inference
                    .as_ref()
                    .map(|m| evaluate_with(m, &test, &mut host));
                let valid_eval = inference
                    .as_ref()
                    .zip(valid.as_ref())
                    .map(|(m, v)| evaluate_with(m, v, &mut host));
                if let Some(e) = &eval {
                    state.last_test_accuracy = Some(e.accuracy);
                    state.best_test_accuracy = Some(
                        state
                            .best_test_accuracy
                            .map_or(e.accuracy, |b| b.max(e.accuracy)),
                    );
                    last_eval = Some(e.clone());
                }
                state.elapsed_s = elapsed_before + started.elapsed().as_secs_f64();

                let m = StepMetrics {
                    epoch,
                    step,
                    steps_per_epoch,
                    global_step: state.global_step,
                    train_loss: out.train_loss,
                    train_accuracy: out.train_accuracy,
                    lr: Some(lr),
                    valid_accuracy: valid_eval.as_ref().map(|e| e.accuracy as f32),
                    valid_loss: valid_eval.as_ref().map(|e| e.loss as f32),
                    test_accuracy: eval.as_ref().map(|e| e.accuracy as f32),
                    test_loss: eval.as_ref().map(|e| e.loss as f32),
                    elapsed_s: state.elapsed_s,
                    layers: out.layers,
                };
                metrics.record(&m)?;
                reporter.step(&m);
                let output_closed = reporter.output_closed();

                if epoch_end {
                    state.epoch += 1;
                    state.step_in_epoch = 0;
                }
                let improved = match (&valid_eval, &eval) {
                    (Some(v), Some(e)) => selection::record(&mut state, v, e),
                    _ => false,
                };
                if improved {
                    best = Some(Best {
                        model: model.clone(),
                        state: state.clone(),
                    });
                    best_unsaved = true;
                }
                let early_stop = selection::patience_spent(config, &state);
                let stop = self.stop.requested();
                let periodic = config.checkpoint_every > 0
                    && state.global_step.is_multiple_of(config.checkpoint_every);
                let pause = self.max_steps.is_some_and(|m| state.global_step >= m)
                    && state.epoch < config.epochs
                    && !early_stop;
                if epoch_end || periodic || stop.is_some() || pause || output_closed || early_stop {
                    save(&model, &optim, &state, best.as_ref(), &mut best_unsaved)?;
                    saved_step = Some(state.global_step);
                }
                if pause {
                    reporter.finish();
                    return Ok(Outcome::Paused {
                        global_step: state.global_step,
                    });
                }
                if let Some((signal, code)) = stop {
                    reporter.finish();
                    return Err(interrupted(signal, code));
                }
                if output_closed {
                    reporter.finish();
                    return Err(Error::OutputClosed {
                        resume_command: self.resume_command.clone(),
                    });
                }
                if early_stop {
                    reporter.finish();
                    reporter.note(&selection::stop_reason(&state));
                    break 'epochs;
                }
                if epoch_end {
                    break;
                }
            }
        }
        reporter.finish();

        // A run resumed after its end has evaluated nothing this session.
        let final_eval = match last_eval {
            Some(e) => e,
            None => evaluate(&model.valid(), &test),
        };
        let wall = state.elapsed_s.max(1e-9);
        let summary = Summary {
            run_dir: self.run.path.display().to_string(),
            backend: self.backend_name.clone(),
            config: config.clone(),
            steps: state.global_step,
            epochs: config.epochs,
            final_test_accuracy: final_eval.accuracy,
            final_test_loss: final_eval.loss,
            best_test_accuracy: state.best_test_accuracy.unwrap_or(final_eval.accuracy),
            // A session that ran no step (a resume of a finished run) reports the loss the
            // checkpoint recorded; NaN would be written as null, which reads as unfinished.
            final_train_loss: state.last_train_loss.unwrap_or(final_eval.loss),
            wall_time_s: wall,
            images_per_s: (state.global_step * batch) as f64 / wall,
            train_images: self.data.train.len(),
            test_images: test.len,
            valid_images: self.data.valid.len(),
            valid_accuracy_best: state.best_valid_accuracy,
            best_valid_step: state.best_valid_step,
            test_accuracy_at_best_valid: state.test_accuracy_at_best_valid,
            // Also for a session that resumed a run which had stopped already.
            stopped_early: selection::patience_spent(config, &state)
                .then(|| selection::stop_reason(&state)),
        };
        summary.write(&self.run.path)?;
        Ok(Outcome::Finished(Box::new(summary)))
    }
}
