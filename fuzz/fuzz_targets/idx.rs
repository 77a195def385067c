//! The IDX parsers on arbitrary decompressed bytes: never panic, and what they accept is
//! consistent (count × 784 pixels, labels 0–9) and round-trips through the encoders.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mnist_train::data::idx::{encode_images, encode_labels, parse_images, parse_labels};

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz-input");
    if let Ok((pixels, count)) = parse_images(data, path) {
        assert_eq!(pixels.len(), count * 784);
        assert_eq!(encode_images(&pixels, count), data);
    }
    if let Ok(labels) = parse_labels(data, path) {
        assert!(labels.iter().all(|&l| l < 10));
        assert_eq!(encode_labels(&labels), data);
    }
});
