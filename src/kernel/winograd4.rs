//! Winograd's F(4×4, 3×3) for the CNN's pooled convolutions' forward pass: each 4×4 block of
//! outputs from a 6×6 block of inputs with 36 multiplications per channel pair, where
//! [`super::winograd`]'s F(2×2, 3×3) takes 64 and the direct sum 144 (Lavin and Gray, "Fast
//! Algorithms for Convolutional Neural Networks", 2016, with the points 0, ±1, ±2).
//!
//! The same three transforms as there (inputs `Bᵀ d B`, kernels `G g Gᵀ`, outputs `Aᵀ m A`)
//! around 36 products `[blocks, in] · [in, out]`, everything channels-last: the inputs'
//! blocks, the kernels, and the products' sums, so that `gemm` copies neither operand and the
//! pooling reads and writes whole vectors of channels. A 4×4 output block is four 2×2 pooling
//! windows, which [`pool_blocks`] takes from its 36 sums, into a channels-last output (the
//! next convolution's input in inference) or Burn's layout with the argmax (training).
//! Its products are 27% shorter than F(2×2)'s on a 14×14 image and 44% on a 7×7 one (two
//! blocks a side, of which the last is partly outside), and its block sums, which are written
//! by the products and read back, half as many per output. The price is rounding: the
//! transforms' coefficients (up to 8, and sixths in the kernels') make its error about ten
//! times F(2×2)'s, still within a few units in the sixth digit of the largest output (tested
//! against Burn's convolution in [`super::conv`]). The gradients of a training step take
//! F(2×2)'s exact adjoint, of the same function up to rounding.
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
    /// (`[channel][y][x]`, or `[y][x][channel]` with `channels_last`) is first copied
    /// channels-last into `padded` (scratch of at least [`padded_len`] floats, zero where no
    /// pixel of an image goes: the caller zeroes it once for images of one size).
    pub(super) fn transform_image(
        image: &[f32],
        dims: (usize, usize, usize),
        channels_last: bool,
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
        super::winograd::channels_last(image, dims, channels_last, pw, padded);
        let padded = &*padded;
        assert!(v.len() >= (POSITIONS - 1) * plane + (column + th * tw) * c_in);
        let (mut work, mut work_one) = ([[[0f32; LANES]; 6]; 6], [[[0f32; 1]; 6]; 6]);
        for by in 0..th {
            for bx in 0..tw {
                let origin = (4 * by * pw + 4 * bx) * c_in;
                let at = (column + by * tw + bx) * c_in;
                let mut c = 0;
                while c + LANES <= c_in {
                    let at = (at, plane);
                    transform_block::<LANES>(padded, (origin, pw, c_in), v, at, c, &mut work);
                    c += LANES;
                }
                while c < c_in {
                    let at = (at, plane);
                    transform_block::<1>(padded, (origin, pw, c_in), v, at, c, &mut work_one);
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
/// Explicit loops: arrays built through `map` or `from_fn` here were calls, not inlined. `t`:
/// working space, its values overwritten (zeroed afresh for each block, it was a `memset`
/// call each time, 8% of a test pass with the pooling's).
#[inline(always)]
fn transform_block<const L: usize>(
    padded: &[f32],
    (origin, pw, c_in): (usize, usize, usize),
    v: &mut [f32],
    (at, plane): (usize, usize),
    c: usize,
    t: &mut [[[f32; L]; 6]; 6],
) {
    // t[i][s] = (Bᵀ d)[i][s]: each column of the block through Bᵀ.
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

/// Where one 4×4 block's pooled windows go: the rows and columns of its outputs inside the
/// image (1 to 4), and for each of its four 2×2 windows (`2·row + column`) the offset of its
/// first channel in the output, `None` for a window wholly outside the image.
#[derive(Debug, Clone, Copy)]
pub(super) struct Block {
    pub rows: usize,
    pub columns: usize,
    pub windows: [Option<usize>; 4],
}

/// The blocks of `images` images of `height × width` in order, with where their pooled windows
/// go in those images' output of `c_out` channels: `[image][y][x][channel]` with
/// `channels_last`, else `[image][channel][y][x]`. And the floats from one channel to the next.
pub(super) fn pooled_blocks(
    images: usize,
    (height, width): (usize, usize),
    c_out: usize,
    channels_last: bool,
) -> (Vec<Block>, usize) {
    let (th, tw) = blocks(height, width);
    let (ph, pw) = (height.div_ceil(2), width.div_ceil(2));
    let offset = |i: usize, py: usize, px: usize| match channels_last {
        true => ((i * ph + py) * pw + px) * c_out,
        false => i * c_out * ph * pw + py * pw + px,
    };
    let mut all = Vec::with_capacity(images * th * tw);
    for i in 0..images {
        for (by, bx) in (0..th).flat_map(|by| (0..tw).map(move |bx| (by, bx))) {
            let (rows, columns) = ((height - 4 * by).min(4), (width - 4 * bx).min(4));
            let window = |w: usize| {
                let (r, k) = (w / 2, w % 2);
                (2 * r < rows && 2 * k < columns).then(|| offset(i, 2 * by + r, 2 * bx + k))
            };
            all.push(Block {
                rows,
                columns,
                windows: [window(0), window(1), window(2), window(3)],
            });
        }
    }
    (all, if channels_last { 1 } else { ph * pw })
}

vectorized! {
    /// The 2×2 max-pooling of `relu(bias + ·)` over the four windows of each 4×4 block, from
    /// its 36 sums (`m[ξ][block][channel]`, `plane` floats between positions, `blocks.len()`
    /// blocks of `bias.len()` channels): window `w` of block `b`'s channel `c` into
    /// `out[blocks[b].windows[w] + c · channel_stride]`, and which of its pixels held the
    /// maximum into `argmax` at the same place unless `argmax` is empty (as [`super::conv`]'s
    /// `window` numbers them, the first of equal ones). A pixel outside the image counts as 0,
    /// which changes no maximum of relu'd values and never wins a tie against the window's
    /// top-left pixel, which is always inside. Sixteen channels at a time: the sums of a block
    /// are read, and its windows written channels-last, in whole vectors.
    pub(super) fn pool_blocks(
        m: &[f32],
        plane: usize,
        bias: &[f32],
        blocks: &[Block],
        out: &mut [f32],
        argmax: &mut [u8],
        channel_stride: usize,
    ) {
        let c_out = bias.len();
        assert!(m.len() >= (POSITIONS - 1) * plane + blocks.len() * c_out);
        let to = (out, argmax, channel_stride);
        match to.1.is_empty() {
            true => pool_channels::<false>(m, plane, bias, blocks, to),
            false => pool_channels::<true>(m, plane, bias, blocks, to),
        }
    }
}

/// Where [`pool_blocks`] writes: the pooled output, the argmax (empty without it), and the
/// floats from one channel to the next.
type Windows<'a> = (&'a mut [f32], &'a mut [u8], usize);

/// [`pool_blocks`], with its argmax with `ARGMAX`.
#[inline(always)]
fn pool_channels<const ARGMAX: bool>(
    m: &[f32],
    plane: usize,
    bias: &[f32],
    blocks: &[Block],
    mut to: Windows,
) {
    let c_out = bias.len();
    let (mut work, mut work_one) = (Sums::<LANES>::new(), Sums::<1>::new());
    for (b, block) in blocks.iter().enumerate() {
        let mut c = 0;
        while c + LANES <= c_out {
            let at = (b, block);
            pool_lanes::<LANES, ARGMAX>(m, plane, bias, at, &mut to, c, &mut work);
            c += LANES;
        }
        while c < c_out {
            let at = (b, block);
            pool_lanes::<1, ARGMAX>(m, plane, bias, at, &mut to, c, &mut work_one);
            c += 1;
        }
    }
}

/// The working space of [`pool_lanes`], kept from block to block (see [`transform_block`]'s):
/// `Aᵀ m`, and the 4×4 outputs.
struct Sums<const L: usize> {
    s: [[[f32; L]; 6]; 4],
    y: [[[f32; L]; 4]; 4],
}

impl<const L: usize> Sums<L> {
    fn new() -> Self {
        Self {
            s: [[[0.0; L]; 6]; 4],
            y: [[[0.0; L]; 4]; 4],
        }
    }
}

/// [`pool_blocks`] for channels `c .. c + L` of block `b`, the lanes innermost so that they
/// vectorize.
#[inline(always)]
fn pool_lanes<const L: usize, const ARGMAX: bool>(
    m: &[f32],
    plane: usize,
    bias: &[f32],
    (b, block): (usize, &Block),
    to: &mut Windows,
    c: usize,
    work: &mut Sums<L>,
) {
    let Sums { s, y } = work;
    let first = b * bias.len() + c;
    // s = Aᵀ m: each column of the 6×6 sums through Aᵀ.
    for j in 0..6 {
        let mut x = [[0f32; L]; 6];
        for (i, x) in x.iter_mut().enumerate() {
            x.copy_from_slice(&m[(i * 6 + j) * plane + first..][..L]);
        }
        for l in 0..L {
            let r = output_rows([x[0][l], x[1][l], x[2][l], x[3][l], x[4][l], x[5][l]]);
            for (i, r) in r.into_iter().enumerate() {
                s[i][j][l] = r;
            }
        }
    }
    // y = (Aᵀ m) A, with the bias, through the relu.
    let bias: &[f32; L] = bias[c..c + L].try_into().expect("L channels");
    for (y, s) in y.iter_mut().zip(s.iter()) {
        for l in 0..L {
            let r = output_rows([s[0][l], s[1][l], s[2][l], s[3][l], s[4][l], s[5][l]]);
            for (k, r) in r.into_iter().enumerate() {
                y[k][l] = super::conv::activated(r + bias[l], true);
            }
        }
    }
    let (out, argmax, channel) = to;
    for (w, at) in block.windows.iter().enumerate() {
        let Some(at) = *at else { continue };
        let (r, k) = (2 * (w / 2), 2 * (w % 2));
        let pixels = [y[r][k], y[r][k + 1], y[r + 1][k], y[r + 1][k + 1]];
        let inside = ((block.rows - r).min(2), (block.columns - k).min(2));
        let to = (&mut **out, &mut **argmax);
        super::conv::store_window::<L, ARGMAX>(pixels, inside, to, (at + c * *channel, *channel));
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
        let shapes = [(2, 3, 8, 8), (3, 33, 7, 7), (17, 18, 14, 14), (4, 5, 5, 6)];
        for (c_in, c_out, h, w) in shapes {
            let (image, weight) = example((c_in, c_out, h, w));
            let (th, tw) = blocks(h, w);
            let n = th * tw;
            let mut u = vec![0f32; POSITIONS * c_out * c_in];
            transform_kernels(&weight, c_out, c_in, &mut u);
            let mut v = vec![f32::NAN; POSITIONS * c_in * n];
            let mut padded = vec![0f32; padded_len(h, w, c_in)];
            let at = (0, c_in * n);
            transform_image(&image, (c_in, h, w), false, &mut v, at, &mut padded);
            // The same image channels-last gives the same transforms.
            let pixels: Vec<f32> = (0..h * w * c_in)
                .map(|i| image[(i % c_in) * h * w + i / c_in])
                .collect();
            let mut from_pixels = vec![f32::NAN; v.len()];
            transform_image(
                &pixels,
                (c_in, h, w),
                true,
                &mut from_pixels,
                at,
                &mut padded,
            );
            assert_eq!(
                v, from_pixels,
                "{c_in}→{c_out} {h}×{w}: channels-last input"
            );
            let m = products(&u, &v, (POSITIONS, c_in, c_out, n));
            // As the products give them to the pooling: `[ξ][block][out]`.
            let m: Vec<f32> = (0..POSITIONS * n * c_out)
                .map(|at| (at / (n * c_out), at / c_out % n, at % c_out))
                .map(|(xi, b, o)| m[(xi * c_out + o) * n + b])
                .collect();
            let bias: Vec<f32> = (0..c_out).map(|o| 0.25 - 0.125 * o as f32).collect();
            let direct = direct(&image, &weight, (c_in, c_out, h, w));
            let (ph, pw) = (h.div_ceil(2), w.div_ceil(2));
            for channels_last in [false, true] {
                let (blocks, channel_stride) = pooled_blocks(1, (h, w), c_out, channels_last);
                let mut out = vec![f32::NAN; c_out * ph * pw];
                let mut argmax = vec![9u8; out.len()];
                pool_blocks(
                    &m,
                    n * c_out,
                    &bias,
                    &blocks,
                    &mut out,
                    &mut argmax,
                    channel_stride,
                );
                let mut without = vec![f32::NAN; out.len()];
                pool_blocks(
                    &m,
                    n * c_out,
                    &bias,
                    &blocks,
                    &mut without,
                    &mut [],
                    channel_stride,
                );
                assert_eq!(out, without, "the argmax changes no output");
                for o in 0..c_out {
                    // The direct convolution's relu'd outputs, and their Keras-SAME pooling.
                    let y =
                        |yy: usize, xx: usize| (direct[(o * h + yy) * w + xx] + bias[o]).max(0.0);
                    for py in 0..ph {
                        for px in 0..pw {
                            let (mut want, mut at) = (f32::MIN, 0);
                            for (k, (yy, xx)) in
                                [(0, 0), (0, 1), (1, 0), (1, 1)].into_iter().enumerate()
                            {
                                let (yy, xx) = (2 * py + yy, 2 * px + xx);
                                if yy < h && xx < w && y(yy, xx) > want {
                                    (want, at) = (y(yy, xx), k as u8);
                                }
                            }
                            let i = match channels_last {
                                true => (py * pw + px) * c_out + o,
                                false => (o * ph + py) * pw + px,
                            };
                            let got = out[i];
                            assert!(
                                (got - want).abs() < 1e-4 * want.abs().max(1.0),
                                "{c_in}→{c_out} {h}×{w}: ({o}, {py}, {px}) {got} vs {want}"
                            );
                            // Ties within rounding may pick another pixel of equal value.
                            if argmax[i] != at {
                                let (dy, dx) = (argmax[i] as usize / 2, argmax[i] as usize % 2);
                                assert!(
                                    (y(2 * py + dy, 2 * px + dx) - want).abs()
                                        < 1e-4 * want.max(1.0),
                                    "{c_in}→{c_out} {h}×{w}: argmax of ({o}, {py}, {px})"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
