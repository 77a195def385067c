//! One training step — the lecture's eager loop body — shared by the trainer and `bench`, so
//! that what is benchmarked is exactly what trains.

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::{ExperimentConfig, TrainMetrics};
use crate::data::batcher::{images_tensor, labels_tensor, metrics_seed, step_seed};
use crate::data::{IMAGE_PIXELS, Split};
use crate::kernel::host_f32;
use crate::kernel::{self, HostWeights, SparseImages};
use crate::model::{FirstLayerHost, Input, Mlp, correct_count, cross_entropy};
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
/// `host` is `model`'s first layer on the host if the caller holds it, and is left holding
/// the updated model's when the step read that back, else nothing.
#[allow(clippy::too_many_arguments)]
pub fn run_step(
    model: Mlp,
    host: &mut Option<FirstLayerHost>,
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
    let labels = labels_tensor(&train.labels, idx, ad);
    // On the CPU the first layer's product and weight gradient come from the batch's lit
    // pixels ([`kernel`]); the dense images are then built only for the diagnostics.
    let batch = match kernel::trains_on(ad) {
        // Both wait on memory, mostly: side by side they take the time of one.
        true => {
            let (sparse, w) = rayon::join(
                || SparseImages::gather(&train.images, idx, IMAGE_PIXELS),
                || match host.take() {
                    Some((w, _)) => w,
                    None => model.first_weight_host(),
                },
            );
            Batch::Sparse(sparse, w)
        }
        false => Batch::Dense(images_tensor(&train.images, idx, ad)),
    };
    let (logits, product) = match &batch {
        Batch::Sparse(sparse, w) => {
            let mut product = vec![0f32; idx.len() * w.width()];
            kernel::first_product(sparse, w, &mut product);
            let product = TensorData::new(product, [idx.len(), w.width()]);
            let product = Tensor::from_data(product, ad).require_grad();
            let logits = model.forward_from(Input::FirstProduct(product.clone()));
            (logits, Some(product))
        }
        Batch::Dense(images) => (model.forward(images.clone()), None),
    };
    let loss = cross_entropy(logits.clone(), labels.clone());
    let batch_correct = match config.train_metrics {
        TrainMetrics::Batch => Some(correct_count(logits.detach(), labels.clone())),
        TrainMetrics::Lecture => None,
    };
    let mut grads = loss.backward();
    let product_grad = product.and_then(|p| p.grad_remove(&mut grads));
    let mut grads = GradientsParams::from_grads(grads, &model);
    if let (Batch::Sparse(sparse, _), Some(product_grad)) = (&batch, product_grad) {
        let width = product_grad.dims()[1];
        let device = product_grad.device();
        let product_grad = host_f32(product_grad.into_data());
        let mut weight_grad = vec![0f32; IMAGE_PIXELS * width];
        kernel::weight_gradient(sparse, &product_grad, width, &mut weight_grad);
        let weight_grad = TensorData::new(weight_grad, [IMAGE_PIXELS, width]);
        grads.register(
            model.first_weight_id(),
            Tensor::<2>::from_data(weight_grad, &device),
        );
    }
    let before = diagnose.then(|| {
        let images = match &batch {
            Batch::Dense(images) => images.clone(),
            Batch::Sparse(..) => images_tensor(&train.images, idx, ad),
        };
        diagnostics::before_update(&model, &grads, images.inner())
    });
    // The update outdates any host copy (on the dense path a test pass may have left one).
    *host = None;
    let model = optim.step(lr, model, grads);
    let layers = before.map(|b| b.after_update(&model));

    let (loss, correct) = match batch_correct {
        Some(correct) => (loss.inner(), correct.inner()),
        None => {
            let valid = model.valid();
            // The first layer of the updated model, computed once for both lecture columns.
            let input = match &batch {
                Batch::Sparse(sparse, _) => {
                    let updated = host.insert(valid.first_layer_host());
                    valid.first_layer_from(sparse, updated, &ad.clone().inner())
                }
                Batch::Dense(images) => Input::Images(images.clone().inner()),
            };
            lecture_metrics(&valid, input, labels.inner(), config, global_step)
        }
    };
    let train_loss: f32 = loss.into_scalar();
    let train_accuracy = correct.into_scalar::<i64>() as f32 / idx.len() as f32;
    StepOutput {
        model,
        train_loss,
        train_accuracy,
        layers,
    }
}

/// A step's images: their lit pixels for the first layer's kernels (with the model's first
/// weight on the host), or Burn's dense tensor.
enum Batch {
    Sparse(SparseImages, HostWeights),
    Dense(Tensor<2>),
}

/// The lecture's train columns, on the step's batch after the update: the loss in training
/// mode (dropout on, batchnorm on batch statistics) and the correct count in inference mode.
/// Both run without autodiff on the inner device and leave the batchnorm running statistics
/// alone; the dropout masks come from a host RNG of their own, seeded by (seed, step), so
/// training draws nothing different and is bit-identical to `train_metrics: batch`.
fn lecture_metrics(
    valid: &Mlp,
    input: Input,
    labels: Tensor<1, Int>,
    config: &ExperimentConfig,
    global_step: usize,
) -> (Tensor<1>, Tensor<1, Int>) {
    // Without dropout or batchnorm, training and inference mode compute the same logits: one
    // forward serves both columns.
    if config.dropout > 0.0 || config.batchnorm {
        let correct = correct_count(valid.forward_from(input.clone()), labels.clone());
        let mut rng = ChaCha8Rng::seed_from_u64(metrics_seed(config.seed, global_step));
        let loss = cross_entropy(valid.forward_training_mode(input, &mut rng), labels);
        (loss, correct)
    } else {
        let logits = valid.forward_from(input);
        let correct = correct_count(logits.clone(), labels.clone());
        (cross_entropy(logits, labels), correct)
    }
}
