//! Taking a trained model elsewhere: safetensors in PyTorch's names and layout, and ONNX.

pub mod onnx;

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use crate::config::{ExperimentConfig, enum_name};
use crate::error::{Error, Result};
use crate::model::{DenseWeights, ModelWeights};
use crate::run::write_atomic;

/// What the input must look like, written into every export.
pub const INPUT_DOC: &str = "float32 [N, 784]: 28x28 grayscale images, row-major, white digit \
                             on black, pixel values / 255 in [0, 1]";

/// `[rows, cols]` row-major → `[cols, rows]`.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes the model as safetensors with PyTorch's names and layouts — the MLP's
/// `hidden.{i}.weight` `[out, in]`, `hidden.{i}.bias`, `norm.{i}.weight|bias|running_mean|
/// running_var`, `output.weight|bias`; the CNN's first `conv.{i}.weight` `[out, in, 3, 3]`
/// (OIHW), `conv.{i}.bias` and `conv_norm.{i}.*` — with the architecture, activation and
/// input format in the metadata.
pub fn safetensors(weights: &ModelWeights, config: &ExperimentConfig, path: &Path) -> Result<()> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut dense = |name: String, d: &DenseWeights| {
        tensors.push((
            format!("{name}.weight"),
            vec![d.d_out, d.d_in],
            le_bytes(&transpose(&d.weight, d.d_in, d.d_out)),
        ));
        tensors.push((format!("{name}.bias"), vec![d.d_out], le_bytes(&d.bias)));
    };
    let (hidden, norms, output, conv_norms) = match weights {
        ModelWeights::Mlp(w) => (&w.hidden, &w.norms, &w.output, None),
        ModelWeights::Cnn(w) => (&w.hidden, &w.norms, &w.output, Some(&w.conv_norms)),
    };
    for (i, d) in hidden.iter().enumerate() {
        dense(format!("hidden.{i}"), d);
    }
    dense("output".into(), output);
    if let ModelWeights::Cnn(w) = weights {
        for (i, c) in w.convs.iter().enumerate() {
            tensors.push((
                format!("conv.{i}.weight"),
                vec![c.channels_out, c.channels_in, c.kernel, c.kernel],
                le_bytes(&c.weight),
            ));
            tensors.push((
                format!("conv.{i}.bias"),
                vec![c.channels_out],
                le_bytes(&c.bias),
            ));
        }
    }
    let all_norms = norms
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("norm.{i}"), n))
        .chain(
            conv_norms
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(i, n)| (format!("conv_norm.{i}"), n)),
        );
    for (name, n) in all_norms {
        for (part, v) in [
            ("weight", &n.gamma),
            ("bias", &n.beta),
            ("running_mean", &n.running_mean),
            ("running_var", &n.running_var),
        ] {
            tensors.push((format!("{name}.{part}"), vec![v.len()], le_bytes(v)));
        }
    }
    let views = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::Other(format!("safetensors: {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    meta.insert(
        "hidden".to_string(),
        serde_json::to_string(&config.hidden).expect("serializes"),
    );
    meta.insert("activation".to_string(), enum_name(&config.activation));
    meta.insert(
        "leaky_relu_slope".to_string(),
        config.leaky_relu_slope.to_string(),
    );
    meta.insert("batchnorm".to_string(), config.batchnorm.to_string());
    meta.insert(
        "batchnorm_epsilon".to_string(),
        config.batchnorm_epsilon.to_string(),
    );
    meta.insert("model".to_string(), enum_name(&config.model));
    let dense_layers = "each hidden layer: x @ hidden.{i}.weight.T + hidden.{i}.bias, then \
                        batchnorm (norm.{i}, running statistics) when batchnorm is true, then the \
                        activation; logits = x @ output.weight.T + output.bias";
    let layers = match weights {
        ModelWeights::Mlp(_) => dense_layers.to_string(),
        ModelWeights::Cnn(_) => {
            meta.insert(
                "conv_channels".to_string(),
                serde_json::to_string(&config.conv_channels()).expect("serializes"),
            );
            format!(
                "x = input reshaped to [N, 1, 28, 28]; each convolution: conv2d(x, \
                 conv.{{i}}.weight, conv.{{i}}.bias, stride 1, padding 1), then batchnorm \
                 (conv_norm.{{i}}, per channel, running statistics) when batchnorm is true, \
                 then the activation, then 2x2 max-pooling with stride 2 (an odd side padded \
                 at its end with -inf: 7 -> 4); x flattened in [channel, row, column] order; \
                 then {dense_layers}"
            )
        }
    };
    meta.insert("layers".to_string(), layers);
    meta.insert("input".to_string(), INPUT_DOC.to_string());
    meta.insert("dataset".to_string(), config.dataset.to_string());
    meta.insert(
        "class_names".to_string(),
        serde_json::to_string(&config.dataset.class_names()).expect("serializes"),
    );
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::Other(format!("safetensors: {e}")))?;
    write_atomic(path, &bytes)
}
