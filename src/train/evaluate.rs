//! Test-set evaluation, shared by the training loop and `mnist-train eval`.

use serde::{Deserialize, Serialize};

use crate::batcher::ResidentSet;
use crate::model::{Mlp, correct_count, cross_entropy};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub accuracy: f64,
    pub loss: f64,
    pub images: usize,
}

/// Accuracy and mean cross-entropy of `model` (already `valid()`: no autodiff, no dropout,
/// batchnorm on running statistics) on the resident set. Reads back two scalars only.
pub fn evaluate(model: &Mlp, set: &ResidentSet) -> Evaluation {
    let logits = model.forward(set.images.clone());
    let loss: f32 = cross_entropy(logits.clone(), set.labels.clone()).into_scalar();
    let correct: i64 = correct_count(logits, set.labels.clone()).into_scalar();
    Evaluation {
        accuracy: correct as f64 / set.len as f64,
        loss: loss as f64,
        images: set.len,
    }
}
