//! The CNN's 3×3 convolutions (SAME padding, stride 1) and 2×2 max-pooling on flex, in training
//! as custom autodiff operations: a group of images' convolution as `gemm` products, over
//! their unfolded 3×3 neighbourhoods or, from 8 input channels, through Winograd's transforms
//! ([`winograd`]'s F(2×2, 3×3) backward and where no pooling follows; [`winograd4`]'s F(4×4,
//! 3×3) forward where one does); a pooled one-channel convolution directly, over the windows
//! that see a lit pixel ([`first_conv`]); a convolution followed by a relu and a pooling as one
//! operation; the groups spread over the thread pool.
//!
//! Burn's flex backend runs a convolution's input gradient image by image with products too
//! small for `gemm` to split over two cores, and the max-pool gradient as one serial scatter;
//! its layers took 3.4× as long as these in inference and 2.4× as long in training
//! (docs/speed.md). Here the images of a group share each product (forward, weight gradient,
//! input gradient), the groups are spread over the threads, each group's weight gradient is
//! summed in its own buffer and the groups' sums are added in group order: the result does not
//! depend on the thread count, so a seed gives bit-identical training on one machine. In
//! training the layout stays Burn's NCHW, so batchnorm, activations, the dense layers and the
//! backward passes take the tensors as they are. In inference a pooled convolution's output is
//! channels-last, as [`winograd4`]'s products and [`first_conv`]'s vectors give it and as the
//! next convolution's transforms read it: a permuted view with Burn's dimensions, which any
//! other operation reads as it reads a strided tensor (the flatten before the dense layers
//! copies it into NCHW order).
//!
//! A convolution, relu and pooling in one ([`conv3x3_relu_pool`]) write the pooled output
//! alone, and keep for the backward pass only it and where each window's maximum was: the
//! full-size output, the largest tensor of a step, is neither written nor read back. The loops
//! between the products are compiled for each vector unit ([`super::cpu::vectorized`]).
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

use super::cpu::vectorized;
use super::flex::{Train, TrainTensor, register, with_primitives};
use super::{first_conv, winograd, winograd4};

/// Side of the kernels this module computes.
const K: usize = 3;

/// Columns of one product: the images of a group side by side, enough of them for `gemm` to
/// run its widest loops (a 7×7 image alone gives it 49 columns, which ran at two thirds of the
/// speed of 392).
const COLUMNS: usize = 384;

/// Input channels from which a forward pass takes [`winograd`]'s products: its products'
/// inner dimension is the input channels, and the one-channel first convolution would gain
/// nothing from 16 products of one term.
const WINOGRAD_MIN_CHANNELS: usize = 8;

/// Floats between consecutive planes of a [`winograd`] pass's scratch beyond their contents:
/// one cache line.
const SKEW: usize = 16;

/// Columns (transformed blocks) of a [`winograd`] product.
const WINOGRAD_COLUMNS: usize = 192;

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
    convolve(conv, x, Then::Store { relu })
}

/// `conv` applied to `x`, through a relu and [`max_pool2x2`], as one operation: the full-size
/// output is neither stored nor kept for the backward pass, which needs only the pooled output
/// and where each window's maximum was. Nothing where [`conv3x3`] gives nothing.
pub fn conv3x3_relu_pool(conv: &Conv2d, x: &Tensor<4>) -> Option<Tensor<4>> {
    convolve(conv, x, Then::ReluPool)
}

fn convolve(conv: &Conv2d, x: &Tensor<4>, then: Then) -> Option<Tensor<4>> {
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
        |x, weight, bias| conv_tracked(x, weight, bias, then),
        |x, weight, bias| conv_forward(x, weight, bias, then, false).0,
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

/// Runs `f` with this thread's three scratch buffers, of at least the lengths asked for. Their
/// contents are whatever the last user left: every use writes each element before it reads it.
/// Kept from call to call, so that a step neither asks the allocator for fresh pages nor
/// zeroes them (5% of a step's profile; docs/speed.md).
fn with_scratch<R>(lens: [usize; 3], f: impl FnOnce([&mut [f32]; 3]) -> R) -> R {
    thread_local! {
        static SCRATCH: std::cell::RefCell<[Vec<f32>; 3]> = const {
            std::cell::RefCell::new([Vec::new(), Vec::new(), Vec::new()])
        };
    }
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        for (buffer, &len) in scratch.iter_mut().zip(&lens) {
            if buffer.len() < len {
                buffer.resize(len, 0.0);
            }
        }
        let [a, b, c] = &mut *scratch;
        f([&mut a[..lens[0]], &mut b[..lens[1]], &mut c[..lens[2]]])
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

/// The f32 values of a batch of images, `[batch, channels, height, width]` as Burn lays them
/// out, or `[batch, height, width, channels]` when `channels_last_too` and the tensor is
/// a channels-last one as [`conv_forward`] returns them (a permuted view); and whether they are
/// channels-last.
fn image_values(t: &FlexTensor, channels_last_too: bool) -> (std::borrow::Cow<'_, [f32]>, bool) {
    let layout = t.layout();
    let dims: Vec<usize> = layout.shape().iter().copied().collect();
    if let (&[n, c, h, w], false) = (&dims[..], t.is_contiguous()) {
        let strides = [(h * w * c) as isize, 1, (w * c) as isize, c as isize];
        if channels_last_too
            && t.dtype() == DType::F32
            && layout.strides() == strides
            && layout.start_offset() == 0
            && t.storage::<f32>().len() == n * c * h * w
        {
            return (std::borrow::Cow::Borrowed(t.storage::<f32>()), true);
        }
    }
    (values(t).0, false)
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
    /// Whether the convolution takes Winograd's products (a pooled one's gradients too).
    fn winograd(&self) -> bool {
        self.c_in >= WINOGRAD_MIN_CHANNELS && super::FastPaths::get().winograd
    }
    /// The floats between the planes of a Winograd pass over `images`: of the transformed
    /// inputs and of the products' sums. Apart by a whole number of cache lines that is not a
    /// multiple of 4 KiB, or the rows of the 16 would all fall in the same sets of the L1
    /// cache (the 64-channel layer's transforms ran at a third of the speed).
    fn winograd_planes(&self, tiling: Tiling, images: usize) -> (usize, usize) {
        let (th, tw) = tiling.blocks(self.height, self.width);
        let n = images * th * tw;
        (self.c_in * n + SKEW, self.c_out * n + SKEW)
    }
    /// Scratch a Winograd group of `images` needs: transformed inputs and the padded copy of
    /// an image, the products' sums, and F(2×2)'s output transform's four corners.
    fn winograd_scratch(&self, tiling: Tiling, images: usize) -> [usize; 3] {
        let (th, tw) = tiling.blocks(self.height, self.width);
        let (plane_v, plane_m) = self.winograd_planes(tiling, images);
        let p = tiling.positions();
        let padded = tiling.padded_len(self.height, self.width, self.c_in);
        let corners = match tiling {
            Tiling::F2 => 4 * images * th * tw,
            Tiling::F4 => 0,
        };
        [p * plane_v + padded, p * plane_m, corners]
    }
    /// Scratch a group of `images` needs for a product over unfolded neighbourhoods: the
    /// unfolded columns and the products' (or output gradient's) rows.
    fn unfolded_scratch(&self, images: usize) -> [usize; 3] {
        let n = images * self.pixels();
        [self.taps() * n, self.c_out * n, 0]
    }
    /// Images per group of a [`winograd`] forward pass: about [`WINOGRAD_COLUMNS`] blocks, in
    /// an even number of groups, which two threads share evenly. Not a function of the thread
    /// count: `gemm`'s sums depend on a product's width, and a seed gives the same outputs on
    /// any number of threads.
    fn winograd_group(&self, tiling: Tiling) -> usize {
        let (th, tw) = tiling.blocks(self.height, self.width);
        let groups = (self.batch * th * tw)
            .div_ceil(WINOGRAD_COLUMNS)
            .next_multiple_of(2);
        let mut images = self.batch.div_ceil(groups).max(1);
        // Rounding the images up can make the count odd (100 of 49 blocks: 26 groups of 4
        // are 25), and one thread would take a group more than the other.
        while images < self.batch && self.batch.div_ceil(images) % 2 == 1 {
            images += 1;
        }
        images
    }
}

/// Which of Winograd's algorithms a pass takes: F(4×4, 3×3) ([`winograd4`]) for a pooled
/// convolution's forward pass, F(2×2, 3×3) ([`winograd`]) for the others and for the gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tiling {
    F2,
    F4,
}

impl Tiling {
    fn blocks(self, height: usize, width: usize) -> (usize, usize) {
        match self {
            Tiling::F2 => winograd::blocks(height, width),
            Tiling::F4 => winograd4::blocks(height, width),
        }
    }
    fn positions(self) -> usize {
        match self {
            Tiling::F2 => winograd::POSITIONS,
            Tiling::F4 => winograd4::POSITIONS,
        }
    }
    fn padded_len(self, height: usize, width: usize, c_in: usize) -> usize {
        match self {
            Tiling::F2 => winograd::padded_len(height, width, c_in),
            Tiling::F4 => winograd4::padded_len(height, width, c_in),
        }
    }
    /// The transformed kernels of its products: `[ξ][out][in]` for F(2×2), `[ξ][in][out]` for
    /// F(4×4), whose products give each block's sums channels-last.
    fn kernels(self, weight: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
        let mut u = vec![0f32; self.positions() * c_out * c_in];
        match self {
            Tiling::F2 => winograd::transform_kernels(weight, c_out, c_in, &mut u),
            Tiling::F4 => {
                // The kernels `[in][out]`: the transform keeps their order.
                let mut by_input = vec![0f32; weight.len()];
                for (at, kernel) in by_input.chunks_exact_mut(K * K).enumerate() {
                    let (c, o) = (at / c_out, at % c_out);
                    kernel.copy_from_slice(&weight[(o * c_in + c) * K * K..][..K * K]);
                }
                winograd4::transform_kernels(&by_input, c_out, c_in, &mut u)
            }
        }
        u
    }
}

vectorized! {
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
}

vectorized! {
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

/// The forward output a backward pass reads, as values: see [`Saved`].
enum Mask<'a> {
    Plain,
    Relu(&'a [f32]),
    Pool(&'a [f32], &'a [u8]),
}

vectorized! {
    /// Image `i`'s output gradient from `grad` (the gradient of what the forward pass gave:
    /// outputs, relu'd outputs, or pooled ones), through the relu's mask and the pooling's argmax
    /// where there were, into `dst`'s rows `[out]`, `stride` apart.
    fn output_gradient(grad: &[f32], mask: &Mask, i: usize, s: &Shape, dst: &mut [f32], stride: usize) {
        let hw = s.pixels();
        let size = s.image_out();
        match *mask {
            // Burn's relu gradient: zero where the output is (NaN passes).
            Mask::Relu(y) => {
                let (g, y) = (&grad[i * size..][..size], &y[i * size..][..size]);
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
            Mask::Plain => {
                let g = &grad[i * size..][..size];
                for (row, g) in dst.chunks_mut(stride).zip(g.chunks_exact(hw)) {
                    row[..hw].copy_from_slice(g);
                }
            }
            // Each window's gradient to the pixel that held its maximum, where that was positive.
            Mask::Pool(pooled, argmax) => {
                let (w, ow) = (s.width, s.width.div_ceil(2));
                let plane = s.height.div_ceil(2) * ow;
                let at = i * s.c_out * plane;
                let g = &grad[at..][..s.c_out * plane];
                let (y, argmax) = (&pooled[at..][..g.len()], &argmax[at..][..g.len()]);
                for (((row, g), y), argmax) in dst
                    .chunks_mut(stride)
                    .zip(g.chunks_exact(plane))
                    .zip(y.chunks_exact(plane))
                    .zip(argmax.chunks_exact(plane))
                {
                    let row = &mut row[..hw];
                    row.fill(0.0);
                    for (p, ((&g, &y), &a)) in g.iter().zip(y).zip(argmax).enumerate() {
                        if y <= 0.0 {
                            continue;
                        }
                        let a = a as usize;
                        row[(2 * (p / ow) + a / 2) * w + 2 * (p % ow) + a % 2] = g;
                    }
                }
            }
        }
    }
}

/// What a convolution's forward pass makes of its sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    /// The outputs `bias + sum`, through a relu with `relu` (NaN stays NaN, as Burn's).
    Store { relu: bool },
    /// The 2×2 max-pooling (Keras' SAME) of `relu(bias + sum)`, and which pixel of each
    /// window held its maximum, as [`pool_forward`] gives them: the full-size output is never
    /// written.
    ReluPool,
}

/// The convolution's output: `[batch, c_out, height, width]`, or pooled with
/// [`Then::ReluPool`], with each window's argmax when `keep_argmax` (a backward pass reads
/// it). Per group of images, the products of [`winograd`] where the input has
/// [`WINOGRAD_MIN_CHANNELS`] channels (unless `MNIST_TRAIN_NO_WINOGRAD`), else
/// `weight · unfold(images)`; a pooled one through [`winograd4`] from 8 channels, and through
/// [`first_conv`] from one. Their outputs without the argmax (inference) are channels-last
/// (see the module's comment), a permuted view with Burn's dimensions.
fn conv_forward(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: &FlexTensor,
    then: Then,
    keep_argmax: bool,
) -> (FlexTensor, Vec<u8>) {
    let x_dims: Vec<usize> = x.layout().shape().iter().copied().collect();
    let (weight, w_dims) = values(weight);
    let (bias, _) = values(bias);
    let s = Shape::of(&x_dims, &w_dims);
    let pool = then == Then::ReluPool;
    let route = Route::of(&s, pool, &weight);
    let channels_last = matches!(route, Route::Windows(_) | Route::Winograd(Tiling::F4, _));
    let (x, channels_last_in) = image_values(x, matches!(route, Route::Winograd(Tiling::F4, _)));
    let channels_last_out = channels_last && !keep_argmax;
    let (out_h, out_w) = match pool {
        true => (s.height.div_ceil(2), s.width.div_ceil(2)),
        false => (s.height, s.width),
    };
    let out_image = s.c_out * out_h * out_w;
    let mut out = vec![0f32; s.batch * out_image];
    let argmax_too = pool && keep_argmax;
    let mut argmax = vec![0u8; if argmax_too { out.len() } else { 0 }];
    let group = match &route {
        Route::Windows(_) => FIRST_CONV_GROUP.min(s.batch.max(1)),
        Route::Winograd(t, _) => s.winograd_group(*t),
        Route::Unfolded => s.group(),
    };
    let groups = s.batch.div_ceil(group);
    let mut argmax_chunks: Vec<Option<&mut [u8]>> = match argmax_too {
        true => argmax.chunks_mut(group * out_image).map(Some).collect(),
        false => (0..groups).map(|_| None).collect(),
    };
    out.par_chunks_mut(group * out_image)
        .zip(argmax_chunks.par_iter_mut())
        .zip(x.par_chunks(group * s.image_in()))
        .for_each(|((out, argmax), x)| {
            let images = x.len() / s.image_in();
            let sink = Sink {
                then,
                bias: &bias,
                images,
                out,
                argmax: argmax.as_deref_mut(),
            };
            match &route {
                Route::Windows(taps) => first_conv_group(&s, taps, x, sink, channels_last_out),
                Route::Winograd(Tiling::F4, u) => {
                    with_scratch(s.winograd_scratch(Tiling::F4, images), |scratch| {
                        let layouts = (channels_last_in, channels_last_out);
                        winograd4_group(&s, u, x, layouts, sink, scratch)
                    })
                }
                Route::Winograd(Tiling::F2, u) => {
                    with_scratch(s.winograd_scratch(Tiling::F2, images), |scratch| {
                        winograd_group(&s, u, x, images, sink, scratch)
                    })
                }
                Route::Unfolded => with_scratch(s.unfolded_scratch(images), |scratch| {
                    unfolded_group(&s, &weight, x, images, sink, scratch)
                }),
            }
        });
    let out = match channels_last_out {
        true => FlexTensor::from_data(TensorData::new(out, [s.batch, out_h, out_w, s.c_out]))
            .permute(&[0, 3, 1, 2]),
        false => FlexTensor::from_data(TensorData::new(out, [s.batch, s.c_out, out_h, out_w])),
    };
    (out, argmax)
}

/// How a forward pass computes a convolution, with what it prepares once a call.
enum Route {
    /// A pooled one-channel convolution: [`first_conv`]'s windows, the kernels `[tap][out]`.
    Windows(Vec<f32>),
    /// From [`WINOGRAD_MIN_CHANNELS`] input channels: Winograd's products, with the
    /// transformed kernels.
    Winograd(Tiling, Vec<f32>),
    /// Products over unfolded neighbourhoods.
    Unfolded,
}

impl Route {
    fn of(s: &Shape, pool: bool, weight: &[f32]) -> Self {
        match (s.c_in, pool) {
            (1, true) => Route::Windows(first_conv::taps(weight, s.c_out)),
            // F(4×4) where a pooling takes its blocks' four windows; the gradients of a
            // training step's are F(2×2)'s, which computes the same function (up to rounding)
            // in shorter blocks, for which the pooling leaves the gradients' transforms no work.
            _ if s.winograd() => {
                let tiling = if pool { Tiling::F4 } else { Tiling::F2 };
                Route::Winograd(tiling, tiling.kernels(weight, s.c_out, s.c_in))
            }
            _ => Route::Unfolded,
        }
    }
}

/// Images per group of [`first_conv`]'s convolutions: enough to make a task of a few dozen
/// microseconds.
const FIRST_CONV_GROUP: usize = 8;

/// One group's pooled convolutions through [`first_conv`], image by image, into the sink
/// (channels-last with `channels_last`).
fn first_conv_group(s: &Shape, taps: &[f32], x: &[f32], sink: Sink<'_>, channels_last: bool) {
    let dims = (s.height, s.width);
    let mut padded = vec![0f32; first_conv::padded_len(s.height, s.width)];
    let out_image = sink.out.len() / sink.images;
    let mut argmax = sink.argmax.map(|a| a.chunks_mut(out_image));
    for (image, out) in x
        .chunks_exact(s.pixels())
        .zip(sink.out.chunks_mut(out_image))
    {
        let to = first_conv::Pooled {
            out,
            argmax: argmax.as_mut().and_then(|a| a.next()).unwrap_or_default(),
            channels_last,
        };
        first_conv::conv_relu_pool(image, dims, taps, sink.bias, &mut padded, to);
    }
}

/// Where a group's outputs go: its `images`' slice of the output (and of the argmax, when
/// pooling), with the bias to add, one per output channel.
struct Sink<'a> {
    then: Then,
    bias: &'a [f32],
    images: usize,
    out: &'a mut [f32],
    argmax: Option<&'a mut [u8]>,
}

impl Sink<'_> {
    /// Image `i`'s output channel `o`, and its argmax plane when pooling.
    fn plane(&mut self, i: usize, o: usize) -> (&mut [f32], Option<&mut [u8]>) {
        let plane = self.out.len() / self.images / self.bias.len();
        let at = (i * self.bias.len() + o) * plane;
        (
            &mut self.out[at..][..plane],
            self.argmax.as_deref_mut().map(|a| &mut a[at..][..plane]),
        )
    }
}

/// One group's forward pass as a product over unfolded neighbourhoods: `y[out, image ×
/// pixels] = weight · cols`, then each plane through the sink.
fn unfolded_group(
    s: &Shape,
    weight: &[f32],
    x: &[f32],
    images: usize,
    mut sink: Sink<'_>,
    scratch: [&mut [f32]; 3],
) {
    let hw = s.pixels();
    let n = images * hw;
    let [cols, y, _] = scratch;
    for (i, image) in x.chunks_exact(s.image_in()).enumerate() {
        unfold(s, image, &mut cols[i * hw..], n);
    }
    product(
        (s.c_out, s.taps(), n),
        y,
        (weight, s.taps() as isize, 1),
        (cols, n as isize, 1),
        false,
    );
    // From [out, image × pixels] to [image, out, pixels], with the bias.
    for i in 0..images {
        for (o, y) in y.chunks_exact_mut(n).enumerate() {
            let y = &mut y[i * hw..][..hw];
            let b = sink.bias[o];
            let then = sink.then;
            let (out, argmax) = sink.plane(i, o);
            finish_plane(y, b, then, (s.height, s.width), out, argmax);
        }
    }
}

vectorized! {
    /// One output plane of a product over unfolded neighbourhoods (`y`, without its bias
    /// `b`) into `out`, as `then` says: stored, or pooled with its argmax.
    fn finish_plane(
        y: &mut [f32],
        b: f32,
        then: Then,
        dims: (usize, usize),
        out: &mut [f32],
        argmax: Option<&mut [u8]>,
    ) {
        match then {
            Then::Store { relu } => {
                for (o, v) in out.iter_mut().zip(y.iter()) {
                    *o = activated(v + b, relu);
                }
            }
            Then::ReluPool => {
                for v in y.iter_mut() {
                    *v = activated(*v + b, true);
                }
                pool_plane(y, dims, out, argmax.unwrap_or_default());
            }
        }
    }
}

/// The forward products of a group of images (`x`) through `tiling`'s transforms: the images'
/// blocks transformed side by side into `v` (scratch of [`Shape::winograd_scratch`]'s first
/// length), then for each position the products `m[ξ]`: `kernels[ξ] · v[ξ]`, `[out, blocks]`,
/// for F(2×2); `v[ξ] · kernels[ξ]`, `[blocks, out]`, for F(4×4). Returns the blocks and the
/// floats between `m`'s planes.
fn winograd_products(
    s: &Shape,
    tiling: Tiling,
    kernels: &[f32],
    (x, channels_last): (&[f32], bool),
    v: &mut [f32],
    m: &mut [f32],
) -> (usize, usize) {
    let images = x.len() / s.image_in();
    let (th, tw) = tiling.blocks(s.height, s.width);
    let blocks = th * tw;
    let (plane_v, plane_m) = s.winograd_planes(tiling, images);
    let (v, padded) = v.split_at_mut(tiling.positions() * plane_v);
    padded.fill(0.0);
    let dims = (s.c_in, s.height, s.width);
    for (i, image) in x.chunks_exact(s.image_in()).enumerate() {
        let at = (i * blocks, plane_v);
        match tiling {
            Tiling::F2 => {
                assert!(!channels_last, "F(2×2) reads Burn's layout");
                winograd::transform_image(image, dims, v, at, padded)
            }
            Tiling::F4 => winograd4::transform_image(image, dims, channels_last, v, at, padded),
        }
    }
    let n = images * blocks;
    for xi in 0..tiling.positions() {
        let (u, v) = (&kernels[xi * s.c_out * s.c_in..], &v[xi * plane_v..]);
        match tiling {
            Tiling::F2 => product(
                (s.c_out, s.c_in, n),
                &mut m[xi * plane_m..],
                (u, s.c_in as isize, 1),
                (v, 1, s.c_in as isize),
                false,
            ),
            // `[blocks, out]`: `gemm` reads both operands as they lie (its 64-row side the
            // kernels' outputs), where `[out, blocks]` made it copy every transformed block.
            Tiling::F4 => product(
                (n, s.c_in, s.c_out),
                &mut m[xi * plane_m..],
                (v, s.c_in as isize, 1),
                (u, s.c_out as isize, 1),
                false,
            ),
        }
    }
    (n, plane_m)
}

/// One group's forward pass through [`winograd`]: its images' blocks transformed side by
/// side, the 16 products, and each output channel's block sums transformed back into the sink.
fn winograd_group(
    s: &Shape,
    kernels: &[f32],
    x: &[f32],
    images: usize,
    mut sink: Sink<'_>,
    scratch: [&mut [f32]; 3],
) {
    let (th, tw) = winograd::blocks(s.height, s.width);
    let blocks = th * tw;
    let [v, m, corners] = scratch;
    let (n, plane_m) = winograd_products(s, Tiling::F2, kernels, (x, false), v, m);
    let dims = (s.height, s.width);
    match sink.then {
        Then::ReluPool => unreachable!("a pooled convolution takes winograd4_group"),
        Then::Store { relu } => {
            let (c00, rest) = corners.split_at_mut(n);
            let (c01, rest) = rest.split_at_mut(n);
            let (c10, c11) = rest.split_at_mut(n);
            for o in 0..s.c_out {
                let corners = [&mut *c00, &mut *c01, &mut *c10, &mut *c11];
                winograd::transform_outputs(&m[o * n..], plane_m, n, corners);
                for i in 0..images {
                    let at = i * blocks;
                    let corners =
                        [&c00[at..], &c01[at..], &c10[at..], &c11[at..]].map(|c| &c[..blocks]);
                    let bias = sink.bias[o];
                    store_blocks(corners, bias, relu, dims, sink.plane(i, o).0);
                }
            }
        }
    }
}

/// One group's pooled forward pass through [`winograd4`]: its images (`x`, channels-last with
/// `layouts.0`) transformed side by side in 4×4 blocks, the 36 products, and each block's sums
/// pooled, four windows a block, into the sink (channels-last with `layouts.1`), with their
/// argmax when the sink keeps it.
fn winograd4_group(
    s: &Shape,
    kernels: &[f32],
    x: &[f32],
    (channels_last_in, channels_last_out): (bool, bool),
    sink: Sink<'_>,
    scratch: [&mut [f32]; 3],
) {
    let [v, m, _] = scratch;
    let (_, plane_m) = winograd_products(s, Tiling::F4, kernels, (x, channels_last_in), v, m);
    let dims = (s.height, s.width);
    let (blocks, channel_stride) =
        winograd4::pooled_blocks(sink.images, dims, s.c_out, channels_last_out);
    let argmax = sink.argmax.unwrap_or_default();
    winograd4::pool_blocks(
        m,
        plane_m,
        sink.bias,
        &blocks,
        sink.out,
        argmax,
        channel_stride,
    );
}

/// `v` through a relu with `relu`: zero where `v <= 0`, NaN kept (Burn's relu).
#[inline(always)]
pub(super) fn activated(v: f32, relu: bool) -> f32 {
    if relu && v <= 0.0 { 0.0 } else { v }
}

vectorized! {
    /// The outputs of an image's blocks (`corners`: top left, top right, bottom left, bottom
    /// right of each) with the bias, into their pixels of the plane `out` (`height × width`).
    fn store_blocks(
        corners: [&[f32]; 4],
        bias: f32,
        relu: bool,
        dims: (usize, usize),
        out: &mut [f32],
    ) {
        let (h, w) = dims;
        let tw = w.div_ceil(2);
        for (k, corner) in corners.iter().enumerate() {
            let (dy, dx) = (k / 2, k % 2);
            for (b, &v) in corner.iter().enumerate() {
                let (y, x) = (2 * (b / tw) + dy, 2 * (b % tw) + dx);
                if y < h && x < w {
                    out[y * w + x] = activated(v + bias, relu);
                }
            }
        }
    }
}

/// The maximum of a 2×2 window (top left, top right, bottom left, bottom right) and which
/// held it, the first of equal ones (as Burn takes it). Branch-free, so that it vectorizes.
#[inline(always)]
pub(super) fn window(a: f32, b: f32, c: f32, d: f32) -> (f32, u8) {
    let (mut best, mut at) = (a, 0u8);
    (best, at) = if b > best { (b, 1) } else { (best, at) };
    (best, at) = if c > best { (c, 2) } else { (best, at) };
    if d > best { (d, 3) } else { (best, at) }
}

/// The maximum of each lane's 2×2 window `y` (top left, top right, bottom left, bottom right;
/// those past `inside`'s rows and columns, outside the image, count as 0, which changes no
/// maximum of relu'd values and never wins a tie against the top-left pixel, always inside)
/// into `out` at `at + l · channel` for lane `l`, and with `ARGMAX` which pixel held it into
/// `argmax` at the same places ([`window`]'s numbering).
#[inline(always)]
pub(super) fn store_window<const L: usize, const ARGMAX: bool>(
    mut y: [[f32; L]; 4],
    (rows, columns): (usize, usize),
    (out, argmax): (&mut [f32], &mut [u8]),
    (at, channel): (usize, usize),
) {
    if columns < 2 {
        y[1] = [0.0; L];
        y[3] = [0.0; L];
    }
    if rows < 2 {
        y[2] = [0.0; L];
        y[3] = [0.0; L];
    }
    let mut best = [0f32; L];
    let mut which = [0u8; L];
    for l in 0..L {
        (best[l], which[l]) = window(y[0][l], y[1][l], y[2][l], y[3][l]);
    }
    if channel == 1 {
        out[at..at + L].copy_from_slice(&best);
        if ARGMAX {
            argmax[at..at + L].copy_from_slice(&which);
        }
    } else {
        for l in 0..L {
            out[at + l * channel] = best[l];
            if ARGMAX {
                argmax[at + l * channel] = which[l];
            }
        }
    }
}

fn conv_tracked(x: TrainTensor, weight: TrainTensor, bias: TrainTensor, then: Then) -> TrainTensor {
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
    let (output, argmax) = conv_forward(&x, &weight, &bias, then, true);
    match prep {
        OpsKind::Tracked(prep) => {
            // The output shares its buffer: the relu's mask is read from it.
            let saved = match then {
                Then::Store { relu: false } => Saved::Plain,
                Then::Store { relu: true } => Saved::Relu(output.clone()),
                Then::ReluPool => Saved::Pool(output.clone(), argmax),
            };
            prep.finish((x, weight, x_tracked, saved), output)
        }
        OpsKind::UnTracked(prep) => prep.finish(output),
    }
}

/// What a convolution's backward pass needs of its forward output: nothing, the relu's
/// output (its mask), or the pooled output and argmax of [`Then::ReluPool`].
#[derive(Debug, Clone)]
enum Saved {
    Plain,
    Relu(FlexTensor),
    Pool(FlexTensor, Vec<u8>),
}

/// The gradients of a convolution: of its input (when `input_grad`), weight and bias; of one
/// followed by a relu, or by a relu and pooling, as `saved` says.
fn conv_backward(
    x: &FlexTensor,
    weight: &FlexTensor,
    grad: &FlexTensor,
    input_grad: bool,
    saved: &Saved,
) -> (Option<FlexTensor>, FlexTensor, FlexTensor) {
    let (x, x_dims) = values(x);
    let (weight, w_dims) = values(weight);
    let (grad, _) = values(grad);
    let output = match saved {
        Saved::Plain => None,
        Saved::Relu(y) | Saved::Pool(y, _) => Some(values(y).0),
    };
    let mask = match (saved, &output) {
        (Saved::Relu(_), Some(y)) => Mask::Relu(y),
        (Saved::Pool(_, argmax), Some(y)) => Mask::Pool(y, argmax),
        _ => Mask::Plain,
    };
    let s = Shape::of(&x_dims, &w_dims);
    // A pooled convolution's through the adjoint of F(2×2)'s transforms (whatever block the
    // forward pass took: the same convolution up to rounding), whose 2×2 blocks the pooling
    // leaves one gradient each. Otherwise over unfolded neighbourhoods.
    let kernels = (s.winograd() && matches!(mask, Mask::Pool(..)))
        .then(|| Tiling::F2.kernels(&weight, s.c_out, s.c_in));
    let group = match kernels {
        Some(_) => s.winograd_group(Tiling::F2),
        None => s.group(),
    };
    let groups = s.batch.div_ceil(group);
    // Each group's weight (or transformed kernels') and bias gradient, summed over its images.
    let weight_len = match kernels {
        Some(_) => winograd::POSITIONS * s.c_out * s.c_in,
        None => s.c_out * s.taps(),
    };
    let per_group = weight_len + s.c_out;
    let mut partial = vec![0f32; groups * per_group];
    let mut x_grad = vec![
        0f32;
        if input_grad {
            s.batch * s.image_in()
        } else {
            0
        }
    ];
    let run = |g: usize, sums: &mut [f32], x_grad: Option<&mut [f32]>| {
        let images = (g * group, group.min(s.batch - g * group));
        match (&kernels, &mask) {
            (Some(u), Mask::Pool(pooled, argmax)) => {
                with_scratch(s.winograd_scratch(Tiling::F2, images.1), |scratch| {
                    let tensors = (&*x, &*grad, *pooled, *argmax);
                    winograd_backward_group(&s, u, tensors, images, sums, x_grad, scratch)
                })
            }
            _ => with_scratch(s.unfolded_scratch(images.1), |scratch| {
                let tensors = (&*x, &*weight, &*grad);
                backward_group(&s, tensors, &mask, images, sums, x_grad, scratch)
            }),
        }
    };
    if input_grad {
        partial
            .par_chunks_mut(per_group)
            .enumerate()
            .zip(x_grad.par_chunks_mut(group * s.image_in()))
            .for_each(|((g, sums), x_grad)| run(g, sums, Some(x_grad)));
    } else {
        partial
            .par_chunks_mut(per_group)
            .enumerate()
            .for_each(|(g, sums)| run(g, sums, None));
    }
    // The groups' sums in group order.
    let mut sums = vec![0f32; per_group];
    for group in partial.chunks_exact(per_group) {
        for (s, v) in sums.iter_mut().zip(group) {
            *s += v;
        }
    }
    let bias_grad = sums.split_off(weight_len);
    let weight_grad = match kernels {
        Some(_) => {
            let mut w = vec![0f32; s.c_out * s.taps()];
            winograd::kernel_gradients(&sums, s.c_out, s.c_in, &mut w);
            w
        }
        None => sums,
    };
    (
        input_grad.then(|| FlexTensor::from_data(TensorData::new(x_grad, x_dims.clone()))),
        FlexTensor::from_data(TensorData::new(weight_grad, w_dims)),
        FlexTensor::from_data(TensorData::new(bias_grad, [s.c_out])),
    )
}

/// The sum of `values` in 16 interleaved partial sums, which vectorize (one running sum is a
/// chain of dependent additions): the same order on any machine.
#[inline(always)]
fn lane_sum(values: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let chunks = values.chunks_exact(16);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (l, v) in lanes.iter_mut().zip(chunk) {
            *l += v;
        }
    }
    for (l, v) in lanes.iter_mut().zip(rest) {
        *l += v;
    }
    lanes.iter().sum()
}

/// One group's gradients through [`winograd`]'s transforms, the adjoint of F(2×2)'s pooled
/// forward pass: the block sums' gradients `gm` from the pooled
/// outputs' (each window's to where its maximum was), then for each of the 16 positions the
/// transformed kernels' gradient `gm · vᵀ` (summed into `sums`, with the bias's) and, when
/// asked for, the transformed inputs' `gmᵀ · u`, transformed back into `x_grad`. The inputs'
/// transforms are computed again rather than kept from the forward pass.
#[allow(clippy::too_many_arguments)]
fn winograd_backward_group(
    s: &Shape,
    kernels: &[f32],
    (x, grad, pooled, argmax): (&[f32], &[f32], &[f32], &[u8]),
    (first, images): (usize, usize),
    sums: &mut [f32],
    x_grad: Option<&mut [f32]>,
    scratch: [&mut [f32]; 3],
) {
    let (th, tw) = winograd::blocks(s.height, s.width);
    let blocks = th * tw;
    let n = images * blocks;
    let p = winograd::POSITIONS;
    let (plane_v, plane_m) = s.winograd_planes(Tiling::F2, images);
    let [v, m, masked] = scratch;
    let (v, padded) = v.split_at_mut(p * plane_v);
    padded.fill(0.0);
    let dims = (s.c_in, s.height, s.width);
    for i in 0..images {
        let image = &x[(first + i) * s.image_in()..][..s.image_in()];
        winograd::transform_image(image, dims, v, (i * blocks, plane_v), padded);
    }
    let (u_sums, b_sums) = sums.split_at_mut(p * s.c_out * s.c_in);
    let masked = &mut masked[..n];
    let mut arg = vec![0u8; n];
    for (o, bias) in b_sums.iter_mut().enumerate() {
        // The channel's windows of all the group's images side by side, through the relu.
        for i in 0..images {
            let at = ((first + i) * s.c_out + o) * blocks;
            let (g, y, a) = (
                &grad[at..][..blocks],
                &pooled[at..][..blocks],
                &argmax[at..][..blocks],
            );
            let (dst, dst_arg) = (&mut masked[i * blocks..], &mut arg[i * blocks..]);
            for (t, ((&g, &y), &a)) in g.iter().zip(y).zip(a).enumerate() {
                // Burn's relu gradient: zero where the output is (NaN passes).
                dst[t] = if y <= 0.0 { 0.0 } else { g };
                dst_arg[t] = a;
            }
        }
        let mut rows = rows_mut(m, o * n, plane_m, n);
        pool_gradient_blocks(masked, &arg, &mut rows, bias);
    }
    for xi in 0..p {
        let gm = &m[xi * plane_m..];
        let vx = &mut v[xi * plane_v..][..n * s.c_in];
        let plane = s.c_out * s.c_in;
        // u[out, in] = gm[out, blocks] · v[blocks, in]
        product(
            (s.c_out, n, s.c_in),
            &mut u_sums[xi * plane..],
            (gm, n as isize, 1),
            (vx, s.c_in as isize, 1),
            false,
        );
        if x_grad.is_some() {
            // v[blocks, in] = gmᵀ[blocks, out] · u[out, in]
            product(
                (n, s.c_out, s.c_in),
                vx,
                (gm, 1, n as isize),
                (&kernels[xi * plane..], s.c_in as isize, 1),
                false,
            );
        }
    }
    if let Some(x_grad) = x_grad {
        for (i, image) in x_grad.chunks_exact_mut(s.image_in()).enumerate() {
            winograd::image_gradient(v, (i * blocks, plane_v), dims, padded, image);
        }
    }
}

/// The 16 rows `first + ξ·stride .. + len` of `m`, mutably.
fn rows_mut(
    m: &mut [f32],
    first: usize,
    stride: usize,
    len: usize,
) -> [&mut [f32]; winograd::POSITIONS] {
    let mut rest = &mut m[first..];
    std::array::from_fn(|xi| {
        let step = if xi + 1 < winograd::POSITIONS {
            stride
        } else {
            len
        };
        let (this, next) = std::mem::take(&mut rest).split_at_mut(step);
        rest = next;
        &mut this[..len]
    })
}

vectorized! {
    /// The gradients `gm[ξ][block]` of one output channel's block sums, from its windows'
    /// gradients `grad` (through the relu) and `argmax`: each window's gradient on the pixel
    /// that held its maximum, through `A · Aᵀ`, the adjoint of [`winograd::output_block`]. Their
    /// sum, the bias's gradient, into `bias`.
    fn pool_gradient_blocks(
        grad: &[f32],
        argmax: &[u8],
        gm: &mut [&mut [f32]; winograd::POSITIONS],
        bias: &mut f32,
    ) {
        let n = grad.len();
        let argmax = &argmax[..n];
        let gm: [&mut [f32]; winograd::POSITIONS] =
            std::array::from_fn(|xi| &mut std::mem::take(&mut gm[xi])[..n]);
        for t in 0..n {
            let (g, a) = (grad[t], argmax[t]);
            // A's column for the window's row, times the gradient, and for its column.
            let rows = if a & 2 == 0 { [g, g, g, 0.0] } else { [0.0, g, -g, -g] };
            let cols = if a & 1 == 0 {
                [1.0, 1.0, 1.0, 0.0]
            } else {
                [0.0, 1.0, -1.0, -1.0]
            };
            for i in 0..4 {
                for j in 0..4 {
                    gm[4 * i + j][t] = rows[i] * cols[j];
                }
            }
        }
        *bias = lane_sum(grad);
    }
}

/// The gradients of images `first .. first + images` (`images`): their weight and bias
/// gradients summed into `sums`, and their input gradients into `x_grad` when asked for.
fn backward_group(
    s: &Shape,
    (x, weight, grad): (&[f32], &[f32], &[f32]),
    mask: &Mask<'_>,
    (first, images): (usize, usize),
    sums: &mut [f32],
    x_grad: Option<&mut [f32]>,
    scratch: [&mut [f32]; 3],
) {
    let (hw, taps) = (s.pixels(), s.taps());
    let n = images * hw;
    let (w_sum, b_sum) = sums.split_at_mut(s.c_out * taps);
    // `gy`: the group's output gradient as [out, image × pixels], the images side by side.
    let [cols, gy, _] = scratch;
    for i in 0..images {
        let image = &x[(first + i) * s.image_in()..][..s.image_in()];
        unfold(s, image, &mut cols[i * hw..], n);
        output_gradient(grad, mask, first + i, s, &mut gy[i * hw..], n);
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
        *b = lane_sum(&row[..n]);
    }
    if let Some(x_grad) = x_grad {
        // cols[taps, columns] = weightᵀ[taps, out] · gy[out, columns]
        product(
            (taps, s.c_out, n),
            cols,
            (weight, 1, taps as isize),
            (gy, n as isize, 1),
            false,
        );
        for (i, image) in x_grad.chunks_exact_mut(s.image_in()).enumerate() {
            fold_add(s, &cols[i * hw..], image, n);
        }
    }
}

#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 3> for ConvBackward {
    /// The input, the weight, whether the input needs its gradient, and what the backward
    /// pass needs of the output.
    type State = (FlexTensor, FlexTensor, bool, Saved);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x, weight, x_tracked, saved) = ops.state;
        let input_grad = x_tracked && node_x.is_some();
        let (x_grad, weight_grad, bias_grad) =
            conv_backward(&x, &weight, &grad, input_grad, &saved);
        let parents = [node_x, node_weight, node_bias].map(|node| node.map(|n| n.id));
        register(grads, parents, [x_grad, Some(weight_grad), Some(bias_grad)]);
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
        .for_each(|((out, arg), plane)| pool_plane(plane, (h, w), out, arg));
    (
        FlexTensor::from_data(TensorData::new(out, [batch, channels, oh, ow])),
        argmax,
    )
}

vectorized! {
    /// One plane's pooling ([`pool_forward`]), without the argmax when `arg` is empty.
    fn pool_plane(plane: &[f32], dims: (usize, usize), out: &mut [f32], arg: &mut [u8]) {
        let (h, w) = dims;
        let (oh, ow) = (h.div_ceil(2), w.div_ceil(2));
        for oy in 0..oh {
            let top = &plane[2 * oy * w..][..w];
            // An odd side's last window has no bottom row: its top row stands in for it, and
            // never wins a tie.
            let bottom = if 2 * oy + 1 < h {
                &plane[(2 * oy + 1) * w..][..w]
            } else {
                top
            };
            let out = &mut out[oy * ow..][..ow];
            if arg.is_empty() {
                // Inference: the maxima alone.
                for ((t, b), o) in top.chunks_exact(2).zip(bottom.chunks_exact(2)).zip(&mut *out) {
                    *o = window(t[0], t[1], b[0], b[1]).0;
                }
                if w % 2 == 1 {
                    let (t, b) = (top[w - 1], bottom[w - 1]);
                    out[ow - 1] = window(t, t, b, b).0;
                }
                continue;
            }
            let arg = &mut arg[oy * ow..][..ow];
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
    }
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

    /// [`values`] lit only in the middle of each image, as MNIST's digits: the border's
    /// neighbourhoods are all zero.
    fn digits(dims: [usize; 4], seed: usize) -> TensorData {
        let [.., h, w] = dims;
        let middle = |i: usize, side: usize| (side / 4..side - side / 4).contains(&i);
        let lit = values(dims, seed);
        let v = lit.iter::<f32>().enumerate().map(|(i, v)| {
            let (y, x) = (i / w % h, i % w);
            if middle(y, h) && middle(x, w) { v } else { 0.0 }
        });
        TensorData::new(v.collect::<Vec<_>>(), dims)
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

    /// One layer both ways, `ours` (this module's operation) and `burns` (Burn's layers), on a
    /// fresh convolution from `device_seed` and images from `data_seeds` (input, upstream
    /// gradient, inference input): the output and the input, weight and bias gradients agree
    /// up to the order of the sums, ours bit for bit on 1 thread and 2, and so does inference.
    fn agrees_with_burns(
        (batch, c_in, c_out, side): (usize, usize, usize, usize),
        (device_seed, data_seeds): (u64, [usize; 3]),
        case: &str,
        ours: impl Fn(&Conv2d, &Tensor<4>) -> Option<Tensor<4>> + Sync,
        burns: impl Fn(&Conv2d, Tensor<4>) -> Tensor<4> + Sync,
    ) {
        let ad = Device::flex().autodiff();
        let pool = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .expect("a pool")
        };
        ad.seed(device_seed);
        let conv = Conv2dConfig::new([c_in, c_out], [K, K])
            .with_padding(PaddingConfig2d::Same)
            .init(&ad);
        let run = |kernels: bool| {
            // A CNN's images need no gradient; its first convolution takes the loops for one
            // channel.
            let dims = [batch, c_in, side, side];
            let x = match c_in {
                1 => digits(dims, data_seeds[0]),
                _ => values(dims, data_seeds[0]),
            };
            let x = Tensor::<4>::from_data(x, &ad);
            let x = if c_in > 1 { x.require_grad() } else { x };
            let y = match kernels {
                true => ours(&conv, &x).expect("this module's operation on flex"),
                false => burns(&conv, x.clone()),
            };
            let upstream = Tensor::<4>::from_data(values(y.dims(), data_seeds[1]), &ad);
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
        let burns_grads = run(false);
        let two = pool(2).install(|| run(true));
        let what = [
            "output",
            "input gradient",
            "weight gradient",
            "bias gradient",
        ];
        for (what, (ours, burns)) in what.iter().zip(two.iter().zip(&burns_grads)) {
            close(ours, burns, &format!("{case}, {what}"));
        }
        assert_eq!(
            pool(1).install(|| run(true)),
            two,
            "{case}: 1 thread against 2"
        );

        let valid = conv.valid();
        let dims = [batch, c_in, side, side];
        let x = match c_in {
            1 => digits(dims, data_seeds[2]),
            _ => values(dims, data_seeds[2]),
        };
        let x = Tensor::<4>::from_data(x, &Device::flex());
        let ours = ours(&valid, &x).expect("this module's operation on flex");
        let burns = burns(&valid, x);
        close(&floats(ours), &floats(burns), &format!("{case}, inference"));
    }

    /// The output and every gradient of a convolution equal Burn's `Conv2d` up to the order of
    /// the sums, for the lab's three layers, an odd side, a batch that is no multiple of the
    /// groups, images of one channel, and Winograd's products (8 channels and more); on 2
    /// threads and 1, bit-identical.
    #[test]
    fn convolution_trains_and_infers_as_burns() {
        for ((batch, c_in, c_out, side), relu) in [
            ((7, 1, 32, 28), false),
            ((6, 32, 64, 14), false),
            ((3, 64, 128, 7), false),
            ((11, 3, 5, 5), false),
            ((5, 8, 6, 5), false),
            ((7, 1, 32, 28), true),
            ((4, 8, 3, 7), true),
            ((3, 64, 128, 7), true),
        ] {
            agrees_with_burns(
                (batch, c_in, c_out, side),
                (batch as u64, [1, 2, 3]),
                &format!("{batch}×{c_in}→{c_out} {side}², relu {relu}"),
                |conv, x| conv3x3(conv, x, relu),
                |conv, x| match relu {
                    true => burn::tensor::activation::relu(conv.forward(x)),
                    false => conv.forward(x),
                },
            );
        }
    }

    /// A convolution, relu and pooling as one operation equal Burn's three, forward and every
    /// gradient, through the direct one-channel convolution (digit-like images), the unfolded
    /// products (three channels) and Winograd's (8, 32 and 64), odd sides included; on 2
    /// threads and 1, bit-identical.
    #[test]
    fn convolution_relu_and_pooling_as_one_equal_burns() {
        for (batch, c_in, c_out, side) in [
            (7, 1, 32, 28),
            (6, 32, 64, 14),
            (3, 64, 128, 7),
            (5, 8, 6, 5),
            (9, 3, 4, 6),
            (5, 1, 20, 7),
        ] {
            agrees_with_burns(
                (batch, c_in, c_out, side),
                (batch as u64 + 100, [7, 8, 9]),
                &format!("{batch}×{c_in}→{c_out} {side}² pooled"),
                conv3x3_relu_pool,
                |conv, x| burns_pool(burn::tensor::activation::relu(conv.forward(x))),
            );
        }
    }

    /// In inference a pooled convolution through F(4×4) returns its output channels-last:
    /// the next pooled convolution reads it as it lies, and every other reader (a flatten, a
    /// convolution without pooling, a pooling) as Burn's dimensions say. All equal Burn's.
    #[test]
    fn channels_last_outputs_read_as_burns() {
        let device = Device::flex();
        device.seed(5);
        let layer = |c_in: usize, c_out: usize| {
            Conv2dConfig::new([c_in, c_out], [K, K])
                .with_padding(PaddingConfig2d::Same)
                .init(&device)
        };
        let (first, second) = (layer(8, 16), layer(16, 24));
        let x = Tensor::<4>::from_data(values([5, 8, 14, 14], 11), &device);
        let burns = |conv: &Conv2d, x: Tensor<4>| {
            burns_pool(burn::tensor::activation::relu(conv.forward(x)))
        };
        let ours = conv3x3_relu_pool(&first, &x).expect("flex");
        let primitive = ours.clone().try_into_primitive::<Flex>().expect("flex");
        assert!(!primitive.is_contiguous(), "a channels-last view");
        let reference = burns(&first, x);
        close(&floats(ours.clone()), &floats(reference.clone()), "first");
        let chained = conv3x3_relu_pool(&second, &ours).expect("flex");
        let flat = |t: Tensor<4>| -> Vec<f32> {
            let t: Tensor<2> = t.reshape([5, 24 * 4 * 4]);
            t.into_data().iter::<f32>().collect()
        };
        close(
            &flat(chained),
            &flat(burns(&second, reference.clone())),
            "chained",
        );
        let stored = conv3x3(&second, &ours, true).expect("flex");
        let want = burn::tensor::activation::relu(second.forward(reference.clone()));
        close(&floats(stored), &floats(want), "stored");
        let pooled = max_pool2x2(&ours).expect("flex");
        close(&floats(pooled), &floats(burns_pool(reference)), "pooled");
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
                let ours = |x: &Tensor<4>| conv3x3_relu_pool(&valid, x).unwrap();
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
                        true => conv3x3_relu_pool(&conv, &x).unwrap(),
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
