//! The first layer's product from the images' lit pixels: evaluation (with the bias and
//! the activation) and training (the product alone, in pixel order).

use super::*;

/// What the first layer's loop does with each output before storing it: nothing, or the
/// hidden layer's relu or leaky relu, when no batchnorm comes between (inference only). That
/// saves a pass over the outputs (docs/speed.md).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Then {
    Store,
    /// As Burn's flex backend: NaN stays NaN.
    Relu,
    LeakyRelu(f32),
}

/// In which order an output's terms may be summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sums {
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

pub(super) fn first_layer_on(
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
/// the 784 terms into blocks (most outputs differ in the last bits from this sum), so training
/// is not bit-identical to the dense path's; the order here is fixed, so a run repeats exactly.
pub fn first_product(images: &SparseImages, w: &HostWeights, out: &mut [f32]) {
    let zero = vec![0.0; w.d_out];
    let path = KernelPath::detect();
    first_layer_on(path, Sums::InPixelOrder, images, w, &zero, Then::Store, out)
}

// The loops' compiled versions are written out one function each. A generic trampoline taking
// the loop as a closure (`with_avx512(|| rows::<true>(…))`) compiled the closure without the
// features: fused multiply-adds became library calls and a test pass ran over 30× slower
// (docs/speed.md).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn rows_avx512(
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
pub(super) unsafe fn rows_avx2(
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
/// accumulators in memory, not in registers (a test pass 3× slower). Faster than one sum in
/// pixel order, in the first layer and over the whole test pass (docs/speed.md).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn halves_avx512(
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
/// than sharing a generic frame with a closure for the sums: that version compiled to slower
/// code for AVX-512, timed side by side (docs/speed.md).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn halves_avx2(
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
/// cache line per two multiply-adds (AVX-512), which bounds this loop. Tried and no faster:
/// four accumulator chains per image in pixel order (the same; evaluation's two halves,
/// [`halves_avx512`], do gain), software prefetch of the rows ahead (slower), merging
/// neighbouring images' lists so that one load serves two images (a quarter fewer loads, half
/// again as many multiply-adds: slower), and regrouping a few dozen images by pixel (the
/// accumulators leave the registers). Figures in docs/speed.md.
#[inline(always)]
pub(super) fn rows<const FUSED: bool>(
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
pub(super) fn rest_columns<const FUSED: bool>(
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
pub(super) fn finish(values: &mut [f32], then: Then) {
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
