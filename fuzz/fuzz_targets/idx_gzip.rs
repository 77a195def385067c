//! The file readers' path (gzip detection, inflating, size limits, then IDX checks) on
//! arbitrary file contents. The first byte picks the file name (`.gz` or not) and the kind;
//! the rest is the file. Half the time the rest is gzipped first, so the parser behind the
//! inflater is reached with interesting data too.
#![no_main]

use std::io::Write;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mnist_train::data::idx::{decode_images, decode_labels, parse_images, parse_labels};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let path = Path::new(if selector & 1 == 1 { "fuzz.gz" } else { "fuzz" });
    let raw = if selector & 4 == 4 {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(rest).unwrap();
        enc.finish().unwrap()
    } else {
        rest.to_vec()
    };
    if selector & 2 == 2 {
        if let Ok((pixels, count)) = decode_images(raw.clone(), path) {
            assert_eq!(pixels.len(), count * 784);
            if selector & 4 == 4 {
                // Inflating is transparent: the same bytes parse the same unwrapped.
                assert_eq!(parse_images(rest, path).unwrap(), (pixels, count));
            }
        }
    } else if let Ok(labels) = decode_labels(raw.clone(), path) {
        assert!(labels.iter().all(|&l| l < 10));
        if selector & 4 == 4 {
            assert_eq!(parse_labels(rest, path).unwrap(), labels);
        }
    }
});
