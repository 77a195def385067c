//! MNIST-format datasets: reading the IDX files, finding them on disk, and
//! downloading them from public mirrors.
//!
//! Pixels and labels stay `u8` here; [`batcher`] turns them into tensors.

pub mod augment;
pub mod batcher;
pub mod download;
pub mod idx;
pub mod load;
pub mod locate;
pub mod preprocess;

pub use load::{DataSource, Subset, load, load_limited};

use std::fmt;
use std::path::{Path, PathBuf};

/// Which dataset to use. Both share the MNIST file layout and shapes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetName {
    /// MNIST handwritten digits (LeCun, Cortes, Burges).
    Mnist,
    /// Fashion-MNIST clothing images (Zalando Research).
    FashionMnist,
}

impl DatasetName {
    /// Name of the sub-directory holding this dataset's files; also the
    /// spelling used on the command line and in saved configs.
    pub fn dir_name(self) -> &'static str {
        match self {
            DatasetName::Mnist => "mnist",
            DatasetName::FashionMnist => "fashion-mnist",
        }
    }

    /// The name of each class label, 0 to 9.
    pub fn class_names(self) -> [&'static str; NUM_CLASSES] {
        match self {
            DatasetName::Mnist => ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
            // Zalando's labels, in label order.
            DatasetName::FashionMnist => [
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ],
        }
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir_name())
    }
}

/// Width and height of every image.
pub const IMAGE_SIDE: usize = 28;
/// Pixels per image (`IMAGE_SIDE * IMAGE_SIDE`).
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
/// Number of classes; labels are `0..NUM_CLASSES`.
pub const NUM_CLASSES: usize = 10;

/// The four canonical file names (without `.gz`): train images, train labels,
/// test images, test labels.
pub const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// One split, pixels kept as u8 (row-major, IMAGE_PIXELS per image), labels 0..=9.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    /// `len() * IMAGE_PIXELS` bytes, one image after another, row-major.
    pub images: Vec<u8>,
    /// One label per image, each in `0..=9`.
    pub labels: Vec<u8>,
}

impl Split {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the split holds no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Keep only the first `n` examples (`n >= len()` keeps all).
    pub fn truncate(&mut self, n: usize) {
        self.labels.truncate(n);
        self.images.truncate(n.saturating_mul(IMAGE_PIXELS));
    }

    /// The examples at `indices`, in that order.
    pub fn select(&self, indices: &[u32]) -> Split {
        let mut out = Split {
            images: Vec::with_capacity(indices.len() * IMAGE_PIXELS),
            labels: Vec::with_capacity(indices.len()),
        };
        for &i in indices {
            let i = i as usize;
            out.images
                .extend_from_slice(&self.images[i * IMAGE_PIXELS..(i + 1) * IMAGE_PIXELS]);
            out.labels.push(self.labels[i]);
        }
        out
    }
}

/// A whole dataset loaded into memory.
#[derive(Debug, Clone)]
pub struct MnistData {
    /// Which dataset this is.
    pub name: DatasetName,
    /// Directory the files were read from.
    pub dir: PathBuf,
    /// The 60,000-example training split (for the canonical files); without the validation
    /// images once they are held out.
    pub train: Split,
    /// Images held out of the training split for model selection (`valid_split`); empty when
    /// none are.
    pub valid: Split,
    /// The 10,000-example test split (for the canonical files).
    pub test: Split,
}

impl MnistData {
    /// Load the four canonical files from `dir` (each may be `NAME` raw or
    /// `NAME.gz`; `.gz` is preferred when both exist).
    pub fn load_from(name: DatasetName, dir: &Path) -> Result<MnistData, DataError> {
        let train = load_split(dir, FILES[0], FILES[1])?;
        let test = load_split(dir, FILES[2], FILES[3])?;
        Ok(MnistData {
            name,
            dir: dir.to_path_buf(),
            train,
            valid: Split::default(),
            test,
        })
    }
}

fn load_split(dir: &Path, images_file: &str, labels_file: &str) -> Result<Split, DataError> {
    let images_path = existing_file(dir, images_file)?;
    let labels_path = existing_file(dir, labels_file)?;
    let (images, image_count) = idx::read_images(&images_path)?;
    let labels = idx::read_labels(&labels_path)?;
    if image_count != labels.len() {
        return Err(DataError::CountMismatch {
            images_path,
            images: image_count,
            labels_path,
            labels: labels.len(),
        });
    }
    Ok(Split { images, labels })
}

/// The path `load_from` would read for `file` in `dir`, erroring if neither
/// form exists (so the message names the file rather than a bare ENOENT).
fn existing_file(dir: &Path, file: &str) -> Result<PathBuf, DataError> {
    resolve_file(dir, file).ok_or_else(|| DataError::MissingFile {
        path: dir.join(file),
    })
}

/// `dir/file.gz` if it exists, else `dir/file` if it exists.
///
/// `.gz` wins because that is what the downloader writes; a stale raw copy
/// beside it should not shadow a freshly verified download.
pub(crate) fn resolve_file(dir: &Path, file: &str) -> Option<PathBuf> {
    let gz = gz_path(dir, file);
    if gz.is_file() {
        return Some(gz);
    }
    let raw = dir.join(file);
    raw.is_file().then_some(raw)
}

/// `dir/<file>.gz`.
pub(crate) fn gz_path(dir: &Path, file: &str) -> PathBuf {
    dir.join(format!("{file}.gz"))
}

/// The fix for a failed file operation depends on its direction.
fn io_advice(action: &str) -> &'static str {
    if action == "read" {
        "check that the file exists and is readable"
    } else {
        "check that the directory is writable and the disk has free space"
    }
}

/// Everything that can go wrong finding, reading, verifying or downloading a
/// dataset. Every message is one line: what is wrong, which file, how to fix.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An I/O operation on a file failed.
    #[error("cannot {action} {}: {source}; {}", path.display(), io_advice(action))]
    Io {
        /// What was being done ("read", "create", "rename", ...).
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A required dataset file is absent (neither raw nor `.gz`).
    #[error("missing dataset file {} (looked for it and for {}.gz); run `mnist-train download` or point --data-dir at a directory holding the four IDX files", path.display(), path.display())]
    MissingFile {
        /// The raw path that was looked for.
        path: PathBuf,
    },
    /// The file has zero bytes.
    #[error("{} is empty (0 bytes), probably an interrupted copy or download; delete it and download it again with `mnist-train download`", path.display())]
    Empty {
        /// The empty file.
        path: PathBuf,
    },
    /// The file claims to be gzip (by extension or magic bytes) but does not decompress.
    #[error("{} is not valid gzip data ({detail}); delete it and download it again with `mnist-train download`", path.display())]
    BadGzip {
        /// The file.
        path: PathBuf,
        /// What the decompressor said.
        detail: String,
    },
    /// The gzip stream ends before its end marker.
    #[error("{} is a truncated gzip file (the compressed stream ends early), probably an interrupted download; delete it and download it again with `mnist-train download`", path.display())]
    TruncatedGzip {
        /// The file.
        path: PathBuf,
    },
    /// The (decompressed) file is shorter than the IDX header.
    #[error("{} is too short to be an IDX file: {actual} bytes, the header alone needs {needed}; delete it and download it again with `mnist-train download`", path.display())]
    HeaderTooShort {
        /// The file.
        path: PathBuf,
        /// Bytes the header needs.
        needed: usize,
        /// Bytes present.
        actual: usize,
    },
    /// The IDX magic number is not the one expected for this kind of file.
    #[error("{} has IDX magic number {found} but an {kind} file must start with {expected}{hint}; check that the file is in the right place under its canonical name", path.display())]
    WrongMagic {
        /// The file.
        path: PathBuf,
        /// "image" or "label".
        kind: &'static str,
        /// The magic number required (2051 images, 2049 labels).
        expected: u32,
        /// The big-endian u32 actually found.
        found: u32,
        /// Extra diagnosis, e.g. "(this looks like a label file)"; may be empty.
        hint: &'static str,
    },
    /// Images are not 28x28.
    #[error("{} holds {rows}x{cols} images, expected 28x28; this trainer only handles MNIST-shaped data", path.display())]
    WrongDimensions {
        /// The file.
        path: PathBuf,
        /// Rows from the header.
        rows: u32,
        /// Columns from the header.
        cols: u32,
    },
    /// The header's item count is too large to be a real dataset.
    #[error("{} claims {count} items, more than the {max} this reader accepts; the file is corrupt, delete it and download it again with `mnist-train download`", path.display())]
    AbsurdCount {
        /// The file.
        path: PathBuf,
        /// Count from the header.
        count: u64,
        /// The largest count accepted.
        max: u64,
    },
    /// The file length disagrees with what its header promises.
    #[error("{} is {actual} bytes but its header implies {expected} ({}); delete it and download it again with `mnist-train download`", path.display(), if actual < expected { "truncated" } else { "trailing bytes after the data" })]
    LengthMismatch {
        /// The file.
        path: PathBuf,
        /// Bytes implied by the header (decompressed).
        expected: u64,
        /// Bytes present (decompressed).
        actual: u64,
    },
    /// A label is outside `0..=9`.
    #[error("{} has label {value} at index {index}, but labels must be 0-9; the file is corrupt or not MNIST labels, delete it and download it again with `mnist-train download`", path.display())]
    BadLabel {
        /// The file.
        path: PathBuf,
        /// Zero-based example index.
        index: usize,
        /// The offending value.
        value: u8,
    },
    /// An image file and its label file disagree on the number of examples.
    #[error("{} holds {images} images but {} holds {labels} labels; the two files come from different datasets or one is damaged, download both again with `mnist-train download`", images_path.display(), labels_path.display())]
    CountMismatch {
        /// The image file.
        images_path: PathBuf,
        /// Its image count.
        images: usize,
        /// The label file.
        labels_path: PathBuf,
        /// Its label count.
        labels: usize,
    },
    /// No searched directory holds all four files.
    #[error(
        "{name} dataset not found; searched {searched}; get it with `mnist-train download --dataset {name} [--data-dir DIR]`, or set MNIST_DATA_DIR / --data-dir to a directory holding the four IDX files (raw or .gz)"
    )]
    NotFound {
        /// The dataset looked for.
        name: DatasetName,
        /// Each directory searched and what it lacked, pre-formatted on one line.
        searched: String,
    },
    /// No `--data-dir` and the platform has no cache directory.
    #[error(
        "cannot find a cache directory for {name} (neither $XDG_CACHE_HOME nor $HOME is set); pass --data-dir DIR or set MNIST_DATA_DIR"
    )]
    NoCacheDir {
        /// The dataset in question.
        name: DatasetName,
    },
    /// A name that is not one of [`FILES`] was given to the verifier.
    #[error("{file} is not one of the dataset files ({}); this is a bug in the caller", FILES.join(", "))]
    UnknownFile {
        /// The name given.
        file: String,
    },
    /// The decompressed file has the wrong size for the canonical dataset.
    #[error("{} decompresses to {actual} bytes but the canonical {name} file has {expected}; delete it and download it again with `mnist-train download --dataset {name}`", path.display())]
    SizeMismatch {
        /// The dataset.
        name: DatasetName,
        /// The file.
        path: PathBuf,
        /// Canonical decompressed size.
        expected: u64,
        /// Decompressed size found.
        actual: u64,
    },
    /// The decompressed file's SHA-256 is not the canonical one.
    #[error("{} has SHA-256 {actual} but the canonical {name} file has {expected}; the file is damaged or from another dataset, delete it and download it again with `mnist-train download --dataset {name}`", path.display())]
    ChecksumMismatch {
        /// The dataset.
        name: DatasetName,
        /// The file.
        path: PathBuf,
        /// Canonical SHA-256 (hex).
        expected: String,
        /// SHA-256 found (hex).
        actual: String,
    },
    /// The dataset is missing and downloading it failed.
    #[error("{missing}; downloading failed too: {reason}")]
    NotDownloaded {
        missing: Box<DataError>,
        reason: String,
    },
    /// `valid_split` holds out every training image in use, or more: a config error.
    #[error(
        "invalid value for `valid_split`: {valid_split} (must be less than the {train_images} \
         training images in use)"
    )]
    ValidSplitTooLarge {
        valid_split: usize,
        train_images: usize,
    },
    /// Every mirror failed for one file.
    #[error("could not download {file} into {}: {}; check the internet connection, or fetch the file by hand into that directory", dest.display(), failures.join("; "))]
    DownloadFailed {
        /// The file (with `.gz`).
        file: String,
        /// The directory it was meant for.
        dest: PathBuf,
        /// One entry per attempt: "URL (attempt i/n): reason".
        failures: Vec<String>,
    },
    /// This build has no HTTP client.
    #[error("this build of mnist-train has no downloader (built without the `download` feature); fetch the four {name} .gz files by hand into {}", dest.display())]
    DownloadDisabled {
        /// The dataset.
        name: DatasetName,
        /// Where the files should go.
        dest: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_gz(path: &Path, bytes: &[u8]) {
        let file = std::fs::File::create(path).unwrap();
        let mut enc = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap();
    }

    /// Images whose pixels encode their index, so order is checkable.
    fn images(count: usize) -> Vec<u8> {
        (0..count * IMAGE_PIXELS)
            .map(|i| ((i / IMAGE_PIXELS) as u8).wrapping_mul(7) ^ (i as u8))
            .collect()
    }

    fn write_dataset(dir: &Path, train: usize, test: usize, gz: bool) {
        let contents = [
            idx::encode_images(&images(train), train),
            idx::encode_labels(&(0..train).map(|i| (i % 10) as u8).collect::<Vec<_>>()),
            idx::encode_images(&images(test), test),
            idx::encode_labels(&(0..test).map(|i| (9 - i % 10) as u8).collect::<Vec<_>>()),
        ];
        for (file, bytes) in FILES.iter().zip(contents) {
            if gz {
                write_gz(&gz_path(dir, file), &bytes);
            } else {
                std::fs::write(dir.join(file), bytes).unwrap();
            }
        }
    }

    #[test]
    fn dataset_names_spell_the_same_everywhere() {
        assert_eq!(DatasetName::Mnist.to_string(), "mnist");
        assert_eq!(DatasetName::FashionMnist.to_string(), "fashion-mnist");
        assert_eq!(DatasetName::FashionMnist.dir_name(), "fashion-mnist");
        for name in [DatasetName::Mnist, DatasetName::FashionMnist] {
            let de = serde::de::IntoDeserializer::<serde::de::value::Error>::into_deserializer(
                name.dir_name(),
            );
            let parsed: DatasetName = serde::Deserialize::deserialize(de).unwrap();
            assert_eq!(parsed, name);
            let value = <DatasetName as clap::ValueEnum>::to_possible_value(&name).unwrap();
            assert_eq!(value.get_name(), name.dir_name());
        }
    }

    #[test]
    fn loads_raw_and_gz_and_prefers_gz() {
        let raw = tempfile::tempdir().unwrap();
        write_dataset(raw.path(), 5, 3, false);
        let data = MnistData::load_from(DatasetName::Mnist, raw.path()).unwrap();
        assert_eq!(data.train.len(), 5);
        assert_eq!(data.test.len(), 3);
        assert_eq!(data.train.images, images(5));
        assert_eq!(data.train.labels, vec![0, 1, 2, 3, 4]);
        assert_eq!(data.test.labels, vec![9, 8, 7]);
        assert_eq!(data.dir, raw.path());

        // Same dir, now with .gz files of other sizes: those must win.
        write_dataset(raw.path(), 7, 2, true);
        let data = MnistData::load_from(DatasetName::FashionMnist, raw.path()).unwrap();
        assert_eq!(data.name, DatasetName::FashionMnist);
        assert_eq!(data.train.len(), 7);
        assert_eq!(data.test.len(), 2);
        assert_eq!(data.train.images, images(7));
    }

    #[test]
    fn count_mismatch_names_both_files_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        write_dataset(dir.path(), 4, 2, false);
        std::fs::write(dir.path().join(FILES[1]), idx::encode_labels(&[1, 2, 3])).unwrap();
        let err = MnistData::load_from(DatasetName::Mnist, dir.path()).unwrap_err();
        assert!(matches!(
            err,
            DataError::CountMismatch {
                images: 4,
                labels: 3,
                ..
            }
        ));
        let msg = err.to_string();
        assert!(msg.contains(&dir.path().join(FILES[0]).display().to_string()));
        assert!(msg.contains(&dir.path().join(FILES[1]).display().to_string()));
        assert!(
            msg.contains("4 images") && msg.contains("3 labels"),
            "{msg}"
        );
    }

    #[test]
    fn missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        write_dataset(dir.path(), 2, 2, false);
        std::fs::remove_file(dir.path().join(FILES[2])).unwrap();
        let err = MnistData::load_from(DatasetName::Mnist, dir.path()).unwrap_err();
        assert!(matches!(err, DataError::MissingFile { .. }));
        assert!(err.to_string().contains(FILES[2]));
    }

    #[test]
    fn truncate_keeps_the_first_examples() {
        let mut split = Split {
            images: images(5),
            labels: vec![0, 1, 2, 3, 4],
        };
        split.truncate(10);
        assert_eq!(split.len(), 5);
        split.truncate(2);
        assert_eq!(split.len(), 2);
        assert_eq!(split.labels, vec![0, 1]);
        assert_eq!(split.images, images(5)[..2 * IMAGE_PIXELS].to_vec());
        split.truncate(0);
        assert!(split.is_empty());
        assert!(split.images.is_empty());
    }

    #[test]
    fn error_messages_are_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let err = locate::find(DatasetName::Mnist, Some(dir.path())).unwrap_err();
        assert!(!err.to_string().contains('\n'));
        let err = DataError::DownloadFailed {
            file: "x.gz".into(),
            dest: dir.path().into(),
            failures: vec!["a: HTTP 404".into(), "b: timed out".into()],
        };
        assert!(!err.to_string().contains('\n'));
    }

    /// `../shared/data` beside the project, when present (CI must have it).
    fn shared_data() -> Option<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
        if dir.is_dir() {
            return Some(dir);
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but {} is missing; CI must not skip the real-data test",
            dir.display()
        );
        println!("skipped: ../shared/data not found");
        None
    }

    fn label_counts(labels: &[u8]) -> [usize; NUM_CLASSES] {
        let mut counts = [0; NUM_CLASSES];
        for &l in labels {
            counts[usize::from(l)] += 1;
        }
        counts
    }

    #[test]
    fn real_datasets_load_and_verify() {
        let Some(root) = shared_data() else { return };
        let mnist_dir = root.join("mnist");
        let data = MnistData::load_from(DatasetName::Mnist, &mnist_dir).unwrap();
        assert_eq!(data.train.len(), 60_000);
        assert_eq!(data.test.len(), 10_000);
        assert_eq!(data.train.images.len(), 60_000 * IMAGE_PIXELS);
        assert_eq!(
            label_counts(&data.train.labels),
            [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
        );
        assert_eq!(
            label_counts(&data.test.labels),
            [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
        );
        assert_eq!(
            locate::find(DatasetName::Mnist, Some(&root)).unwrap(),
            mnist_dir
        );
        for name in [DatasetName::Mnist, DatasetName::FashionMnist] {
            let dir = root.join(name.dir_name());
            for file in FILES {
                let path = resolve_file(&dir, file).unwrap();
                download::verify_file(name, file, &path).unwrap();
            }
        }
    }
}
