//! The training loop: the lecture's eager loop (shuffle, forward, cross-entropy, backward, Adam
//! step) with per-step metrics, test evaluation on a cadence, checkpoints and exact resume.

pub mod checkpoint;
pub mod evaluate;

use std::io::Write;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::batcher::{ResidentSet, epoch_order, images_tensor, labels_tensor, step_seed};
use crate::config::ExperimentConfig;
use crate::data::MnistData;
use crate::error::{Error, Result};
use crate::model::{Mlp, correct_count, cross_entropy};
use crate::report::{Reporter, StepMetrics};
use crate::run_dir::{RunDir, SUMMARY_FILE, write_atomic};
use crate::signals::StopFlag;
use checkpoint::{Checkpoint, TrainState};
pub use evaluate::{Evaluation, evaluate};

/// Written to `summary.json` when a run ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub run_dir: String,
    pub backend: String,
    pub config: ExperimentConfig,
    pub steps: usize,
    pub epochs: usize,
    pub final_test_accuracy: f64,
    pub final_test_loss: f64,
    pub best_test_accuracy: f64,
    pub final_train_loss: f64,
    /// Training wall time in seconds, evaluation included, summed over resumed sessions.
    pub wall_time_s: f64,
    /// Training images processed per second of wall time.
    pub images_per_s: f64,
    pub train_images: usize,
    pub test_images: usize,
}

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
    pub resume: Option<Checkpoint>,
    pub stop: StopFlag,
    /// The command that resumes this run, printed when it is interrupted.
    pub resume_command: String,
    /// Stop (with a checkpoint) once this many steps are done in total.
    pub max_steps: Option<usize>,
}

/// One Adam step on a batch. Returns the updated model, the batch's mean loss and its number of
/// correct predictions, as device tensors: the caller decides when to read them back.
pub fn train_step(
    model: Mlp,
    optim: &mut ModuleOptimizer,
    lr: f64,
    images: Tensor<2>,
    labels: Tensor<1, Int>,
) -> (Mlp, Tensor<1>, Tensor<1, Int>) {
    let logits = model.forward(images);
    let loss = cross_entropy(logits.clone(), labels.clone());
    let correct = correct_count(logits.detach(), labels);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    (optim.step(lr, model, grads), loss, correct)
}

/// Adam with the config's betas and epsilon.
pub fn optimizer(config: &ExperimentConfig) -> ModuleOptimizer {
    AdamConfig::new()
        .with_beta_1(config.adam_beta1 as f32)
        .with_beta_2(config.adam_beta2 as f32)
        .with_epsilon(config.adam_epsilon as f32)
        .init()
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

impl Trainer<'_> {
    pub fn run(self, reporter: &mut dyn Reporter) -> Result<Outcome> {
        let config = &self.config;
        let ad = self.device.clone().autodiff();
        let steps_per_epoch = steps_per_epoch(config, self.data.train.len())?;
        let total_steps = steps_per_epoch * config.epochs;
        let batch = config.batch_size;

        // Initialization is drawn from the seeded device RNG; a resumed run overwrites it.
        ad.seed(config.seed);
        let mut model = Mlp::new(config, &ad);
        let mut optim = optimizer(config);
        let mut state = TrainState::new(config, &self.backend_name);
        if let Some(ckpt) = &self.resume {
            ckpt.check_architecture(config)?;
            model = ckpt.load_model(model)?;
            optim = ckpt.load_optimizer(optim)?;
            state = TrainState {
                config: config.clone(),
                backend: self.backend_name.clone(),
                ..ckpt.state.clone()
            };
            // The loaded position is where the old epoch count left off; a longer --epochs
            // continues from there.
            if state.epoch >= config.epochs {
                reporter.note(&format!(
                    "run {} already finished its {} epoch(s); pass a larger --epochs to \
                     continue",
                    self.run.path.display(),
                    config.epochs
                ));
            }
        }

        let test = ResidentSet::new(
            &self.data.test.images,
            &self.data.test.labels,
            &self.device,
            self.eval_chunk,
        );
        let mut metrics_file = self.run.open_metrics(state.global_step)?;
        let metrics_path = self.run.path.join(crate::run_dir::METRICS_FILE);
        let elapsed_before = state.elapsed_s;
        let started = Instant::now();
        let mut last_eval: Option<Evaluation> = None;
        let mut last_train_loss = f64::NAN;
        reporter.start(total_steps, state.global_step);

        let save = |model: &Mlp, optim: &ModuleOptimizer, state: &TrainState| {
            checkpoint::save(
                &self.run.checkpoints(),
                model,
                optim,
                state,
                config.keep_checkpoints,
            )
        };

        while state.epoch < config.epochs {
            let order = epoch_order(self.data.train.len(), config.seed, state.epoch);
            while state.step_in_epoch < steps_per_epoch {
                let (epoch, step) = (state.epoch, state.step_in_epoch);
                // Dropout masks come from the device RNG; seeding it per step makes them a
                // function of (seed, step), which is what lets a resumed run match exactly.
                ad.seed(step_seed(config.seed, state.global_step));
                let idx = &order[step * batch..(step + 1) * batch];
                let images = images_tensor(&self.data.train.images, idx, &ad);
                let labels = labels_tensor(&self.data.train.labels, idx, &ad);

                let (next, loss, correct) =
                    train_step(model, &mut optim, config.lr, images, labels);
                model = next;

                let train_loss: f32 = loss.into_scalar();
                if !train_loss.is_finite() {
                    return Err(Error::Diverged {
                        value: train_loss,
                        epoch,
                        step,
                        global_step: state.global_step + 1,
                    });
                }
                let train_accuracy = correct.into_scalar::<i64>() as f32 / batch as f32;
                last_train_loss = train_loss as f64;

                state.global_step += 1;
                state.step_in_epoch += 1;
                let epoch_end = state.step_in_epoch == steps_per_epoch;
                let eval_now = epoch_end
                    || (config.eval_every > 0
                        && state.global_step.is_multiple_of(config.eval_every));
                let eval = eval_now.then(|| evaluate(&model.valid(), &test));
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
                    train_loss,
                    train_accuracy,
                    test_accuracy: eval.as_ref().map(|e| e.accuracy as f32),
                    test_loss: eval.as_ref().map(|e| e.loss as f32),
                    elapsed_s: state.elapsed_s,
                };
                writeln!(
                    metrics_file,
                    "{}",
                    serde_json::to_string(&m).expect("metrics serialize")
                )
                .map_err(Error::io(format!("writing {}", metrics_path.display())))?;
                reporter.step(&m);

                if epoch_end {
                    state.epoch += 1;
                    state.step_in_epoch = 0;
                }
                let stop = self.stop.requested();
                let periodic = config.checkpoint_every > 0
                    && state.global_step.is_multiple_of(config.checkpoint_every);
                let pause = self.max_steps.is_some_and(|m| state.global_step >= m)
                    && state.epoch < config.epochs;
                if epoch_end || periodic || stop.is_some() || pause {
                    save(&model, &optim, &state)?;
                }
                if pause {
                    reporter.finish();
                    return Ok(Outcome::Paused {
                        global_step: state.global_step,
                    });
                }
                if let Some((signal, code)) = stop {
                    reporter.finish();
                    return Err(Error::Interrupted {
                        signal,
                        code,
                        resume_command: self.resume_command.clone(),
                    });
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
            final_train_loss: last_train_loss,
            wall_time_s: wall,
            images_per_s: (state.global_step * batch) as f64 / wall,
            train_images: self.data.train.len(),
            test_images: test.len,
        };
        write_atomic(
            &self.run.path.join(SUMMARY_FILE),
            serde_json::to_string_pretty(&summary)
                .expect("summary serializes")
                .as_bytes(),
        )?;
        Ok(Outcome::Finished(Box::new(summary)))
    }
}
