//! Test-set evaluation, shared by the training loop and `mnist-train eval`.

use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::NUM_CLASSES;
use crate::data::batcher::ResidentSet;
use crate::model::{FirstLayerHost, Model, correct_count, cross_entropy};

/// The logits of chunk `i` of `set`: from the sparse images where the set has them and the
/// model takes them (the MLP's first layer on the host, [`crate::kernel`]), else Burn's dense
/// forward pass. `host` is the MLP's first layer on the host; it is read back when `None` and
/// needed.
fn logits_fn<'a>(
    model: &'a Model,
    set: &'a ResidentSet,
    host: &'a mut Option<FirstLayerHost>,
) -> impl Fn(usize) -> Tensor<2> + 'a {
    let sparse = set.sparse.as_ref().zip(model.lit_pixel_path());
    if let (Some((_, mlp)), None) = (sparse, &host) {
        *host = Some(mlp.first_layer_host());
    }
    let host = &*host;
    move |i| match (sparse, host) {
        (Some((sparse, mlp)), Some(host)) => {
            let device = set.chunks[i].0.device();
            mlp.forward_from(mlp.first_layer_from(&sparse[i], host, &device))
        }
        _ => model.forward(set.chunks[i].0.clone()),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub accuracy: f64,
    pub loss: f64,
    pub images: usize,
}

/// Accuracy and mean cross-entropy of `model` (already `valid()`: no autodiff, no dropout,
/// batchnorm on running statistics) on the resident set. Sums stay on the device; two scalars
/// are read back at the end.
pub fn evaluate(model: &Model, set: &ResidentSet) -> Evaluation {
    evaluate_with(model, set, &mut None)
}

/// [`evaluate`] with `model`'s first layer on the host if the caller holds it ([`run_step`]
/// leaves it); left holding it when this pass read it back.
///
/// [`run_step`]: crate::train::run_step
pub fn evaluate_with(
    model: &Model,
    set: &ResidentSet,
    host: &mut Option<FirstLayerHost>,
) -> Evaluation {
    if set.sparse.is_some() && model.lit_pixel_path().is_some() && !set.chunks.is_empty() {
        return evaluate_chunks_in_parallel(model, set, host);
    }
    let mut loss_sum: Option<Tensor<1>> = None;
    let mut correct: Option<Tensor<1, Int>> = None;
    let logits_of = logits_fn(model, set, host);
    for (i, (_, labels)) in set.chunks.iter().enumerate() {
        let n = labels.dims()[0] as f64;
        let logits = logits_of(i);
        let loss = cross_entropy(logits.clone(), labels.clone()).mul_scalar(n);
        let right = correct_count(logits, labels.clone());
        loss_sum = Some(loss_sum.map_or(loss.clone(), |s| s + loss));
        correct = Some(correct.map_or(right.clone(), |c| c + right));
    }
    let (Some(loss_sum), Some(correct)) = (loss_sum, correct) else {
        return Evaluation {
            accuracy: 0.0,
            loss: f64::NAN,
            images: 0,
        };
    };
    let loss: f32 = loss_sum.into_scalar();
    let correct: i64 = correct.into_scalar();
    Evaluation {
        accuracy: correct as f64 / set.len as f64,
        loss: loss as f64 / set.len as f64,
        images: set.len,
    }
}

/// [`evaluate`] on the CPU: each chunk whole on one thread, from its first layer to its two
/// sums, the chunks spread over the threads. Burn's CPU operations split each product over
/// the threads and wait for them, about thirty times per chunk; whole chunks side by side do
/// not wait. The sums are added in chunk order, so the result does not depend on the threads.
fn evaluate_chunks_in_parallel(
    model: &Model,
    set: &ResidentSet,
    host: &mut Option<FirstLayerHost>,
) -> Evaluation {
    use rayon::prelude::*;
    let logits_of = logits_fn(model, set, host);
    let sums: Vec<(f64, i64)> = (0..set.chunks.len())
        .into_par_iter()
        .map(|i| {
            let labels = &set.chunks[i].1;
            let n = labels.dims()[0] as f64;
            let logits = logits_of(i);
            let loss: f32 = cross_entropy(logits.clone(), labels.clone()).into_scalar();
            let right: i64 = correct_count(logits, labels.clone()).into_scalar();
            (loss as f64 * n, right)
        })
        .collect();
    let (loss, correct) = sums
        .iter()
        .fold((0.0, 0), |(l, c), &(dl, dc)| (l + dl, c + dc));
    let images = set.len.max(1) as f64;
    Evaluation {
        accuracy: correct as f64 / images,
        loss: loss / images,
        images: set.len,
    }
}

/// What `mnist-train eval` reports: the overall numbers, the confusion matrix and the most
/// confident mistakes — of one model, or of an ensemble (the sum of its members' logits).
#[derive(Debug, Clone)]
pub struct Report {
    pub evaluation: Evaluation,
    /// Each model's own numbers, in the order given (one entry for a single model).
    pub members: Vec<Evaluation>,
    /// `confusion[true][predicted]` counts.
    pub confusion: [[u64; NUM_CLASSES]; NUM_CLASSES],
    /// Wrong predictions, most confident first.
    pub mistakes: Vec<Mistake>,
}

pub use crate::run::eval::Mistake;

impl Report {
    /// Accuracy of each class: the diagonal over the row sums (NaN for a class absent from
    /// the set).
    pub fn per_class_accuracy(&self) -> Vec<f64> {
        self.confusion
            .iter()
            .enumerate()
            .map(|(c, row)| row[c] as f64 / row.iter().sum::<u64>() as f64)
            .collect()
    }
}

/// Log-softmax of one row of logits, in f64.
fn log_softmax_row(row: &[f32]) -> [f64; NUM_CLASSES] {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let log_sum = row
        .iter()
        .map(|&v| (v as f64 - max).exp())
        .sum::<f64>()
        .ln();
    std::array::from_fn(|c| row[c] as f64 - max - log_sum)
}

fn argmax(row: &[f64]) -> usize {
    (0..row.len()).fold(0, |best, c| if row[c] > row[best] { c } else { best })
}

/// Evaluates `models` (already `valid()`) on the set, reading back every image's logits (10
/// floats per image and model) to score each model, and their ensemble — the sum of their
/// logits, as labs 11-4 and 11-5 do — for the confusion matrix and the `keep_mistakes` most
/// confident mistakes. One model is an ensemble of one.
pub fn evaluate_report(models: &[&Model], set: &ResidentSet, keep_mistakes: usize) -> Report {
    let mut confusion = [[0u64; NUM_CLASSES]; NUM_CLASSES];
    let mut mistakes = Vec::new();
    let mut loss_sum = 0f64;
    let mut member_sums = vec![(0f64, 0u64); models.len()];
    let mut offset = 0;
    let mut hosts: Vec<Option<FirstLayerHost>> = models.iter().map(|_| None).collect();
    let logits_of: Vec<_> = models
        .iter()
        .zip(hosts.iter_mut())
        .map(|(model, host)| logits_fn(model, set, host))
        .collect();
    for (i, (_, labels)) in set.chunks.iter().enumerate() {
        let logits: Vec<Vec<f32>> = logits_of
            .iter()
            .map(|f| f(i).into_data().iter::<f32>().collect())
            .collect();
        let labels: Vec<i64> = labels.clone().into_data().iter::<i64>().collect();
        for (row, &label) in labels.iter().enumerate() {
            let label = label as usize;
            let span = row * NUM_CLASSES..(row + 1) * NUM_CLASSES;
            let mut sum = [0f32; NUM_CLASSES];
            for (member, sums) in logits.iter().zip(member_sums.iter_mut()) {
                let own = log_softmax_row(&member[span.clone()]);
                sums.0 -= own[label];
                sums.1 += (argmax(&own) == label) as u64;
                for (s, v) in sum.iter_mut().zip(&member[span.clone()]) {
                    *s += v;
                }
            }
            let log_probs = log_softmax_row(&sum);
            let predicted = argmax(&log_probs);
            confusion[label][predicted] += 1;
            loss_sum -= log_probs[label];
            if predicted != label {
                mistakes.push(Mistake {
                    index: offset + row,
                    label,
                    predicted,
                    probability: log_probs[predicted].exp() as f32,
                });
            }
        }
        offset += labels.len();
    }
    mistakes.sort_by(|a, b| b.probability.total_cmp(&a.probability));
    mistakes.truncate(keep_mistakes);
    let correct: u64 = (0..NUM_CLASSES).map(|c| confusion[c][c]).sum();
    let images = set.len.max(1) as f64;
    let scored = |loss: f64, correct: u64| Evaluation {
        accuracy: correct as f64 / images,
        loss: loss / images,
        images: set.len,
    };
    Report {
        evaluation: scored(loss_sum, correct),
        members: member_sums
            .iter()
            .map(|&(loss, correct)| scored(loss, correct))
            .collect(),
        confusion,
        mistakes,
    }
}
