//! The CNN's 3×3 convolutions (SAME padding, stride 1) and 2×2 max-pooling on flex, in training
//! as custom autodiff operations: each image's convolution is one `gemm` product over its
//! unfolded 3×3 neighbourhoods, with the images spread over the thread pool.
//!
//! Burn's flex backend runs a convolution's input gradient image by image with products too
//! small for `gemm` to split over two cores, and the max-pool gradient as one serial scatter;
//! its layers took 3× as long as these in inference and twice as long in training
//! (docs/speed.md). Here the images of a group share each product (forward, weight gradient,
//! input gradient), the groups are spread over the threads, each group's weight gradient is
//! summed in its own buffer and the groups' sums are added in group order: the result does not
//! depend on the thread count, so a seed gives bit-identical training on one machine. The
//! layout stays Burn's NCHW, so batchnorm, activations and the dense layers between take the
//! tensors as they are.
//!
//! Hand-written because no crate offers a CPU convolution with its backward pass for Burn's
//! tensors; the products are `gemm` calls, the crate Burn's flex backend calls.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

use super::flex::{Train, TrainTensor, with_primitives};

/// Side of the kernels this module computes.
const K: usize = 3;

/// Columns of one product: the images of a group side by side, enough of them for `gemm` to
/// run its widest loops (a 7×7 image alone gives it 49 columns, which ran at two thirds of the
/// speed of 392).
const COLUMNS: usize = 384;

/// Whether this module computes the convolutions and pooling on `device`: on flex, unless
/// `MNIST_TRAIN_DENSE` or `MNIST_TRAIN_BURN_CONV` asks for Burn's own operations.
pub fn convolves_on(device: &burn::tensor::Device) -> bool {
    super::trains_on(device) && super::FastPaths::get().conv_kernels
}

/// `conv` applied to `x` (`[batch, channels_in, height, width]`), through a relu with `relu`,
/// on flex: in training one custom autodiff operation, the relu applied as the outputs are
/// stored and its gradient mask as the backward pass reads them (two passes over the largest
/// tensors of a step saved). Nothing elsewhere (other backends, `MNIST_TRAIN_DENSE=1`,
/// `MNIST_TRAIN_BURN_CONV=1`, a layer without a bias or other than 3×3 SAME with stride 1):
/// the caller runs Burn's layer.
pub fn conv3x3(conv: &Conv2d, x: &Tensor<4>, relu: bool) -> Option<Tensor<4>> {
    let bias = conv.bias.as_ref()?;
    if !convolves_on(&x.device())
        || conv.kernel_size != [K, K]
        || conv.stride != [1, 1]
        || conv.dilation != [1, 1]
        || conv.groups != 1
        || !matches!(conv.padding, PaddingConfig2d::Same)
    {
        return None;
    }
    with_primitives(
        x,
        conv.weight.val(),
        bias.val(),
        |x, weight, bias| conv_tracked(x, weight, bias, relu),
        |x, weight, bias| conv_forward(x, weight, bias, relu),
    )
}

/// 2×2 max-pooling with stride 2 and Keras' SAME padding (an odd side's last window holds its
/// last pixel alone) on flex; nothing where [`conv3x3`] gives nothing.
pub fn max_pool2x2(x: &Tensor<4>) -> Option<Tensor<4>> {
    if !convolves_on(&x.device()) {
        return None;
    }
    if x.is_autodiff() {
        let x = x.clone().try_into_primitive::<Train>().ok()?;
        Some(Tensor::from_primitive::<Train>(pool_tracked(x)))
    } else {
        let x = x.clone().try_into_primitive::<Flex>().ok()?;
        Some(Tensor::from_primitive::<Flex>(pool_forward(&x).0))
    }
}

/// Runs `f` with this thread's two scratch buffers, of at least the lengths asked for. Their
/// contents are whatever the last user left: every use writes each element before it reads it.
/// Kept from call to call, so that a step neither asks the allocator for fresh pages nor
/// zeroes them (5% of a step's profile; docs/speed.md).
fn with_scratch<R>(lens: [usize; 2], f: impl FnOnce([&mut [f32]; 2]) -> R) -> R {
    thread_local! {
        static SCRATCH: std::cell::RefCell<[Vec<f32>; 2]> = const {
            std::cell::RefCell::new([Vec::new(), Vec::new()])
        };
    }
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        for (buffer, &len) in scratch.iter_mut().zip(&lens) {
            if buffer.len() < len {
                buffer.resize(len, 0.0);
            }
        }
        let [a, b] = &mut *scratch;
        f([&mut a[..lens[0]], &mut b[..lens[1]]])
    })
}

/// The f32 values of a tensor, contiguous, and its dimensions.
fn values(t: &FlexTensor) -> (std::borrow::Cow<'_, [f32]>, Vec<usize>) {
    assert_eq!(t.dtype(), DType::F32, "convolution: f32 tensors");
    let dims = t.layout().shape().iter().copied().collect();
    match t.as_slice::<f32>() {
        Some(v) => (std::borrow::Cow::Borrowed(v), dims),
        None => (
            std::borrow::Cow::Owned(t.to_contiguous().as_slice::<f32>().unwrap().to_vec()),
            dims,
        ),
    }
}

/// The shapes of one convolution.
#[derive(Debug, Clone, Copy)]
struct Shape {
    batch: usize,
    c_in: usize,
    c_out: usize,
    height: usize,
    width: usize,
}

impl Shape {
    fn of(x: &[usize], weight: &[usize]) -> Self {
        assert_eq!(
            x.len(),
            4,
            "convolution input: [batch, channels, height, width]"
        );
        assert_eq!(
            weight,
            [weight[0], x[1], K, K],
            "convolution weight: [out, in, 3, 3]"
        );
        Self {
            batch: x[0],
            c_in: x[1],
            c_out: weight[0],
            height: x[2],
            width: x[3],
        }
    }
    fn pixels(&self) -> usize {
        self.height * self.width
    }
    /// Rows of an image's unfolded neighbourhoods: one per input channel and kernel position.
    fn taps(&self) -> usize {
        self.c_in * K * K
    }
    fn image_in(&self) -> usize {
        self.c_in * self.pixels()
    }
    fn image_out(&self) -> usize {
        self.c_out * self.pixels()
    }
    /// Images per group: [`COLUMNS`] columns' worth. A function of the image size only, so that
    /// a backward pass sums its groups' gradients in the same order on any number of threads.
    fn group(&self) -> usize {
        COLUMNS.div_ceil(self.pixels()).clamp(1, self.batch.max(1))
    }
}

/// `cols[(c·3 + dy)·3 + dx][y·W + x] = image[c][y + dy − 1][x + dx − 1]`, zero outside the
/// image, the rows `stride` apart: each output pixel's neighbourhood as a column, so that the
/// convolution is `weight[out, taps] · cols[taps, pixels]`.
fn unfold(s: &Shape, image: &[f32], cols: &mut [f32], stride: usize) {
    let (h, w, hw) = (s.height, s.width, s.pixels());
    for c in 0..s.c_in {
        let plane = &image[c * hw..(c + 1) * hw];
        for dy in 0..K {
            for dx in 0..K {
                let row = &mut cols[((c * K + dy) * K + dx) * stride..][..hw];
                for y in 0..h {
                    let out = &mut row[y * w..(y + 1) * w];
                    let sy = y as isize + dy as isize - 1;
                    if sy < 0 || sy >= h as isize {
                        out.fill(0.0);
                        continue;
                    }
                    let src = &plane[sy as usize * w..(sy as usize + 1) * w];
                    match dx {
                        0 => {
                            out[0] = 0.0;
                            out[1..].copy_from_slice(&src[..w - 1]);
                        }
                        1 => out.copy_from_slice(src),
                        _ => {
                            out[..w - 1].copy_from_slice(&src[1..]);
                            out[w - 1] = 0.0;
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`unfold`]: each column's values added back to the pixels they came from.
fn fold_add(s: &Shape, cols: &[f32], image: &mut [f32], stride: usize) {
    let (h, w, hw) = (s.height, s.width, s.pixels());
    for c in 0..s.c_in {
        let plane = &mut image[c * hw..(c + 1) * hw];
        for dy in 0..K {
            for dx in 0..K {
                let row = &cols[((c * K + dy) * K + dx) * stride..][..hw];
                for y in 0..h {
                    let sy = y as isize + dy as isize - 1;
                    if sy < 0 || sy >= h as isize {
                        continue;
                    }
                    let src = &row[y * w..(y + 1) * w];
                    let dst = &mut plane[sy as usize * w..(sy as usize + 1) * w];
                    let (d, s) = match dx {
                        0 => (&mut dst[..w - 1], &src[1..]),
                        1 => (&mut dst[..], src),
                        _ => (&mut dst[1..], &src[..w - 1]),
                    };
                    for (d, s) in d.iter_mut().zip(s) {
                        *d += s;
                    }
                }
            }
        }
    }
}

/// `dst[m, n] (+)= lhs[m, k] · rhs[k, n]` on this thread, each operand given by its first
/// element and its row and column strides; `accumulate` adds to `dst`'s values.
#[allow(clippy::too_many_arguments)]
fn product(
    (m, k, n): (usize, usize, usize),
    dst: &mut [f32],
    lhs: (&[f32], isize, isize),
    rhs: (&[f32], isize, isize),
    accumulate: bool,
) {
    let last = |(d, rs, cs): (&[f32], isize, isize), rows: usize, cols: usize| {
        assert!(((rows as isize - 1) * rs + (cols as isize - 1) * cs) < d.len() as isize);
    };
    assert!(dst.len() >= m * n);
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    last(lhs, m, k);
    last(rhs, k, n);
    // SAFETY: the asserts keep every element `gemm` reads inside `lhs` and `rhs` (strides are
    // positive) and every one it writes inside `dst`, row-major `[m, n]`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.0.as_ptr(),
            lhs.2,
            lhs.1,
            rhs.0.as_ptr(),
            rhs.2,
            rhs.1,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// One image's output gradient (at `at` in `grad`), through the relu's mask when the output
/// (`relu_output`) went through one, into `dst`'s rows `[out]`, `stride` apart.
fn output_gradient(
    grad: &[f32],
    relu_output: Option<&[f32]>,
    at: usize,
    (channels, hw): (usize, usize),
    dst: &mut [f32],
    stride: usize,
) {
    let size = channels * hw;
    let g = &grad[at..][..size];
    match relu_output {
        // Burn's relu gradient: zero where the output is (NaN passes).
        Some(y) => {
            let y = &y[at..][..size];
            for ((row, g), y) in dst
                .chunks_mut(stride)
                .zip(g.chunks_exact(hw))
                .zip(y.chunks_exact(hw))
            {
                for ((d, &g), &y) in row[..hw].iter_mut().zip(g).zip(y) {
                    *d = if y <= 0.0 { 0.0 } else { g };
                }
            }
        }
        None => {
            for (row, g) in dst.chunks_mut(stride).zip(g.chunks_exact(hw)) {
                row[..hw].copy_from_slice(g);
            }
        }
    }
}

/// The convolution's output `[batch, c_out, height, width]`: per group of images,
/// `weight · unfold(images) + bias`, through a relu with `relu` (NaN stays NaN, as Burn's).
fn conv_forward(x: &FlexTensor, weight: &FlexTensor, bias: &FlexTensor, relu: bool) -> FlexTensor {
    let (x, x_dims) = values(x);
    let (weight, w_dims) = values(weight);
    let (bias, _) = values(bias);
    let s = Shape::of(&x_dims, &w_dims);
    let mut out = vec![0f32; s.batch * s.image_out()];
    let (hw, group) = (s.pixels(), s.group());
    out.par_chunks_mut(group * s.image_out())
        .zip(x.par_chunks(group * s.image_in()))
        .for_each(|(out, x)| {
            let images = x.len() / s.image_in();
            let n = images * hw;
            with_scratch([s.taps() * n, s.c_out * n], |[cols, y]| {
                for (i, image) in x.chunks_exact(s.image_in()).enumerate() {
                    unfold(&s, image, &mut cols[i * hw..], n);
                }
                product(
                    (s.c_out, s.taps(), n),
                    y,
                    (&weight, s.taps() as isize, 1),
                    (cols, n as isize, 1),
                    false,
                );
                // From [out, image × pixels] to [image, out, pixels], with the bias.
                for (i, out) in out.chunks_exact_mut(s.image_out()).enumerate() {
                    for ((row, y), b) in out
                        .chunks_exact_mut(hw)
                        .zip(y.chunks_exact(n))
                        .zip(bias.iter())
                    {
                        let y = &y[i * hw..][..hw];
                        if relu {
                            for (o, v) in row.iter_mut().zip(y) {
                                let v = v + b;
                                *o = if v <= 0.0 { 0.0 } else { v };
                            }
                        } else {
                            for (o, v) in row.iter_mut().zip(y) {
                                *o = v + b;
                            }
                        }
                    }
                }
            })
        });
    FlexTensor::from_data(TensorData::new(out, [s.batch, s.c_out, s.height, s.width]))
}

fn conv_tracked(x: TrainTensor, weight: TrainTensor, bias: TrainTensor, relu: bool) -> TrainTensor {
    let x_tracked = x.is_tracked();
    let prep = ConvBackward
        .prepare::<NoCheckpointing>([x.node(), weight.node(), bias.node()])
        .compute_bound()
        .stateful();
    let (x, weight, bias) = (
        x.into_primitive(),
        weight.into_primitive(),
        bias.into_primitive(),
    );
    let output = conv_forward(&x, &weight, &bias, relu);
    match prep {
        OpsKind::Tracked(prep) => {
            // The output shares its buffer: the relu's mask is read from it.
            let relu_output = relu.then(|| output.clone());
            prep.finish((x, weight, x_tracked, relu_output), output)
        }
        OpsKind::UnTracked(prep) => prep.finish(output),
    }
}

/// The gradients of a convolution: of its input (when `input_grad`), weight and bias; with
/// `relu_output`, of one followed by a relu whose output that was.
fn conv_backward(
    x: &FlexTensor,
    weight: &FlexTensor,
    grad: &FlexTensor,
    input_grad: bool,
    relu_output: Option<&FlexTensor>,
) -> (Option<FlexTensor>, FlexTensor, FlexTensor) {
    let (x, x_dims) = values(x);
    let (weight, w_dims) = values(weight);
    let (grad, _) = values(grad);
    let relu_output = relu_output.map(|y| values(y).0);
    let s = Shape::of(&x_dims, &w_dims);
    let (hw, taps, group) = (s.pixels(), s.taps(), s.group());
    let groups = s.batch.div_ceil(group);
    // Each group's weight and bias gradient, summed over its images.
    let per_group = s.c_out * taps + s.c_out;
    let mut partial = vec![0f32; groups * per_group];
    let mut x_grad = vec![
        0f32;
        if input_grad {
            s.batch * s.image_in()
        } else {
            0
        }
    ];
    let work = |(g, sums): (usize, &mut [f32]), x_grad: Option<&mut [f32]>| {
        let first = g * group;
        let images = group.min(s.batch - first);
        let n = images * hw;
        let (w_sum, b_sum) = sums.split_at_mut(s.c_out * taps);
        // `gy`: the group's output gradient as [out, image × pixels], the images side by side.
        with_scratch([taps * n, s.c_out * n], |[cols, gy]| {
            for i in 0..images {
                let image = &x[(first + i) * s.image_in()..][..s.image_in()];
                unfold(&s, image, &mut cols[i * hw..], n);
                let at = (first + i) * s.image_out();
                let dst = &mut gy[i * hw..];
                output_gradient(&grad, relu_output.as_deref(), at, (s.c_out, hw), dst, n);
            }
            // weight[out, taps] = gy[out, columns] · colsᵀ[columns, taps]
            product(
                (s.c_out, n, taps),
                w_sum,
                (gy, n as isize, 1),
                (cols, 1, n as isize),
                false,
            );
            for (b, row) in b_sum.iter_mut().zip(gy.chunks_exact(n)) {
                *b = row.iter().sum::<f32>();
            }
            if let Some(x_grad) = x_grad {
                // cols[taps, columns] = weightᵀ[taps, out] · gy[out, columns]
                product(
                    (taps, s.c_out, n),
                    cols,
                    (&weight, 1, taps as isize),
                    (gy, n as isize, 1),
                    false,
                );
                for (i, image) in x_grad.chunks_exact_mut(s.image_in()).enumerate() {
                    fold_add(&s, &cols[i * hw..], image, n);
                }
            }
        })
    };
    if input_grad {
        partial
            .par_chunks_mut(per_group)
            .enumerate()
            .zip(x_grad.par_chunks_mut(group * s.image_in()))
            .for_each(|(group, x_grad)| work(group, Some(x_grad)));
    } else {
        partial
            .par_chunks_mut(per_group)
            .enumerate()
            .for_each(|group| work(group, None));
    }
    // The groups' sums in group order.
    let mut sums = vec![0f32; per_group];
    for group in partial.chunks_exact(per_group) {
        for (s, v) in sums.iter_mut().zip(group) {
            *s += v;
        }
    }
    let bias_grad = sums.split_off(s.c_out * taps);
    (
        input_grad.then(|| FlexTensor::from_data(TensorData::new(x_grad, x_dims.clone()))),
        FlexTensor::from_data(TensorData::new(sums, w_dims)),
        FlexTensor::from_data(TensorData::new(bias_grad, [s.c_out])),
    )
}

#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 3> for ConvBackward {
    /// The input, the weight, whether the input needs its gradient, and the output when a
    /// relu was applied to it.
    type State = (FlexTensor, FlexTensor, bool, Option<FlexTensor>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x, weight, x_tracked, relu_output) = ops.state;
        let (x_grad, weight_grad, bias_grad) = conv_backward(
            &x,
            &weight,
            &grad,
            x_tracked && node_x.is_some(),
            relu_output.as_ref(),
        );
        for (node, value) in [
            (node_x, x_grad),
            (node_weight, Some(weight_grad)),
            (node_bias, Some(bias_grad)),
        ] {
            if let (Some(node), Some(value)) = (node, value) {
                grads.register::<Flex>(node.id, value);
            }
        }
    }
}

/// The pooled output and, for each output, which of its window's pixels held the maximum (the
/// first of equal ones in row-major order, as Burn takes it): 0 top left, 1 top right, 2 bottom
/// left, 3 bottom right.
fn pool_forward(x: &FlexTensor) -> (FlexTensor, Vec<u8>) {
    let (x, dims) = values(x);
    let [batch, channels, h, w] = [dims[0], dims[1], dims[2], dims[3]];
    let (oh, ow) = (h.div_ceil(2), w.div_ceil(2));
    let planes = batch * channels;
    let mut out = vec![0f32; planes * oh * ow];
    let mut argmax = vec![0u8; planes * oh * ow];
    out.par_chunks_mut(oh * ow)
        .zip(argmax.par_chunks_mut(oh * ow))
        .zip(x.par_chunks(h * w))
        .with_min_len(16)
        .for_each(|((out, arg), plane)| {
            for oy in 0..oh {
                let top = &plane[2 * oy * w..][..w];
                // An odd side's last window has no bottom row: its top row stands in for it,
                // and never wins a tie.
                let bottom = if 2 * oy + 1 < h {
                    &plane[(2 * oy + 1) * w..][..w]
                } else {
                    top
                };
                let (out, arg) = (&mut out[oy * ow..][..ow], &mut arg[oy * ow..][..ow]);
                // Branch-free, so that the compiler vectorizes it.
                let window = |a: f32, b: f32, c: f32, d: f32| {
                    let (mut best, mut at) = (a, 0u8);
                    (best, at) = if b > best { (b, 1) } else { (best, at) };
                    (best, at) = if c > best { (c, 2) } else { (best, at) };
                    if d > best { (d, 3) } else { (best, at) }
                };
                for (((t, b), o), a) in top
                    .chunks_exact(2)
                    .zip(bottom.chunks_exact(2))
                    .zip(out.iter_mut())
                    .zip(arg.iter_mut())
                {
                    (*o, *a) = window(t[0], t[1], b[0], b[1]);
                }
                if w % 2 == 1 {
                    // The last column's window: its left pixels alone.
                    let (t, b) = (top[w - 1], bottom[w - 1]);
                    (out[ow - 1], arg[ow - 1]) = window(t, t, b, b);
                }
            }
        });
    (
        FlexTensor::from_data(TensorData::new(out, [batch, channels, oh, ow])),
        argmax,
    )
}

fn pool_tracked(x: TrainTensor) -> TrainTensor {
    let prep = PoolBackward
        .prepare::<NoCheckpointing>([x.node()])
        .compute_bound()
        .stateful();
    let x = x.into_primitive();
    let (output, argmax) = pool_forward(&x);
    let dims: Vec<usize> = x.layout().shape().iter().copied().collect();
    match prep {
        OpsKind::Tracked(prep) => prep.finish((argmax, dims), output),
        OpsKind::UnTracked(prep) => prep.finish(output),
    }
}

#[derive(Debug)]
struct PoolBackward;

impl Backward<Flex, 1> for PoolBackward {
    /// Where each output's maximum was in its window ([`pool_forward`]), and the input's
    /// dimensions.
    type State = (Vec<u8>, Vec<usize>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let Some(node) = node_x else { return };
        let (argmax, dims) = ops.state;
        let (grad, _) = values(&grad);
        let (h, w) = (dims[2], dims[3]);
        let (oh, ow) = (h.div_ceil(2), w.div_ceil(2));
        let mut x_grad = vec![0f32; dims.iter().product()];
        // The windows do not overlap: each input pixel takes at most one output's gradient.
        x_grad
            .par_chunks_mut(h * w)
            .zip(argmax.par_chunks(oh * ow).zip(grad.par_chunks(oh * ow)))
            .with_min_len(16)
            .for_each(|(x_grad, (arg, grad))| {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let (a, g) = (arg[oy * ow + ox] as usize, grad[oy * ow + ox]);
                        x_grad[(2 * oy + a / 2) * w + 2 * ox + a % 2] = g;
                    }
                }
            });
        grads.register::<Flex>(
            node.id,
            FlexTensor::from_data(TensorData::new(x_grad, dims)),
        );
    }
}

/// Burn's pooling as the CNN runs it off flex: what the tests and the profile compare
/// [`max_pool2x2`] with.
#[cfg(test)]
fn burns_pool(x: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let options =
        burn::tensor::ops::MaxPoolOptions::new([2, 2]).with_padding_pairs([(0, h % 2), (0, w % 2)]);
    burn::tensor::module::max_pool2d(x, options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Device;

    fn floats(t: Tensor<4>) -> Vec<f32> {
        t.into_data().iter::<f32>().collect()
    }

    /// Values in [-1, 1], some exactly zero as after a relu, none equal in a pooling window
    /// by chance.
    fn values(dims: [usize; 4], seed: usize) -> TensorData {
        let n = dims.iter().product::<usize>();
        let v = (0..n)
            .map(|i| {
                let v = ((i * 7919 + seed * 104_729) % 20011) as f32 / 10005.0 - 1.0;
                if i % 5 == 0 { 0.0 } else { v }
            })
            .collect::<Vec<_>>();
        TensorData::new(v, dims)
    }

    fn close(ours: &[f32], burns: &[f32], what: &str) {
        assert_eq!(ours.len(), burns.len(), "{what}: sizes");
        let scale = burns.iter().fold(1f32, |m, v| m.max(v.abs()));
        for (i, (a, b)) in ours.iter().zip(burns).enumerate() {
            assert!(
                (a - b).abs() <= 2e-5 * scale,
                "{what}[{i}]: {a} against Burn's {b}"
            );
        }
    }

    /// The output and every gradient of a convolution equal Burn's `Conv2d` up to the order of
    /// the sums, for the lab's three layers, an odd side, a batch that is no multiple of the
    /// groups, and images of one channel; on 2 threads and 1, bit-identical.
    #[test]
    fn convolution_trains_and_infers_as_burns() {
        let ad = Device::flex().autodiff();
        let pool = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .expect("a pool")
        };
        for ((batch, c_in, c_out, side), relu) in [
            ((7, 1, 32, 28), false),
            ((6, 32, 64, 14), false),
            ((3, 64, 128, 7), false),
            ((11, 3, 5, 5), false),
            ((7, 1, 32, 28), true),
            ((3, 64, 128, 7), true),
        ] {
            ad.seed(batch as u64);
            let conv = Conv2dConfig::new([c_in, c_out], [K, K])
                .with_padding(PaddingConfig2d::Same)
                .init(&ad);
            let burns_layer = |x: Tensor<4>| match relu {
                true => burn::tensor::activation::relu(conv.forward(x)),
                false => conv.forward(x),
            };
            let run = |ours: bool| {
                // A CNN's images need no gradient; its first convolution takes the loops for
                // one channel.
                let x = Tensor::<4>::from_data(values([batch, c_in, side, side], 1), &ad);
                let x = if c_in > 1 { x.require_grad() } else { x };
                let y = match ours {
                    true => conv3x3(&conv, &x, relu).expect("this module's operation on flex"),
                    false => burns_layer(x.clone()),
                };
                let upstream = Tensor::<4>::from_data(values([batch, c_out, side, side], 2), &ad);
                let grads = (y.clone() * upstream).sum().backward();
                let bias = conv.bias.as_ref().expect("a bias");
                [
                    floats(y),
                    x.grad(&grads).map_or(Vec::new(), floats),
                    floats(conv.weight.grad(&grads).expect("a weight gradient")),
                    bias.grad(&grads)
                        .expect("a bias gradient")
                        .into_data()
                        .iter()
                        .collect(),
                ]
            };
            let burns = run(false);
            let two = pool(2).install(|| run(true));
            let case = format!("{batch}×{c_in}→{c_out} {side}², relu {relu}");
            for (what, (ours, burns)) in [
                "output",
                "input gradient",
                "weight gradient",
                "bias gradient",
            ]
            .iter()
            .zip(two.iter().zip(&burns))
            {
                close(ours, burns, &format!("{case}, {what}"));
            }
            assert_eq!(
                pool(1).install(|| run(true)),
                two,
                "{case}: 1 thread against 2"
            );

            let valid = conv.valid();
            let x = Tensor::<4>::from_data(values([batch, c_in, side, side], 3), &Device::flex());
            let ours = conv3x3(&valid, &x, relu).expect("this module's operation on flex");
            let burns = match relu {
                true => burn::tensor::activation::relu(valid.forward(x)),
                false => valid.forward(x),
            };
            close(&floats(ours), &floats(burns), &format!("{case}, inference"));
        }
    }

    /// Max-pooling and its gradient equal Burn's, odd sides (Keras' SAME: 7 → 4) included.
    #[test]
    fn max_pooling_trains_and_infers_as_burns() {
        let ad = Device::flex().autodiff();
        for dims in [[4, 3, 28, 28], [2, 5, 7, 7], [3, 2, 6, 5]] {
            let run = |ours: bool| {
                let x = Tensor::<4>::from_data(values(dims, 4), &ad).require_grad();
                let y = match ours {
                    true => max_pool2x2(&x).expect("this module's pooling on flex"),
                    false => burns_pool(x.clone()),
                };
                let upstream = Tensor::<4>::from_data(values(y.dims(), 5), &ad);
                let grads = (y.clone() * upstream).sum().backward();
                (
                    floats(y),
                    floats(x.grad(&grads).expect("an input gradient")),
                )
            };
            assert_eq!(run(true), run(false), "{dims:?}");
        }
    }

    /// Layers it does not handle are left to Burn's.
    #[test]
    fn leaves_other_convolutions_to_burn() {
        let device = Device::flex();
        let same = |c: Conv2dConfig| c.with_padding(PaddingConfig2d::Same).init(&device);
        let strided = same(Conv2dConfig::new([2, 4], [K, K]).with_stride([2, 2]));
        let valid = Conv2dConfig::new([2, 4], [K, K]).init(&device);
        let five = same(Conv2dConfig::new([2, 4], [5, 5]));
        let x = Tensor::<4>::from_data(values([1, 2, 9, 9], 6), &device);
        assert!(conv3x3(&strided, &x, false).is_none());
        assert!(conv3x3(&valid, &x, true).is_none());
        assert!(conv3x3(&five, &x, false).is_none());
    }
}

/// Where a CNN's time goes, layer by layer, on this machine: `cargo test --release --lib
/// conv_layer_profile -- --ignored --nocapture` prints, for the lab-11 network's three
/// convolutions (each followed by its relu) and poolings at batch 100 on 2 threads, the
/// median milliseconds of Burn's operations and of this module's, inference and training
/// (forward and backward), after checking that both compute the same (docs/speed.md).
#[cfg(test)]
mod profile {
    use super::*;
    use burn::module::Module;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Device;
    use std::time::Instant;

    fn median_ms(mut f: impl FnMut()) -> f64 {
        f();
        let mut t: Vec<f64> = (0..7)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        t.sort_by(f64::total_cmp);
        t[3]
    }

    #[test]
    #[ignore]
    fn conv_layer_profile() {
        // As the program sets it at start-up.
        crate::backend::keep_freed_memory();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let ad = Device::flex().autodiff();
        let batch = 100;
        println!(
            "| layer (batch {batch}, 2 threads, ms) | Burn inference | kernels inference | Burn training | kernels training |"
        );
        println!("|---|---|---|---|---|");
        pool.install(|| {
            for (c_in, c_out, side) in [(1, 32, 28), (32, 64, 14), (64, 128, 7)] {
                ad.seed(1);
                let conv = Conv2dConfig::new([c_in, c_out], [K, K])
                    .with_padding(PaddingConfig2d::Same)
                    .init(&ad);
                let dims = [batch, c_in, side, side];
                let data = TensorData::new(
                    (0..dims.iter().product::<usize>())
                        .map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0)
                        .collect::<Vec<_>>(),
                    dims,
                );
                let valid = conv.valid();
                let x = Tensor::<4>::from_data(data.clone(), &Device::flex());
                let ours = |x: &Tensor<4>| max_pool2x2(&conv3x3(&valid, x, true).unwrap()).unwrap();
                let burns = |x: &Tensor<4>| {
                    burns_pool(burn::tensor::activation::relu(valid.forward(x.clone())))
                };
                let (a, b) = (ours(&x).into_data(), burns(&x).into_data());
                a.assert_approx_eq::<f32>(&b, burn::tensor::Tolerance::rel_abs(1e-4, 1e-4));
                let infer_ours = median_ms(|| drop(ours(&x)));
                let infer_burn = median_ms(|| drop(burns(&x)));
                // Training: forward and backward, the input tracked past the first layer.
                let train = |kernels: bool| {
                    let x = Tensor::<4>::from_data(data.clone(), &ad);
                    let x = if c_in > 1 { x.require_grad() } else { x };
                    let y = match kernels {
                        true => max_pool2x2(&conv3x3(&conv, &x, true).unwrap()).unwrap(),
                        false => burns_pool(burn::tensor::activation::relu(conv.forward(x))),
                    };
                    drop(y.sum().backward());
                };
                let train_ours = median_ms(|| train(true));
                let train_burn = median_ms(|| train(false));
                println!(
                    "| conv {c_in}→{c_out} {side}×{side} + relu + pool | {infer_burn:.2} | {infer_ours:.2} | {train_burn:.2} | {train_ours:.2} |"
                );
            }
        });
    }
}
