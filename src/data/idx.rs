//! The IDX file format used by MNIST and Fashion-MNIST, raw or gzip-compressed.
//!
//! An image file is a 16-byte big-endian header (magic 2051, count, rows,
//! cols) followed by `count * rows * cols` pixel bytes; a label file is an
//! 8-byte header (magic 2049, count) followed by `count` label bytes.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{DataError, IMAGE_PIXELS, IMAGE_SIDE, NUM_CLASSES};

/// Magic number of an IDX file of unsigned bytes with 3 dimensions (images).
pub const IMAGE_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (labels).
pub const LABEL_MAGIC: u32 = 0x0000_0801;
/// Most items a header may claim. EMNIST, the largest MNIST-format set, has
/// under 1M; anything beyond this is corruption, and refusing it keeps a bad
/// header from sizing a huge allocation.
pub const MAX_ITEMS: u64 = 1_000_000;

const IMAGE_HEADER: usize = 16;
const LABEL_HEADER: usize = 8;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Largest decompressed size a valid file can have; more means a gzip bomb
/// or garbage, and we stop inflating there.
const MAX_DECOMPRESSED: u64 = IMAGE_HEADER as u64 + MAX_ITEMS * IMAGE_PIXELS as u64;

/// Which of the two IDX layouts a file should have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Images,
    Labels,
}

impl Kind {
    fn magic(self) -> u32 {
        match self {
            Kind::Images => IMAGE_MAGIC,
            Kind::Labels => LABEL_MAGIC,
        }
    }

    fn header_len(self) -> usize {
        match self {
            Kind::Images => IMAGE_HEADER,
            Kind::Labels => LABEL_HEADER,
        }
    }

    fn item_len(self) -> usize {
        match self {
            Kind::Images => IMAGE_PIXELS,
            Kind::Labels => 1,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Images => "image",
            Kind::Labels => "label",
        }
    }
}

/// Read an image file (raw or gzip). Returns the pixels (`count * 784` bytes)
/// and `count`. Rejects anything that is not 28x28.
pub fn read_images(path: &Path) -> Result<(Vec<u8>, usize), DataError> {
    decode_images(read_file(path)?, path)
}

/// Read a label file (raw or gzip). Rejects labels outside `0..=9`.
pub fn read_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    decode_labels(read_file(path)?, path)
}

/// [`read_images`] on the file's bytes (raw or gzip) already in memory. `path` decides
/// whether a `.gz` name demands gzip, and names the file in errors.
pub fn decode_images(raw: Vec<u8>, path: &Path) -> Result<(Vec<u8>, usize), DataError> {
    let mut bytes = decompress_if_gzip(raw, path)?;
    let count = check(&bytes, path, Kind::Images)?;
    // Shifting in place avoids a second 47 MB buffer for the training set.
    bytes.drain(..IMAGE_HEADER);
    Ok((bytes, count))
}

/// [`read_labels`] on the file's bytes (raw or gzip) already in memory.
pub fn decode_labels(raw: Vec<u8>, path: &Path) -> Result<Vec<u8>, DataError> {
    let mut bytes = decompress_if_gzip(raw, path)?;
    check(&bytes, path, Kind::Labels)?;
    bytes.drain(..LABEL_HEADER);
    Ok(bytes)
}

/// Parse an image file from bytes already decompressed. `path` is only used
/// in error messages.
pub fn parse_images(bytes: &[u8], path: &Path) -> Result<(Vec<u8>, usize), DataError> {
    let count = check(bytes, path, Kind::Images)?;
    Ok((bytes[IMAGE_HEADER..].to_vec(), count))
}

/// Parse a label file from bytes already decompressed. `path` is only used in
/// error messages.
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>, DataError> {
    check(bytes, path, Kind::Labels)?;
    Ok(bytes[LABEL_HEADER..].to_vec())
}

/// Build an IDX image file: header for `count` 28x28 images, then `pixels`
/// as given (pass `count * 784` bytes for a valid file; other lengths are
/// written as-is so tests can build malformed files).
pub fn encode_images(pixels: &[u8], count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(IMAGE_HEADER + pixels.len());
    out.extend_from_slice(&IMAGE_MAGIC.to_be_bytes());
    out.extend_from_slice(&header_u32(count).to_be_bytes());
    out.extend_from_slice(&(IMAGE_SIDE as u32).to_be_bytes());
    out.extend_from_slice(&(IMAGE_SIDE as u32).to_be_bytes());
    out.extend_from_slice(pixels);
    out
}

/// Build an IDX label file holding `labels`.
pub fn encode_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(LABEL_HEADER + labels.len());
    out.extend_from_slice(&LABEL_MAGIC.to_be_bytes());
    out.extend_from_slice(&header_u32(labels.len()).to_be_bytes());
    out.extend_from_slice(labels);
    out
}

/// IDX counts are u32; saturate rather than wrap so an oversized input
/// yields a file that fails validation instead of one that lies.
fn header_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Read a file and, if it is gzip (by magic bytes or `.gz` name), inflate it.
pub(crate) fn read_decompressed(path: &Path) -> Result<Vec<u8>, DataError> {
    decompress_if_gzip(read_file(path)?, path)
}

fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|source| DataError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })
}

/// Inflate `raw` if it is gzip, else return it unchanged. `path` decides
/// whether a `.gz` name demands gzip, and names the file in errors.
pub(crate) fn decompress_if_gzip(raw: Vec<u8>, path: &Path) -> Result<Vec<u8>, DataError> {
    if raw.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    let is_gzip = raw.starts_with(&GZIP_MAGIC);
    let named_gz = path.extension().is_some_and(|ext| ext == "gz");
    if is_gzip {
        gunzip(&raw, path)
    } else if named_gz {
        Err(DataError::BadGzip {
            path: path.to_path_buf(),
            detail: format!(
                "the name ends in .gz but it starts with {}, not the gzip signature 1f 8b",
                hex_prefix(&raw)
            ),
        })
    } else {
        Ok(raw)
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    let shown: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
    shown.join(" ")
}

/// Inflate a (possibly multi-member) gzip stream, sizing the output from the
/// IDX header so the 47 MB training images are not grown by doubling.
fn gunzip(compressed: &[u8], path: &Path) -> Result<Vec<u8>, DataError> {
    let mut decoder = flate2::read::MultiGzDecoder::new(compressed).take(MAX_DECOMPRESSED + 1);
    let mut head = Vec::with_capacity(IMAGE_HEADER);
    (&mut decoder)
        .take(IMAGE_HEADER as u64)
        .read_to_end(&mut head)
        .map_err(|e| gzip_error(e, path))?;
    let mut out = Vec::with_capacity(capacity_hint(&head));
    out.extend_from_slice(&head);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| gzip_error(e, path))?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(DataError::BadGzip {
            path: path.to_path_buf(),
            detail: format!(
                "it inflates to more than {MAX_DECOMPRESSED} bytes, larger than any MNIST-format file"
            ),
        });
    }
    Ok(out)
}

fn gzip_error(err: std::io::Error, path: &Path) -> DataError {
    let path = path.to_path_buf();
    if err.kind() == std::io::ErrorKind::UnexpectedEof {
        DataError::TruncatedGzip { path }
    } else {
        DataError::BadGzip {
            path,
            detail: err.to_string(),
        }
    }
}

/// Total decompressed length implied by an IDX header, or 0 when the header
/// is unknown or implausible (validation reports those properly later).
fn capacity_hint(head: &[u8]) -> usize {
    let Some(magic) = be_u32(head, 0) else {
        return 0;
    };
    let kind = match magic {
        IMAGE_MAGIC => Kind::Images,
        LABEL_MAGIC => Kind::Labels,
        _ => return 0,
    };
    match be_u32(head, 4) {
        Some(count) if u64::from(count) <= MAX_ITEMS => expected_len(kind, count).unwrap_or(0),
        _ => 0,
    }
}

/// Big-endian u32 at `at`, if the bytes are there.
fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let word: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(word))
}

/// Header length plus `count` items, or None on overflow.
fn expected_len(kind: Kind, count: u32) -> Option<usize> {
    usize::try_from(count)
        .ok()?
        .checked_mul(kind.item_len())?
        .checked_add(kind.header_len())
}

/// Validate a whole decompressed file of `kind`; returns the item count.
fn check(bytes: &[u8], path: &Path, kind: Kind) -> Result<usize, DataError> {
    let owned = || path.to_path_buf();
    if bytes.is_empty() {
        return Err(DataError::Empty { path: owned() });
    }
    let too_short = || DataError::HeaderTooShort {
        path: owned(),
        needed: kind.header_len(),
        actual: bytes.len(),
    };
    let magic = be_u32(bytes, 0).ok_or_else(too_short)?;
    check_magic(bytes, magic, path, kind)?;
    if bytes.len() < kind.header_len() {
        return Err(too_short());
    }
    let count = be_u32(bytes, 4).ok_or_else(too_short)?;
    if kind == Kind::Images {
        check_dimensions(bytes, path)?;
    }
    let absurd = || DataError::AbsurdCount {
        path: owned(),
        count: u64::from(count),
        max: MAX_ITEMS,
    };
    if u64::from(count) > MAX_ITEMS {
        return Err(absurd());
    }
    let expected = expected_len(kind, count).ok_or_else(absurd)?;
    if bytes.len() != expected {
        return Err(DataError::LengthMismatch {
            path: owned(),
            expected: expected as u64,
            actual: bytes.len() as u64,
        });
    }
    if kind == Kind::Labels {
        check_label_values(&bytes[LABEL_HEADER..], path)?;
    }
    usize::try_from(count).map_err(|_| absurd())
}

fn check_magic(bytes: &[u8], found: u32, path: &Path, kind: Kind) -> Result<(), DataError> {
    if found == kind.magic() {
        return Ok(());
    }
    let hint = if found == IMAGE_MAGIC {
        " (this looks like an image file)"
    } else if found == LABEL_MAGIC {
        " (this looks like a label file)"
    } else if bytes.starts_with(&GZIP_MAGIC) {
        " (this looks like gzip data that was not decompressed)"
    } else {
        " (this is not an MNIST IDX file)"
    };
    Err(DataError::WrongMagic {
        path: path.to_path_buf(),
        kind: kind.noun(),
        expected: kind.magic(),
        found,
        hint,
    })
}

fn check_dimensions(bytes: &[u8], path: &Path) -> Result<(), DataError> {
    let rows = be_u32(bytes, 8).unwrap_or(0);
    let cols = be_u32(bytes, 12).unwrap_or(0);
    let side = IMAGE_SIDE as u32;
    if rows == side && cols == side {
        Ok(())
    } else {
        Err(DataError::WrongDimensions {
            path: path.to_path_buf(),
            rows,
            cols,
        })
    }
}

fn check_label_values(labels: &[u8], path: &Path) -> Result<(), DataError> {
    match labels.iter().position(|&l| usize::from(l) >= NUM_CLASSES) {
        None => Ok(()),
        Some(index) => Err(DataError::BadLabel {
            path: PathBuf::from(path),
            index,
            value: labels[index],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn pixels(count: usize) -> Vec<u8> {
        (0..count * IMAGE_PIXELS)
            .map(|i| (i * 31 % 251) as u8)
            .collect()
    }

    /// Write `bytes` to `dir/name` and return the path.
    fn put(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn assert_names(err: &DataError, path: &Path) {
        let msg = err.to_string();
        assert!(
            msg.contains(&path.display().to_string()),
            "message does not name {}: {msg}",
            path.display()
        );
        assert!(!msg.contains('\n'), "message is not one line: {msg}");
    }

    #[test]
    fn round_trip_in_memory() {
        let path = Path::new("mem");
        let (px, n) = parse_images(&encode_images(&pixels(3), 3), path).unwrap();
        assert_eq!((px, n), (pixels(3), 3));
        let labels = vec![0, 9, 5, 3];
        assert_eq!(parse_labels(&encode_labels(&labels), path).unwrap(), labels);
        let (px, n) = parse_images(&encode_images(&[], 0), path).unwrap();
        assert!(px.is_empty() && n == 0);
    }

    #[test]
    fn round_trip_raw_gz_and_gzip_without_gz_name() {
        let dir = tempfile::tempdir().unwrap();
        let img = encode_images(&pixels(4), 4);
        let lab = encode_labels(&[1, 2, 3, 4]);
        for (name, bytes) in [
            ("img", img.clone()),
            ("img.gz", gzip(&img)),
            ("img-gzip-no-ext", gzip(&img)),
        ] {
            let path = put(dir.path(), name, &bytes);
            assert_eq!(read_images(&path).unwrap(), (pixels(4), 4), "{name}");
        }
        for (name, bytes) in [("lab", lab.clone()), ("lab.gz", gzip(&lab))] {
            let path = put(dir.path(), name, &bytes);
            assert_eq!(read_labels(&path).unwrap(), vec![1, 2, 3, 4], "{name}");
        }
    }

    #[test]
    fn multi_member_gzip_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let lab = encode_labels(&[7; 100]);
        let mut two = gzip(&lab[..50]);
        two.extend(gzip(&lab[50..]));
        let path = put(dir.path(), "lab.gz", &two);
        assert_eq!(read_labels(&path).unwrap(), vec![7; 100]);
    }

    #[test]
    fn empty_file() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["e", "e.gz"] {
            let path = put(dir.path(), name, b"");
            let err = read_images(&path).unwrap_err();
            assert!(matches!(err, DataError::Empty { .. }), "{err}");
            assert_names(&err, &path);
        }
    }

    #[test]
    fn gz_name_without_gzip_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = put(dir.path(), "img.gz", &encode_images(&pixels(1), 1));
        let err = read_images(&path).unwrap_err();
        assert!(matches!(err, DataError::BadGzip { .. }), "{err}");
        assert!(err.to_string().contains("not the gzip signature"));
        assert_names(&err, &path);
    }

    #[test]
    fn corrupt_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = gzip(&encode_images(&pixels(2), 2));
        // Flip bytes in the deflate body (after the 10-byte gzip header).
        for b in &mut bytes[12..40] {
            *b ^= 0x5a;
        }
        let path = put(dir.path(), "img.gz", &bytes);
        let err = read_images(&path).unwrap_err();
        assert!(matches!(err, DataError::BadGzip { .. }), "{err}");
        assert_names(&err, &path);
    }

    #[test]
    fn gzip_with_bad_crc() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = gzip(&encode_labels(&[1, 2, 3]));
        let crc_at = bytes.len() - 8;
        bytes[crc_at] ^= 0xff;
        let path = put(dir.path(), "lab.gz", &bytes);
        let err = read_labels(&path).unwrap_err();
        assert!(matches!(err, DataError::BadGzip { .. }), "{err}");
        assert_names(&err, &path);
    }

    #[test]
    fn truncated_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = gzip(&encode_images(&pixels(20), 20));
        for cut in [bytes.len() / 2, bytes.len() - 4] {
            let path = put(dir.path(), "img.gz", &bytes[..cut]);
            let err = read_images(&path).unwrap_err();
            assert!(
                matches!(err, DataError::TruncatedGzip { .. }),
                "cut {cut}: {err}"
            );
            assert_names(&err, &path);
        }
    }

    #[test]
    fn wrong_magic_says_what_it_looks_like() {
        let dir = tempfile::tempdir().unwrap();
        let labels_path = put(dir.path(), "labels-as-images", &encode_labels(&[1; 784]));
        let err = read_images(&labels_path).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::WrongMagic {
                    expected: 2051,
                    found: 2049,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("looks like a label file"));
        assert_names(&err, &labels_path);

        let images_path = put(
            dir.path(),
            "images-as-labels",
            &encode_images(&pixels(1), 1),
        );
        let err = read_labels(&images_path).unwrap_err();
        assert!(matches!(
            err,
            DataError::WrongMagic {
                expected: 2049,
                found: 2051,
                ..
            }
        ));
        assert!(err.to_string().contains("looks like an image file"));
        assert_names(&err, &images_path);

        let junk = put(dir.path(), "junk", b"hello world, not idx");
        let err = read_labels(&junk).unwrap_err();
        assert!(matches!(err, DataError::WrongMagic { .. }));
        assert!(err.to_string().contains("not an MNIST IDX file"));

        let err = parse_images(&gzip(b"x"), Path::new("p")).unwrap_err();
        assert!(
            err.to_string()
                .contains("gzip data that was not decompressed")
        );
    }

    #[test]
    fn header_too_short() {
        let dir = tempfile::tempdir().unwrap();
        let path = put(dir.path(), "img", &encode_images(&[], 0)[..10]);
        let err = read_images(&path).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::HeaderTooShort {
                    needed: 16,
                    actual: 10,
                    ..
                }
            ),
            "{err}"
        );
        assert_names(&err, &path);
        let path = put(dir.path(), "tiny", &[0, 0]);
        let err = read_labels(&path).unwrap_err();
        assert!(
            matches!(err, DataError::HeaderTooShort { actual: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn wrong_dimensions() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = encode_images(&pixels(1), 1);
        bytes[8..12].copy_from_slice(&32u32.to_be_bytes());
        let path = put(dir.path(), "img", &bytes);
        let err = read_images(&path).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::WrongDimensions {
                    rows: 32,
                    cols: 28,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("32x28"));
        assert_names(&err, &path);
    }

    #[test]
    fn length_mismatch_truncated_and_trailing() {
        let dir = tempfile::tempdir().unwrap();
        let short = encode_images(&pixels(3)[..2 * IMAGE_PIXELS + 5], 3);
        let path = put(dir.path(), "short", &short);
        let err = read_images(&path).unwrap_err();
        let expected = (16 + 3 * IMAGE_PIXELS) as u64;
        let actual = (16 + 2 * IMAGE_PIXELS + 5) as u64;
        assert!(
            matches!(err, DataError::LengthMismatch { expected: e, actual: a, .. } if e == expected && a == actual),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("truncated") && msg.contains(&expected.to_string()),
            "{msg}"
        );
        assert_names(&err, &path);

        let mut long = encode_labels(&[1, 2, 3]);
        long.extend_from_slice(&[0, 0]);
        let path = put(dir.path(), "long.gz", &gzip(&long));
        let err = read_labels(&path).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::LengthMismatch {
                    expected: 11,
                    actual: 13,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("trailing bytes"));
        assert_names(&err, &path);
    }

    #[test]
    fn absurd_count_is_refused_before_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = encode_images(&pixels(1), 1);
        bytes[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        // As gzip too, so the capacity hint path sees the absurd header.
        for (name, data) in [("img", bytes.clone()), ("img.gz", gzip(&bytes))] {
            let path = put(dir.path(), name, &data);
            let err = read_images(&path).unwrap_err();
            assert!(
                matches!(err, DataError::AbsurdCount { count, .. } if count == u64::from(u32::MAX)),
                "{err}"
            );
            assert_names(&err, &path);
        }
        assert_eq!(capacity_hint(&bytes[..16]), 0);
        assert_eq!(capacity_hint(&encode_labels(&[1, 2])), 10);
    }

    #[test]
    fn label_out_of_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = put(dir.path(), "lab", &encode_labels(&[0, 9, 3, 10, 200]));
        let err = read_labels(&path).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::BadLabel {
                    index: 3,
                    value: 10,
                    ..
                }
            ),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.contains("index 3") && msg.contains("label 10"), "{msg}");
        assert_names(&err, &path);
    }

    #[test]
    fn unreadable_path_is_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("does-not-exist");
        let err = read_labels(&path).unwrap_err();
        assert!(matches!(err, DataError::Io { action: "read", .. }), "{err}");
        assert_names(&err, &path);
    }
}
