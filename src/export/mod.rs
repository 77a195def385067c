//! Taking a trained model elsewhere: safetensors in PyTorch's names and layout, and ONNX.

pub mod onnx;

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use crate::config::{ExperimentConfig, enum_name};
use crate::error::{Error, Result};
use crate::model::MlpWeights;
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

/// Writes the model as safetensors with PyTorch's names and layout (`hidden.{i}.weight`
/// `[out, in]`, `hidden.{i}.bias`, `norm.{i}.weight|bias|running_mean|running_var`,
/// `output.weight|bias`) and the architecture, activation and input format in the metadata.
pub fn safetensors(weights: &MlpWeights, config: &ExperimentConfig, path: &Path) -> Result<()> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut dense = |name: String, d: &crate::model::DenseWeights| {
        tensors.push((
            format!("{name}.weight"),
            vec![d.d_out, d.d_in],
            le_bytes(&transpose(&d.weight, d.d_in, d.d_out)),
        ));
        tensors.push((format!("{name}.bias"), vec![d.d_out], le_bytes(&d.bias)));
    };
    for (i, d) in weights.hidden.iter().enumerate() {
        dense(format!("hidden.{i}"), d);
    }
    dense("output".into(), &weights.output);
    for (i, n) in weights.norms.iter().enumerate() {
        for (part, v) in [
            ("weight", &n.gamma),
            ("bias", &n.beta),
            ("running_mean", &n.running_mean),
            ("running_var", &n.running_var),
        ] {
            tensors.push((format!("norm.{i}.{part}"), vec![v.len()], le_bytes(v)));
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
    meta.insert(
        "layers".to_string(),
        "each hidden layer: x @ hidden.{i}.weight.T + hidden.{i}.bias, then batchnorm \
         (norm.{i}, running statistics) when batchnorm is true, then the activation; \
         logits = x @ output.weight.T + output.bias"
            .to_string(),
    );
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
