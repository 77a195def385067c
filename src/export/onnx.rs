//! ONNX export, written with a minimal protobuf encoder. burn-onnx 0.22 has an experimental
//! `export` feature, but it needs Burn's `capture`, `extension` and `ir` features — another
//! build of the whole Burn stack for every user, for an experimental graph-capture API — while
//! the handful of ONNX messages an MLP needs (a graph of Gemm, BatchNormalization and one
//! activation op per layer, with the weights as initializers) is small enough to encode
//! directly. onnxruntime checks the result in CI (scripts/check-exports.sh).

use std::path::Path;

use crate::config::{Activation, ExperimentConfig};
use crate::error::Result;
use crate::model::MlpWeights;
use crate::protobuf::Msg;
use crate::run::write_atomic;

/// ONNX IR version 8 and opset 13: every op used here exists there, and onnxruntime since
/// 1.10 runs them.
const IR_VERSION: u64 = 8;
const OPSET: u64 = 13;
/// TensorProto.DataType.FLOAT.
const FLOAT: u64 = 1;

/// TensorProto: a named float tensor.
fn initializer(name: &str, dims: &[usize], values: &[f32]) -> Msg {
    let mut t = Msg::default();
    for &d in dims {
        t.int(1, d as u64);
    }
    t.int(2, FLOAT).str(8, name);
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t.bytes(9, &raw);
    t
}

/// AttributeProto, a float (type FLOAT = 1).
fn attr_float(name: &str, v: f32) -> Msg {
    let mut a = Msg::default();
    a.str(1, name).float(2, v).int(20, 1);
    a
}

/// NodeProto.
fn node(op: &str, name: &str, inputs: &[&str], output: &str, attrs: Vec<Msg>) -> Msg {
    let mut n = Msg::default();
    for i in inputs {
        n.str(1, i);
    }
    n.str(2, output).str(3, name).str(4, op);
    for a in attrs {
        n.msg(5, a);
    }
    n
}

/// ValueInfoProto of a float tensor `[N, width]`, N symbolic (any batch size).
fn value_info(name: &str, width: usize) -> Msg {
    let mut batch = Msg::default();
    batch.str(2, "N");
    let mut features = Msg::default();
    features.int(1, width as u64);
    let mut shape = Msg::default();
    shape.msg(1, batch).msg(1, features);
    let mut tensor = Msg::default();
    tensor.int(1, FLOAT).msg(2, shape);
    let mut ty = Msg::default();
    ty.msg(1, tensor);
    let mut v = Msg::default();
    v.str(1, name).msg(2, ty);
    v
}

/// The activation as an ONNX node; every activation the trainer has exists in ONNX.
fn activation(config: &ExperimentConfig, name: &str, input: &str, output: &str) -> Msg {
    match config.activation {
        Activation::Relu => node("Relu", name, &[input], output, vec![]),
        Activation::Sigmoid => node("Sigmoid", name, &[input], output, vec![]),
        Activation::Tanh => node("Tanh", name, &[input], output, vec![]),
        Activation::Elu => node(
            "Elu",
            name,
            &[input],
            output,
            vec![attr_float("alpha", 1.0)],
        ),
        // ONNX's defaults are SELU's constants, as Burn's.
        Activation::Selu => node("Selu", name, &[input], output, vec![]),
        Activation::LeakyRelu => node(
            "LeakyRelu",
            name,
            &[input],
            output,
            vec![attr_float("alpha", config.leaky_relu_slope as f32)],
        ),
    }
}

/// Writes the model as an ONNX file: input `input` float `[N, 784]` in [0, 1], output
/// `logits` float `[N, 10]`, any batch size N.
pub fn write(weights: &MlpWeights, config: &ExperimentConfig, path: &Path) -> Result<()> {
    let mut graph = Msg::default();
    let mut inits = Vec::new();
    let mut x = "input".to_string();
    for (i, d) in weights.hidden.iter().enumerate() {
        let (w, b) = (format!("hidden.{i}.weight"), format!("hidden.{i}.bias"));
        // Burn's [in, out] layout is Gemm's B without transposition.
        inits.push(initializer(&w, &[d.d_in, d.d_out], &d.weight));
        inits.push(initializer(&b, &[d.d_out], &d.bias));
        let dense = format!("hidden.{i}.dense");
        graph.msg(1, node("Gemm", &dense, &[&x, &w, &b], &dense, vec![]));
        x = dense;
        if let Some(n) = weights.norms.get(i) {
            let names: Vec<String> = ["weight", "bias", "running_mean", "running_var"]
                .iter()
                .map(|p| format!("norm.{i}.{p}"))
                .collect();
            for (name, v) in names
                .iter()
                .zip([&n.gamma, &n.beta, &n.running_mean, &n.running_var])
            {
                inits.push(initializer(name, &[v.len()], v));
            }
            let out = format!("norm.{i}");
            let inputs: Vec<&str> = std::iter::once(x.as_str())
                .chain(names.iter().map(String::as_str))
                .collect();
            graph.msg(
                1,
                node(
                    "BatchNormalization",
                    &out,
                    &inputs,
                    &out,
                    vec![attr_float("epsilon", n.epsilon as f32)],
                ),
            );
            x = out;
        }
        let act = format!("hidden.{i}.activation");
        graph.msg(1, activation(config, &act, &x, &act));
        x = act;
    }
    let o = &weights.output;
    inits.push(initializer("output.weight", &[o.d_in, o.d_out], &o.weight));
    inits.push(initializer("output.bias", &[o.d_out], &o.bias));
    graph.msg(
        1,
        node(
            "Gemm",
            "output",
            &[&x, "output.weight", "output.bias"],
            "logits",
            vec![],
        ),
    );
    graph.str(2, &format!("mnist-train {}", config.label()));
    for init in inits {
        graph.msg(5, init);
    }
    graph.msg(11, value_info("input", crate::data::IMAGE_PIXELS));
    graph.msg(12, value_info("logits", o.d_out));

    let mut opset = Msg::default();
    opset.str(1, "").int(2, OPSET);
    let mut model = Msg::default();
    model
        .int(1, IR_VERSION)
        .str(2, "mnist-train")
        .str(3, env!("CARGO_PKG_VERSION"))
        .msg(7, graph)
        .msg(8, opset);
    let mut doc = Msg::default();
    // ModelProto.doc_string (6): the input format, for whoever opens the file.
    doc.str(6, super::INPUT_DOC);
    let mut bytes = model.into_bytes();
    bytes.extend_from_slice(doc.as_bytes());
    write_atomic(path, &bytes)
}
