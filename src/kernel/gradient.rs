//! The first layer's weight gradient `imagesᵀ · grad` from the batch's lit pixels.

use super::*;

/// The first layer's weight gradient `imagesᵀ · grad` (`[pixels, d_out]`, row-major) for a
/// batch whose first-layer outputs have gradient `grad` (`[rows, d_out]`). Each entry sums
/// over the batch's images in order, as the dense product `xᵀ · grad` does; rows of pixels
/// no image lit are zero. Split over rayon's threads by pixel, so the sums do not depend on
/// the thread count.
pub fn weight_gradient(images: &SparseImages, grad: &[f32], d_out: usize, out: &mut [f32]) {
    weight_gradient_on(KernelPath::detect(), images, grad, d_out, out)
}

pub(super) fn weight_gradient_on(
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
    // this index is built on both threads too (on one it was a good part of the gradient's
    // time; docs/speed.md).
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
pub(super) struct ByPixel {
    pub(super) start: Vec<u32>,
    pub(super) image: Vec<u32>,
    pub(super) value: Vec<f32>,
}

impl ByPixel {
    pub(super) fn of(images: &SparseImages, first: usize, n: usize) -> Self {
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
pub(super) unsafe fn grad_avx512(band: &ByPixel, grad: &[f32], d_out: usize, out: &mut [f32]) {
    grad_rows::<true>(band, grad, d_out, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn grad_avx2(band: &ByPixel, grad: &[f32], d_out: usize, out: &mut [f32]) {
    grad_rows::<true>(band, grad, d_out, out)
}

/// The weight gradient's rows of a band of pixels: per pixel and block of outputs, the
/// accumulators stay in registers across the images that lit the pixel.
#[inline(always)]
pub(super) fn grad_rows<const FUSED: bool>(
    band: &ByPixel,
    grad: &[f32],
    d_out: usize,
    out: &mut [f32],
) {
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
