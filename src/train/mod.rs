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
use crate::model::{FirstLayerHost, Model};
use crate::run::RunDir;
use crate::run::metrics::{MetricsLog, StepMetrics};
use crate::run::summary::Summary;
use crate::signals::StopFlag;
use checkpoint::{Best, TrainState};
pub use evaluate::{Evaluation, evaluate, evaluate_with};
pub use optim::{LrScheduleState, optimizer};
pub use reporter::{EpochEnd, Reporter};
pub use step::{Step, StepOutput, run_step};

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

/// A run between two steps: what [`Trainer::setup`] builds, each step advances and
/// [`Trainer::finish`] reports.
struct Session {
    /// The device with autodiff, which training steps run on.
    ad: Device,
    model: Model,
    optim: ModuleOptimizer,
    state: TrainState,
    /// The model chosen on validation so far.
    best: Option<Best>,
    /// `checkpoints/best/` is rewritten with the checkpoints when the best has changed since
    /// (or when this session has not written it yet: after a resume from an older checkpoint,
    /// the one on disk may be from steps the run is about to redo).
    best_unsaved: bool,
    test: ResidentSet,
    valid: Option<ResidentSet>,
    schedule: LrScheduleState,
    metrics: MetricsLog,
    steps_per_epoch: usize,
    /// Training time of the sessions before this one, and when this one started.
    elapsed_before: f64,
    started: Instant,
    last_eval: Option<Evaluation>,
    /// The newest checkpoint on disk, for the divergence message.
    saved_step: Option<usize>,
    /// The first layer of `model` on the host, when a step or a test pass read it back.
    host: Option<FirstLayerHost>,
}

/// What the loop does after a step.
enum Next {
    Step,
    EpochDone,
    StoppedEarly,
    Paused,
}

impl Trainer<'_> {
    /// Setup, the loop over epochs and steps, and the summary.
    pub fn run(mut self, reporter: &mut dyn Reporter) -> Result<Outcome> {
        let mut s = self.setup(reporter)?;
        let config = &self.config;
        'epochs: while s.state.epoch < config.epochs && !selection::patience_spent(config, &s.state)
        {
            if let Some((signal, code)) = self.stop.requested() {
                reporter.finish();
                self.save(&mut s)?;
                return Err(self.interrupted(signal, code));
            }
            let order = epoch_order(self.data.train.len(), config.seed, s.state.epoch);
            loop {
                let next;
                (s, next) = self.step(s, &order, reporter)?;
                match next {
                    Next::Step => {}
                    Next::EpochDone => break,
                    Next::StoppedEarly => break 'epochs,
                    Next::Paused => {
                        return Ok(Outcome::Paused {
                            global_step: s.state.global_step,
                        });
                    }
                }
            }
        }
        reporter.finish();
        self.finish(s)
    }

    /// The model, optimizer and position to start from (a checkpoint's, when resuming), the
    /// evaluation sets, the lr schedule and the metrics files; tells the person what runs.
    fn setup(&mut self, reporter: &mut dyn Reporter) -> Result<Session> {
        let config = &self.config;
        let ad = self.device.clone().autodiff();
        let steps_per_epoch = steps_per_epoch(config, self.data.train.len())?;
        let from = self.resume.as_ref().map(|l| {
            format!(
                "\nfrom checkpoint {} (step {})",
                l.checkpoint.dir.display(),
                l.checkpoint.state.global_step
            )
        });
        let (model, optim, state, best) = match self.resume.take() {
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
                    Model::new(config, &ad),
                    optimizer(config),
                    TrainState::new(config, &self.backend_name),
                    None,
                )
            }
        };
        // Only now, with any resume accepted: a refused one leaves config.json as it was.
        self.run.write_config(config)?;
        self.announce(reporter, &state, from);

        let resident = |images: &[u8], labels: &[u8]| {
            ResidentSet::new(images, labels, &self.device, self.eval_chunk)
        };
        let test = resident(&self.data.test.images, &self.data.test.labels);
        let valid = (!self.data.valid.is_empty())
            .then(|| resident(&self.data.valid.images, &self.data.valid.labels));
        let schedule = LrScheduleState::starting_at(config, steps_per_epoch, state.global_step)?;
        let metrics = self
            .run
            .open_metrics(state.global_step, config.tensorboard)?;
        reporter.start(steps_per_epoch * config.epochs, state.global_step);
        Ok(Session {
            ad,
            model,
            optim,
            elapsed_before: state.elapsed_s,
            best_unsaved: best.is_some(),
            state,
            best,
            test,
            valid,
            schedule,
            metrics,
            steps_per_epoch,
            started: Instant::now(),
            last_eval: None,
            saved_step: checkpoint::list(&self.run.checkpoints())
                .last()
                .map(|(step, _)| *step),
            host: None,
        })
    }

    /// The run's first line, and why nothing will train when the run is already done.
    fn announce(&self, reporter: &mut dyn Reporter, state: &TrainState, from: Option<String>) {
        let config = &self.config;
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
        } else if selection::patience_spent(config, state) {
            reporter.note(&format!(
                "run {} already stopped early ({} evaluations without a better validation \
                 accuracy); pass a larger --early-stopping to continue",
                self.run.path.display(),
                state.evals_since_best
            ));
        }
    }

    /// One training step of the epoch ordered by `order`, its evaluation when one is due, its
    /// metrics, and the checkpoint and stop that may follow.
    /// The session moves through the step: the model goes to the optimizer by value, and a
    /// second handle on its tensors would stop Burn from updating them in place.
    fn step(
        &self,
        mut s: Session,
        order: &[u32],
        reporter: &mut dyn Reporter,
    ) -> Result<(Session, Next)> {
        let config = &self.config;
        let (epoch, step) = (s.state.epoch, s.state.step_in_epoch);
        let batch = config.batch_size;
        let idx = &order[step * batch..(step + 1) * batch];
        let lr = s.schedule.next_lr();
        let this_step = Step {
            config,
            train: &self.data.train,
            idx,
            lr,
            global_step: s.state.global_step,
            diagnose: diagnose_step(config, s.state.global_step),
        };
        let out = run_step(s.model, &mut s.host, &mut s.optim, &s.ad, &this_step);
        s.model = out.model;
        if !out.train_loss.is_finite() {
            reporter.finish();
            return Err(Error::Diverged {
                value: out.train_loss,
                epoch,
                step,
                global_step: s.state.global_step + 1,
                kept: s
                    .saved_step
                    .map(|s| format!("the last good checkpoint (step {s}) was kept"))
                    .unwrap_or_else(|| "no checkpoint had been written yet".into()),
            });
        }
        let state = &mut s.state;
        state.last_train_loss = Some(out.train_loss as f64);
        state.epoch_train_loss_sum += out.train_loss as f64;
        state.epoch_train_accuracy_sum += out.train_accuracy as f64;
        state.epoch_steps += 1;
        state.global_step += 1;
        state.step_in_epoch += 1;
        let epoch_end = state.step_in_epoch == s.steps_per_epoch;
        let eval_now = epoch_end
            || (config.eval_every > 0 && state.global_step.is_multiple_of(config.eval_every));
        let inference = eval_now.then(|| s.model.valid());
        let eval = inference
            .as_ref()
            .map(|m| evaluate_with(m, &s.test, &mut s.host));
        let valid_eval = inference
            .as_ref()
            .zip(s.valid.as_ref())
            .map(|(m, v)| evaluate_with(m, v, &mut s.host));
        if let Some(e) = &eval {
            state.last_test_accuracy = Some(e.accuracy);
            state.best_test_accuracy = Some(
                state
                    .best_test_accuracy
                    .map_or(e.accuracy, |b| b.max(e.accuracy)),
            );
            s.last_eval = Some(e.clone());
        }
        state.elapsed_s = s.elapsed_before + s.started.elapsed().as_secs_f64();

        let m = StepMetrics {
            epoch,
            step,
            steps_per_epoch: s.steps_per_epoch,
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
        s.metrics.record(&m)?;
        reporter.step(&m);
        let output_closed = reporter.output_closed();

        if epoch_end {
            let steps = state.epoch_steps.max(1) as f64;
            reporter.epoch_end(&EpochEnd {
                epoch: epoch + 1,
                train_loss: state.epoch_train_loss_sum / steps,
                train_accuracy: state.epoch_train_accuracy_sum / steps,
                valid_accuracy: valid_eval.as_ref().map(|e| e.accuracy),
                test_accuracy: eval.as_ref().map(|e| e.accuracy),
            });
            state.epoch += 1;
            state.step_in_epoch = 0;
            state.epoch_train_loss_sum = 0.0;
            state.epoch_train_accuracy_sum = 0.0;
            state.epoch_steps = 0;
        }
        let improved = match (&valid_eval, &eval) {
            (Some(v), Some(e)) => selection::record(state, v, e),
            _ => false,
        };
        if improved {
            s.best = Some(Best {
                model: s.model.clone(),
                state: state.clone(),
            });
            s.best_unsaved = true;
        }
        let early_stop = selection::patience_spent(config, state);
        let stop = self.stop.requested();
        let periodic = config.checkpoint_every > 0
            && state.global_step.is_multiple_of(config.checkpoint_every);
        let pause = self.max_steps.is_some_and(|m| state.global_step >= m)
            && state.epoch < config.epochs
            && !early_stop;
        if epoch_end || periodic || stop.is_some() || pause || output_closed || early_stop {
            self.save(&mut s)?;
            s.saved_step = Some(s.state.global_step);
        }
        if pause {
            reporter.finish();
            return Ok((s, Next::Paused));
        }
        if let Some((signal, code)) = stop {
            reporter.finish();
            return Err(self.interrupted(signal, code));
        }
        if output_closed {
            reporter.finish();
            return Err(Error::OutputClosed {
                resume_command: self.resume_command.clone(),
            });
        }
        if early_stop {
            reporter.finish();
            reporter.note(&selection::stop_reason(&s.state));
            return Ok((s, Next::StoppedEarly));
        }
        let next = if epoch_end {
            Next::EpochDone
        } else {
            Next::Step
        };
        Ok((s, next))
    }

    /// A checkpoint of the session's position, and `checkpoints/best/` when it changed.
    fn save(&self, s: &mut Session) -> Result<()> {
        let dir = self.run.checkpoints();
        let best = s.best.as_ref();
        checkpoint::save(
            &dir,
            &s.model,
            &s.optim,
            &s.state,
            best,
            self.config.keep_checkpoints,
        )?;
        if let (Some(best), true) = (best, s.best_unsaved) {
            checkpoint::save_best(&dir, best)?;
            s.best_unsaved = false;
        }
        Ok(())
    }

    fn interrupted(&self, signal: &'static str, code: i32) -> Error {
        Error::Interrupted {
            signal,
            code,
            resume_command: self.resume_command.clone(),
        }
    }

    /// `summary.json` of the run as it stands.
    fn finish(&self, s: Session) -> Result<Outcome> {
        let (config, state) = (&self.config, &s.state);
        // A run resumed after its end has evaluated nothing this session.
        let final_eval = match s.last_eval {
            Some(e) => e,
            None => evaluate(&s.model.valid(), &s.test),
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
            images_per_s: (state.global_step * config.batch_size) as f64 / wall,
            train_images: self.data.train.len(),
            test_images: s.test.len,
            valid_images: self.data.valid.len(),
            valid_accuracy_best: state.best_valid_accuracy,
            best_valid_step: state.best_valid_step,
            test_accuracy_at_best_valid: state.test_accuracy_at_best_valid,
            // Also for a session that resumed a run which had stopped already.
            stopped_early: selection::patience_spent(config, state)
                .then(|| selection::stop_reason(state)),
        };
        summary.write(&self.run.path)?;
        Ok(Outcome::Finished(Box::new(summary)))
    }
}
