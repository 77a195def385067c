//! The first dense layer of an evaluation, computed from the images' nonzero pixels.
//!
//! MNIST images are about 81% zero pixels (151 of 784 lit per test image on average), and the
//! first layer holds three quarters of a forward pass's arithmetic. An evaluation set is fixed
//! and resident, so its sparse form is built once; each evaluation then computes, per image,
//! `bias + Σ value · W1[pixel, :]` over the lit pixels only: 5× less arithmetic than the dense
//! product. The rest of the network runs in Burn as before. Only the evaluation takes this
//! path (it may reorder sums; training stays on Burn's dense, bit-reproducible kernels).
//!
//! Hand-written because no crate has this shape: generic CSR × dense products (`sprs`, or
//! PyTorch's) walk one output column at a time or do not vectorize for the CPU they run on,
//! and measured no faster than the dense product. Here the accumulators of a block of 64
//! outputs stay in registers across an image's lit pixels, and the loop is compiled three
//! times — AVX-512, AVX2 + FMA, and portable — with the one to run chosen when the program
//! starts from what the CPU reports (no build flag for the user's CPU). On ARM (NEON) the
//! portable version is what runs; the compiler vectorizes it with NEON's 128-bit registers.

use rayon::prelude::*;

/// Outputs accumulated at once: 64 floats are 4 AVX-512 or 8 AVX2 registers.
const BLOCK: usize = 64;

/// Images in compressed-row form: for image `r`, its lit pixels are
/// `pixel[start[r]..start[r + 1]]` with values `value[..]` (in [0, 1], as the dense input).
#[derive(Debug, Clone, Default)]
pub struct SparseImages {
    start: Vec<u32>,
    pixel: Vec<u16>,
    value: Vec<f32>,
    pixels: usize,
}

impl SparseImages {
    /// From `rows` images of `pixels` bytes each, scaled by 1/255 as the dense path does.
    pub fn from_bytes(images: &[u8], pixels: usize) -> Self {
        let rows = images.len() / pixels.max(1);
        let mut start = Vec::with_capacity(rows + 1);
        let (mut pixel, mut value) = (Vec::new(), Vec::new());
        start.push(0);
        for image in images.chunks_exact(pixels) {
            for (p, &v) in image.iter().enumerate() {
                if v != 0 {
                    pixel.push(p as u16);
                    value.push(v as f32 * (1.0 / 255.0));
                }
            }
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

/// Which compiled version of the loop this CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelPath {
    Avx512,
    Avx2,
    Portable,
}

impl KernelPath {
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return KernelPath::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return KernelPath::Avx2;
            }
        }
        KernelPath::Portable
    }

    pub fn name(self) -> &'static str {
        match self {
            KernelPath::Avx512 => "avx512",
            KernelPath::Avx2 => "avx2+fma",
            KernelPath::Portable => "portable",
        }
    }
}

/// `out[r, :] = bias + images[r] · w` for every image, `w` being `[pixels, d_out]` row-major
/// (Burn's layout of a linear layer's weight) and `out` `[rows, d_out]`. Rows are split over
/// rayon's threads.
pub fn first_layer(images: &SparseImages, w: &[f32], bias: &[f32], out: &mut [f32]) {
    let d_out = bias.len();
    assert_eq!(w.len(), images.pixels * d_out, "weight shape");
    assert_eq!(out.len(), images.rows() * d_out, "output shape");
    let path = KernelPath::detect();
    // Enough rows per task to amortize the task, few enough to balance two to eight threads.
    let rows_per_task = 64;
    out.par_chunks_mut(rows_per_task * d_out)
        .enumerate()
        .for_each(|(task, out)| {
            let first = task * rows_per_task;
            match path {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `detect` found the CPU features these versions are compiled for.
                KernelPath::Avx512 => unsafe { rows_avx512(images, first, w, bias, out) },
                #[cfg(target_arch = "x86_64")]
                KernelPath::Avx2 => unsafe { rows_avx2(images, first, w, bias, out) },
                _ => rows::<false>(images, first, w, bias, out),
            }
        });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn rows_avx512(
    images: &SparseImages,
    first: usize,
    w: &[f32],
    bias: &[f32],
    out: &mut [f32],
) {
    rows::<true>(images, first, w, bias, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2(images: &SparseImages, first: usize, w: &[f32], bias: &[f32], out: &mut [f32]) {
    rows::<true>(images, first, w, bias, out)
}

/// The loop, inlined into each compiled version. `FUSED`: multiply-add in one instruction,
/// where the CPU has one (elsewhere `mul_add` would be a slow library call).
///
/// Per image and block of outputs, the rows of W1 for its lit pixels stream from L2 (W1 is
/// 800 KB; a 64-column block of it 200 KB): measured here, that bounds this loop. Regrouping a
/// few dozen images by pixel, so that each row block is read once per group, was no faster in a
/// first try (its accumulators leave the registers).
#[inline(always)]
fn rows<const FUSED: bool>(
    images: &SparseImages,
    first: usize,
    w: &[f32],
    bias: &[f32],
    out: &mut [f32],
) {
    let d_out = bias.len();
    for (i, out_row) in out.chunks_exact_mut(d_out).enumerate() {
        let r = first + i;
        let (a, b) = (images.start[r] as usize, images.start[r + 1] as usize);
        let (pixels, values) = (&images.pixel[a..b], &images.value[a..b]);
        let mut col = 0;
        while col + BLOCK <= d_out {
            let mut acc: [f32; BLOCK] = bias[col..col + BLOCK].try_into().expect("a block");
            for (&p, &v) in pixels.iter().zip(values) {
                let start = p as usize * d_out + col;
                let row: &[f32; BLOCK] = w[start..start + BLOCK].try_into().expect("a block");
                for (a, &x) in acc.iter_mut().zip(row) {
                    *a = if FUSED { v.mul_add(x, *a) } else { *a + v * x };
                }
            }
            out_row[col..col + BLOCK].copy_from_slice(&acc);
            col += BLOCK;
        }
        // Layer widths that are not a multiple of the block.
        for (c, o) in out_row.iter_mut().enumerate().skip(col) {
            *o = bias[c]
                + pixels
                    .iter()
                    .zip(values)
                    .map(|(&p, &v)| v * w[p as usize * d_out + c])
                    .sum::<f32>();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the dense product in f64, for widths with and without a remainder block.
    #[test]
    fn matches_the_dense_product() {
        let (rows, pixels) = (130, 784);
        let images: Vec<u8> = (0..rows * pixels)
            .map(|i| {
                if (i * 7919) % 5 == 0 {
                    (i % 251) as u8
                } else {
                    0
                }
            })
            .collect();
        let sparse = SparseImages::from_bytes(&images, pixels);
        assert_eq!(sparse.rows(), rows);
        assert!(
            (sparse.density() - 0.2).abs() < 0.02,
            "{}",
            sparse.density()
        );
        for d_out in [256, 100, 10] {
            let w: Vec<f32> = (0..pixels * d_out)
                .map(|i| ((i * 37) % 101) as f32 / 101.0 - 0.5)
                .collect();
            let bias: Vec<f32> = (0..d_out).map(|j| j as f32 * 0.01).collect();
            let mut out = vec![0f32; rows * d_out];
            first_layer(&sparse, &w, &bias, &mut out);
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
                        "row {r} col {c}: {got} vs {want}"
                    );
                }
            }
        }
    }
}
