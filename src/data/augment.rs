//! On-the-fly augmentation of a training batch: each image rotated about its centre and
//! shifted, by amounts drawn per image from the step's seed, resampled bilinearly back into
//! bytes (so that either model, and the MLP's lit-pixel path, reads it as any batch).
//!
//! Written here because the one crate with these transforms, `imageproc`, would build a
//! second image stack for one 28×28 bilinear warp.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::Augment;
use crate::data::{IMAGE_PIXELS, IMAGE_SIDE};

/// The images `idx` of `images`, each rotated by an angle drawn uniformly from ±`rotate`
/// degrees and shifted by offsets drawn uniformly from ±`shift` pixels in x and y, in that
/// order, from a stream seeded by `seed`: the same seed gives the same batch.
pub fn augment_batch(images: &[u8], idx: &[u32], augment: Augment, seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut uniform = |bound: f64| {
        let u = (rng.next_u32() as f64 + 0.5) / 4_294_967_296.0;
        (2.0 * u - 1.0) * bound
    };
    let mut out = vec![0u8; idx.len() * IMAGE_PIXELS];
    for (dst, &i) in out.chunks_exact_mut(IMAGE_PIXELS).zip(idx) {
        let start = i as usize * IMAGE_PIXELS;
        let src = &images[start..start + IMAGE_PIXELS];
        let angle = uniform(augment.rotate).to_radians();
        let (dx, dy) = (uniform(augment.shift), uniform(augment.shift));
        warp(src, dst, angle, dx, dy);
    }
    out
}

/// `dst` = `src` rotated by `angle` (radians, counter-clockwise on screen) about the centre,
/// then moved by (`dx`, `dy`) pixels; pixels from outside the picture are black.
fn warp(src: &[u8], dst: &mut [u8], angle: f64, dx: f64, dy: f64) {
    let side = IMAGE_SIDE as f64;
    let centre = (side - 1.0) / 2.0;
    let (sin, cos) = angle.sin_cos();
    let pixel = |x: isize, y: isize| -> f64 {
        if x < 0 || y < 0 || x >= IMAGE_SIDE as isize || y >= IMAGE_SIDE as isize {
            0.0
        } else {
            src[y as usize * IMAGE_SIDE + x as usize] as f64
        }
    };
    for y in 0..IMAGE_SIDE {
        for x in 0..IMAGE_SIDE {
            // Where this output pixel comes from: undo the shift, then the rotation (rows grow
            // downwards, so a counter-clockwise turn on screen is clockwise in these axes).
            let (u, v) = (x as f64 - dx - centre, y as f64 - dy - centre);
            let sx = cos * u - sin * v + centre;
            let sy = sin * u + cos * v + centre;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as isize, y0 as isize);
            let value = pixel(x0, y0) * (1.0 - fx) * (1.0 - fy)
                + pixel(x0 + 1, y0) * fx * (1.0 - fy)
                + pixel(x0, y0 + 1) * (1.0 - fx) * fy
                + pixel(x0 + 1, y0 + 1) * fx * fy;
            dst[y * IMAGE_SIDE + x] = value.round().clamp(0.0, 255.0) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3×3 bright square with its top-left corner at (`x`, `y`).
    fn square(x: usize, y: usize) -> Vec<u8> {
        let mut img = vec![0u8; IMAGE_PIXELS];
        for row in y..y + 3 {
            for col in x..x + 3 {
                img[row * IMAGE_SIDE + col] = 200;
            }
        }
        img
    }

    #[test]
    fn no_augmentation_is_the_identity() {
        let img = square(5, 9);
        let out = augment_batch(&img, &[0], Augment::default(), 7);
        assert_eq!(out, img);
    }

    #[test]
    fn a_whole_pixel_shift_moves_the_picture() {
        let mut out = vec![0u8; IMAGE_PIXELS];
        warp(&square(5, 9), &mut out, 0.0, 2.0, -1.0);
        assert_eq!(out, square(7, 8));
    }

    #[test]
    fn a_quarter_turn_keeps_the_centre_and_moves_a_corner_piece() {
        let mut img = vec![0u8; IMAGE_PIXELS];
        img[2 * IMAGE_SIDE + 20] = 255; // upper right
        let mut out = vec![0u8; IMAGE_PIXELS];
        warp(&img, &mut out, std::f64::consts::FRAC_PI_2, 0.0, 0.0);
        // Counter-clockwise on screen: the upper right goes to the upper left.
        assert_eq!(
            out[7 * IMAGE_SIDE + 2],
            255,
            "{:?}",
            out.iter().position(|&p| p > 0)
        );
        assert_eq!(out.iter().filter(|&&p| p > 0).count(), 1);
    }

    #[test]
    fn draws_depend_on_the_seed_alone_and_stay_in_bounds() {
        let img = square(12, 12);
        let augment = Augment {
            rotate: 15.0,
            shift: 2.0,
        };
        let a = augment_batch(&img, &[0, 0, 0], augment, 1);
        assert_eq!(a, augment_batch(&img, &[0, 0, 0], augment, 1));
        assert_ne!(a, augment_batch(&img, &[0, 0, 0], augment, 2));
        assert_ne!(
            a[..IMAGE_PIXELS],
            a[IMAGE_PIXELS..2 * IMAGE_PIXELS],
            "per image"
        );
        // A 2-pixel shift and a 15° turn of a centred square keep it whole in the picture.
        for image in a.chunks_exact(IMAGE_PIXELS) {
            let ink: u32 = image.iter().map(|&p| p as u32).sum();
            assert!((ink as i64 - 9 * 200).abs() < 200, "ink {ink}");
        }
    }
}
