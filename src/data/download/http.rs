//! The HTTP side of a download: mirrors in turn, retries, timeouts, a progress bar.

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
