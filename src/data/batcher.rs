//! Turns u8 images into normalized tensors and decides the data order of each epoch.
//!
//! Training pixels stay u8 in memory (47 MB for MNIST rather than 188 MB as f32); each batch
//! is scaled to [0, 1] as it is drawn.

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::data::IMAGE_PIXELS;
use crate::kernel::SparseImages;

/// The shuffled order of `n` training images in `epoch`. It depends only on the seed and the
/// epoch, so a resumed run draws the same batches without storing any RNG state.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, epoch as u64, 0x005e_ed0f_da7a));
    order.shuffle(&mut rng);
    order
}

/// Splits `n` training images into (trained on, held out for validation): `valid` of them,
/// drawn by the seed from a stream of their own, so the same seed holds out the same images
/// whatever the epoch. Both lists are in file order.
pub fn holdout(n: usize, valid: usize, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, 0, 0x0a11_da7e));
    order.shuffle(&mut rng);
    let (held, kept) = order.split_at_mut(valid.min(n));
    held.sort_unstable();
    kept.sort_unstable();
    (kept.to_vec(), held.to_vec())
}

/// Seed of the device RNG (dropout masks) for one global step, so that step draws the same
/// masks whether the run was interrupted before it or not.
pub fn step_seed(seed: u64, global_step: usize) -> u64 {
    mix(seed, global_step as u64, 0xd20f_0075)
}

/// Seed of the dropout masks of the lecture's `train_loss` pass after step `global_step`: a
/// stream apart from [`step_seed`], so measuring draws nothing that training uses.
pub fn metrics_seed(seed: u64, global_step: usize) -> u64 {
    mix(seed, global_step as u64, 0x03e7_a1c5)
}

/// Seed of the augmentation of step `global_step`'s batch ([`crate::data::augment`]): a
/// stream of its own, so that augmenting changes no other draw.
pub fn augment_seed(seed: u64, global_step: usize) -> u64 {
    mix(seed, global_step as u64, 0x0a06_3e47)
}

/// SplitMix64-style mixing of (seed, counter, stream) into a well-spread 64-bit value.
fn mix(seed: u64, counter: u64, stream: u64) -> u64 {
    let mut z = seed
        .wrapping_add(counter.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(stream.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Images at `indices` as a `[len, 784]` tensor scaled to [0, 1].
pub fn images_tensor(images: &[u8], indices: &[u32], device: &Device) -> Tensor<2> {
    let mut values = vec![0f32; indices.len() * IMAGE_PIXELS];
    // Fixed-size rows let the compiler vectorize the u8 → f32 conversion.
    for (row, &i) in values.chunks_exact_mut(IMAGE_PIXELS).zip(indices) {
        let start = i as usize * IMAGE_PIXELS;
        let src: &[u8; IMAGE_PIXELS] = images[start..start + IMAGE_PIXELS]
            .try_into()
            .expect("a whole image");
        for (dst, &p) in row.iter_mut().zip(src) {
            *dst = p as f32 * (1.0 / 255.0);
        }
    }
    Tensor::from_data(
        TensorData::new(values, [indices.len(), IMAGE_PIXELS]),
        device,
    )
}

/// Labels at `indices` as an integer tensor.
pub fn labels_tensor(labels: &[u8], indices: &[u32], device: &Device) -> Tensor<1, Int> {
    let values: Vec<i64> = indices.iter().map(|&i| labels[i as usize] as i64).collect();
    Tensor::from_data(TensorData::new(values, [indices.len()]), device)
}

/// A whole split, in file order, resident on the device (the test set evaluated every step),
/// cut into chunks so that evaluation streams through cache-sized activations instead of
/// allocating (and page-faulting) 10 MB intermediates per layer.
pub struct ResidentSet {
    pub chunks: Vec<(Tensor<2>, Tensor<1, Int>)>,
    /// The same chunks' images in sparse form on the host, on the CPU backends: their first
    /// layer is computed from the lit pixels only ([`crate::kernel`]).
    pub sparse: Option<Vec<SparseImages>>,
    pub len: usize,
}

/// Rows per evaluation chunk on the CPU backends; see [`ResidentSet`]. Each chunk runs whole on
/// one thread, and at 500 rows its first-layer output (500 KB) stays in a 1 MB L2 for the next
/// product (400, 625, 1,000 and 2,000 were no faster; docs/speed.md).
pub const EVAL_CHUNK: usize = 500;

impl ResidentSet {
    /// Chunks of `default_chunk` rows (`MNIST_TRAIN_EVAL_CHUNK` overrides, for measuring).
    pub fn new(images: &[u8], labels: &[u8], device: &Device, default_chunk: usize) -> Self {
        Self::with_chunk(images, labels, device, eval_chunk(default_chunk))
    }

    pub fn with_chunk(images: &[u8], labels: &[u8], device: &Device, chunk: usize) -> Self {
        let all: Vec<u32> = (0..labels.len() as u32).collect();
        let chunks = all
            .chunks(chunk.max(1))
            .map(|idx| {
                (
                    images_tensor(images, idx, device),
                    labels_tensor(labels, idx, device),
                )
            })
            .collect();
        let sparse = crate::kernel::evaluates_on(device).then(|| {
            images
                .chunks(chunk.max(1).saturating_mul(IMAGE_PIXELS))
                .map(|c| SparseImages::from_bytes(c, IMAGE_PIXELS))
                .collect()
        });
        Self {
            chunks,
            sparse,
            len: labels.len(),
        }
    }
}

fn eval_chunk(default_chunk: usize) -> usize {
    crate::kernel::FastPaths::get()
        .eval_chunk
        .unwrap_or(default_chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let a = epoch_order(1000, 7, 0);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..1000).collect::<Vec<u32>>());
        assert_eq!(
            a,
            epoch_order(1000, 7, 0),
            "same seed and epoch, same order"
        );
        assert_ne!(a, epoch_order(1000, 7, 1), "each epoch reshuffles");
        assert_ne!(a, epoch_order(1000, 8, 0), "the seed matters");
        assert_ne!(a, sorted, "it is shuffled");
    }

    #[test]
    fn validation_images_are_never_trained_on_and_fixed_by_the_seed() {
        let (train, valid) = holdout(1000, 100, 7);
        assert_eq!((train.len(), valid.len()), (900, 100));
        let mut all: Vec<u32> = train.iter().chain(&valid).copied().collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..1000).collect::<Vec<u32>>(),
            "disjoint, and nothing lost"
        );
        assert_eq!((train.clone(), valid.clone()), holdout(1000, 100, 7));
        assert_ne!(valid, holdout(1000, 100, 8).1, "another seed, other images");
        assert_ne!(
            valid,
            (0..100).collect::<Vec<u32>>(),
            "drawn, not the first ones"
        );
        // The epochs' orders draw from the kept images only.
        let order = epoch_order(train.len(), 7, 3);
        assert!(order.iter().all(|&i| !valid.contains(&train[i as usize])));
    }

    #[test]
    fn step_seeds_differ() {
        assert_ne!(step_seed(0, 1), step_seed(0, 2));
        assert_ne!(step_seed(0, 1), step_seed(1, 1));
        assert_ne!(step_seed(0, 1), metrics_seed(0, 1));
    }
}
