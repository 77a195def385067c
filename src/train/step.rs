//! One training step — the lecture's eager loop body — shared by the trainer and `bench`, so
//! that what is benchmarked is exactly what trains.

use burn::module::{Module, ParamId};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::{ExperimentConfig, TrainMetrics};
use crate::data::augment::augment_batch;
use crate::data::batcher::{augment_seed, images_tensor, labels_tensor, metrics_seed, step_seed};
use crate::data::{IMAGE_PIXELS, Split};
use crate::kernel::host_f32;
use crate::kernel::{self, HostWeights, SparseImages};
use crate::model::{FirstLayerHost, Input, Model, correct_count, cross_entropy};
use crate::run::metrics::LayerDiagnostics;
use crate::train::diagnostics;

/// What a step leaves: the updated model and the step's train columns, read back.
pub struct StepOutput {
    pub model: Model,
    pub train_loss: f32,
    pub train_accuracy: f32,
    /// The per-layer diagnostics, when the step was asked to take them.
    pub layers: Option<Vec<LayerDiagnostics>>,
}

/// Which step to take: the images `idx` of `train`, at learning rate `lr`, after
/// `global_step` steps (which seeds the step's dropout masks, so that a resumed run draws the
/// same ones), taking the per-layer diagnostics when `diagnose` (they change nothing).
pub struct Step<'a> {
    pub config: &'a ExperimentConfig,
    pub train: &'a Split,
    pub idx: &'a [u32],
    pub lr: f64,
    pub global_step: usize,
    pub diagnose: bool,
}

/// One optimizer step on the autodiff device `ad` — Burn's loop: forward, loss, backward,
/// optimizer step — then the train columns `config.train_metrics` asks for. Where the first
/// layer comes from the batch's lit pixels, [`Batch`] does the difference. With `augment`,
/// the batch is the step's images transformed ([`crate::data::augment`]).
/// `host` is `model`'s first layer on the host if the caller holds it, and is left holding
/// the updated model's when the step read that back, else nothing.
pub fn run_step(
    model: Model,
    host: &mut Option<FirstLayerHost>,
    optim: &mut ModuleOptimizer,
    ad: &Device,
    step: &Step,
) -> StepOutput {
    let (config, idx) = (step.config, step.idx);
    ad.seed(step_seed(config.seed, step.global_step));
    let labels = labels_tensor(&step.train.labels, idx, ad);
    let augmented = config.augment.map(|a| {
        augment_batch(
            &step.train.images,
            idx,
            a,
            augment_seed(config.seed, step.global_step),
        )
    });
    let in_order: Vec<u32>;
    let images = match &augmented {
        Some(images) => {
            in_order = (0..idx.len() as u32).collect();
            Images {
                bytes: images,
                idx: &in_order,
            }
        }
        None => Images {
            bytes: &step.train.images,
            idx,
        },
    };
    let mut batch = Batch::new(&model, host, &images, ad);

    let logits = batch.forward(&model, ad);
    let loss = cross_entropy(logits.clone(), labels.clone());
    let batch_correct = match config.train_metrics {
        TrainMetrics::Batch => Some(correct_count(logits.detach(), labels.clone())),
        TrainMetrics::Lecture => None,
    };
    let grads = batch.backward(&loss, &model);
    let before = step.diagnose.then(|| {
        let images = batch.dense_images(&images, ad);
        diagnostics::before_update(&model, &grads, images.inner())
    });
    // The update outdates any host copy (on the dense path a test pass may have left one).
    *host = None;
    let model = optim.step(step.lr, model, grads);
    let layers = before.map(|b| b.after_update(&model));

    let (loss, correct) = match batch_correct {
        Some(correct) => (loss.inner(), correct.inner()),
        None => {
            let valid = model.valid();
            let input = batch.updated_input(&valid, host, ad);
            lecture_metrics(&valid, input, labels.inner(), config, step.global_step)
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

/// The images of a step: `idx` of the images in `bytes`.
struct Images<'a> {
    bytes: &'a [u8],
    idx: &'a [u32],
}

/// A step's images: Burn's dense tensor, or — the fast path on the CPU ([`kernel::trains_on`]) —
/// their lit pixels, from which the first layer's product and weight gradient are computed by
/// [`kernel`] instead of Burn (with the model's first weight on the host, and the product once
/// computed, to take its gradient from autodiff).
// One a step, never in a collection: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Batch {
    Dense(Tensor<2>),
    Sparse {
        images: SparseImages,
        weight: HostWeights,
        /// The first weight's parameter, whose gradient the kernels compute.
        weight_id: ParamId,
        product: Option<Tensor<2>>,
    },
}

impl Batch {
    fn new(
        model: &Model,
        host: &mut Option<FirstLayerHost>,
        images: &Images,
        ad: &Device,
    ) -> Batch {
        let mlp = match model.lit_pixel_path() {
            Some(mlp) if kernel::trains_on(ad) => mlp,
            _ => return Batch::Dense(images_tensor(images.bytes, images.idx, ad)),
        };
        // Both wait on memory, mostly: side by side they take the time of one.
        let (sparse, weight) = rayon::join(
            || SparseImages::gather(images.bytes, images.idx, IMAGE_PIXELS),
            || match host.take() {
                Some((w, _)) => w,
                None => mlp.first_weight_host(),
            },
        );
        Batch::Sparse {
            images: sparse,
            weight,
            weight_id: mlp.first_weight_id(),
            product: None,
        }
    }

    /// The logits, tracked by autodiff.
    fn forward(&mut self, model: &Model, ad: &Device) -> Tensor<2> {
        match self {
            Batch::Dense(images) => model.forward(images.clone()),
            Batch::Sparse {
                images,
                weight,
                product,
                ..
            } => {
                let rows = images.rows();
                let mut values = vec![0f32; rows * weight.width()];
                kernel::first_product(images, weight, &mut values);
                let values = TensorData::new(values, [rows, weight.width()]);
                let tracked = Tensor::from_data(values, ad).require_grad();
                *product = Some(tracked.clone());
                model.forward_from(Input::FirstProduct(tracked))
            }
        }
    }

    /// The gradients of `loss` for the optimizer; on the fast path autodiff stops at the first
    /// product, and the first weight's gradient is computed from the lit pixels.
    fn backward(&self, loss: &Tensor<1>, model: &Model) -> GradientsParams {
        let mut grads = loss.backward();
        let Batch::Sparse {
            images,
            weight_id,
            product: Some(product),
            ..
        } = self
        else {
            return GradientsParams::from_grads(grads, model);
        };
        let product_grad = product.grad_remove(&mut grads);
        let mut params = GradientsParams::from_grads(grads, model);
        if let Some(product_grad) = product_grad {
            let width = product_grad.dims()[1];
            let device = product_grad.device();
            let product_grad = host_f32(product_grad.into_data());
            let mut weight_grad = vec![0f32; IMAGE_PIXELS * width];
            kernel::weight_gradient(images, &product_grad, width, &mut weight_grad);
            let weight_grad = TensorData::new(weight_grad, [IMAGE_PIXELS, width]);
            params.register(*weight_id, Tensor::<2>::from_data(weight_grad, &device));
        }
        params
    }

    /// The dense images (built only for the diagnostics on the fast path).
    fn dense_images(&self, images: &Images, ad: &Device) -> Tensor<2> {
        match self {
            Batch::Dense(dense) => dense.clone(),
            Batch::Sparse { .. } => images_tensor(images.bytes, images.idx, ad),
        }
    }

    /// The input of the updated model `valid` for the lecture's columns; on the fast path its
    /// first layer, computed once for both columns from the weights read back into `host`,
    /// which the test pass and the next step then use.
    fn updated_input(
        &self,
        valid: &Model,
        host: &mut Option<FirstLayerHost>,
        ad: &Device,
    ) -> Input {
        match (self, valid.lit_pixel_path()) {
            (Batch::Sparse { images, .. }, Some(mlp)) => {
                let updated = host.insert(mlp.first_layer_host());
                mlp.first_layer_from(images, updated, &ad.clone().inner())
            }
            (Batch::Dense(images), _) => Input::Images(images.clone().inner()),
            (Batch::Sparse { .. }, None) => unreachable!("a sparse batch is the MLP's"),
        }
    }
}

/// The lecture's train columns, on the step's batch after the update: the loss in training
/// mode (dropout on, batchnorm on batch statistics) and the correct count in inference mode.
/// Both run without autodiff on the inner device and leave the batchnorm running statistics
/// alone; the dropout masks come from a host RNG of their own, seeded by (seed, step), so
/// training draws nothing different and is bit-identical to `train_metrics: batch`.
fn lecture_metrics(
    valid: &Model,
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
