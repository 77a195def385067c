//! Fetching the datasets from public mirrors, and verifying files on disk.
//!
//! Verification is always against the SHA-256 of the *decompressed* IDX
//! bytes: mirrors (and the copies in `../shared/data`) wrap the same data in
//! different gzip streams, so a checksum of the `.gz` would reject good files.
//!
//! The HTTP client exists only with the `download` cargo feature; without it
//! [`download`] still skips verified files but reports
//! [`DataError::DownloadDisabled`] for anything it would have to fetch.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::{DataError, DatasetName, FILES, idx, resolve_file};

/// MNIST mirrors, in the order torchvision tries them
/// (`torchvision/datasets/mnist.py`, `MNIST.mirrors`): PyTorch's S3 copy
/// first because Yann LeCun's site is often down or answers 403.
pub const MNIST_MIRRORS: [&str; 2] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
];

/// Fashion-MNIST mirrors. The first is torchvision's only one
/// (`FashionMNIST.mirrors`, Zalando's S3 website); the second is the copy in
/// Zalando's GitHub repository (`data/fashion/`), which torchvision does not
/// list but which serves the same files (via a redirect to
/// raw.githubusercontent.com).
pub const FASHION_MNIST_MIRRORS: [&str; 2] = [
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
];

/// Default number of retries per mirror after the first attempt.
pub const DEFAULT_RETRIES: u32 = 2;
/// Default network timeout (see [`DownloadOptions::timeout`]).
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// One download mirror: the URL of a file is `base_url + file + ".gz"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// Directory URL, normally ending in `/`.
    pub base_url: String,
}

impl Mirror {
    /// Wrap a base URL.
    pub fn new(base_url: impl Into<String>) -> Mirror {
        Mirror {
            base_url: base_url.into(),
        }
    }

    /// URL of `file`'s gzip on this mirror (a missing trailing `/` is added).
    pub fn url(&self, file: &str) -> String {
        let sep = if self.base_url.ends_with('/') {
            ""
        } else {
            "/"
        };
        format!("{}{sep}{file}.gz", self.base_url)
    }
}

/// The default mirrors for `name`, in the order they are tried.
pub fn default_mirrors(name: DatasetName) -> Vec<String> {
    let list = match name {
        DatasetName::Mnist => MNIST_MIRRORS,
        DatasetName::FashionMnist => FASHION_MNIST_MIRRORS,
    };
    list.iter().map(|s| s.to_string()).collect()
}

/// Expected byte length and SHA-256 (lowercase hex) of the DECOMPRESSED
/// canonical `file` (one of [`FILES`]). An unknown file name gives `(0, "")`,
/// which no real file matches.
pub fn expected(name: DatasetName, file: &str) -> (u64, &'static str) {
    use DatasetName::{FashionMnist, Mnist};
    match (name, file) {
        (Mnist, "train-images-idx3-ubyte") => (
            47_040_016,
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        ),
        (Mnist, "train-labels-idx1-ubyte") => (
            60_008,
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        ),
        (Mnist, "t10k-images-idx3-ubyte") => (
            7_840_016,
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        ),
        (Mnist, "t10k-labels-idx1-ubyte") => (
            10_008,
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ),
        (FashionMnist, "train-images-idx3-ubyte") => (
            47_040_016,
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        ),
        (FashionMnist, "train-labels-idx1-ubyte") => (
            60_008,
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        ),
        (FashionMnist, "t10k-images-idx3-ubyte") => (
            7_840_016,
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        ),
        (FashionMnist, "t10k-labels-idx1-ubyte") => (
            10_008,
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
        _ => (0, ""),
    }
}

/// How [`download`] behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadOptions {
    /// Base URLs tried in order; empty means [`default_mirrors`].
    pub mirrors: Vec<String>,
    /// Extra attempts per mirror after the first (default 2). A 4xx answer
    /// other than 408/429 moves to the next mirror at once: asking again
    /// would get the same answer.
    pub retries: u32,
    /// Network timeout (default 60 s) for connecting, for the response
    /// headers, and for each read of the body. It limits a stall rather than
    /// the whole transfer, so a slow but working link still completes.
    pub timeout: std::time::Duration,
    /// Show a progress bar (only ever drawn when stderr is a terminal).
    pub progress: bool,
}

impl DownloadOptions {
    /// Defaults for `name`: its default mirrors, 2 retries, 60 s, progress on.
    pub fn new(name: DatasetName) -> DownloadOptions {
        DownloadOptions {
            mirrors: default_mirrors(name),
            retries: DEFAULT_RETRIES,
            timeout: DEFAULT_TIMEOUT,
            progress: true,
        }
    }

    /// What the trainer and `download` use: `extra` mirrors first, then the public ones;
    /// a progress bar only when stderr is a terminal.
    pub fn standard(name: DatasetName, extra: &[String]) -> DownloadOptions {
        use std::io::IsTerminal;
        let mut mirrors = extra.to_vec();
        mirrors.extend(default_mirrors(name));
        DownloadOptions {
            mirrors,
            progress: std::io::stderr().is_terminal(),
            ..DownloadOptions::new(name)
        }
    }
}

/// Download every missing-or-bad file of `name` into `dest` as `<file>.gz`.
///
/// Each file is fetched into `<file>.gz.part`, its decompressed bytes are
/// checked (length, SHA-256, IDX structure), and only then is it synced and
/// renamed to `<file>.gz`, so the final name never holds a partial or
/// unverified file. On failure the `.part` is deleted, the mirror retried,
/// then the next mirror tried. Files already present (raw or `.gz`) and
/// verified are skipped. Returns `(file, mirror base URL)` for each file
/// actually downloaded; an empty list means everything was already there.
pub fn download(
    name: DatasetName,
    dest: &Path,
    opts: &DownloadOptions,
) -> Result<Vec<(String, String)>, DataError> {
    download_with_expected(name, dest, opts, |file| {
        let (len, sha) = expected(name, file);
        (len, sha.to_string())
    })
}

/// [`download`] with the expected `(length, sha256 hex)` of each file's
/// decompressed bytes supplied by `expected_fn` (tests use small files).
pub fn download_with_expected<F>(
    name: DatasetName,
    dest: &Path,
    opts: &DownloadOptions,
    expected_fn: F,
) -> Result<Vec<(String, String)>, DataError>
where
    F: Fn(&str) -> (u64, String),
{
    let mut served = Vec::new();
    for file in FILES {
        let want = Expected::from(expected_fn(file));
        if already_verified(name, dest, file, &want) {
            continue;
        }
        let mirror = fetch_file(name, dest, file, &want, opts)?;
        served.push((file.to_string(), mirror));
    }
    Ok(served)
}

/// Verify a file already on disk (raw or `.gz`) against [`expected`].
pub fn verify_file(name: DatasetName, file: &str, path: &Path) -> Result<(), DataError> {
    if !FILES.contains(&file) {
        return Err(DataError::UnknownFile {
            file: file.to_string(),
        });
    }
    let (len, sha) = expected(name, file);
    let want = Expected {
        len,
        sha256: sha.to_string(),
    };
    let bytes = idx::read_decompressed(path)?;
    check_bytes(name, path, &bytes, &want)
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Expected decompressed length and SHA-256 of one file.
struct Expected {
    len: u64,
    sha256: String,
}

impl From<(u64, String)> for Expected {
    fn from((len, sha256): (u64, String)) -> Expected {
        Expected {
            len,
            sha256: sha256.to_ascii_lowercase(),
        }
    }
}

fn check_bytes(
    name: DatasetName,
    path: &Path,
    bytes: &[u8],
    want: &Expected,
) -> Result<(), DataError> {
    let actual = bytes.len() as u64;
    if actual != want.len {
        return Err(DataError::SizeMismatch {
            name,
            path: path.to_path_buf(),
            expected: want.len,
            actual,
        });
    }
    let sha = sha256_hex(bytes);
    if sha != want.sha256 {
        return Err(DataError::ChecksumMismatch {
            name,
            path: path.to_path_buf(),
            expected: want.sha256.clone(),
            actual: sha,
        });
    }
    Ok(())
}

/// Length, checksum, then IDX structure (which the checksum implies for the
/// canonical files, but not for caller-supplied expectations).
fn check_all(
    name: DatasetName,
    file: &str,
    path: &Path,
    bytes: &[u8],
    want: &Expected,
) -> Result<(), DataError> {
    check_bytes(name, path, bytes, want)?;
    if file.contains("images") {
        idx::parse_images(bytes, path).map(drop)
    } else {
        idx::parse_labels(bytes, path).map(drop)
    }
}

/// Whether the file the loader would pick for `file` in `dest` is good.
fn already_verified(name: DatasetName, dest: &Path, file: &str, want: &Expected) -> bool {
    let Some(path) = resolve_file(dest, file) else {
        return false;
    };
    idx::read_decompressed(&path)
        .and_then(|bytes| check_all(name, file, &path, &bytes, want))
        .is_ok()
}

#[cfg(not(feature = "download"))]
fn fetch_file(
    name: DatasetName,
    dest: &Path,
    _file: &str,
    _want: &Expected,
    _opts: &DownloadOptions,
) -> Result<String, DataError> {
    Err(DataError::DownloadDisabled {
        name,
        dest: dest.to_path_buf(),
    })
}

#[cfg(feature = "download")]
use http::fetch_file;

#[cfg(feature = "download")]
mod http;

#[cfg(test)]
mod tests;
