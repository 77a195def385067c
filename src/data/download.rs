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
mod http {
    use std::fs::File;
    use std::io::{IsTerminal, Read, Write};
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::{DownloadOptions, Expected, Mirror, check_all, default_mirrors};
    use crate::data::{DataError, DatasetName, gz_path, idx};

    /// Refuse bodies beyond this: the largest file, train images, is ~10 MB
    /// gzipped and 47 MB raw (a server may undo the gzip for us).
    const MAX_BODY: u64 = 128 * 1024 * 1024;
    /// Pause before attempt n+1 is n times this; short in tests.
    const RETRY_DELAY: Duration = if cfg!(test) {
        Duration::from_millis(10)
    } else {
        Duration::from_secs(1)
    };
    const CHUNK: usize = 64 * 1024;

    /// Why one attempt failed.
    enum Failure {
        /// Worth noting and moving on: `retry` says whether the same mirror
        /// may do better next time.
        Remote { reason: String, retry: bool },
        /// A local problem (cannot write `dest`) that no mirror can fix.
        Local(DataError),
    }

    impl Failure {
        fn remote(reason: impl Into<String>) -> Failure {
            Failure::Remote {
                reason: reason.into(),
                retry: true,
            }
        }
    }

    /// Paths and expectations for one file being downloaded.
    struct Target<'a> {
        name: DatasetName,
        file: &'a str,
        part: PathBuf,
        final_path: PathBuf,
        want: &'a Expected,
    }

    pub(super) fn fetch_file(
        name: DatasetName,
        dest: &Path,
        file: &str,
        want: &Expected,
        opts: &DownloadOptions,
    ) -> Result<String, DataError> {
        std::fs::create_dir_all(dest).map_err(|source| DataError::Io {
            action: "create directory",
            path: dest.to_path_buf(),
            source,
        })?;
        let target = Target {
            name,
            file,
            part: dest.join(format!("{file}.gz.part")),
            final_path: gz_path(dest, file),
            want,
        };
        let agent = agent(opts.timeout);
        let mirrors = if opts.mirrors.is_empty() {
            default_mirrors(name)
        } else {
            opts.mirrors.clone()
        };
        let attempts = opts.retries.saturating_add(1);
        let mut failures = Vec::new();
        for base in &mirrors {
            let url = Mirror::new(base.as_str()).url(file);
            for attempt in 1..=attempts {
                if attempt > 1 {
                    std::thread::sleep(RETRY_DELAY * (attempt - 1));
                }
                let result = attempt_once(&agent, &url, &target, opts);
                // Whatever happened, no .part may outlive the attempt.
                remove_if_present(&target.part);
                match result {
                    Ok(()) => return Ok(base.clone()),
                    Err(Failure::Local(err)) => return Err(err),
                    Err(Failure::Remote { reason, retry }) => {
                        failures.push(format!("{url} (attempt {attempt}/{attempts}): {reason}"));
                        if !retry {
                            break;
                        }
                    }
                }
            }
        }
        Err(DataError::DownloadFailed {
            file: format!("{file}.gz"),
            dest: dest.to_path_buf(),
            failures,
        })
    }

    fn agent(timeout: Duration) -> ureq::Agent {
        // Per-phase and per-read limits instead of timeout_global: a global
        // limit would kill a slow but steady 10 MB transfer.
        ureq::Agent::config_builder()
            .timeout_resolve(Some(timeout))
            .timeout_connect(Some(timeout))
            .timeout_recv_response(Some(timeout))
            .timeout_per_read(Some(timeout))
            .user_agent(concat!("mnist-train/", env!("CARGO_PKG_VERSION")))
            .build()
            .into()
    }

    fn attempt_once(
        agent: &ureq::Agent,
        url: &str,
        target: &Target,
        opts: &DownloadOptions,
    ) -> Result<(), Failure> {
        // Create the .part before asking, so an unwritable dest fails fast.
        let mut part = File::create(&target.part).map_err(local("create", &target.part))?;
        let response = agent.get(url).call().map_err(request_failure)?;
        let length = response.body().content_length();
        let mut body = response
            .into_body()
            .into_with_config()
            .limit(MAX_BODY)
            .reader();
        let bar = progress_bar(opts.progress, target.file, length);
        let copied = copy_body(&mut body, &mut part, &target.part, &bar);
        bar.finish_and_clear();
        let received = copied?;
        if let Some(expected) = length.filter(|&n| n != received) {
            return Err(Failure::remote(format!(
                "body truncated: got {received} of {expected} bytes"
            )));
        }
        part.sync_all().map_err(local("sync", &target.part))?;
        drop(part);
        verify_part(target)?;
        commit(target)
    }

    /// Stream the body into the .part file; returns the bytes written.
    fn copy_body(
        body: &mut impl Read,
        out: &mut File,
        part: &Path,
        bar: &indicatif::ProgressBar,
    ) -> Result<u64, Failure> {
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(Failure::remote(format!(
                        "body truncated: connection closed after {total} bytes"
                    )));
                }
                Err(e) => {
                    return Err(Failure::remote(format!(
                        "transfer failed after {total} bytes: {e}"
                    )));
                }
            };
            out.write_all(&buf[..n]).map_err(local("write", part))?;
            total += n as u64;
            bar.inc(n as u64);
        }
    }

    /// Check the downloaded bytes; if the server undid the gzip (Content-
    /// Encoding), store them re-compressed so the final file is still `.gz`.
    fn verify_part(target: &Target) -> Result<(), Failure> {
        let raw = std::fs::read(&target.part).map_err(local("read", &target.part))?;
        let was_gzip = raw.starts_with(&[0x1f, 0x8b]);
        let bytes = idx::decompress_if_gzip(raw, &target.part).map_err(content_failure)?;
        check_all(target.name, target.file, &target.part, &bytes, target.want)
            .map_err(content_failure)?;
        if !was_gzip {
            write_gzip(&target.part, &bytes)?;
        }
        Ok(())
    }

    fn write_gzip(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
        let file = File::create(path).map_err(local("create", path))?;
        let mut enc = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        enc.write_all(bytes).map_err(local("write", path))?;
        let file = enc.finish().map_err(local("write", path))?;
        file.sync_all().map_err(local("sync", path))
    }

    /// Move the verified .part into place and make the rename durable.
    fn commit(target: &Target) -> Result<(), Failure> {
        std::fs::rename(&target.part, &target.final_path).map_err(local("rename", &target.part))?;
        // Syncing the directory persists the rename itself; not every
        // platform lets a directory be opened, and the data is already safe.
        if let Some(dir) = target.final_path.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn remove_if_present(path: &Path) {
        // NotFound is the normal case (success renamed it away).
        let _ = std::fs::remove_file(path);
    }

    fn local(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Failure {
        let path = path.to_path_buf();
        move |source| {
            Failure::Local(DataError::Io {
                action,
                path,
                source,
            })
        }
    }

    fn request_failure(err: ureq::Error) -> Failure {
        match err {
            ureq::Error::StatusCode(code) => Failure::Remote {
                reason: format!("HTTP {code}"),
                // Client errors repeat; only timeouts/rate limits may clear.
                retry: !(400..500).contains(&code) || code == 408 || code == 429,
            },
            ureq::Error::Timeout(t) => Failure::remote(format!("timed out ({t})")),
            other => Failure::remote(other.to_string()),
        }
    }

    /// A short reason for a body that arrived but is not the right data.
    fn content_failure(err: DataError) -> Failure {
        let reason = match err {
            DataError::SizeMismatch {
                expected, actual, ..
            } => format!("wrong content: {actual} bytes decompressed, expected {expected}"),
            DataError::ChecksumMismatch {
                expected, actual, ..
            } => format!("wrong content: SHA-256 {actual}, expected {expected}"),
            DataError::TruncatedGzip { .. } => "truncated gzip body".to_string(),
            DataError::BadGzip { detail, .. } => format!("not valid gzip: {detail}"),
            DataError::Empty { .. } => "empty body".to_string(),
            other => format!("not a valid IDX file: {other}"),
        };
        Failure::remote(reason)
    }

    fn progress_bar(enabled: bool, file: &str, length: Option<u64>) -> indicatif::ProgressBar {
        use indicatif::{ProgressBar, ProgressStyle};
        // A bar in a log file is noise; only draw for a human.
        if !enabled || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = match length {
            Some(len) => {
                let style = ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                )
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
                ProgressBar::new(len).with_style(style)
            }
            None => ProgressBar::new_spinner(),
        };
        bar.set_message(format!("{file}.gz"));
        bar
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{IMAGE_PIXELS, gz_path};
    use std::collections::HashMap;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    /// A tiny valid dataset: file name -> decompressed IDX bytes.
    fn tiny_dataset(seed: u8) -> HashMap<String, Vec<u8>> {
        let px = |n: usize| -> Vec<u8> {
            (0..n * IMAGE_PIXELS)
                .map(|i| (i as u8).wrapping_add(seed))
                .collect()
        };
        let contents = [
            idx::encode_images(&px(3), 3),
            idx::encode_labels(&[seed % 10, 1, 2]),
            idx::encode_images(&px(2), 2),
            idx::encode_labels(&[3, seed % 10]),
        ];
        FILES.iter().map(|f| f.to_string()).zip(contents).collect()
    }

    fn expectations(data: &HashMap<String, Vec<u8>>) -> impl Fn(&str) -> (u64, String) + '_ {
        |file| {
            let bytes = &data[file];
            (bytes.len() as u64, sha256_hex(bytes))
        }
    }

    #[test]
    fn mirrors_and_urls() {
        assert_eq!(
            default_mirrors(DatasetName::Mnist),
            vec![
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "http://yann.lecun.com/exdb/mnist/"
            ]
        );
        assert_eq!(
            default_mirrors(DatasetName::FashionMnist)[0],
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
        );
        assert_eq!(
            Mirror::new("http://h/x/").url(FILES[0]),
            "http://h/x/train-images-idx3-ubyte.gz"
        );
        assert_eq!(Mirror::new("http://h/x").url("f"), "http://h/x/f.gz");
        let opts = DownloadOptions::new(DatasetName::FashionMnist);
        assert_eq!(opts.mirrors, default_mirrors(DatasetName::FashionMnist));
        assert_eq!((opts.retries, opts.timeout.as_secs()), (2, 60));
    }

    #[test]
    fn expected_table_is_complete_and_consistent() {
        let mut seen = std::collections::HashSet::new();
        for name in [DatasetName::Mnist, DatasetName::FashionMnist] {
            for file in FILES {
                let (len, sha) = expected(name, file);
                let want_len = match file {
                    "train-images-idx3-ubyte" => 16 + 60_000 * IMAGE_PIXELS as u64,
                    "t10k-images-idx3-ubyte" => 16 + 10_000 * IMAGE_PIXELS as u64,
                    "train-labels-idx1-ubyte" => 8 + 60_000,
                    _ => 8 + 10_000,
                };
                assert_eq!(len, want_len, "{name} {file}");
                assert_eq!(sha.len(), 64);
                assert!(
                    sha.bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                );
                assert!(seen.insert(sha), "duplicate checksum for {name} {file}");
            }
        }
        assert_eq!(expected(DatasetName::Mnist, "nope"), (0, ""));
    }

    #[test]
    fn verify_file_reports_size_and_checksum_mismatches() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small.gz");
        std::fs::write(&small, gzip(&idx::encode_labels(&[1, 2]))).unwrap();
        let err = verify_file(DatasetName::Mnist, FILES[3], &small).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::SizeMismatch {
                    expected: 10_008,
                    actual: 10,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains(&small.display().to_string()));

        // Right size, wrong bytes.
        let same_size = dir.path().join(FILES[3]);
        std::fs::write(&same_size, idx::encode_labels(&[0; 10_000])).unwrap();
        let err = verify_file(DatasetName::Mnist, FILES[3], &same_size).unwrap_err();
        assert!(matches!(err, DataError::ChecksumMismatch { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&same_size.display().to_string()), "{msg}");
        assert!(
            msg.contains(expected(DatasetName::Mnist, FILES[3]).1),
            "{msg}"
        );

        let err = verify_file(DatasetName::Mnist, "other", &same_size).unwrap_err();
        assert!(matches!(err, DataError::UnknownFile { .. }));
    }

    #[test]
    fn sha256_hex_known_value() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[cfg(not(feature = "download"))]
    #[test]
    fn without_the_feature_present_files_pass_and_missing_ones_say_so() {
        let data = tiny_dataset(1);
        let dir = tempfile::tempdir().unwrap();
        let opts = DownloadOptions::new(DatasetName::Mnist);
        let err =
            download_with_expected(DatasetName::Mnist, dir.path(), &opts, expectations(&data))
                .unwrap_err();
        assert!(matches!(err, DataError::DownloadDisabled { .. }), "{err}");
        for (file, bytes) in &data {
            std::fs::write(gz_path(dir.path(), file), gzip(bytes)).unwrap();
        }
        let served =
            download_with_expected(DatasetName::Mnist, dir.path(), &opts, expectations(&data))
                .unwrap();
        assert!(served.is_empty());
    }

    /// A bounded HTTP/1.1 server on 127.0.0.1 for the downloader tests.
    #[cfg(feature = "download")]
    mod server {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        use std::sync::Arc;
        use std::thread::JoinHandle;
        use std::time::{Duration, Instant};

        /// What the server answers for one request.
        pub enum Reply {
            Status(u16),
            Body(Vec<u8>),
            /// Announce more bytes than are sent, then hang up.
            Truncated(Vec<u8>),
            /// Accept, say nothing for this long, hang up.
            Silent(Duration),
            /// Announce the whole body, send these first bytes of it, then go quiet for this
            /// long (a transfer that stalls mid-way) and hang up.
            Stalled(Vec<u8>, usize, Duration),
        }

        pub struct Server {
            pub base: String,
            handle: JoinHandle<Vec<String>>,
        }

        impl Server {
            /// Paths requested, in order of connection.
            pub fn requests(self) -> Vec<String> {
                self.handle.join().unwrap()
            }
        }

        /// Serve exactly `max` connections (or stop after 30 s), each with
        /// one request answered by `route(path)`, on its own thread so a
        /// silent reply does not block the next connection.
        pub fn serve<F>(max: usize, route: F) -> Server
        where
            F: Fn(&str) -> Reply + Send + Sync + 'static,
        {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let route = Arc::new(route);
            let handle = std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut workers = Vec::new();
                while workers.len() < max && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let route = Arc::clone(&route);
                            workers.push(std::thread::spawn(move || answer(stream, &*route)));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
                workers.into_iter().map(|w| w.join().unwrap()).collect()
            });
            Server { base, handle }
        }

        fn answer(mut stream: TcpStream, route: &dyn Fn(&str) -> Reply) -> String {
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            stream
                .set_write_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let path = read_request_path(&mut stream);
            // The client may hang up first (timeouts); that is not an error.
            let _ = match route(&path) {
                Reply::Status(code) => stream.write_all(
                    format!(
                        "HTTP/1.1 {code} Nope\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                ),
                Reply::Body(body) => write_body(&mut stream, &body, body.len()),
                Reply::Truncated(body) => write_body(&mut stream, &body, body.len() + 1000),
                Reply::Silent(d) => {
                    std::thread::sleep(d);
                    Ok(())
                }
                Reply::Stalled(body, claimed, d) => {
                    let sent = write_body(&mut stream, &body, claimed);
                    std::thread::sleep(d);
                    sent
                }
            };
            path
        }

        fn write_body(stream: &mut TcpStream, body: &[u8], claimed: usize) -> std::io::Result<()> {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {claimed}\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(head.as_bytes())?;
            stream.write_all(body)?;
            stream.flush()
        }

        fn read_request_path(stream: &mut TcpStream) -> String {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&head);
            text.split_whitespace().nth(1).unwrap_or("").to_string()
        }
    }

    #[cfg(feature = "download")]
    mod http_tests {
        use super::server::{Reply, serve};
        use super::*;
        use crate::data::MnistData;
        use std::path::PathBuf;
        use std::sync::Arc;
        use std::time::{Duration, Instant};

        fn entries(dir: &Path) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }

        /// Routes by the first path segment: `/good/`, `/404/`, `/500/`,
        /// `/trunc/`, `/wrong/` (another valid dataset), `/raw/` (no gzip),
        /// `/silent/`.
        fn router(
            good: Arc<HashMap<String, Vec<u8>>>,
        ) -> impl Fn(&str) -> Reply + Send + Sync + 'static {
            let wrong = tiny_dataset(99);
            move |path| {
                let mut parts = path.trim_start_matches('/').splitn(2, '/');
                let kind = parts.next().unwrap_or("");
                let file = parts.next().unwrap_or("").trim_end_matches(".gz");
                let Some(bytes) = good.get(file) else {
                    return Reply::Status(404);
                };
                match kind {
                    "good" => Reply::Body(gzip(bytes)),
                    "404" => Reply::Status(404),
                    "500" => Reply::Status(500),
                    "trunc" => {
                        let gz = gzip(bytes);
                        Reply::Truncated(gz[..gz.len() / 2].to_vec())
                    }
                    "wrong" => Reply::Body(gzip(&wrong[file])),
                    "raw" => Reply::Body(bytes.clone()),
                    "silent" => Reply::Silent(Duration::from_millis(2500)),
                    "stall" => {
                        let gz = gzip(bytes);
                        let half = gz[..gz.len() / 2].to_vec();
                        Reply::Stalled(half, gz.len(), Duration::from_millis(2500))
                    }
                    _ => Reply::Status(400),
                }
            }
        }

        fn options(base: &str, kinds: &[&str], retries: u32) -> DownloadOptions {
            DownloadOptions {
                mirrors: kinds.iter().map(|k| format!("{base}/{k}/")).collect(),
                retries,
                timeout: Duration::from_millis(1000),
                progress: false,
            }
        }

        fn assert_complete(dest: &Path, data: &HashMap<String, Vec<u8>>) {
            let mut want: Vec<String> = FILES.iter().map(|f| format!("{f}.gz")).collect();
            want.sort();
            assert_eq!(entries(dest), want, "exactly the four .gz files, no .part");
            for file in FILES {
                let on_disk = std::fs::read(gz_path(dest, file)).unwrap();
                assert!(on_disk.starts_with(&[0x1f, 0x8b]), "{file} stored as gzip");
                let raw = idx::read_decompressed(&gz_path(dest, file)).unwrap();
                assert_eq!(raw, data[file], "{file}");
            }
            let loaded = MnistData::load_from(DatasetName::Mnist, dest).unwrap();
            assert_eq!((loaded.train.len(), loaded.test.len()), (3, 2));
        }

        #[test]
        fn falls_back_to_the_second_mirror_after_each_kind_of_failure() {
            let data = Arc::new(tiny_dataset(1));
            // (bad mirror, requests it gets per file with retries = 1)
            for (bad, tries) in [("404", 1), ("500", 2), ("trunc", 2), ("wrong", 2)] {
                let per_file = tries + 1;
                let server = serve(4 * per_file, router(Arc::clone(&data)));
                let dest = tempfile::tempdir().unwrap();
                let dest = dest.path().join("nested/mnist");
                let opts = options(&server.base, &[bad, "good"], 1);
                let served =
                    download_with_expected(DatasetName::Mnist, &dest, &opts, expectations(&data))
                        .unwrap_or_else(|e| panic!("{bad}: {e}"));
                let good = format!("{}/good/", server.base);
                let want: Vec<(String, String)> = FILES
                    .iter()
                    .map(|f| (f.to_string(), good.clone()))
                    .collect();
                assert_eq!(served, want, "{bad}");
                assert_complete(&dest, &data);
                let requests = server.requests();
                let mut expected_requests = Vec::new();
                for file in FILES {
                    for _ in 0..tries {
                        expected_requests.push(format!("/{bad}/{file}.gz"));
                    }
                    expected_requests.push(format!("/good/{file}.gz"));
                }
                assert_eq!(requests, expected_requests, "{bad}");
            }
        }

        #[test]
        fn every_mirror_bad_leaves_nothing_and_names_each_failure() {
            let data = Arc::new(tiny_dataset(1));
            let kinds = ["404", "500", "trunc", "wrong", "silent"];
            let server = serve(kinds.len(), router(Arc::clone(&data)));
            let dest = tempfile::tempdir().unwrap();
            let opts = options(&server.base, &kinds, 0);
            let err =
                download_with_expected(DatasetName::Mnist, dest.path(), &opts, expectations(&data))
                    .unwrap_err();
            assert!(
                matches!(err, DataError::DownloadFailed { ref failures, .. } if failures.len() == kinds.len()),
                "{err}"
            );
            let msg = err.to_string();
            for kind in kinds {
                let url = format!("{}/{kind}/{}.gz", server.base, FILES[0]);
                assert!(msg.contains(&url), "{kind} missing from: {msg}");
            }
            for reason in [
                "HTTP 404",
                "HTTP 500",
                "truncated",
                "wrong content: SHA-256",
                "timed out",
            ] {
                assert!(msg.contains(reason), "{reason} missing from: {msg}");
            }
            assert!(msg.contains(&dest.path().display().to_string()));
            assert!(!msg.contains('\n'));
            assert!(
                entries(dest.path()).is_empty(),
                "{:?}",
                entries(dest.path())
            );
            assert_eq!(server.requests().len(), kinds.len());
        }

        #[test]
        fn silent_mirror_times_out_and_the_next_one_serves() {
            let data = Arc::new(tiny_dataset(2));
            let server = serve(8, router(Arc::clone(&data)));
            let dest = tempfile::tempdir().unwrap();
            let opts = options(&server.base, &["silent", "good"], 0);
            let start = Instant::now();
            let served =
                download_with_expected(DatasetName::Mnist, dest.path(), &opts, expectations(&data))
                    .unwrap();
            // 4 timeouts of 1 s; waiting each silent reply out would take 10 s.
            assert!(
                start.elapsed() < Duration::from_secs(9),
                "{:?}",
                start.elapsed()
            );
            assert!(served.iter().all(|(_, m)| m.ends_with("/good/")));
            assert_complete(dest.path(), &data);
            assert_eq!(server.requests().len(), 8);
        }

        /// A transfer that stops mid-body is cut by the per-read timeout (not waited out),
        /// its partial file removed, and the next mirror serves.
        #[test]
        fn transfer_stalled_mid_body_times_out_and_the_next_mirror_serves() {
            let data = Arc::new(tiny_dataset(6));
            let server = serve(8, router(Arc::clone(&data)));
            let dest = tempfile::tempdir().unwrap();
            let opts = options(&server.base, &["stall", "good"], 0);
            let start = Instant::now();
            let served =
                download_with_expected(DatasetName::Mnist, dest.path(), &opts, expectations(&data))
                    .unwrap();
            // 4 stalls cut after 1 s each; waiting each one out would take 10 s.
            assert!(
                start.elapsed() < Duration::from_secs(9),
                "{:?}",
                start.elapsed()
            );
            assert!(served.iter().all(|(_, m)| m.ends_with("/good/")));
            assert_complete(dest.path(), &data);
            assert_eq!(server.requests().len(), 8);

            // Only stalling mirrors: the error says so for each attempt, nothing is left.
            let server = serve(2, router(Arc::clone(&data)));
            let dest = tempfile::tempdir().unwrap();
            let opts = options(&server.base, &["stall"], 1);
            let err =
                download_with_expected(DatasetName::Mnist, dest.path(), &opts, expectations(&data))
                    .unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains("(attempt 1/2)") && msg.contains("(attempt 2/2)"),
                "{msg}"
            );
            assert!(msg.contains("after"), "names the bytes received: {msg}");
            assert!(
                entries(dest.path()).is_empty(),
                "{:?}",
                entries(dest.path())
            );
            assert_eq!(server.requests().len(), 2);
        }

        #[test]
        fn uncompressed_body_is_stored_as_gzip() {
            let data = Arc::new(tiny_dataset(3));
            let server = serve(4, router(Arc::clone(&data)));
            let dest = tempfile::tempdir().unwrap();
            let opts = options(&server.base, &["raw"], 0);
            download_with_expected(DatasetName::Mnist, dest.path(), &opts, expectations(&data))
                .unwrap();
            assert_complete(dest.path(), &data);
            server.requests();
        }

        #[test]
        fn verified_files_are_skipped_and_bad_or_partial_ones_replaced() {
            let data = Arc::new(tiny_dataset(4));
            let dest = tempfile::tempdir().unwrap();
            let d = dest.path();
            // Good: .gz, raw, .gz. Bad: a corrupt .gz plus a stale .part.
            std::fs::write(gz_path(d, FILES[0]), gzip(&data[FILES[0]])).unwrap();
            std::fs::write(d.join(FILES[1]), &data[FILES[1]]).unwrap();
            std::fs::write(gz_path(d, FILES[2]), gzip(&data[FILES[2]])).unwrap();
            std::fs::write(gz_path(d, FILES[3]), b"\x1f\x8bjunk").unwrap();
            std::fs::write(d.join(format!("{}.gz.part", FILES[3])), b"old").unwrap();
            let server = serve(1, router(Arc::clone(&data)));
            let opts = options(&server.base, &["good"], 0);
            let served =
                download_with_expected(DatasetName::Mnist, d, &opts, expectations(&data)).unwrap();
            assert_eq!(
                served,
                vec![(FILES[3].to_string(), format!("{}/good/", server.base))]
            );
            assert_eq!(server.requests(), vec![format!("/good/{}.gz", FILES[3])]);
            assert_eq!(
                idx::read_decompressed(&gz_path(d, FILES[3])).unwrap(),
                data[FILES[3]]
            );
            assert!(!d.join(format!("{}.gz.part", FILES[3])).exists());

            // Everything present now: no request at all (nothing listens).
            let opts = options("http://127.0.0.1:9", &["good"], 0);
            let served =
                download_with_expected(DatasetName::Mnist, d, &opts, expectations(&data)).unwrap();
            assert!(served.is_empty());
        }

        #[test]
        fn unwritable_destination_is_a_local_error_not_a_mirror_failure() {
            let data = Arc::new(tiny_dataset(5));
            let dir = tempfile::tempdir().unwrap();
            let blocker = dir.path().join("file");
            std::fs::write(&blocker, b"x").unwrap();
            let dest: PathBuf = blocker.join("sub");
            let opts = options("http://127.0.0.1:9", &["good"], 3);
            let err = download_with_expected(DatasetName::Mnist, &dest, &opts, expectations(&data))
                .unwrap_err();
            assert!(matches!(err, DataError::Io { .. }), "{err}");
            assert!(err.to_string().contains(&dest.display().to_string()));
        }
    }
}
