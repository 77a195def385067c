//! Per-layer diagnostics: the cause behind the accuracy curves the lecture compares. Sigmoid's
//! first-layer gradient shrinking step by step, random-normal(1.0)'s huge gradients, relu units
//! that died, saturated sigmoid units — each shows in one of these numbers.
//!
//! They are computed on the host in f64 from copies of the gradients, the weights before and
//! after the step, and the hidden outputs of the step's batch: on the steps that take them that
//! is well under a millisecond per layer at MNIST sizes, and nothing on the others. Nothing here
//! feeds back into training: the same seed trains the same weights with diagnostics on or off.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

use crate::config::Activation;
use crate::model::Model;
use crate::run::metrics::LayerDiagnostics;

/// Outputs within this share of the activation's range from a bound count as saturated.
const SATURATION_MARGIN: f64 = 0.02;

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

fn l2(v: impl Iterator<Item = f32>) -> f64 {
    v.map(|x| (x as f64) * (x as f64)).sum::<f64>().sqrt()
}

/// What is taken before the optimizer's update; [`Before::after_update`] completes it.
pub struct Before {
    layers: Vec<LayerDiagnostics>,
    weights: Vec<Vec<f32>>,
}

/// Gradient norms, the weights before the update and the hidden layers' outputs on `images`
/// (the step's batch, without autodiff), for a model on the autodiff device. A convolution's
/// channels are its units: a dead channel puts out nothing positive anywhere on the batch.
pub fn before_update(model: &Model, grads: &GradientsParams, images: Tensor<2>) -> Before {
    let mut layers = Vec::new();
    let mut weights = Vec::new();
    for layer in model.weight_layers() {
        let grad_norm = layer
            .weight_grad(grads)
            .map_or(0.0, |g| l2(g.iter::<f32>()));
        weights.push(layer.weight_data().iter::<f32>().collect());
        layers.push(LayerDiagnostics {
            name: layer.name().to_string(),
            grad_norm: grad_norm as f32,
            ..Default::default()
        });
    }
    let activation = model.activation().kind;
    for (layer, activity) in layers.iter_mut().zip(model.valid().hidden_activity(images)) {
        let [batch, units] = activity.activated.dims();
        let out = host(activity.activated);
        let (mean, std) = mean_std(&out);
        layer.act_mean = Some(mean as f32);
        layer.act_std = Some(std as f32);
        match activation {
            Activation::Relu | Activation::LeakyRelu | Activation::Elu | Activation::Selu => {
                layer.dead_fraction = Some(dead_fraction(&out, batch, units) as f32);
            }
            Activation::Sigmoid => {
                layer.saturated_fraction = Some(saturated_fraction(&out, 0.0, 1.0) as f32);
            }
            Activation::Tanh => {
                layer.saturated_fraction = Some(saturated_fraction(&out, -1.0, 1.0) as f32);
            }
        }
        if let Some(normalized) = activity.normalized {
            let (mean, std) = mean_std(&host(normalized));
            layer.norm_mean = Some(mean as f32);
            layer.norm_std = Some(std as f32);
        }
    }
    Before { layers, weights }
}

impl Before {
    /// The weight norms and update ratios, from the model after the update.
    pub fn after_update(mut self, model: &Model) -> Vec<LayerDiagnostics> {
        for ((layer, before), weights) in self
            .layers
            .iter_mut()
            .zip(&self.weights)
            .zip(model.weight_layers())
        {
            let after: Vec<f32> = weights.weight_data().iter::<f32>().collect();
            let norm_before = l2(before.iter().copied());
            let change = l2(after.iter().zip(before).map(|(a, b)| a - b));
            layer.weight_norm = l2(after.into_iter()) as f32;
            layer.update_ratio = if norm_before > 0.0 {
                (change / norm_before) as f32
            } else {
                0.0
            };
        }
        self.layers
    }
}

/// Mean and (population) standard deviation.
fn mean_std(v: &[f32]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// The share of units (columns of the `[batch, units]` outputs) that are ≤ 0 on every row.
fn dead_fraction(out: &[f32], batch: usize, units: usize) -> f64 {
    let dead = (0..units)
        .filter(|&u| (0..batch).all(|b| out[b * units + u] <= 0.0))
        .count();
    dead as f64 / units.max(1) as f64
}

/// The share of outputs within [`SATURATION_MARGIN`] of the range from `lo` or `hi`.
fn saturated_fraction(out: &[f32], lo: f64, hi: f64) -> f64 {
    let margin = SATURATION_MARGIN * (hi - lo);
    let saturated = out
        .iter()
        .filter(|&&x| (x as f64) <= lo + margin || (x as f64) >= hi - margin)
        .count();
    saturated as f64 / out.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ExperimentConfig, Init};
    use crate::data::{IMAGE_PIXELS, Split};
    use crate::train::{optimizer, run_step};

    /// One Adam step of a 784 → 3 → 10 relu net on 4 images, redone by hand in f64: forward,
    /// softmax cross-entropy, backpropagation, and Adam's first update, which is
    /// −lr · g / (|g| + ε) elementwise (bias-corrected m = g, v = g²).
    #[test]
    fn one_step_of_a_tiny_net_matches_a_hand_computation() {
        let config = ExperimentConfig {
            hidden: vec![3],
            init: Init::HeUniform,
            lr: 0.01,
            seed: 7,
            diagnostics_every: 1,
            ..Default::default()
        };
        let device = crate::backend::Backend::default_cpu().device().unwrap();
        let ad = device.clone().autodiff();
        ad.seed(config.seed);
        let model = Model::new(&config, &ad);
        let crate::model::ModelWeights::Mlp(w) = model.weights() else {
            panic!("an MLP config builds an MLP")
        };
        let (w1, b1, w2, b2) = (
            &w.hidden[0].weight,
            &w.hidden[0].bias,
            &w.output.weight,
            &w.output.bias,
        );
        // Four images with a few lit pixels each, labels 0..3.
        let n = 4;
        let mut images = vec![0u8; n * IMAGE_PIXELS];
        for (i, px) in images.iter_mut().enumerate() {
            if (i * 7919) % 13 == 0 {
                *px = ((i * 31) % 256) as u8;
            }
        }
        let labels = vec![0u8, 1, 2, 3];
        let train = Split {
            images: images.clone(),
            labels: labels.clone(),
        };

        // By hand. Burn's weights are [d_in, d_out], row-major.
        let x = |b: usize, i: usize| images[b * IMAGE_PIXELS + i] as f64 / 255.0;
        let (h, o) = (3, 10);
        let mut pre = vec![0.0; n * h];
        for b in 0..n {
            for j in 0..h {
                pre[b * h + j] = b1[j] as f64
                    + (0..IMAGE_PIXELS)
                        .map(|i| x(b, i) * w1[i * h + j] as f64)
                        .sum::<f64>();
            }
        }
        let act: Vec<f64> = pre.iter().map(|&p| p.max(0.0)).collect();
        let mut dlogits = vec![0.0; n * o];
        for b in 0..n {
            let logits: Vec<f64> = (0..o)
                .map(|k| {
                    b2[k] as f64
                        + (0..h)
                            .map(|j| act[b * h + j] * w2[j * o + k] as f64)
                            .sum::<f64>()
                })
                .collect();
            let max = logits.iter().cloned().fold(f64::MIN, f64::max);
            let z: f64 = logits.iter().map(|l| (l - max).exp()).sum();
            for k in 0..o {
                let p = (logits[k] - max).exp() / z;
                let y = if k == labels[b] as usize { 1.0 } else { 0.0 };
                dlogits[b * o + k] = (p - y) / n as f64;
            }
        }
        let mut g2 = vec![0.0; h * o];
        let mut dh = vec![0.0; n * h];
        for b in 0..n {
            for j in 0..h {
                for k in 0..o {
                    g2[j * o + k] += act[b * h + j] * dlogits[b * o + k];
                    dh[b * h + j] += dlogits[b * o + k] * w2[j * o + k] as f64;
                }
                if pre[b * h + j] <= 0.0 {
                    dh[b * h + j] = 0.0;
                }
            }
        }
        let mut g1 = vec![0.0; IMAGE_PIXELS * h];
        for b in 0..n {
            for i in 0..IMAGE_PIXELS {
                for j in 0..h {
                    g1[i * h + j] += x(b, i) * dh[b * h + j];
                }
            }
        }
        let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let adam = |w: &[f32], g: &[f64]| -> (f64, f64) {
            let eps = config.epsilon;
            let after: Vec<f64> = w
                .iter()
                .zip(g)
                .map(|(&w, &g)| w as f64 - config.lr * g / (g.abs() + eps))
                .collect();
            let change: Vec<f64> = after.iter().zip(w).map(|(a, &w)| a - w as f64).collect();
            let before: Vec<f64> = w.iter().map(|&w| w as f64).collect();
            (norm(&after), norm(&change) / norm(&before))
        };
        let (wn1, ur1) = adam(w1, &g1);
        let (wn2, ur2) = adam(w2, &g2);
        let act_mean = act.iter().sum::<f64>() / act.len() as f64;
        let act_std =
            (act.iter().map(|a| (a - act_mean).powi(2)).sum::<f64>() / act.len() as f64).sqrt();
        let dead = (0..h)
            .filter(|&j| (0..n).all(|b| act[b * h + j] <= 0.0))
            .count();

        let mut optim = optimizer(&config);
        let step = crate::train::Step {
            config: &config,
            train: &train,
            idx: &[0, 1, 2, 3],
            lr: config.lr,
            global_step: 0,
            diagnose: true,
        };
        let out = run_step(model, &mut None, &mut optim, &ad, &step);
        let layers = out.layers.expect("diagnostics were asked for");
        let close = |got: f32, want: f64, what: &str| {
            assert!(
                (got as f64 - want).abs() <= 1e-4 * want.abs().max(1e-3),
                "{what}: {got} by the step, {want} by hand"
            );
        };
        assert_eq!(layers.len(), 2);
        assert_eq!(
            (layers[0].name.as_str(), layers[1].name.as_str()),
            ("hidden.0", "output")
        );
        close(layers[0].grad_norm, norm(&g1), "hidden.0 grad_norm");
        close(layers[1].grad_norm, norm(&g2), "output grad_norm");
        close(layers[0].weight_norm, wn1, "hidden.0 weight_norm");
        close(layers[1].weight_norm, wn2, "output weight_norm");
        close(layers[0].update_ratio, ur1, "hidden.0 update_ratio");
        close(layers[1].update_ratio, ur2, "output update_ratio");
        close(layers[0].act_mean.unwrap(), act_mean, "act_mean");
        close(layers[0].act_std.unwrap(), act_std, "act_std");
        close(
            layers[0].dead_fraction.unwrap(),
            dead as f64 / h as f64,
            "dead_fraction",
        );
        assert_eq!(layers[0].saturated_fraction, None, "relu has no saturation");
        assert_eq!(
            layers[1].act_mean, None,
            "the output layer has no activation statistics"
        );
    }

    #[test]
    fn statistics_of_a_small_batch() {
        // 2 images × 3 units: unit 1 is ≤ 0 on both (dead), unit 0 and 2 are not.
        let out = [0.5, 0.0, 0.0, 1.5, -0.1, 2.0];
        assert_eq!(dead_fraction(&out, 2, 3), 1.0 / 3.0);
        let (mean, std) = mean_std(&out);
        assert!((mean - 0.65).abs() < 1e-7);
        let var = [0.5f64, 0.0, 0.0, 1.5, -0.1, 2.0]
            .iter()
            .map(|x| (x - 0.65).powi(2))
            .sum::<f64>()
            / 6.0;
        assert!((std - var.sqrt()).abs() < 1e-7);
        // Sigmoid: 0.01 and 0.99 are within 2% of a bound, 0.5 and 0.03 are not.
        assert_eq!(saturated_fraction(&[0.01, 0.5, 0.99, 0.03], 0.0, 1.0), 0.5);
        // Tanh: within 0.04 of ±1.
        assert_eq!(saturated_fraction(&[-0.97, 0.0, 0.95, 1.0], -1.0, 1.0), 0.5);
    }
}
