//! One training step — the lecture's eager loop body — shared by the trainer and `bench`, so
//! that what is benchmarked is exactly what trains.

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::{ExperimentConfig, TrainMetrics};
use crate::data::Split;
use crate::data::batcher::{images_tensor, labels_tensor, metrics_seed, step_seed};
use crate::model::{Mlp, correct_count, cross_entropy};
use crate::run::metrics::LayerDiagnostics;
use crate::train::diagnostics;

/// What a step leaves: the updated model and the step's train columns, read back.
pub struct StepOutput {
    pub model: Mlp,
    pub train_loss: f32,
    pub train_accuracy: f32,
    /// The per-layer diagnostics, when the step was asked to take them.
    pub layers: Option<Vec<LayerDiagnostics>>,
}

/// One optimizer step at learning rate `lr` on the images `idx` of `train`, on the autodiff
/// device `ad`, then the train columns `config.train_metrics` asks for. `global_step` is the
/// number of steps done before this one: it seeds this step's dropout masks, so that a resumed
/// run draws the same ones.
/// With `diagnose`, the step also takes the per-layer diagnostics; they change nothing.
#[allow(clippy::too_many_arguments)]
pub fn run_step(
    model: Mlp,
    optim: &mut ModuleOptimizer,
    lr: f64,
    config: &ExperimentConfig,
    train: &Split,
    idx: &[u32],
    ad: &Device,
    global_step: usize,
    diagnose: bool,
) -> StepOutput {
    ad.seed(step_seed(config.seed, global_step));
    let images = images_tensor(&train.images, idx, ad);
    let labels = labels_tensor(&train.labels, idx, ad);
    let logits = model.forward(images.clone());
    let loss = cross_entropy(logits.clone(), labels.clone());
    let batch_correct = match config.train_metrics {
        TrainMetrics::Batch => Some(correct_count(logits.detach(), labels.clone())),
        TrainMetrics::Lecture => None,
    };
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let before =
        diagnose.then(|| diagnostics::before_update(&model, &grads, images.clone().inner()));
    let model = optim.step(lr, model, grads);
    let layers = before.map(|b| b.after_update(&model));

    let batch = idx.len() as f32;
    let (loss, correct) = match batch_correct {
        Some(correct) => (loss.inner(), correct.inner()),
        None => lecture_metrics(&model, images.inner(), labels.inner(), config, global_step),
    };
    let train_loss: f32 = loss.into_scalar();
    let train_accuracy = correct.into_scalar::<i64>() as f32 / batch;
    StepOutput {
        model,
        train_loss,
        train_accuracy,
        layers,
    }
}

/// The lecture's train columns, on the step's batch after the update: the loss in training
/// mode (dropout on, batchnorm on batch statistics) and the correct count in inference mode.
/// Both run without autodiff on the inner device and leave the batchnorm running statistics
/// alone; the dropout masks come from a host RNG of their own, seeded by (seed, step), so
/// training draws nothing different and is bit-identical to `train_metrics: batch`.
fn lecture_metrics(
    model: &Mlp,
    images: Tensor<2>,
    labels: Tensor<1, Int>,
    config: &ExperimentConfig,
    global_step: usize,
) -> (Tensor<1>, Tensor<1, Int>) {
    let valid = model.valid();
    let eval_logits = valid.forward(images.clone());
    let correct = correct_count(eval_logits.clone(), labels.clone());
    // Without dropout or batchnorm, training and inference mode compute the same logits: one
    // forward serves both columns.
    let loss = if config.dropout > 0.0 || config.batchnorm {
        let mut rng = ChaCha8Rng::seed_from_u64(metrics_seed(config.seed, global_step));
        cross_entropy(valid.forward_training_mode(images, &mut rng), labels)
    } else {
        cross_entropy(eval_logits, labels)
    };
    (loss, correct)
}
