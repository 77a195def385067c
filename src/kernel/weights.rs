//! The first layer's weights on the host, in the blocked layout the loops read.

use aligned_vec::{AVec, ConstAlign};
use burn::tensor::TensorData;

use super::*;

/// f32s starting at a cache line (64 bytes).
type Aligned = AVec<f32, ConstAlign<64>>;

/// The first layer's weight matrix on the host, laid out for [`first_layer`]: in blocks of
/// [`BLOCK`] columns, each block a contiguous `[pixels, BLOCK]` matrix starting at a 64-byte
/// boundary, then the columns past the last whole block (row-major).
///
/// An image's lit pixels come in runs of neighbours along its strokes; in blocks, their rows
/// are neighbours in memory too, which the CPU's prefetchers follow: faster than the row-major
/// matrix, which itself was slower still when 32 bytes off a cache line (docs/speed.md).
pub struct HostWeights {
    pub(super) lines: Aligned,
    pub(super) rest: Vec<f32>,
    pub(super) pixels: usize,
    pub(super) d_out: usize,
}

thread_local! {
    /// The last buffer dropped on this thread, for the next copy: a fresh 800 KB allocation is
    /// fresh pages, and faulting them in cost more than the copy.
    static SPARE: std::cell::RefCell<Option<Aligned>> = const { std::cell::RefCell::new(None) };
}

impl HostWeights {
    /// From a `[pixels, d_out]` row-major matrix (Burn's layout of a linear layer's weight).
    pub fn new(values: &[f32], pixels: usize, d_out: usize) -> Self {
        assert_eq!(values.len(), pixels * d_out, "weight shape");
        let blocks = d_out / BLOCK;
        let mut lines = SPARE
            .with(|spare| spare.borrow_mut().take())
            .unwrap_or_else(|| Aligned::new(64));
        lines.clear();
        lines.resize(blocks * pixels * BLOCK, 0.0);
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
    pub(super) fn block(&self, b: usize) -> &[f32] {
        let len = self.pixels * BLOCK;
        &self.all_blocks()[b * len..(b + 1) * len]
    }

    pub(super) fn all_blocks(&self) -> &[f32] {
        self.lines.as_slice()
    }

    pub(super) fn blocks_mut(&mut self) -> &mut [f32] {
        self.lines.as_mut_slice()
    }

    /// Output width.
    pub fn width(&self) -> usize {
        self.d_out
    }
}

impl Drop for HostWeights {
    fn drop(&mut self) {
        // An empty AVec allocates nothing.
        let lines = std::mem::replace(&mut self.lines, Aligned::new(64));
        SPARE.with(|spare| *spare.borrow_mut() = Some(lines));
    }
}

/// A tensor's values on the host as f32: a CPU backend's f32 storage taken as it is, without a
/// conversion per value (the first layer's weights are read back on every training step).
pub fn host_f32(data: TensorData) -> Vec<f32> {
    if data.dtype() != burn::tensor::DType::F32 {
        return data.iter::<f32>().collect();
    }
    // Moves the storage out when the data holds it alone (Burn's flex backend), else copies.
    data.try_into_vec::<f32>()
        .expect("f32 tensor data converts to a Vec<f32>")
}
