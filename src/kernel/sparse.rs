//! A set of images in compressed-row form: each image's lit pixels and their values.

/// Images in compressed-row form: for image `r`, its lit pixels are
/// `pixel[start[r]..start[r + 1]]` with values `value[..]` (in [0, 1], as the dense input).
#[derive(Debug, Clone, Default)]
pub struct SparseImages {
    pub(super) start: Vec<u32>,
    pub(super) pixel: Vec<u16>,
    pub(super) value: Vec<f32>,
    pub(super) pixels: usize,
}

/// Bit q set where `chunk[q]` (at most 16 bytes) is not zero.
#[inline(always)]
pub(super) fn lit_mask(chunk: &[u8]) -> u32 {
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
        // arrive together, the waits overlapping (docs/speed.md).
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

    pub(super) fn from_images<'a>(
        images: impl ExactSizeIterator<Item = &'a [u8]>,
        pixels: usize,
    ) -> Self {
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
            // step per lit pixel. Most chunks are dark and skipped: faster than a branch per
            // pixel (docs/speed.md).
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
