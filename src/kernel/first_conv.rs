//! The CNN's first convolution (one input channel, 3×3, SAME) with its relu and 2×2 pooling,
//! computed directly, window by window, over the windows that see a lit pixel.
//!
//! A pooling window's four outputs read a 4×4 patch of the image. About four in five of
//! MNIST's pixels are zero, and most patches are all zero: there each output is the bias, and
//! the window is `relu(bias)` with no multiplication. The other windows take 36 multiply-adds
//! a channel, sixteen channels to a vector with the accumulators in registers. Over unfolded
//! neighbourhoods, every pixel took a product of 9 terms a channel, with the unfolded columns
//! and the full-size output written and read back. Hand-written: no crate offers a
//! convolution that skips zero inputs.

use super::conv::{activated, store_window};
use super::cpu::vectorized;

/// Output channels computed at once: one AVX-512 register, two AVX2 ones.
const LANES: usize = 16;

/// Floats of the zero-bordered copy of an image of `height × width` that [`conv_relu_pool`]
/// reads its patches from: one row and column of zeros before it, and after it enough for the
/// last window's patch.
pub(super) fn padded_len(height: usize, width: usize) -> usize {
    (2 * height.div_ceil(2) + 2) * (2 * width.div_ceil(2) + 2)
}

/// The kernels as [`conv_relu_pool`] reads them, `[tap][out]`, from Burn's `[out][1][3][3]`.
pub(super) fn taps(weight: &[f32], c_out: usize) -> Vec<f32> {
    let mut taps = vec![0f32; 9 * c_out];
    for (o, kernel) in weight.chunks_exact(9).take(c_out).enumerate() {
        for (t, &w) in kernel.iter().enumerate() {
            taps[t * c_out + o] = w;
        }
    }
    taps
}

/// Where [`conv_relu_pool`] writes an image's pooled outputs: `out` (`[y][x][channel]` with
/// `channels_last`, else `[channel][y][x]`), and which pixel of each window held its maximum
/// into `argmax`, at the same places, unless it is empty.
pub(super) struct Pooled<'a> {
    pub out: &'a mut [f32],
    pub argmax: &'a mut [u8],
    pub channels_last: bool,
}

vectorized! {
    /// One image's (`height × width`) convolution with `taps` (see [`taps`]) and `bias`,
    /// through a relu and the 2×2 max-pooling (Keras' SAME: an odd side's last window holds its
    /// last pixel alone; as [`super::conv`]'s `window` numbers a window's pixels, the first of
    /// equal ones) into `to`. `padded`: scratch of [`padded_len`] floats, zero where no pixel
    /// goes (the caller zeroes it once for images of one size).
    pub(super) fn conv_relu_pool(
        image: &[f32],
        dims: (usize, usize),
        taps: &[f32],
        bias: &[f32],
        padded: &mut [f32],
        to: Pooled,
    ) {
        let (height, width) = dims;
        let stride = 2 * width.div_ceil(2) + 2;
        let padded = &mut padded[..padded_len(height, width)];
        super::winograd::channels_last(image, (1, height, width), true, stride, padded);
        assert_eq!(taps.len(), 9 * bias.len());
        let fused = super::KernelPath::detect().fused();
        match (fused, to.argmax.is_empty()) {
            (true, true) => windows::<true, false>(padded, dims, taps, bias, to),
            (true, false) => windows::<true, true>(padded, dims, taps, bias, to),
            (false, true) => windows::<false, false>(padded, dims, taps, bias, to),
            (false, false) => windows::<false, true>(padded, dims, taps, bias, to),
        }
    }
}

/// [`conv_relu_pool`]'s windows, from the zero-bordered image `padded`; multiply-adds in one
/// rounding with `FUSED`, and the argmax too with `ARGMAX`.
#[inline(always)]
fn windows<const FUSED: bool, const ARGMAX: bool>(
    padded: &[f32],
    (height, width): (usize, usize),
    taps: &[f32],
    bias: &[f32],
    to: Pooled,
) {
    let (ph, pw) = (height.div_ceil(2), width.div_ceil(2));
    let stride = 2 * pw + 2;
    let c_out = bias.len();
    for py in 0..ph {
        for px in 0..pw {
            let origin = 2 * py * stride + 2 * px;
            let mut patch = [0f32; 16];
            for (r, row) in patch.chunks_exact_mut(4).enumerate() {
                row.copy_from_slice(&padded[origin + r * stride..][..4]);
            }
            // Any bit but the sign's: a nonzero or NaN input. Bits, so that it vectorizes.
            let lit = patch.iter().fold(0u32, |any, v| any | v.to_bits() << 1) != 0;
            // Output pixels outside the image (an odd side's last window) count as 0: that
            // changes no maximum of relu'd values, and the top-left pixel, always inside, wins
            // ties.
            let inside = ((height - 2 * py).min(2), (width - 2 * px).min(2));
            let (at, channel) = match to.channels_last {
                true => ((py * pw + px) * c_out, 1),
                false => (py * pw + px, ph * pw),
            };
            let mut c = 0;
            while c + LANES <= c_out {
                let y = pixels::<LANES, FUSED>(&patch, lit, taps, bias, c);
                let to = (&mut *to.out, &mut *to.argmax);
                store_window::<LANES, ARGMAX>(y, inside, to, (at + c * channel, channel));
                c += LANES;
            }
            while c < c_out {
                let y = pixels::<1, FUSED>(&patch, lit, taps, bias, c);
                let to = (&mut *to.out, &mut *to.argmax);
                store_window::<1, ARGMAX>(y, inside, to, (at + c * channel, channel));
                c += 1;
            }
        }
    }
}

/// A window's four outputs (`[2·dy + dx]`) for channels `c .. c + L`, relu'd: from its 4×4
/// `patch`, or the bias alone where no input is `lit`.
#[inline(always)]
fn pixels<const L: usize, const FUSED: bool>(
    patch: &[f32; 16],
    lit: bool,
    taps: &[f32],
    bias: &[f32],
    c: usize,
) -> [[f32; L]; 4] {
    let c_out = bias.len();
    let bias: [f32; L] = bias[c..c + L].try_into().expect("L channels");
    let mut y = [bias; 4];
    if lit {
        for t in 0..9 {
            let w: &[f32; L] = taps[t * c_out + c..][..L].try_into().expect("L taps");
            for (d, y) in y.iter_mut().enumerate() {
                let x = patch[(d / 2 + t / 3) * 4 + d % 2 + t % 3];
                for (a, &w) in y.iter_mut().zip(w) {
                    *a = if FUSED { x.mul_add(w, *a) } else { *a + x * w };
                }
            }
        }
    }
    for y in y.iter_mut() {
        for v in y.iter_mut() {
            *v = activated(*v, true);
        }
    }
    y
}
