//! Winograd's F(4×4, 3×3) for the CNN's pooled convolutions in inference: each 4×4 block of
//! outputs from a 6×6 block of inputs with 36 multiplications per channel pair, where
//! [`super::winograd`]'s F(2×2, 3×3) takes 64 and the direct sum 144 (Lavin and Gray, "Fast
//! Algorithms for Convolutional Neural Networks", 2016, with the points 0, ±1, ±2).
//!
//! The same three transforms as there (inputs `Bᵀ d B`, kernels `G g Gᵀ`, outputs `Aᵀ m A`)
//! around 36 products `[out, in] · [in, blocks]`, the inputs' blocks channels-last. A 4×4
//! output block is four 2×2 pooling windows, which [`pool_blocks`] takes from its 36 sums.
//! Its products are 27% shorter than F(2×2)'s on a 14×14 image and 44% on a 7×7 one (two
//! blocks a side, of which the last is partly outside), and its block sums, which are written
//! by the products and read back, half as many per output. The price is rounding: the
//! transforms' coefficients (up to 8, and sixths in the kernels') make its error about ten
//! times F(2×2)'s, still within a few units in the sixth digit of the largest output (tested
//! against Burn's convolution in [`super::conv`]). So it runs where no gradient follows, the
//! test pass; training keeps F(2×2), whose backward pass is its exact adjoint.
//! Hand-written: no crate offers it for Burn's tensors.

use super::cpu::vectorized;

/// Positions of a transformed 6×6 block.
pub(super) const POSITIONS: usize = 36;

/// The 4×4 blocks covering an image: `(rows, columns)`, partly outside where 4 does not
/// divide a side.
pub(super) fn blocks(height: usize, width: usize) -> (usize, usize) {
    (height.div_ceil(4), width.div_ceil(4))
}

/// Scratch floats [`transform_image`] needs for an image of this size and `c_in` channels.
pub(super) fn padded_len(height: usize, width: usize, c_in: usize) -> usize {
    let (th, tw) = blocks(height, width);
    (4 * th + 2) * (4 * tw + 2) * c_in
}

vectorized! {
    /// `u[ξ][o][c] = (G g Gᵀ)[ξ]` for each kernel `g = weight[o][c]` (3×3, row-major), the 36
    /// `[out, in]` matrices of the products. Sixteen kernels at a time, so that the loops and
    /// the stores run in whole vectors: the kernels are transformed again for every batch.
    pub(super) fn transform_kernels(weight: &[f32], c_out: usize, c_in: usize, u: &mut [f32]) {
        assert_eq!(weight.len(), c_out * c_in * 9);
        assert!(u.len() >= POSITIONS * c_out * c_in);
        let plane = c_out * c_in;
        let mut oc = 0;
        while oc + LANES <= plane {
            transform_kernel_lanes::<LANES>(weight, u, plane, oc);
            oc += LANES;
        }
        while oc < plane {
            transform_kernel_lanes::<1>(weight, u, plane, oc);
            oc += 1;
        }
    }
}

/// [`transform_kernels`] for kernels `first .. first + L`.
#[inline(always)]
fn transform_kernel_lanes<const L: usize>(
    weight: &[f32],
    u: &mut [f32],
    plane: usize,
    first: usize,
) {
    let mut g = [[0f32; L]; 9];
    for (l, kernel) in weight[first * 9..(first + L) * 9]
        .chunks_exact(9)
        .enumerate()
    {
        for (g, &w) in g.iter_mut().zip(kernel) {
            g[l] = w;
        }
    }
    // G g: each column of the kernel through G, then (G g) Gᵀ: each row.
    let mut t = [[[0f32; L]; 3]; 6];
    for k in 0..3 {
        for l in 0..L {
            let rows = kernel_rows([g[k][l], g[3 + k][l], g[6 + k][l]]);
            for (i, v) in rows.into_iter().enumerate() {
                t[i][k][l] = v;
            }
        }
    }
    for (i, t) in t.iter().enumerate() {
        let mut out = [[0f32; L]; 6];
        for l in 0..L {
            for (j, v) in kernel_rows([t[0][l], t[1][l], t[2][l]])
                .into_iter()
                .enumerate()
            {
                out[j][l] = v;
            }
        }
        for (j, out) in out.iter().enumerate() {
            u[(i * 6 + j) * plane + first..][..L].copy_from_slice(out);
        }
    }
}

/// `G x` of one column (or row) of three kernel values: `G`'s rows are `(1/4, 0, 0)`,
/// `−(1, 1, 1)/6`, `−(1, −1, 1)/6`, `(1/24, 1/12, 1/6)`, `(1/24, −1/12, 1/6)`, `(0, 0, 1)`.
#[inline(always)]
fn kernel_rows([a, b, c]: [f32; 3]) -> [f32; 6] {
    // Products with the reciprocals: a division is a dozen times slower.
    const SIXTH: f32 = 1.0 / 6.0;
    let (even, odd) = (a + c, b);
    let (near, far) = (a * (SIXTH / 4.0) + c * SIXTH, b * (SIXTH / 2.0));
    [
        a * 0.25,
        -(even + odd) * SIXTH,
        -(even - odd) * SIXTH,
        near + far,
        near - far,
        c,
    ]
}

/// `Bᵀ x` of one column (or row) of six inputs.
#[inline(always)]
fn input_rows(x: [f32; 6]) -> [f32; 6] {
    [
        4.0 * x[0] - 5.0 * x[2] + x[4],
        x[3] + x[4] - 4.0 * (x[1] + x[2]),
        x[4] - x[3] + 4.0 * (x[1] - x[2]),
        x[4] - x[2] + 2.0 * (x[3] - x[1]),
        x[4] - x[2] + 2.0 * (x[1] - x[3]),
        4.0 * x[1] - 5.0 * x[3] + x[5],
    ]
}

/// `Aᵀ x` of one column (or row) of six sums.
#[inline(always)]
fn output_rows(x: [f32; 6]) -> [f32; 4] {
    let (a, b) = (x[1] + x[2], x[1] - x[2]);
    let (c, d) = (x[3] + x[4], x[3] - x[4]);
    [x[0] + a + c, b + 2.0 * d, a + 4.0 * c, b + 8.0 * d + x[5]]
}

vectorized! {
    /// One image's input transform: for each block `b` and channel `c`,
    /// `v[ξ][column + b][c] = (Bᵀ d B)[ξ]` with `d` the block's 6×6 inputs of channel `c` (zero
    /// outside the image), the `v[ξ]` `plane` floats apart. As in [`super::winograd`], the image
    /// is first copied channels-last into `padded` (scratch of at least [`padded_len`] floats,
    /// zero where no pixel of an image goes: the caller zeroes it once for images of one size).
    pub(super) fn transform_image(
        image: &[f32],
        dims: (usize, usize, usize),
        v: &mut [f32],
        at: (usize, usize),
        padded: &mut [f32],
    ) {
        let ((c_in, height, width), (column, plane)) = (dims, at);
        let (th, tw) = blocks(height, width);
        // Input pixel (y, x) at padded pixel (y + 1, x + 1); block (by, bx) reads padded rows
        // 4·by .. 4·by + 6 and columns 4·bx .. 4·bx + 6.
        let pw = 4 * tw + 2;
        let padded = &mut padded[..(4 * th + 2) * pw * c_in];
        super::winograd::channels_last(image, dims, pw, padded);
        let padded = &*padded;
        assert!(v.len() >= (POSITIONS - 1) * plane + (column + th * tw) * c_in);
        for by in 0..th {
            for bx in 0..tw {
                let origin = (4 * by * pw + 4 * bx) * c_in;
                let at = (column + by * tw + bx) * c_in;
                let mut c = 0;
                while c + LANES <= c_in {
                    transform_block::<LANES>(padded, (origin, pw, c_in), v, (at, plane), c);
                    c += LANES;
                }
                while c < c_in {
                    transform_block::<1>(padded, (origin, pw, c_in), v, (at, plane), c);
                    c += 1;
                }
            }
        }
    }
}

/// Channels transformed at once: one AVX-512 register, two AVX2 ones.
const LANES: usize = 16;

/// `Bᵀ d B` of one block for channels `c .. c + L`: `d` the 6×6 pixels from `origin` of
/// `padded` (`pw` pixels a row, `c_in` floats a pixel); into `v[ξ][at + c ..]`, `plane` apart.
/// Explicit loops: arrays built through `map` or `from_fn` here were calls, not inlined.
#[inline(always)]
fn transform_block<const L: usize>(
    padded: &[f32],
    (origin, pw, c_in): (usize, usize, usize),
    v: &mut [f32],
    (at, plane): (usize, usize),
    c: usize,
) {
    // t[i][s] = (Bᵀ d)[i][s]: each column of the block through Bᵀ.
    let mut t = [[[0f32; L]; 6]; 6];
    for s in 0..6 {
        let mut x = [[0f32; L]; 6];
        for (r, x) in x.iter_mut().enumerate() {
            x.copy_from_slice(&padded[origin + (r * pw + s) * c_in + c..][..L]);
        }
        for l in 0..L {
            let b = input_rows([x[0][l], x[1][l], x[2][l], x[3][l], x[4][l], x[5][l]]);
            for (i, b) in b.into_iter().enumerate() {
                t[i][s][l] = b;
            }
        }
    }
    // Then each row of it through B.
    for (i, t) in t.iter().enumerate() {
        let mut out = [[0f32; L]; 6];
        for l in 0..L {
            let b = input_rows([t[0][l], t[1][l], t[2][l], t[3][l], t[4][l], t[5][l]]);
            for (j, b) in b.into_iter().enumerate() {
                out[j][l] = b;
            }
        }
        for (j, out) in out.iter().enumerate() {
            v[(i * 6 + j) * plane + at + c..][..L].copy_from_slice(out);
        }
    }
}

/// `inside` bits of a block: its top windows' bottom row is in the image.
pub(super) const TOP_ROW: u8 = 1;
/// Its bottom windows' bottom row.
pub(super) const BOTTOM_ROW: u8 = 2;
/// Its left windows' right column.
pub(super) const LEFT_COLUMN: u8 = 4;
/// Its right windows' right column.
pub(super) const RIGHT_COLUMN: u8 = 8;

/// The `inside` bits of the block whose top-left output is `(y, x)` in an image of `height`
/// × `width`.
pub(super) fn inside(y: usize, x: usize, height: usize, width: usize) -> u8 {
    let bit = |is: bool, bit: u8| if is { bit } else { 0 };
    bit(y + 1 < height, TOP_ROW)
        | bit(y + 3 < height, BOTTOM_ROW)
        | bit(x + 1 < width, LEFT_COLUMN)
        | bit(x + 3 < width, RIGHT_COLUMN)
}

vectorized! {
    /// The 2×2 max-pooling of `relu(bias + ·)` over the four windows of each 4×4 block, from
    /// its 36 sums (`m[ξ][block]`, `stride` floats apart, `inside.len()` blocks): window
    /// `2·row + column` of block `b` into `out[window][b]`, and which of its pixels held the
    /// maximum into `argmax[window][b]` unless `argmax`'s slices are empty (as
    /// [`super::conv`]'s `window` numbers them, the first of equal ones). `inside[b]`'s bits say
    /// which of its windows' last rows and columns are in the image; a pixel outside counts as
    /// 0, which changes no maximum of relu'd values and never wins a tie against the window's
    /// top-left pixel, which is always inside. Windows wholly outside give values no one reads.
    pub(super) fn pool_blocks(
        m: &[f32],
        stride: usize,
        bias: f32,
        inside: &[u8],
        out: [&mut [f32]; 4],
        argmax: [&mut [u8]; 4],
    ) {
        let blocks = inside.len();
        let mut out = out.map(|o| &mut o[..blocks]);
        assert!(m.len() >= (POSITIONS - 1) * stride + blocks);
        let mut b = 0;
        if argmax[0].is_empty() {
            while b + LANES <= blocks {
                pool_lanes::<LANES, false>(m, stride, bias, inside, (&mut out, &mut []), b);
                b += LANES;
            }
            while b < blocks {
                pool_lanes::<1, false>(m, stride, bias, inside, (&mut out, &mut []), b);
                b += 1;
            }
        } else {
            let mut argmax = argmax.map(|a| &mut a[..blocks]);
            while b + LANES <= blocks {
                pool_lanes::<LANES, true>(m, stride, bias, inside, (&mut out, &mut argmax), b);
                b += LANES;
            }
            while b < blocks {
                pool_lanes::<1, true>(m, stride, bias, inside, (&mut out, &mut argmax), b);
                b += 1;
            }
        }
    }
}

/// [`pool_blocks`] for blocks `first .. first + L`, the lanes innermost so that they vectorize;
/// the argmax too with `ARGMAX`.
#[inline(always)]
fn pool_lanes<const L: usize, const ARGMAX: bool>(
    m: &[f32],
    stride: usize,
    bias: f32,
    inside: &[u8],
    (out, argmax): (&mut [&mut [f32]; 4], &mut [&mut [u8]]),
    first: usize,
) {
    // s = Aᵀ m: each column of the 6×6 sums through Aᵀ.
    let mut s = [[[0f32; L]; 6]; 4];
    for j in 0..6 {
        let mut x = [[0f32; L]; 6];
        for (i, x) in x.iter_mut().enumerate() {
            x.copy_from_slice(&m[(i * 6 + j) * stride + first..][..L]);
        }
        for l in 0..L {
            let r = output_rows([x[0][l], x[1][l], x[2][l], x[3][l], x[4][l], x[5][l]]);
            for (i, r) in r.into_iter().enumerate() {
                s[i][j][l] = r;
            }
        }
    }
    // y = (Aᵀ m) A, with the bias, through the relu.
    let mut y = [[[0f32; L]; 4]; 4];
    for (y, s) in y.iter_mut().zip(&s) {
        for l in 0..L {
            let r = output_rows([s[0][l], s[1][l], s[2][l], s[3][l], s[4][l], s[5][l]]);
            for (k, r) in r.into_iter().enumerate() {
                y[k][l] = super::conv::activated(r + bias, true);
            }
        }
    }
    let inside: &[u8; L] = inside[first..first + L].try_into().expect("L blocks");
    for (w, out) in out.iter_mut().enumerate() {
        let (r, k) = (2 * (w / 2), 2 * (w % 2));
        let row_bit = if w < 2 { TOP_ROW } else { BOTTOM_ROW };
        let col_bit = if w % 2 == 0 {
            LEFT_COLUMN
        } else {
            RIGHT_COLUMN
        };
        for l in 0..L {
            let (row_in, col_in) = (inside[l] & row_bit != 0, inside[l] & col_bit != 0);
            let a = y[r][k][l];
            let b = if col_in { y[r][k + 1][l] } else { 0.0 };
            let c = if row_in { y[r + 1][k][l] } else { 0.0 };
            let d = if row_in && col_in {
                y[r + 1][k + 1][l]
            } else {
                0.0
            };
            let (v, at) = super::conv::window(a, b, c, d);
            out[first + l] = v;
            if ARGMAX {
                argmax[w][first + l] = at;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::winograd::tests::{direct, example, products};

    /// The three transforms and the 36 products give the direct convolution's pooled relu,
    /// even and odd sides alike, to F(4×4)'s rounding.
    #[test]
    fn transforms_compute_the_pooled_convolution() {
        for (c_in, c_out, h, w) in [(2, 3, 8, 8), (3, 2, 7, 7), (17, 2, 14, 14), (4, 5, 5, 6)] {
            let (image, weight) = example((c_in, c_out, h, w));
            let (th, tw) = blocks(h, w);
            let n = th * tw;
            let mut u = vec![0f32; POSITIONS * c_out * c_in];
            transform_kernels(&weight, c_out, c_in, &mut u);
            let mut v = vec![f32::NAN; POSITIONS * c_in * n];
            let mut padded = vec![0f32; padded_len(h, w, c_in)];
            transform_image(&image, (c_in, h, w), &mut v, (0, c_in * n), &mut padded);
            let m = products(&u, &v, (POSITIONS, c_in, c_out, n));
            let inside: Vec<u8> = (0..n)
                .map(|b| inside(4 * (b / tw), 4 * (b % tw), h, w))
                .collect();
            let bias = 0.25;
            let direct = direct(&image, &weight, (c_in, c_out, h, w));
            for o in 0..c_out {
                // The direct convolution's relu'd outputs, and their Keras-SAME pooling.
                let y = |yy: usize, xx: usize| (direct[(o * h + yy) * w + xx] + bias).max(0.0);
                let mut out = vec![vec![f32::NAN; n]; 4];
                let [a, b, c, d] = &mut out[..] else {
                    unreachable!()
                };
                pool_blocks(
                    &m[o * n..],
                    c_out * n,
                    bias,
                    &inside,
                    [a, b, c, d],
                    Default::default(),
                );
                for py in 0..h.div_ceil(2) {
                    for px in 0..w.div_ceil(2) {
                        let mut want = f32::MIN;
                        for (yy, xx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                            let (yy, xx) = (2 * py + yy, 2 * px + xx);
                            if yy < h && xx < w {
                                want = want.max(y(yy, xx));
                            }
                        }
                        let (block, window) = ((py / 2) * tw + px / 2, 2 * (py % 2) + px % 2);
                        let got = out[window][block];
                        assert!(
                            (got - want).abs() < 1e-4 * want.abs().max(1.0),
                            "{c_in}→{c_out} {h}×{w}: ({o}, {py}, {px}) {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
