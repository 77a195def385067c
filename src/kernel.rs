//! The first dense layer computed from the images' lit pixels, for evaluation and training.
//!
//! MNIST images are about 81% zero pixels (151 of 784 lit per test image on average), and the
//! first layer holds three quarters of a forward pass's arithmetic. Here it costs 5× less:
//! - evaluation: an evaluation set is fixed and resident, so its sparse form is built once;
//!   each evaluation then computes, per image, `bias + Σ value · W1[pixel, :]` over the lit
//!   pixels only ([`first_layer`]);
//! - training: each step builds its batch's sparse form, computes the product `x · W1` from it
//!   ([`first_product`]), and the weight gradient `xᵀ · grad` from the same pixels
//!   ([`weight_gradient`]). Burn's autodiff does the rest, the bias included, and Burn's
//!   optimizer applies the gradient.
//!
//! The rest of the network runs in Burn, the later dense layers' products scheduled by
//! [`dense`]. The first product's sums run in another order than Burn's dense product; the
//! weight gradient's in the same. Neither depends on the thread count, so a seed still gives
//! bit-identical training on one machine.
//!
//! Hand-written because no crate has this shape: generic CSR × dense products (`sprs`, or
//! PyTorch's) walk one output column at a time or do not vectorize for the CPU they run on,
//! and measured no faster than the dense product. Here the accumulators of a block of 64
//! outputs stay in registers across an image's lit pixels, and the loops are compiled three
//! times — AVX-512, AVX2 + FMA, and portable — with the one to run chosen when the program
//! starts from what the CPU reports (no build flag for the user's CPU). On 64-bit ARM (Apple
//! M-series included) the portable version runs with fused multiply-adds, which every such CPU
//! has; the compiler vectorizes it for NEON's 128-bit registers.

pub mod activation;
#[cfg(feature = "flex")]
pub mod dense;

use burn::tensor::Device;
use rayon::prelude::*;

/// Outputs of the first layer accumulated at once: 32 floats are 2 AVX-512 or 4 AVX2
/// registers. Measured on a Zen 4 with W1 in blocks ([`HostWeights`]): 32 columns 6.8 ms for
/// 10k images, 64 columns 7.6, 128 columns 7.9, 16 columns 12.4.
const BLOCK: usize = 32;

/// Outputs of the weight gradient accumulated at once: 64 floats, 4 AVX-512 registers.
const GRAD_BLOCK: usize = 64;

/// Images in compressed-row form: for image `r`, its lit pixels are
/// `pixel[start[r]..start[r + 1]]` with values `value[..]` (in [0, 1], as the dense input).
#[derive(Debug, Clone, Default)]
pub struct SparseImages {
    start: Vec<u32>,
    pixel: Vec<u16>,
    value: Vec<f32>,
    pixels: usize,
}

/// Bit q set where `chunk[q]` (at most 16 bytes) is not zero.
#[inline(always)]
fn lit_mask(chunk: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if let Ok(bytes) = <&[u8; 16]>::try_from(chunk) {
        use std::arch::x86_64::{
            _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_setzero_si128,
        };
        // SAFETY: SSE2 is part of x86-64; the load reads the 16 bytes of `bytes`.
        let dark = unsafe {
            let v = _mm_loadu_si128(bytes.as_ptr().cast());
            _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_setzero_si128()))
        };
        return !(dark as u32) & 0xffff;
    }
    chunk
        .iter()
        .enumerate()
        .fold(0u32, |m, (q, &v)| m | (u32::from(v != 0) << q))
}

impl SparseImages {
    /// From `rows` images of `pixels` bytes each, scaled by 1/255 as the dense path does.
    pub fn from_bytes(images: &[u8], pixels: usize) -> Self {
        Self::from_images(images.chunks_exact(pixels.max(1)), pixels)
    }

    /// The images at `indices` (a training batch) of `images`, `pixels` bytes each.
    pub fn gather(images: &[u8], indices: &[u32], pixels: usize) -> Self {
        let image = |i: &u32| &images[*i as usize * pixels..(*i as usize + 1) * pixels];
        // A batch is scattered over the 47 MB training set, so reading it one image after the
        // other waits on memory for each. Asking for all its cache lines first lets them
        // arrive together: 128 images in 70 µs instead of 86 on a Zen 4 (33 µs when they
        // are in the cache already).
        #[cfg(target_arch = "x86_64")]
        for i in indices {
            for line in image(i).chunks(64) {
                // SAFETY: a prefetch is only a hint; the address is inside `images`.
                unsafe {
                    std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                        line.as_ptr().cast(),
                    )
                };
            }
        }
        Self::from_images(indices.iter().map(image), pixels)
    }

    fn from_images<'a>(images: impl ExactSizeIterator<Item = &'a [u8]>, pixels: usize) -> Self {
        let mut start = Vec::with_capacity(images.len() + 1);
        // A quarter lit is room for MNIST's fifth without growing.
        let room = images.len() * pixels / 4;
        let (mut pixel, mut value) = (Vec::with_capacity(room), Vec::with_capacity(room));
        start.push(0);
        // One image's lit pixels, gathered in arrays of the image's size before they are
        // appended: pushing each onto the vectors checked their capacity every time.
        let (mut at, mut lit_value) = (vec![0u16; pixels], vec![0f32; pixels]);
        for image in images {
            // 16 pixels at a time: a mask of the lit ones from one vector compare, then one
            // step per lit pixel. Most chunks are dark and skipped. Measured on a Zen 4, 128
            // images already in the cache: 33 µs, against 59 µs with a branch per pixel.
            let mut n = 0;
            for (c, chunk) in image.chunks(16).enumerate() {
                let mut lit = lit_mask(chunk);
                while lit != 0 {
                    let q = lit.trailing_zeros() as usize;
                    lit &= lit - 1;
                    at[n] = (c * 16 + q) as u16;
                    lit_value[n] = chunk[q] as f32 * (1.0 / 255.0);
                    n += 1;
                }
            }
            pixel.extend_from_slice(&at[..n]);
            value.extend_from_slice(&lit_value[..n]);
            start.push(pixel.len() as u32);
        }
        Self {
            start,
            pixel,
            value,
            pixels,
        }
    }

    pub fn rows(&self) -> usize {
        self.start.len() - 1
    }

    /// Lit pixels over all pixels.
    pub fn density(&self) -> f64 {
        self.pixel.len() as f64 / (self.rows() * self.pixels).max(1) as f64
    }
}

/// Whether `device` computes on this machine's CPU, where these kernels can stand in for the
/// first layer's dense products. `MNIST_TRAIN_DENSE=1` turns them off everywhere, for
/// comparison; `MNIST_TRAIN_DENSE_EVAL=1` in evaluation only.
pub fn runs_on(device: &Device) -> bool {
    let device = device.clone().without_autodiff();
    let cpu = {
        #[cfg(feature = "flex")]
        let flex = device == Device::flex();
        #[cfg(not(feature = "flex"))]
        let flex = false;
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        // Burn's ndarray backend, deprecated upstream, still one of ours.
        let ndarray = device == Device::ndarray();
        #[cfg(not(feature = "ndarray"))]
        let ndarray = false;
        flex || ndarray
    };
    cpu && std::env::var_os("MNIST_TRAIN_DENSE").is_none()
}

/// Whether training steps on `device` take the first layer's product and weight gradient from
/// [`first_product`] and [`weight_gradient`]: on Burn's flex backend. The ndarray backend reads
/// a weight matrix back in 5.5 ms (flex: 0.04 ms), which a step would pay twice for the 0.5 ms
/// the kernels save.
pub fn trains_on(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    {
        runs_on(device) && device.clone().without_autodiff() == Device::flex()
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
        false
    }
}

/// Whether evaluations on `device` take their first layer from [`first_layer`].
pub fn evaluates_on(device: &Device) -> bool {
    runs_on(device) && std::env::var_os("MNIST_TRAIN_DENSE_EVAL").is_none()
}

/// The first layer's weight matrix on the host, laid out for [`first_layer`]: in blocks of
/// [`BLOCK`] columns, each block a contiguous `[pixels, BLOCK]` matrix starting at a 64-byte
/// boundary, then the columns past the last whole block (row-major).
///
/// An image's lit pixels come in runs of neighbours along its strokes; in blocks, their rows
/// are neighbours in memory too, which the CPU's prefetchers follow. Measured on a Zen 4: 10k
/// images in 6.8 ms against 8.4 ms from the row-major matrix, which itself was 20% slower
/// still when 32 bytes off a cache line.
pub struct HostWeights {
    lines: Vec<Line>,
    rest: Vec<f32>,
    pixels: usize,
    d_out: usize,
}

/// 64 bytes at a 64-byte boundary. No crate in our tree offers an aligned `Vec`; this is all
/// of one.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([f32; 16]);

thread_local! {
    /// The last buffer dropped on this thread, for the next copy: a fresh 800 KB allocation is
    /// fresh pages, and faulting them in cost more than the copy.
    static SPARE: std::cell::RefCell<Vec<Line>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl HostWeights {
    /// From a `[pixels, d_out]` row-major matrix (Burn's layout of a linear layer's weight).
    pub fn new(values: &[f32], pixels: usize, d_out: usize) -> Self {
        assert_eq!(values.len(), pixels * d_out, "weight shape");
        let blocks = d_out / BLOCK;
        let mut lines = SPARE.with(|spare| std::mem::take(&mut *spare.borrow_mut()));
        lines.clear();
        lines.resize((blocks * pixels * BLOCK).div_ceil(16), Line([0.0; 16]));
        let mut weights = Self {
            lines,
            rest: Vec::with_capacity(pixels * (d_out - blocks * BLOCK)),
            pixels,
            d_out,
        };
        let dst = weights.blocks_mut();
        for b in 0..blocks {
            for p in 0..pixels {
                let at = (b * pixels + p) * BLOCK;
                dst[at..at + BLOCK]
                    .copy_from_slice(&values[p * d_out + b * BLOCK..p * d_out + (b + 1) * BLOCK]);
            }
        }
        for row in values.chunks_exact(d_out.max(1)) {
            weights.rest.extend_from_slice(&row[blocks * BLOCK..]);
        }
        weights
    }

    /// Block `b`: `[pixels, BLOCK]`, row-major.
    fn block(&self, b: usize) -> &[f32] {
        let len = self.pixels * BLOCK;
        &self.all_blocks()[b * len..(b + 1) * len]
    }

    fn all_blocks(&self) -> &[f32] {
        // SAFETY: `Line` is `repr(C)` over 16 f32s with no padding, so `lines` is
        // `16 * lines.len()` contiguous, initialized f32s.
        unsafe {
            std::slice::from_raw_parts(self.lines.as_ptr().cast::<f32>(), self.lines.len() * 16)
        }
    }

    fn blocks_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `all_blocks`.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.lines.as_mut_ptr().cast::<f32>(),
                self.lines.len() * 16,
            )
        }
    }

    /// Output width.
    pub fn width(&self) -> usize {
        self.d_out
    }
}

impl Drop for HostWeights {
    fn drop(&mut self) {
        let lines = std::mem::take(&mut self.lines);
        SPARE.with(|spare| *spare.borrow_mut() = lines);
    }
}

/// Which compiled version of the loop this CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelPath {
    Avx512,
    Avx2,
    /// ARM's vector unit, which every 64-bit ARM CPU (Apple M-series included) has: the
    /// portable loop with fused multiply-adds, vectorized by the compiler.
    Neon,
    Portable,
}

impl KernelPath {
    /// The best version this CPU can run, unless `MNIST_TRAIN_KERNEL` (`avx512`, `avx2`,
    /// `portable`) asks for a lesser one it can also run, to compare them on one machine; a
    /// value it cannot run is ignored (`bench` names the path taken).
    pub fn detect() -> Self {
        static PATH: std::sync::OnceLock<KernelPath> = std::sync::OnceLock::new();
        *PATH.get_or_init(|| {
            let supported = Self::supported();
            std::env::var("MNIST_TRAIN_KERNEL")
                .ok()
                .and_then(|want| supported.iter().copied().find(|p| p.key() == want))
                .unwrap_or(supported[0])
        })
    }

    /// Every version this CPU can run, the best first.
    pub fn supported() -> Vec<KernelPath> {
        let mut paths = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                paths.push(KernelPath::Avx512);
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                paths.push(KernelPath::Avx2);
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("neon") {
                paths.push(KernelPath::Neon);
            }
        }
        paths.push(KernelPath::Portable);
        paths
    }

    /// Whether this version multiplies and adds in one rounding.
    pub fn fused(self) -> bool {
        self != KernelPath::Portable
    }

    fn key(self) -> &'static str {
        match self {
            KernelPath::Avx512 => "avx512",
            KernelPath::Avx2 => "avx2",
            KernelPath::Neon => "neon",
            KernelPath::Portable => "portable",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KernelPath::Avx512 => "avx512",
            KernelPath::Avx2 => "avx2+fma",
            KernelPath::Neon => "neon",
            KernelPath::Portable => "portable",
        }
    }
}

/// What the first layer's loop does with each output before storing it: nothing, or the
/// hidden layer's relu or leaky relu, when no batchnorm comes between (inference only). That
/// saves a pass over the outputs: about 3% of a test pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Then {
    Store,
    /// As Burn's flex backend: NaN stays NaN.
    Relu,
    LeakyRelu(f32),
}

/// In which order an output's terms may be summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sums {
    /// From the bias (or zero), one multiply-add per lit pixel in increasing order: training,
    /// whose bits must not depend on anything but the seed and the machine.
    InPixelOrder,
    /// On AVX-512 and AVX2, the first and second half of an image's lit pixels in two sums
    /// added at the end (elsewhere in pixel order): twice the independent multiply-adds in
    /// flight. Evaluation, which may reorder sums.
    TwoHalves,
}

/// `out[r, :] = then(bias + images[r] · w)` for every image, `out` being `[rows, d_out]`, for
/// evaluation: the sums in two halves where the CPU gains from it ([`Sums::TwoHalves`]).
/// Rows are split over rayon's threads.
pub fn first_layer(
    images: &SparseImages,
    w: &HostWeights,
    bias: &[f32],
    then: Then,
    out: &mut [f32],
) {
    first_layer_on(
        KernelPath::detect(),
        Sums::TwoHalves,
        images,
        w,
        bias,
        then,
        out,
    )
}

fn first_layer_on(
    path: KernelPath,
    sums: Sums,
    images: &SparseImages,
    w: &HostWeights,
    bias: &[f32],
    then: Then,
    out: &mut [f32],
) {
    let d_out = bias.len();
    assert_eq!((w.pixels, w.d_out), (images.pixels, d_out), "weight shape");
    assert_eq!(out.len(), images.rows() * d_out, "output shape");
    // Enough rows per task to amortize the task, few enough to balance two to eight threads.
    let rows_per_task = 64;
    out.par_chunks_mut(rows_per_task * d_out)
        .enumerate()
        .for_each(|(task, out)| {
            let first = task * rows_per_task;
            match (path, sums) {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `detect` found the CPU features these versions are compiled for.
                (KernelPath::Avx512, Sums::TwoHalves) => unsafe {
                    halves_avx512(images, first, w, bias, then, out)
                },
                #[cfg(target_arch = "x86_64")]
                (KernelPath::Avx2, Sums::TwoHalves) => unsafe {
                    halves_avx2(images, first, w, bias, then, out)
                },
                #[cfg(target_arch = "x86_64")]
                (KernelPath::Avx512, _) => unsafe {
                    rows_avx512(images, first, w, bias, then, out)
                },
                #[cfg(target_arch = "x86_64")]
                (KernelPath::Avx2, _) => unsafe { rows_avx2(images, first, w, bias, then, out) },
                (KernelPath::Neon, _) => rows::<true>(images, first, w, bias, then, out),
                _ => rows::<false>(images, first, w, bias, then, out),
            }
        });
}

/// `out = images · w` without a bias, for training: each output is summed from zero over the
/// image's lit pixels in increasing order, one multiply-add each. Burn's dense product splits
/// the 784 terms into blocks (on the Zen 4 measured, most outputs differ in the last bits from
/// this sum), so training is not bit-identical to the dense path's; the order here is fixed,
/// so a run repeats exactly.
pub fn first_product(images: &SparseImages, w: &HostWeights, out: &mut [f32]) {
    let zero = vec![0.0; w.d_out];
    let path = KernelPath::detect();
    first_layer_on(path, Sums::InPixelOrder, images, w, &zero, Then::Store, out)
}

/// The first layer's weight gradient `imagesᵀ · grad` (`[pixels, d_out]`, row-major) for a
/// batch whose first-layer outputs have gradient `grad` (`[rows, d_out]`). Each entry sums
/// over the batch's images in order, as the dense product `xᵀ · grad` does; rows of pixels
/// no image lit are zero. Split over rayon's threads by pixel, so the sums do not depend on
/// the thread count.
pub fn weight_gradient(images: &SparseImages, grad: &[f32], d_out: usize, out: &mut [f32]) {
    weight_gradient_on(KernelPath::detect(), images, grad, d_out, out)
}

fn weight_gradient_on(
    path: KernelPath,
    images: &SparseImages,
    grad: &[f32],
    d_out: usize,
    out: &mut [f32],
) {
    let pixels = images.pixels;
    assert_eq!(grad.len(), images.rows() * d_out, "gradient shape");
    assert_eq!(out.len(), pixels * d_out, "output shape");
    // Each task takes a band of pixels and builds its own part of the batch by pixel, so that
    // this index is built on both threads too (on one it took 50 µs of the gradient's 200).
    let pixels_per_task = 56;
    out.par_chunks_mut(pixels_per_task * d_out)
        .enumerate()
        .for_each(|(task, out)| {
            let first = task * pixels_per_task;
            let band = ByPixel::of(images, first, out.len() / d_out);
            match path {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `detect` found the CPU features these versions are compiled for.
                KernelPath::Avx512 => unsafe { grad_avx512(&band, grad, d_out, out) },
                #[cfg(target_arch = "x86_64")]
                KernelPath::Avx2 => unsafe { grad_avx2(&band, grad, d_out, out) },
                KernelPath::Neon => grad_rows::<true>(&band, grad, d_out, out),
                _ => grad_rows::<false>(&band, grad, d_out, out),
            }
        });
}

/// The images of a batch by pixel for a band of pixels `first..first + n`: the band's `j`-th
/// pixel was lit in images `image[start[j]..start[j + 1]]`, in the batch's order, with values
/// `value[..]`.
struct ByPixel {
    start: Vec<u32>,
    image: Vec<u32>,
    value: Vec<f32>,
}

impl ByPixel {
    fn of(images: &SparseImages, first: usize, n: usize) -> Self {
        let end = first + n;
        // An image's lit pixels are in increasing order: those of the band are one run.
        let runs: Vec<(usize, usize)> = (0..images.rows())
            .map(|r| {
                let (a, b) = (images.start[r] as usize, images.start[r + 1] as usize);
                let list = &images.pixel[a..b];
                let from = list.partition_point(|&p| (p as usize) < first);
                let to = from + list[from..].partition_point(|&p| (p as usize) < end);
                (a + from, a + to)
            })
            .collect();
        let mut start = vec![0u32; n + 1];
        for &(a, b) in &runs {
            for &p in &images.pixel[a..b] {
                start[p as usize - first + 1] += 1;
            }
        }
        for j in 0..n {
            start[j + 1] += start[j];
        }
        let mut fill = start.clone();
        let total = start[n] as usize;
        let (mut image, mut value) = (vec![0u32; total], vec![0f32; total]);
        for (r, &(a, b)) in runs.iter().enumerate() {
            for k in a..b {
                let slot = &mut fill[images.pixel[k] as usize - first];
                image[*slot as usize] = r as u32;
                value[*slot as usize] = images.value[k];
                *slot += 1;
            }
        }
        Self {
            start,
            image,
            value,
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn grad_avx512(band: &ByPixel, grad: &[f32], d_out: usize, out: &mut [f32]) {
    grad_rows::<true>(band, grad, d_out, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn grad_avx2(band: &ByPixel, grad: &[f32], d_out: usize, out: &mut [f32]) {
    grad_rows::<true>(band, grad, d_out, out)
}

/// The weight gradient's rows of a band of pixels: per pixel and block of outputs, the
/// accumulators stay in registers across the images that lit the pixel.
#[inline(always)]
fn grad_rows<const FUSED: bool>(band: &ByPixel, grad: &[f32], d_out: usize, out: &mut [f32]) {
    for (j, out_row) in out.chunks_exact_mut(d_out).enumerate() {
        let (a, b) = (band.start[j] as usize, band.start[j + 1] as usize);
        let (images, values) = (&band.image[a..b], &band.value[a..b]);
        let mut col = 0;
        while col + GRAD_BLOCK <= d_out {
            let mut acc = [0f32; GRAD_BLOCK];
            for (&r, &v) in images.iter().zip(values) {
                let start = r as usize * d_out + col;
                let row: &[f32; GRAD_BLOCK] =
                    grad[start..start + GRAD_BLOCK].try_into().expect("a block");
                for (a, &x) in acc.iter_mut().zip(row) {
                    *a = if FUSED { v.mul_add(x, *a) } else { *a + v * x };
                }
            }
            out_row[col..col + GRAD_BLOCK].copy_from_slice(&acc);
            col += GRAD_BLOCK;
        }
        for (c, o) in out_row.iter_mut().enumerate().skip(col) {
            let mut acc = 0f32;
            for (&r, &v) in images.iter().zip(values) {
                let x = grad[r as usize * d_out + c];
                acc = if FUSED {
                    v.mul_add(x, acc)
                } else {
                    acc + v * x
                };
            }
            *o = acc;
        }
    }
}

// The loops' compiled versions are written out one function each. A generic trampoline taking
// the loop as a closure (`with_avx512(|| rows::<true>(…))`) compiled the closure without the
// features: fused multiply-adds became library calls and a test pass took 465 ms, not 14.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn rows_avx512(
    images: &SparseImages,
    first: usize,
    w: &HostWeights,
    bias: &[f32],
    then: Then,
    out: &mut [f32],
) {
    rows::<true>(images, first, w, bias, then, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2(
    images: &SparseImages,
    first: usize,
    w: &HostWeights,
    bias: &[f32],
    then: Then,
    out: &mut [f32],
) {
    rows::<true>(images, first, w, bias, then, out)
}

/// The loop in two halves ([`Sums::TwoHalves`]), with AVX-512: per image and block of
/// [`BLOCK`] outputs, two sums of two registers each, over the first and the second half of
/// the image's lit pixels. Written with intrinsics because the compiler kept two arrays of
/// accumulators in memory, not in registers (a test pass 3× slower). Measured on a Zen 4: the
/// first layer of a 10k test pass in 6.1–6.6 ms against 6.8–7.6 ms in pixel order, the pass
/// 4% faster.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn halves_avx512(
    images: &SparseImages,
    first: usize,
    w: &HostWeights,
    bias: &[f32],
    then: Then,
    out: &mut [f32],
) {
    use std::arch::x86_64::*;
    let d_out = bias.len();
    let rows = out.len() / d_out.max(1);
    for col in (0..d_out / BLOCK).map(|b| b * BLOCK) {
        let block = w.block(col / BLOCK);
        for i in 0..rows {
            let r = first + i;
            let (a, b) = (images.start[r] as usize, images.start[r + 1] as usize);
            let (pixels, values) = (&images.pixel[a..b], &images.value[a..b]);
            let half = pixels.len() / 2;
            let row = |k: usize| {
                let start = pixels[k] as usize * BLOCK;
                let row: &[f32; BLOCK] = block[start..start + BLOCK].try_into().expect("a block");
                (_mm512_set1_ps(values[k]), row.as_ptr())
            };
            let mut acc = [0f32; BLOCK];
            // SAFETY: every load reads 16 f32 inside `bias[col..col + BLOCK]` or a `row` of
            // BLOCK = 32 f32; the stores write 16 f32 inside `acc`.
            unsafe {
                let mut x0 = _mm512_loadu_ps(bias[col..].as_ptr());
                let mut x1 = _mm512_loadu_ps(bias[col + 16..col + BLOCK].as_ptr());
                let (mut y0, mut y1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
                for k in 0..half {
                    let (u, p) = row(k);
                    let (v, q) = row(half + k);
                    x0 = _mm512_fmadd_ps(u, _mm512_loadu_ps(p), x0);
                    x1 = _mm512_fmadd_ps(u, _mm512_loadu_ps(p.add(16)), x1);
                    y0 = _mm512_fmadd_ps(v, _mm512_loadu_ps(q), y0);
                    y1 = _mm512_fmadd_ps(v, _mm512_loadu_ps(q.add(16)), y1);
                }
                if pixels.len() % 2 == 1 {
                    let (v, q) = row(pixels.len() - 1);
                    y0 = _mm512_fmadd_ps(v, _mm512_loadu_ps(q), y0);
                    y1 = _mm512_fmadd_ps(v, _mm512_loadu_ps(q.add(16)), y1);
                }
                _mm512_storeu_ps(acc.as_mut_ptr(), _mm512_add_ps(x0, y0));
                _mm512_storeu_ps(acc[16..].as_mut_ptr(), _mm512_add_ps(x1, y1));
            }
            finish(&mut acc, then);
            out[i * d_out + col..i * d_out + col + BLOCK].copy_from_slice(&acc);
        }
    }
    rest_columns::<true>(images, first, w, bias, then, out);
}

/// [`halves_avx512`] with AVX2: two sums of four registers each. Written out beside it rather
/// than sharing a generic frame with a closure for the sums: that version compiled slower for
/// AVX-512 (the first layer of a test pass in 6.5 ms against 6.0–6.1, measured side by side).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn halves_avx2(
    images: &SparseImages,
    first: usize,
    w: &HostWeights,
    bias: &[f32],
    then: Then,
    out: &mut [f32],
) {
    use std::arch::x86_64::*;
    let d_out = bias.len();
    let rows = out.len() / d_out.max(1);
    for col in (0..d_out / BLOCK).map(|b| b * BLOCK) {
        let block = w.block(col / BLOCK);
        for i in 0..rows {
            let r = first + i;
            let (a, b) = (images.start[r] as usize, images.start[r + 1] as usize);
            let (pixels, values) = (&images.pixel[a..b], &images.value[a..b]);
            let half = pixels.len() / 2;
            let row = |k: usize| {
                let start = pixels[k] as usize * BLOCK;
                let row: &[f32; BLOCK] = block[start..start + BLOCK].try_into().expect("a block");
                (_mm256_set1_ps(values[k]), row.as_ptr())
            };
            let mut acc = [0f32; BLOCK];
            // SAFETY: every load reads 8 f32 inside `bias[col..col + BLOCK]` or a `row` of
            // BLOCK = 32 f32; the stores write 8 f32 inside `acc`.
            unsafe {
                let b = bias[col..col + BLOCK].as_ptr();
                let mut x = [0, 8, 16, 24].map(|j| _mm256_loadu_ps(b.add(j)));
                let mut y = [_mm256_setzero_ps(); 4];
                for k in 0..half {
                    let (u, p) = row(k);
                    let (v, q) = row(half + k);
                    for (j, (x, y)) in x.iter_mut().zip(&mut y).enumerate() {
                        *x = _mm256_fmadd_ps(u, _mm256_loadu_ps(p.add(8 * j)), *x);
                        *y = _mm256_fmadd_ps(v, _mm256_loadu_ps(q.add(8 * j)), *y);
                    }
                }
                if pixels.len() % 2 == 1 {
                    let (v, q) = row(pixels.len() - 1);
                    for (j, y) in y.iter_mut().enumerate() {
                        *y = _mm256_fmadd_ps(v, _mm256_loadu_ps(q.add(8 * j)), *y);
                    }
                }
                for (j, (x, y)) in x.iter().zip(&y).enumerate() {
                    _mm256_storeu_ps(acc[8 * j..].as_mut_ptr(), _mm256_add_ps(*x, *y));
                }
            }
            finish(&mut acc, then);
            out[i * d_out + col..i * d_out + col + BLOCK].copy_from_slice(&acc);
        }
    }
    rest_columns::<true>(images, first, w, bias, then, out);
}

/// The loop, inlined into each compiled version. `FUSED`: multiply-add in one instruction,
/// where the CPU has one (elsewhere `mul_add` would be a slow library call).
///
/// Per image and block of outputs, the rows of W1 for its lit pixels stream from L2: one
/// cache line per two multiply-adds (AVX-512), which bounds this loop. Tried on a Zen 4 and
/// no faster: four accumulator chains per image in pixel order (the same; evaluation's two
/// halves, [`halves_avx512`], gain 9%), software prefetch of the rows ahead (20% slower),
/// merging neighbouring
/// images' lists so that one load serves two images (a quarter fewer loads, half again as many
/// multiply-adds: 9% slower), and regrouping a few dozen images by pixel (the accumulators
/// leave the registers).
#[inline(always)]
fn rows<const FUSED: bool>(
    images: &SparseImages,
    first: usize,
    w: &HostWeights,
    bias: &[f32],
    then: Then,
    out: &mut [f32],
) {
    let d_out = bias.len();
    let rows = out.len() / d_out.max(1);
    // Column blocks outside, images inside: one block of W1 (100 KB) serves all the task's
    // images while it is in L2, instead of all of W1 (800 KB, more than some L2s) per image.
    let mut col = 0;
    while col + BLOCK <= d_out {
        let block = w.block(col / BLOCK);
        for i in 0..rows {
            let r = first + i;
            let (a, b) = (images.start[r] as usize, images.start[r + 1] as usize);
            let (pixels, values) = (&images.pixel[a..b], &images.value[a..b]);
            let mut acc: [f32; BLOCK] = bias[col..col + BLOCK].try_into().expect("a block");
            for (&p, &v) in pixels.iter().zip(values) {
                let start = p as usize * BLOCK;
                let row: &[f32; BLOCK] = block[start..start + BLOCK].try_into().expect("a block");
                for (a, &x) in acc.iter_mut().zip(row) {
                    *a = if FUSED { v.mul_add(x, *a) } else { *a + v * x };
                }
            }
            finish(&mut acc, then);
            out[i * d_out + col..i * d_out + col + BLOCK].copy_from_slice(&acc);
        }
        col += BLOCK;
    }
    rest_columns::<FUSED>(images, first, w, bias, then, out);
}

/// The outputs past the last whole block of [`BLOCK`] (layer widths that are not a multiple of
/// it), one at a time, in pixel order.
#[inline(always)]
fn rest_columns<const FUSED: bool>(
    images: &SparseImages,
    first: usize,
    w: &HostWeights,
    bias: &[f32],
    then: Then,
    out: &mut [f32],
) {
    let d_out = bias.len();
    let col = d_out / BLOCK * BLOCK;
    let rest = d_out - col;
    if rest == 0 {
        return;
    }
    for (i, out_row) in out.chunks_exact_mut(d_out).enumerate() {
        let r = first + i;
        let (a, b) = (images.start[r] as usize, images.start[r + 1] as usize);
        let (pixels, values) = (&images.pixel[a..b], &images.value[a..b]);
        for (c, o) in out_row.iter_mut().enumerate().skip(col) {
            let mut acc = bias[c];
            for (&p, &v) in pixels.iter().zip(values) {
                let x = w.rest[p as usize * rest + c - col];
                acc = if FUSED {
                    v.mul_add(x, acc)
                } else {
                    acc + v * x
                };
            }
            let mut one = [acc];
            finish(&mut one, then);
            *o = one[0];
        }
    }
}

#[inline(always)]
fn finish(values: &mut [f32], then: Then) {
    match then {
        Then::Store => {}
        Then::Relu => {
            for v in values {
                *v = if v.is_nan() || *v > 0.0 { *v } else { 0.0 };
            }
        }
        Then::LeakyRelu(slope) => {
            for v in values {
                *v = if *v >= 0.0 { *v } else { *v * slope };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rows` images of 784 pixels, a fifth of them lit, and a dark band of 40 pixels in each
    /// (the fast scan skips dark runs of 16).
    fn images(rows: usize) -> Vec<u8> {
        (0..rows * 784)
            .map(|i| {
                if (i * 7919) % 5 == 0 && !(300..340).contains(&(i % 784)) {
                    (i % 251) as u8
                } else {
                    0
                }
            })
            .collect()
    }

    /// Every version of the loops this CPU runs (on an AVX-512 machine: AVX-512, AVX2 and the
    /// portable one), with each width.
    fn paths_and_widths(widths: &[usize]) -> Vec<(KernelPath, usize)> {
        let paths = KernelPath::supported();
        assert_eq!(paths.last(), Some(&KernelPath::Portable));
        paths
            .into_iter()
            .flat_map(|p| widths.iter().map(move |&w| (p, w)))
            .collect()
    }

    /// The reference sum: `Σ (x / 255) · y` over the pairs whose pixel `x` is lit, in order,
    /// from zero, one multiply-add each (fused where the loop's version fuses).
    fn in_order(fused: bool, pairs: impl Iterator<Item = (u8, f32)>) -> f32 {
        pairs.filter(|&(x, _)| x != 0).fold(0.0, |acc, (x, y)| {
            let v = x as f32 * (1.0 / 255.0);
            if fused {
                v.mul_add(y, acc)
            } else {
                acc + v * y
            }
        })
    }

    fn weights(pixels: usize, d_out: usize) -> Vec<f32> {
        (0..pixels * d_out)
            .map(|i| ((i * 37) % 101) as f32 / 101.0 - 0.5)
            .collect()
    }

    /// A batch gathered by index is the same as those images read one after another, and every
    /// lit pixel is found.
    #[test]
    fn gather_takes_the_indexed_images() {
        let all = images(50);
        let indices = [7u32, 0, 49, 7, 23];
        let picked: Vec<u8> = indices
            .iter()
            .flat_map(|&i| all[i as usize * 784..(i as usize + 1) * 784].to_vec())
            .collect();
        let a = SparseImages::gather(&all, &indices, 784);
        let b = SparseImages::from_bytes(&picked, 784);
        assert_eq!((a.start.clone(), a.pixel.clone()), (b.start, b.pixel));
        assert_eq!(a.value, b.value);
        assert_eq!(a.rows(), 5);
        let lit = picked.iter().filter(|&&v| v != 0).count();
        assert_eq!(a.pixel.len(), lit);
        for r in 0..5 {
            for k in a.start[r] as usize..a.start[r + 1] as usize {
                let v = picked[r * 784 + a.pixel[k] as usize];
                assert_eq!(a.value[k], v as f32 * (1.0 / 255.0));
            }
        }
    }

    /// The training product: no bias, each output summed from zero in pixel order with one
    /// multiply-add per lit pixel (checked against exactly that, bit for bit), on every
    /// version of the loop this CPU runs.
    #[test]
    fn first_product_sums_in_pixel_order() {
        let (rows, pixels) = (130, 784);
        let all = images(rows);
        let sparse = SparseImages::from_bytes(&all, pixels);
        for (path, d_out) in paths_and_widths(&[256, 100]) {
            let fused = path.fused();
            let w = weights(pixels, d_out);
            let mut out = vec![1f32; rows * d_out];
            let host = HostWeights::new(&w, pixels, d_out);
            first_layer_on(
                path,
                Sums::InPixelOrder,
                &sparse,
                &host,
                &vec![0.0; d_out],
                Then::Store,
                &mut out,
            );
            for r in 0..rows {
                for c in 0..d_out {
                    let terms = (0..pixels).map(|p| (all[r * pixels + p], w[p * d_out + c]));
                    let want = in_order(fused, terms);
                    assert_eq!(
                        out[r * d_out + c].to_bits(),
                        want.to_bits(),
                        "{path:?} {r} {c}"
                    );
                }
            }
        }
    }

    /// The weight gradient `xᵀ · grad`: each entry summed over the images in order (bit for
    /// bit), rows of pixels no image lit exactly zero, and the same with any thread count.
    #[test]
    fn weight_gradient_sums_over_the_batch_in_order() {
        let (rows, pixels) = (128, 784);
        let all = images(rows);
        let sparse = SparseImages::from_bytes(&all, pixels);
        for (path, d_out) in paths_and_widths(&[256, 70]) {
            let fused = path.fused();
            let grad: Vec<f32> = (0..rows * d_out)
                .map(|i| ((i * 53) % 97) as f32 / 97.0 - 0.5)
                .collect();
            let mut out = vec![1f32; pixels * d_out];
            weight_gradient_on(path, &sparse, &grad, d_out, &mut out);
            for p in 0..pixels {
                for c in 0..d_out {
                    let terms = (0..rows).map(|r| (all[r * pixels + p], grad[r * d_out + c]));
                    let want = in_order(fused, terms);
                    assert_eq!(
                        out[p * d_out + c].to_bits(),
                        want.to_bits(),
                        "{path:?} {p} {c}"
                    );
                }
            }
            assert!(out[320 * d_out..321 * d_out].iter().all(|&v| v == 0.0));
            let one_thread = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .expect("a pool");
            let mut again = vec![0f32; pixels * d_out];
            one_thread.install(|| weight_gradient_on(path, &sparse, &grad, d_out, &mut again));
            assert_eq!(out, again);
        }
    }

    /// Against the dense product in f64, for widths with and without a remainder block, in
    /// either order of the sums; images with an odd and an even number of lit pixels.
    #[test]
    fn matches_the_dense_product() {
        let (rows, pixels) = (130, 784);
        let images = images(rows);
        let sparse = SparseImages::from_bytes(&images, pixels);
        assert_eq!(sparse.rows(), rows);
        assert!(
            (sparse.density() - 0.19).abs() < 0.02,
            "{}",
            sparse.density()
        );
        let lit = |r: usize| sparse.start[r + 1] - sparse.start[r];
        assert!((0..rows).any(|r| lit(r) % 2 == 1) && (0..rows).any(|r| lit(r) % 2 == 0));
        for (path, d_out) in paths_and_widths(&[256, 100, 10]) {
            for sums in [Sums::InPixelOrder, Sums::TwoHalves] {
                let w = weights(pixels, d_out);
                let bias: Vec<f32> = (0..d_out).map(|j| j as f32 * 0.01).collect();
                let host = HostWeights::new(&w, pixels, d_out);
                let layer = |then| {
                    let mut out = vec![0f32; rows * d_out];
                    first_layer_on(path, sums, &sparse, &host, &bias, then, &mut out);
                    out
                };
                let (out, relu, leaky) = (
                    layer(Then::Store),
                    layer(Then::Relu),
                    layer(Then::LeakyRelu(0.1)),
                );
                for ((&x, &r), &l) in out.iter().zip(&relu).zip(&leaky) {
                    assert_eq!(r, x.max(0.0));
                    assert_eq!(l, if x >= 0.0 { x } else { x * 0.1 });
                }
                for r in 0..rows {
                    for c in 0..d_out {
                        let want = bias[c] as f64
                            + (0..pixels)
                                .map(|p| {
                                    images[r * pixels + p] as f64 / 255.0 * w[p * d_out + c] as f64
                                })
                                .sum::<f64>();
                        let got = out[r * d_out + c] as f64;
                        assert!(
                            (got - want).abs() < 1e-4,
                            "{path:?} {sums:?} row {r} col {c}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
