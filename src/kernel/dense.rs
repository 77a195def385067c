//! The dense layers after the first, on flex: Burn's `linear` (`x · W + b`), in training as a
//! custom autodiff operation, with the products Burn computes scheduled for a 2-core step.
//!
//! Burn's backward of a dense layer computes the input gradient `grad · Wᵀ` and then the weight
//! gradient `xᵀ · grad`, each product split by `gemm` over the thread pool. At batch 128 a
//! product of 8 million multiply-adds splits poorly: the second thread mostly waits. Here the
//! two products run side by side, one thread each, and the forward product runs as two halves
//! of the batch, one per thread. This way the backward of the 256 → 256 layer is faster than
//! Burn's two products in a row, and steadier (docs/speed.md).
//!
//! The products are `gemm` calls (the crate Burn's flex backend calls) with Burn's operands and
//! strides, the bias gradient is Burn's own `sum_dim`, and the bias is added as Burn adds it, so
//! every value is bit-identical to Burn's `linear` (tested): `gemm` sums each output over the
//! inner dimension in the same order however the rows are split. Written here because Burn
//! offers no way to run two operations of one backward pass at once.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::nn::Linear;
use burn::tensor::{DType, Shape, Tensor, TensorData};

use super::flex::{TrainTensor, register, with_primitives};

/// Products smaller than this many multiply-adds run on one thread: below it, handing half to
/// the other thread costs more than it saves (the output layer's 128 × 256 × 10 is 0.3 M).
const SPLIT_MIN: usize = 1 << 20;

/// `layer` applied to `x` (`[batch, d_in]`). On flex, through this module: in training as a
/// custom autodiff operation, in inference as the same products and bias. Elsewhere (other
/// backends, `MNIST_TRAIN_DENSE=1`, a layer without a bias) Burn's `Linear::forward`.
pub fn forward(layer: &Linear, x: Tensor<2>) -> Tensor<2> {
    on_flex(layer, &x).unwrap_or_else(|| layer.forward(x))
}

/// [`forward`] through this module, or nothing when it does not apply.
fn on_flex(layer: &Linear, x: &Tensor<2>) -> Option<Tensor<2>> {
    let bias = layer.bias.as_ref()?;
    if !super::trains_on(&x.device()) {
        return None;
    }
    let [d_in, _] = layer.weight.dims();
    assert_eq!(x.dims()[1], d_in, "dense layer: input width");
    with_primitives(
        x,
        layer.weight.val(),
        bias.val(),
        linear,
        |x, weight, bias| {
            // One thread: evaluation runs its chunks in parallel already.
            product_plus_bias(x, weight, bias, false)
        },
    )
}

fn linear(x: TrainTensor, weight: TrainTensor, bias: TrainTensor) -> TrainTensor {
    let (x_tracked, weight_tracked) = (x.is_tracked(), weight.is_tracked());
    let prep = LinearBackward
        .prepare::<NoCheckpointing>([x.node(), weight.node(), bias.node()])
        .compute_bound()
        .stateful();
    let (x, weight, bias) = (
        x.into_primitive(),
        weight.into_primitive(),
        bias.into_primitive(),
    );
    let output = product_plus_bias(&x, &weight, &bias, true);
    match prep {
        OpsKind::Tracked(prep) => {
            // x is only needed for the weight gradient, and the weight for x's.
            let state = (weight_tracked.then_some(x), x_tracked.then_some(weight));
            prep.finish(state, output)
        }
        OpsKind::UnTracked(prep) => prep.finish(output),
    }
}

#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 3> for LinearBackward {
    /// The layer's input (for the weight gradient) and weight (for the input's).
    type State = (Option<FlexTensor>, Option<FlexTensor>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x, weight) = ops.state;
        let (x_grad, (weight_grad, bias_grad)) = rayon::join(
            || {
                let weight = weight.as_ref().filter(|_| node_x.is_some())?;
                Some(input_gradient(&grad, weight))
            },
            || {
                let weight_grad = x
                    .as_ref()
                    .filter(|_| node_weight.is_some())
                    .map(|x| weight_gradient(x, &grad));
                // Burn's own bias gradient, as `linear_bias_backward` computes it.
                let bias_grad = node_bias.as_ref().map(|_| {
                    let d_out = grad.layout().shape()[1];
                    let sum = <Flex as FloatTensorOps<Flex>>::float_sum_dim(grad.clone(), 0);
                    <Flex as FloatTensorOps<Flex>>::float_reshape(sum, Shape::new([d_out]))
                });
                (weight_grad, bias_grad)
            },
        );
        let parents = [node_x, node_weight, node_bias].map(|node| node.map(|n| n.id));
        register(grads, parents, [x_grad, weight_grad, bias_grad]);
    }
}

/// A 2-D f32 operand as `gemm` reads it: its first element and its row and column strides.
struct Operand<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: isize,
    col_stride: isize,
}

impl<'a> Operand<'a> {
    fn of(t: &'a FlexTensor) -> Self {
        assert_eq!(t.dtype(), DType::F32, "dense layer: f32 tensors");
        let layout = t.layout();
        let (shape, strides) = (layout.shape(), layout.strides());
        assert_eq!(shape.num_dims(), 2, "dense layer: 2-D tensors");
        Self {
            data: &t.storage::<f32>()[layout.start_offset()..],
            rows: shape[0],
            cols: shape[1],
            row_stride: strides[0],
            col_stride: strides[1],
        }
    }

    /// The transpose: the same elements, strides swapped (what Burn's `swap_dims` makes).
    fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Rows `from..from + rows`.
    fn row_range(&self, from: usize, rows: usize) -> Self {
        assert!(from + rows <= self.rows);
        let start = if rows == 0 {
            0
        } else {
            from as isize * self.row_stride
        };
        Self {
            data: &self.data[start as usize..],
            rows,
            ..*self
        }
    }
}

/// `lhs · rhs` into `out` (row-major `[lhs.rows, rhs.cols]`) on this thread, as Burn's flex
/// backend calls `gemm` (which splits the call over the pool only for its parallelism).
fn product(lhs: &Operand, rhs: &Operand, out: &mut [f32]) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "inner dimensions");
    assert_eq!(out.len(), m * n, "output size");
    if m == 0 || n == 0 {
        return;
    }
    let last =
        |o: &Operand| (o.rows as isize - 1) * o.row_stride + (o.cols as isize - 1) * o.col_stride;
    assert!(
        k == 0 || (last(lhs) as usize) < lhs.data.len(),
        "lhs in bounds"
    );
    assert!(
        k == 0 || (last(rhs) as usize) < rhs.data.len(),
        "rhs in bounds"
    );
    // SAFETY: the asserts above keep every element `gemm` reads inside `lhs.data` and
    // `rhs.data` (strides are non-negative: Burn's layouts of these tensors are), and `out`
    // holds the `m × n` row-major outputs it writes; `read_dst` is false, so `out`'s old
    // values are never read.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.data.as_ptr(),
            lhs.col_stride,
            lhs.row_stride,
            rhs.data.as_ptr(),
            rhs.col_stride,
            rhs.row_stride,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// `lhs · rhs` as a new `[lhs.rows, rhs.cols]` tensor, then `then` on its rows. With `split`,
/// the rows in two halves side by side when the product is large enough.
fn product_by_rows(
    lhs: &Operand,
    rhs: &Operand,
    split: bool,
    then: impl Fn(&mut [f32]) + Sync,
) -> FlexTensor {
    let (m, n) = (lhs.rows, rhs.cols);
    let mut out = vec![0f32; m * n];
    let half = m / 2;
    if split && m * n * lhs.cols >= SPLIT_MIN && rayon::current_num_threads() > 1 {
        let (top, bottom) = out.split_at_mut(half * n);
        rayon::join(
            || {
                product(&lhs.row_range(0, half), rhs, top);
                then(top)
            },
            || {
                product(&lhs.row_range(half, m - half), rhs, bottom);
                then(bottom)
            },
        );
    } else {
        product(lhs, rhs, &mut out);
        then(&mut out);
    }
    FlexTensor::from_data(TensorData::new(out, [m, n]))
}

/// `x · weight + bias`: Burn's `linear`, which adds the bias to the finished product.
fn product_plus_bias(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: &FlexTensor,
    split: bool,
) -> FlexTensor {
    let bias = bias
        .as_slice::<f32>()
        .expect("a bias is a contiguous f32 vector");
    let (x, weight) = (Operand::of(x), Operand::of(weight));
    assert_eq!(bias.len(), weight.cols, "bias width");
    product_by_rows(&x, &weight, split, |rows| {
        for row in rows.chunks_exact_mut(bias.len()) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
    })
}

/// `grad · weightᵀ`, Burn's `linear_x_backward`.
fn input_gradient(grad: &FlexTensor, weight: &FlexTensor) -> FlexTensor {
    let (grad, weight) = (Operand::of(grad), Operand::of(weight));
    let (rows, cols) = (grad.rows, weight.rows);
    let mut out = vec![0f32; rows * cols];
    product(&grad, &weight.t(), &mut out);
    FlexTensor::from_data(TensorData::new(out, [rows, cols]))
}

/// `xᵀ · grad`, Burn's `linear_weight_backward`.
fn weight_gradient(x: &FlexTensor, grad: &FlexTensor) -> FlexTensor {
    let (x, grad) = (Operand::of(x).t(), Operand::of(grad));
    let mut out = vec![0f32; x.rows * grad.cols];
    product(&x, &grad, &mut out);
    FlexTensor::from_data(TensorData::new(out, [x.rows, grad.cols]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::nn::LinearConfig;
    use burn::tensor::Device;

    fn bits(t: Tensor<2>) -> Vec<u32> {
        t.into_data().iter::<f32>().map(f32::to_bits).collect()
    }

    fn values(rows: usize, cols: usize, seed: usize) -> TensorData {
        let v = (0..rows * cols)
            .map(|i| ((i * 7919 + seed * 104_729) % 2001) as f32 / 1000.0 - 1.0)
            .collect::<Vec<_>>();
        TensorData::new(v, [rows, cols])
    }

    /// The layer's output and the gradients of its input, weight and bias, as bits.
    type Run = (Vec<u32>, Vec<u32>, Vec<u32>, Vec<u32>);

    fn train(layer: &Linear, batch: usize, ours: bool) -> Run {
        let device = layer.weight.device();
        let [d_in, d_out] = layer.weight.dims();
        let x = Tensor::<2>::from_data(values(batch, d_in, 1), &device).require_grad();
        let y = match ours {
            true => on_flex(layer, &x).expect("this module's operation on flex"),
            false => layer.forward(x.clone()),
        };
        let upstream = Tensor::<2>::from_data(values(batch, d_out, 2), &device);
        let grads = (y.clone() * upstream).sum().backward();
        let bias = layer.bias.as_ref().expect("a bias");
        (
            bits(y),
            bits(x.grad(&grads).expect("an input gradient")),
            bits(layer.weight.grad(&grads).expect("a weight gradient")),
            bits(bias.grad(&grads).expect("a bias gradient").unsqueeze_dim(0)),
        )
    }

    /// The output and every gradient equal Burn's `Linear` bit for bit, for the lecture's
    /// layers and for shapes whose halves are uneven, on 2 threads and on 1.
    #[test]
    fn trains_and_infers_bit_for_bit_as_burns_linear() {
        let ad = Device::flex().autodiff();
        let one_thread = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("a pool");
        let two_threads = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("a pool");
        for (batch, d_in, d_out) in [
            (128, 256, 256),
            (128, 256, 10),
            (301, 128, 96),
            (37, 64, 48),
            (1, 256, 256),
        ] {
            ad.seed(batch as u64);
            let layer = LinearConfig::new(d_in, d_out).init(&ad);
            let burns = train(&layer, batch, false);
            assert_eq!(
                two_threads.install(|| train(&layer, batch, true)),
                burns,
                "{batch}×{d_in}→{d_out}, 2 threads"
            );
            assert_eq!(
                one_thread.install(|| train(&layer, batch, true)),
                burns,
                "{batch}×{d_in}→{d_out}, 1 thread"
            );

            let valid = layer.valid();
            let x = Tensor::<2>::from_data(values(batch, d_in, 3), &ad.clone().inner());
            let ours = on_flex(&valid, &x).expect("this module's product on flex");
            assert_eq!(bits(ours), bits(valid.forward(x)), "{batch}×{d_in}→{d_out}");
        }
    }

    /// Layers it does not handle go to Burn's.
    #[test]
    fn leaves_other_layers_to_burn() {
        let device = Device::flex();
        let layer = LinearConfig::new(8, 4).with_bias(false).init(&device);
        let x = Tensor::<2>::from_data(values(3, 8, 4), &device);
        assert!(on_flex(&layer, &x).is_none());
        assert_eq!(bits(forward(&layer, x.clone())), bits(layer.forward(x)));
    }
}
