//! Bringing an arbitrary image into MNIST's form, the way the dataset was made (LeCun et al.):
//! grayscale, white ink on black, the digit's bounding box scaled to fit 20×20 keeping its
//! aspect ratio, then pasted into 28×28 so that its centre of mass sits at the centre.

use std::path::Path;

use image::imageops::{self, FilterType};
use image::{GrayImage, Luma};

use super::{IMAGE_PIXELS, IMAGE_SIDE};

/// The extensions `predict` reads when given a directory.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "pgm", "ppm", "pnm"];

/// The side of the box the digit is scaled into.
const DIGIT_BOX: u32 = 20;

/// Reads an image file (PNG, JPEG, BMP, PGM/PPM) and brings it into MNIST's form. The error is
/// one line saying what is wrong with the file.
pub fn load(path: &Path) -> Result<[u8; IMAGE_PIXELS], String> {
    let img = image::ImageReader::open(path)
        .map_err(|e| format!("cannot open: {e}"))?
        .with_guessed_format()
        .map_err(|e| format!("cannot read: {e}"))?
        .decode()
        .map_err(|e| format!("not a readable image: {e}"))?;
    // Transparent pixels are paper: composite over white before dropping alpha.
    let la = img.to_luma_alpha8();
    let gray = GrayImage::from_fn(la.width(), la.height(), |x, y| {
        let [v, a] = la.get_pixel(x, y).0;
        let a = a as u32;
        Luma([((v as u32 * a + 255 * (255 - a)) / 255) as u8])
    });
    to_mnist(&gray)
}

/// MNIST's form of a grayscale image: see the module doc.
pub fn to_mnist(gray: &GrayImage) -> Result<[u8; IMAGE_PIXELS], String> {
    let (w, h) = gray.dimensions();
    if w == 0 || h == 0 {
        return Err("the image is empty (0 pixels)".into());
    }
    // Light paper (a digit drawn dark on white) is inverted to MNIST's white on black; the
    // border's mean tells the paper's shade.
    let border: Vec<u8> = gray
        .enumerate_pixels()
        .filter(|(x, y, _)| *x == 0 || *y == 0 || *x == w - 1 || *y == h - 1)
        .map(|(_, _, p)| p.0[0])
        .collect();
    let paper = border.iter().map(|&v| v as u32).sum::<u32>() / border.len() as u32;
    let mut ink = gray.clone();
    if paper > 127 {
        imageops::invert(&mut ink);
    }
    // Stretch to the full 0–255 range and drop faint paper texture.
    let (lo, hi) = ink
        .pixels()
        .fold((255u8, 0u8), |(lo, hi), p| (lo.min(p.0[0]), hi.max(p.0[0])));
    if hi as i32 - lo as i32 <= 32 {
        return Err("no digit found: the image is blank (one shade)".into());
    }
    let threshold = lo as u32 + (hi - lo) as u32 / 4;
    for p in ink.pixels_mut() {
        let v = p.0[0] as u32;
        p.0[0] = if v <= threshold {
            0
        } else {
            ((v - threshold) * 255 / (hi as u32 - threshold)) as u8
        };
    }
    // The digit's bounding box.
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for (x, y, p) in ink.enumerate_pixels() {
        if p.0[0] > 0 {
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
    }
    let digit = imageops::crop_imm(&ink, x0, y0, x1 - x0 + 1, y1 - y0 + 1).to_image();
    let (dw, dh) = digit.dimensions();
    let scale = DIGIT_BOX as f64 / dw.max(dh) as f64;
    let (sw, sh) = (
        ((dw as f64 * scale).round() as u32).clamp(1, DIGIT_BOX),
        ((dh as f64 * scale).round() as u32).clamp(1, DIGIT_BOX),
    );
    // Anti-aliased, as MNIST's digits are.
    let small = imageops::resize(&digit, sw, sh, FilterType::Triangle);
    // Centre of mass of the scaled digit, then the offset that puts it at the 28×28 centre,
    // kept inside the frame.
    let (mut mass, mut cx, mut cy) = (0f64, 0f64, 0f64);
    for (x, y, p) in small.enumerate_pixels() {
        let m = p.0[0] as f64;
        mass += m;
        cx += m * (x as f64 + 0.5);
        cy += m * (y as f64 + 0.5);
    }
    let centre = IMAGE_SIDE as f64 / 2.0;
    let place = |com: f64, size: u32| {
        ((centre - com).round() as i64).clamp(0, (IMAGE_SIDE as u32 - size) as i64)
    };
    let (ox, oy) = if mass > 0.0 {
        (place(cx / mass, sw), place(cy / mass, sh))
    } else {
        (
            ((IMAGE_SIDE as u32 - sw) / 2) as i64,
            ((IMAGE_SIDE as u32 - sh) / 2) as i64,
        )
    };
    let mut out = [0u8; IMAGE_PIXELS];
    for (x, y, p) in small.enumerate_pixels() {
        let (tx, ty) = (x as i64 + ox, y as i64 + oy);
        out[ty as usize * IMAGE_SIDE + tx as usize] = p.0[0];
    }
    Ok(out)
}

/// A 28×28 MNIST image as a grayscale image (to save what the network saw).
pub fn to_image(pixels: &[u8; IMAGE_PIXELS]) -> GrayImage {
    GrayImage::from_fn(IMAGE_SIDE as u32, IMAGE_SIDE as u32, |x, y| {
        Luma([pixels[y as usize * IMAGE_SIDE + x as usize]])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A "1": a vertical bar, drawn dark on light paper at `scale` times MNIST's size and off
    /// centre.
    fn drawn_one(scale: u32) -> GrayImage {
        GrayImage::from_fn(60 * scale, 40 * scale, |x, y| {
            let on = (10 * scale..13 * scale).contains(&x) && (5 * scale..35 * scale).contains(&y);
            Luma([if on { 20 } else { 235 }])
        })
    }

    fn centre_of_mass(img: &[u8; IMAGE_PIXELS]) -> (f64, f64) {
        let (mut m, mut cx, mut cy) = (0.0, 0.0, 0.0);
        for (i, &v) in img.iter().enumerate() {
            let v = v as f64;
            m += v;
            cx += v * ((i % 28) as f64 + 0.5);
            cy += v * ((i / 28) as f64 + 0.5);
        }
        (cx / m, cy / m)
    }

    #[test]
    fn a_dark_digit_on_light_paper_becomes_a_centred_white_20_pixel_digit() {
        for scale in [1, 3] {
            let out = to_mnist(&drawn_one(scale)).unwrap();
            let rows: Vec<usize> = (0..28)
                .filter(|r| out[r * 28..(r + 1) * 28].iter().any(|&v| v > 0))
                .collect();
            assert_eq!(rows.len(), 20, "the digit's height is scaled to 20");
            assert_eq!(out[0], 0, "black background");
            assert!(out.iter().any(|&v| v > 200), "white ink");
            let (cx, cy) = centre_of_mass(&out);
            assert!(
                (cx - 14.0).abs() <= 1.0 && (cy - 14.0).abs() <= 1.0,
                "{cx} {cy}"
            );
        }
    }

    #[test]
    fn blank_and_empty_images_are_refused() {
        let blank = GrayImage::from_pixel(30, 30, Luma([255]));
        assert!(to_mnist(&blank).unwrap_err().contains("blank"));
        assert!(
            to_mnist(&GrayImage::new(0, 0))
                .unwrap_err()
                .contains("empty")
        );
    }
}
