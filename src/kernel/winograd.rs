//! Winograd's F(2×2, 3×3) for the CNN's 3×3 convolutions (SAME padding, stride 1): each 2×2
//! block of outputs from a 4×4 block of inputs with 16 multiplications per channel pair where
//! the direct sum takes 36 (Lavin and Gray, "Fast Algorithms for Convolutional Neural
//! Networks", 2016).
//!
//! The inputs' blocks are transformed (`Bᵀ d B`, additions only), the kernels once per pass
//! (`G g Gᵀ`); then each of the 16 positions of a block is one product
//! `[out, in] · [in, blocks]` (`gemm`, in [`super::conv`]), and the output transform
//! (`Aᵀ m A`) turns each block's 16 sums back into its 2×2 outputs. An output block is a 2×2
//! max-pooling window: a pooled convolution's gradient has one nonzero value in each.
//!
//! The fewer multiplications (2.25× on 14×14 images, 1.7× on 7×7 ones, whose last blocks are
//! half outside) pay where the products are long: the lab's second and third convolutions
//! (32 and 64 input channels); the first (one channel) is [`super::first_conv`]'s when pooled.
//! A pooled convolution's gradients are the exact adjoint of these
//! transforms ([`kernel_gradients`], [`image_gradient`]): the pooling leaves one nonzero
//! gradient in each output block, so the blocks' sums' gradients cost no product, and the
//! weight and input gradients are 16 products each, as short as the forward pass's (an input
//! gradient computed as a separate convolution of the full output gradient was no faster than
//! unfolding). A pooled convolution's forward pass takes [`super::winograd4`]'s larger blocks,
//! which compute the same convolution up to rounding. The
//! transformed inputs are laid out `[ξ][block][channel]`, so that the transform runs over
//! channels in whole vectors; `gemm` packs that layout a tenth slower than `[ξ][channel]
//! [block]`, which the transform could only write scalar. The sums run in another order than
//! the direct convolution's: the outputs agree with it to a few units in the last place of
//! the largest (tested in `conv`). Hand-written: no crate offers it for Burn's tensors.

use super::cpu::vectorized;

/// Positions of a transformed 4×4 block.
pub(super) const POSITIONS: usize = 16;

/// The 2×2 blocks covering an image: `(rows, columns)`, an odd side's last block half outside.
pub(super) fn blocks(height: usize, width: usize) -> (usize, usize) {
    (height.div_ceil(2), width.div_ceil(2))
}

/// `u[ξ][o][c] = (G g Gᵀ)[ξ]` for each kernel `g = weight[o][c]` (3×3, row-major), the 16
/// `[out, in]` matrices of the products.
pub(super) fn transform_kernels(weight: &[f32], c_out: usize, c_in: usize, u: &mut [f32]) {
    assert_eq!(weight.len(), c_out * c_in * 9);
    assert!(u.len() >= POSITIONS * c_out * c_in);
    let plane = c_out * c_in;
    for (oc, g) in weight.chunks_exact(9).enumerate() {
        // G g: rows 0..4 of 3 values.
        let mut t = [[0f32; 3]; 4];
        for k in 0..3 {
            let (g0, g1, g2) = (g[k], g[3 + k], g[6 + k]);
            t[0][k] = g0;
            t[1][k] = 0.5 * (g0 + g1 + g2);
            t[2][k] = 0.5 * (g0 - g1 + g2);
            t[3][k] = g2;
        }
        // (G g) Gᵀ.
        for (i, r) in t.iter().enumerate() {
            let row = [
                r[0],
                0.5 * (r[0] + r[1] + r[2]),
                0.5 * (r[0] - r[1] + r[2]),
                r[2],
            ];
            for (j, v) in row.into_iter().enumerate() {
                u[(i * 4 + j) * plane + oc] = v;
            }
        }
    }
}

vectorized! {
    /// One image's input transform: for each block `b` and channel `c`,
    /// `v[ξ][column + b][c] = (Bᵀ d B)[ξ]` with `d` the block's 4×4 inputs of channel `c` (zero
    /// outside the image), the `v[ξ]` `plane` floats apart. The channels are innermost so that the
    /// loops run over them and vectorize: the image is first copied channels-last into `padded`,
    /// scratch of at least [`padded_len`] floats, zero where no pixel of an image goes (the
    /// caller zeroes it once for images of one size: this writes the pixels alone).
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
        // 2·by .. 2·by + 4 and columns 2·bx .. 2·bx + 4.
        let pw = 2 * tw + 2;
        let padded = &mut padded[..(2 * th + 2) * pw * c_in];
        channels_last(image, dims, false, pw, padded);
        let padded = &*padded;
        for by in 0..th {
            for bx in 0..tw {
                let d: [[&[f32]; 4]; 4] = std::array::from_fn(|r| {
                    std::array::from_fn(|s| &padded[((2 * by + r) * pw + 2 * bx + s) * c_in..][..c_in])
                });
                let at = (column + by * tw + bx) * c_in;
                let out: [&mut [f32]; 16] = {
                    let mut rest = &mut v[at..];
                    std::array::from_fn(|xi| {
                        let (this, next) =
                            std::mem::take(&mut rest).split_at_mut(if xi < 15 { plane } else { c_in });
                        rest = next;
                        &mut this[..c_in]
                    })
                };
                let mut out = out;
                // In runs of 16 channels, whose loop the compiler turns into whole vectors (a
                // loop over all 32 or 64 ran scalar: too short for its unrolled vector loop).
                let mut c = 0;
                while c + LANES <= c_in {
                    transform_block::<LANES>(&d, &mut out, c);
                    c += LANES;
                }
                while c < c_in {
                    transform_block::<1>(&d, &mut out, c);
                    c += 1;
                }
            }
        }
    }
}

/// `image` (`[c_in][height][width]`, or `[height][width][c_in]` with `is_channels_last`)
/// copied channels-last into `padded`, pixel `(y, x)` at padded pixel `(y + 1, x + 1)` of rows
/// `pw` pixels long; the padding is left as it is.
#[inline(always)]
pub(super) fn channels_last(
    image: &[f32],
    (c_in, height, width): (usize, usize, usize),
    is_channels_last: bool,
    pw: usize,
    padded: &mut [f32],
) {
    if is_channels_last || c_in == 1 {
        // Each row of pixels is already as `padded` holds it.
        let row = width * c_in;
        for (y, pixels) in image[..height * row].chunks_exact(row).enumerate() {
            padded[((y + 1) * pw + 1) * c_in..][..row].copy_from_slice(pixels);
        }
        return;
    }
    for (c, plane) in image.chunks_exact(height * width).take(c_in).enumerate() {
        for (y, row) in plane.chunks_exact(width).enumerate() {
            let start = ((y + 1) * pw + 1) * c_in + c;
            for (dst, &value) in padded[start..].iter_mut().step_by(c_in).zip(row) {
                *dst = value;
            }
        }
    }
}

/// Channels transformed at once: one AVX-512 register, two AVX2 ones.
const LANES: usize = 16;

/// `Bᵀ d B` of one block for channels `c .. c + L`: `d[r][s]` its inputs' channels, `out[ξ]`
/// its outputs'.
#[inline(always)]
fn transform_block<const L: usize>(d: &[[&[f32]; 4]; 4], out: &mut [&mut [f32]; 16], c: usize) {
    let d: [[&[f32; L]; 4]; 4] =
        d.map(|row| row.map(|x| x[c..c + L].try_into().expect("L channels")));
    let mut v = [[0f32; L]; 16];
    for l in 0..L {
        // Bᵀ d: the rows' combinations, then (Bᵀ d) B: the columns'.
        let e: [f32; 4] = std::array::from_fn(|s| d[0][s][l] - d[2][s][l]);
        let f: [f32; 4] = std::array::from_fn(|s| d[1][s][l] + d[2][s][l]);
        let g: [f32; 4] = std::array::from_fn(|s| d[2][s][l] - d[1][s][l]);
        let h: [f32; 4] = std::array::from_fn(|s| d[1][s][l] - d[3][s][l]);
        for (i, x) in [e, f, g, h].into_iter().enumerate() {
            v[4 * i][l] = x[0] - x[2];
            v[4 * i + 1][l] = x[1] + x[2];
            v[4 * i + 2][l] = x[2] - x[1];
            v[4 * i + 3][l] = x[1] - x[3];
        }
    }
    for (out, v) in out.iter_mut().zip(&v) {
        out[c..c + L].copy_from_slice(v);
    }
}

/// The adjoint of [`transform_kernels`]: `gw[o][c] = Gᵀ gu[·][o][c] G` for each of the 16
/// `[out, in]` matrices' gradients `gu[ξ]`, into the 3×3 kernels' gradients (row-major, as
/// the weight).
pub(super) fn kernel_gradients(gu: &[f32], c_out: usize, c_in: usize, gw: &mut [f32]) {
    let plane = c_out * c_in;
    assert!(gu.len() >= POSITIONS * plane);
    assert_eq!(gw.len(), plane * 9);
    for (oc, g) in gw.chunks_exact_mut(9).enumerate() {
        // gu G: rows of 3, then Gᵀ (gu G): the same on the columns.
        let t: [[f32; 3]; 4] = std::array::from_fn(|i| {
            let u: [f32; 4] = std::array::from_fn(|j| gu[(i * 4 + j) * plane + oc]);
            [
                u[0] + 0.5 * (u[1] + u[2]),
                0.5 * (u[1] - u[2]),
                0.5 * (u[1] + u[2]) + u[3],
            ]
        });
        for l in 0..3 {
            let (a, b, c, d) = (t[0][l], t[1][l], t[2][l], t[3][l]);
            g[l] = a + 0.5 * (b + c);
            g[3 + l] = 0.5 * (b - c);
            g[6 + l] = 0.5 * (b + c) + d;
        }
    }
}

vectorized! {
    /// The adjoint of [`transform_image`]: from the gradients of one image's transformed blocks
    /// (`gv[ξ][column + b][c]`, the `gv[ξ]` `plane` floats apart), its input gradient `image`
    /// (`[c_in, height, width]`, overwritten). Each block's `B gv Bᵀ` is added into `padded`
    /// (scratch of at least [`padded_len`] floats, channels-last as there), where overlapping
    /// blocks meet, then the pixels are copied out.
    pub(super) fn image_gradient(
        gv: &[f32],
        at: (usize, usize),
        dims: (usize, usize, usize),
        padded: &mut [f32],
        image: &mut [f32],
    ) {
        let ((c_in, height, width), (column, plane)) = (dims, at);
        let (th, tw) = blocks(height, width);
        let pw = 2 * tw + 2;
        let padded = &mut padded[..(2 * th + 2) * pw * c_in];
        padded.fill(0.0);
        for by in 0..th {
            for bx in 0..tw {
                let at = (column + by * tw + bx) * c_in;
                let g: [&[f32]; 16] = std::array::from_fn(|xi| &gv[xi * plane + at..][..c_in]);
                let origin = (2 * by * pw + 2 * bx) * c_in;
                let mut c = 0;
                while c + LANES <= c_in {
                    add_block_gradient::<LANES>(&g, c, padded, (origin, pw, c_in));
                    c += LANES;
                }
                while c < c_in {
                    add_block_gradient::<1>(&g, c, padded, (origin, pw, c_in));
                    c += 1;
                }
            }
        }
        let padded = &*padded;
        for (c, plane) in image.chunks_exact_mut(height * width).take(c_in).enumerate() {
            for (y, row) in plane.chunks_exact_mut(width).enumerate() {
                let start = ((y + 1) * pw + 1) * c_in + c;
                for (dst, &value) in row.iter_mut().zip(padded[start..].iter().step_by(c_in)) {
                    *dst = value;
                }
            }
        }
    }
}

/// One block's input gradients for channels `c .. c + L` ([`block_gradient`]) added into
/// `padded` at the block's top-left pixel `origin` (`pw` pixels a row, `c_in` floats a pixel).
#[inline(always)]
fn add_block_gradient<const L: usize>(
    g: &[&[f32]; 16],
    c: usize,
    padded: &mut [f32],
    (origin, pw, c_in): (usize, usize, usize),
) {
    for (rs, d) in block_gradient::<L>(g, c).iter().enumerate() {
        let at = origin + ((rs / 4) * pw + rs % 4) * c_in + c;
        for (dst, v) in padded[at..at + L].iter_mut().zip(d) {
            *dst += v;
        }
    }
}

/// `B gv Bᵀ` of one block for channels `c .. c + L`: `g[ξ]` its transformed gradients'
/// channels; the 4×4 inputs' gradients, row-major.
#[inline(always)]
fn block_gradient<const L: usize>(g: &[&[f32]; 16], c: usize) -> [[f32; L]; 16] {
    let g: [&[f32; L]; 16] = g.map(|x| x[c..c + L].try_into().expect("L channels"));
    let mut d = [[0f32; L]; 16];
    for l in 0..L {
        // B gv: the rows' combinations (Bᵀ's columns), then (B gv) Bᵀ: the columns'.
        let row = |i: usize| {
            [
                g[4 * i][l],
                g[4 * i + 1][l],
                g[4 * i + 2][l],
                g[4 * i + 3][l],
            ]
        };
        let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
        let t: [[f32; 4]; 4] = [
            r0,
            std::array::from_fn(|j| r1[j] - r2[j] + r3[j]),
            std::array::from_fn(|j| r1[j] + r2[j] - r0[j]),
            std::array::from_fn(|j| -r3[j]),
        ];
        for (r, t) in t.iter().enumerate() {
            d[4 * r][l] = t[0];
            d[4 * r + 1][l] = t[1] - t[2] + t[3];
            d[4 * r + 2][l] = t[1] + t[2] - t[0];
            d[4 * r + 3][l] = -t[3];
        }
    }
    d
}

/// Scratch floats [`transform_image`] needs for an image of this size and `c_in` channels.
pub(super) fn padded_len(height: usize, width: usize, c_in: usize) -> usize {
    let (th, tw) = blocks(height, width);
    (2 * th + 2) * (2 * tw + 2) * c_in
}

vectorized! {
    /// The output transform of one output channel: `m[ξ]` its 16 rows of block sums (each
    /// `columns` long, the rows `stride` apart), into `y[0..4]`: each block's top-left, top-right,
    /// bottom-left and bottom-right output.
    pub(super) fn transform_outputs(m: &[f32], stride: usize, columns: usize, y: [&mut [f32]; 4]) {
        let row = |xi: usize| &m[xi * stride..][..columns];
        let m: [&[f32]; POSITIONS] = std::array::from_fn(row);
        let [y00, y01, y10, y11] = y;
        let (y00, y01, y10, y11) = (
            &mut y00[..columns],
            &mut y01[..columns],
            &mut y10[..columns],
            &mut y11[..columns],
        );
        for n in 0..columns {
            [y00[n], y01[n], y10[n], y11[n]] = output_block(&m, n);
        }
    }
}

/// Block `n`'s 2×2 outputs from its 16 sums `m[ξ][n]`: `Aᵀ m A`.
#[inline(always)]
pub(super) fn output_block(m: &[&[f32]; POSITIONS], n: usize) -> [f32; 4] {
    // Aᵀ m: rows 0 + 1 + 2 and 1 − 2 − 3; then the same on the columns.
    let s0: [f32; 4] = std::array::from_fn(|j| m[j][n] + m[4 + j][n] + m[8 + j][n]);
    let s1: [f32; 4] = std::array::from_fn(|j| m[4 + j][n] - m[8 + j][n] - m[12 + j][n]);
    [
        s0[0] + s0[1] + s0[2],
        s0[1] - s0[2] - s0[3],
        s1[0] + s1[1] + s1[2],
        s1[1] - s1[2] - s1[3],
    ]
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// An image of `c_in × h × w` and `c_out × c_in` 3×3 kernels, values of both signs.
    pub(in crate::kernel) fn example(
        (c_in, c_out, h, w): (usize, usize, usize, usize),
    ) -> (Vec<f32>, Vec<f32>) {
        let image = (0..c_in * h * w)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
            .collect();
        let weight = (0..c_out * c_in * 9)
            .map(|i| ((i * 13 % 17) as f32 - 8.0) / 9.0)
            .collect();
        (image, weight)
    }

    /// The products of transformed kernels `u[ξ][o][c]` and blocks `v[ξ][b][c]` (`n` of them),
    /// summed over the channels: `m[ξ][o][b]`.
    pub(in crate::kernel) fn products(
        u: &[f32],
        v: &[f32],
        (positions, c_in, c_out, n): (usize, usize, usize, usize),
    ) -> Vec<f32> {
        let mut m = vec![0f32; positions * c_out * n];
        for xi in 0..positions {
            for o in 0..c_out {
                for b in 0..n {
                    m[(xi * c_out + o) * n + b] = (0..c_in)
                        .map(|c| u[(xi * c_out + o) * c_in + c] * v[(xi * n + b) * c_in + c])
                        .sum();
                }
            }
        }
        m
    }

    /// The direct 3×3 convolution (SAME) of one image, the reference the transforms must
    /// reproduce.
    pub(in crate::kernel) fn direct(
        image: &[f32],
        weight: &[f32],
        (c_in, c_out, h, w): (usize, usize, usize, usize),
    ) -> Vec<f32> {
        let mut out = vec![0f32; c_out * h * w];
        for o in 0..c_out {
            for y in 0..h {
                for x in 0..w {
                    let mut sum = 0f64;
                    for c in 0..c_in {
                        for dy in 0..3 {
                            for dx in 0..3 {
                                let (sy, sx) = (y as isize + dy - 1, x as isize + dx - 1);
                                if sy < 0 || sx < 0 || sy >= h as isize || sx >= w as isize {
                                    continue;
                                }
                                let v = image[(c * h + sy as usize) * w + sx as usize];
                                sum += (v * weight
                                    [((o * c_in + c) * 3 + dy as usize) * 3 + dx as usize])
                                    as f64;
                            }
                        }
                    }
                    out[(o * h + y) * w + x] = sum as f32;
                }
            }
        }
        out
    }

    /// The three transforms and the 16 products give the direct convolution, even and odd
    /// sides alike.
    #[test]
    fn transforms_compute_the_convolution() {
        for (c_in, c_out, h, w) in [(2, 3, 6, 6), (3, 2, 7, 7), (1, 1, 5, 4), (4, 5, 3, 8)] {
            let (image, weight) = example((c_in, c_out, h, w));
            let (th, tw) = blocks(h, w);
            let n = th * tw;
            let mut u = vec![0f32; POSITIONS * c_out * c_in];
            transform_kernels(&weight, c_out, c_in, &mut u);
            let mut v = vec![f32::NAN; POSITIONS * c_in * n];
            let mut padded = vec![0f32; padded_len(h, w, c_in)];
            transform_image(&image, (c_in, h, w), &mut v, (0, c_in * n), &mut padded);
            let m = products(&u, &v, (POSITIONS, c_in, c_out, n));
            let expected = direct(&image, &weight, (c_in, c_out, h, w));
            for o in 0..c_out {
                let mut y = vec![vec![0f32; n]; 4];
                let [a, b, c, d] = &mut y[..] else {
                    unreachable!()
                };
                transform_outputs(&m[o * n..], c_out * n, n, [a, b, c, d]);
                for by in 0..th {
                    for bx in 0..tw {
                        for (k, (dy, dx)) in
                            [(0, 0), (0, 1), (1, 0), (1, 1)].into_iter().enumerate()
                        {
                            let (yy, xx) = (2 * by + dy, 2 * bx + dx);
                            if yy < h && xx < w {
                                let want = expected[(o * h + yy) * w + xx];
                                let got = y[k][by * tw + bx];
                                assert!(
                                    (got - want).abs() < 1e-4,
                                    "{c_in}→{c_out} {h}×{w}: ({o}, {yy}, {xx}) {got} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
