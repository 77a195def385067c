//! Test-set evaluation, shared by the training loop and `mnist-train eval`.

use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::batcher::ResidentSet;
use crate::model::{Mlp, correct_count, cross_entropy};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub accuracy: f64,
    pub loss: f64,
    pub images: usize,
}

/// Accuracy and mean cross-entropy of `model` (already `valid()`: no autodiff, no dropout,
/// batchnorm on running statistics) on the resident set. Sums stay on the device; two scalars
/// are read back at the end.
pub fn evaluate(model: &Mlp, set: &ResidentSet) -> Evaluation {
    let mut loss_sum: Option<Tensor<1>> = None;
    let mut correct: Option<Tensor<1, Int>> = None;
    for (images, labels) in &set.chunks {
        let n = labels.dims()[0] as f64;
        let logits = model.forward(images.clone());
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
