//! ONNX export, written with a minimal protobuf encoder. burn-onnx 0.22 has an experimental
//! `export` feature, but it needs Burn's `capture`, `extension` and `ir` features — another
//! build of the whole Burn stack for every user, for an experimental graph-capture API — while
//! the handful of ONNX messages the models need (a graph of Gemm, Conv, MaxPool,
//! BatchNormalization and one activation op per layer, with the weights as initializers) is
//! small enough to encode directly. onnxruntime checks the result in CI (scripts/check-exports.sh).

use std::path::Path;

use crate::config::{Activation, ExperimentConfig};
use crate::data::IMAGE_SIDE;
use crate::error::Result;
use crate::model::{ConvWeights, DenseWeights, ModelWeights, NormWeights};
use crate::protobuf::Msg;
use crate::run::write_atomic;

/// ONNX IR version 8 and opset 13: every op used here exists there, and onnxruntime since
/// 1.10 runs them.
const IR_VERSION: u64 = 8;
const OPSET: u64 = 13;
/// TensorProto.DataType.FLOAT.
const FLOAT: u64 = 1;
/// TensorProto.DataType.INT64.
const INT64: u64 = 7;

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

/// AttributeProto, a list of ints (type INTS = 7).
fn attr_ints(name: &str, values: &[usize]) -> Msg {
    let mut a = Msg::default();
    a.str(1, name);
    for &v in values {
        a.int(8, v as u64);
    }
    a.int(20, 7);
    a
}

/// AttributeProto, an int (type INT = 2).
fn attr_int(name: &str, v: u64) -> Msg {
    let mut a = Msg::default();
    a.str(1, name).int(3, v).int(20, 2);
    a
}

/// TensorProto: a named int64 tensor of one dimension.
fn int64_initializer(name: &str, values: &[i64]) -> Msg {
    let mut t = Msg::default();
    t.int(1, values.len() as u64).int(2, INT64).str(8, name);
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t.bytes(9, &raw);
    t
}

/// A graph under construction: its nodes, its initializers, and the name of the value the
/// next node reads.
struct Graph<'a> {
    graph: Msg,
    inits: Vec<Msg>,
    x: String,
    config: &'a ExperimentConfig,
}

impl Graph<'_> {
    fn node(&mut self, op: &str, name: &str, inputs: &[&str], attrs: Vec<Msg>) {
        let mut all = vec![self.x.as_str()];
        all.extend_from_slice(inputs);
        self.graph.msg(1, node(op, name, &all, name, attrs));
        self.x = name.to_string();
    }

    fn init(&mut self, name: &str, dims: &[usize], values: &[f32]) {
        self.inits.push(initializer(name, dims, values));
    }

    /// Batchnorm on running statistics, over dimension 1 (units or channels).
    fn batchnorm(&mut self, prefix: &str, n: &NormWeights) {
        let names: Vec<String> = ["weight", "bias", "running_mean", "running_var"]
            .iter()
            .map(|p| format!("{prefix}.{p}"))
            .collect();
        for (name, v) in names
            .iter()
            .zip([&n.gamma, &n.beta, &n.running_mean, &n.running_var])
        {
            self.init(name, &[v.len()], v);
        }
        let inputs: Vec<&str> = names.iter().map(String::as_str).collect();
        self.node(
            "BatchNormalization",
            prefix,
            &inputs,
            vec![attr_float("epsilon", n.epsilon as f32)],
        );
    }

    fn activation(&mut self, name: &str) {
        let x = std::mem::take(&mut self.x);
        self.graph.msg(1, activation(self.config, name, &x, name));
        self.x = name.to_string();
    }

    /// Dense layer `name` (Gemm: Burn's [in, out] layout is Gemm's B as it is).
    fn dense(&mut self, name: &str, d: &DenseWeights) {
        let (w, b) = (format!("{name}.weight"), format!("{name}.bias"));
        self.init(&w, &[d.d_in, d.d_out], &d.weight);
        self.init(&b, &[d.d_out], &d.bias);
        self.node("Gemm", &format!("{name}.dense"), &[&w, &b], vec![]);
    }

    /// The hidden dense layers: dense → (batchnorm) → activation, as the models compute them.
    fn hidden(&mut self, hidden: &[DenseWeights], norms: &[NormWeights]) {
        for (i, d) in hidden.iter().enumerate() {
            self.dense(&format!("hidden.{i}"), d);
            if let Some(n) = norms.get(i) {
                self.batchnorm(&format!("norm.{i}"), n);
            }
            self.activation(&format!("hidden.{i}.activation"));
        }
    }

    /// The CNN's convolutions from the `[N, 784]` input: reshape to `[N, 1, 28, 28]`, then
    /// each conv 3×3 SAME → (batchnorm) → activation → max-pool 2×2 SAME, then flatten.
    fn convolutions(&mut self, convs: &[ConvWeights], norms: &[NormWeights]) {
        self.inits.push(int64_initializer(
            "image_shape",
            &[-1, 1, IMAGE_SIDE as i64, IMAGE_SIDE as i64],
        ));
        self.node("Reshape", "image", &["image_shape"], vec![]);
        let mut side = IMAGE_SIDE;
        for (i, c) in convs.iter().enumerate() {
            let (w, b) = (format!("conv.{i}.weight"), format!("conv.{i}.bias"));
            let k = c.kernel;
            self.init(&w, &[c.channels_out, c.channels_in, k, k], &c.weight);
            self.init(&b, &[c.channels_out], &c.bias);
            let pad = k / 2;
            self.node(
                "Conv",
                &format!("conv.{i}.conv"),
                &[&w, &b],
                vec![
                    attr_ints("kernel_shape", &[k, k]),
                    attr_ints("pads", &[pad, pad, pad, pad]),
                ],
            );
            if let Some(n) = norms.get(i) {
                self.batchnorm(&format!("conv_norm.{i}"), n);
            }
            self.activation(&format!("conv.{i}.activation"));
            // Keras' SAME pooling pads an odd side at its end; ONNX pads max-pooling with −∞.
            let end = side % 2;
            self.node(
                "MaxPool",
                &format!("conv.{i}.pool"),
                &[],
                vec![
                    attr_ints("kernel_shape", &[2, 2]),
                    attr_ints("strides", &[2, 2]),
                    attr_ints("pads", &[0, 0, end, end]),
                ],
            );
            side = side.div_ceil(2);
        }
        self.node("Flatten", "flatten", &[], vec![attr_int("axis", 1)]);
    }
}

/// Writes the model as an ONNX file: input `input` float `[N, 784]` in [0, 1], output
/// `logits` float `[N, 10]`, any batch size N.
pub fn write(weights: &ModelWeights, config: &ExperimentConfig, path: &Path) -> Result<()> {
    let mut g = Graph {
        graph: Msg::default(),
        inits: Vec::new(),
        x: "input".to_string(),
        config,
    };
    let output = match weights {
        ModelWeights::Mlp(w) => {
            g.hidden(&w.hidden, &w.norms);
            &w.output
        }
        ModelWeights::Cnn(w) => {
            g.convolutions(&w.convs, &w.conv_norms);
            g.hidden(&w.hidden, &w.norms);
            &w.output
        }
    };
    let o = output;
    g.init("output.weight", &[o.d_in, o.d_out], &o.weight);
    g.init("output.bias", &[o.d_out], &o.bias);
    let x = std::mem::take(&mut g.x);
    g.graph.msg(
        1,
        node(
            "Gemm",
            "output",
            &[&x, "output.weight", "output.bias"],
            "logits",
            vec![],
        ),
    );
    let mut graph = g.graph;
    graph.str(2, &format!("mnist-train {}", config.label()));
    for init in g.inits {
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
