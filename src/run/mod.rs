//! The run directory: `config.json`, `run.json`, `metrics.jsonl`, `summary.json`,
//! `checkpoints/`, and a lock that keeps a second trainer out while this one writes.

pub mod eval;
pub mod fs;
pub mod metrics;
pub mod summary;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::ExperimentConfig;
use crate::error::{Error, Result};
pub use fs::write_atomic;

pub const CONFIG_FILE: &str = "config.json";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const SUMMARY_FILE: &str = "summary.json";
/// Where the run found its data: a resume without `--data-dir` looks there first.
pub const INFO_FILE: &str = "run.json";
pub const LOCK_FILE: &str = ".lock";

/// What a run needs to know on resume that is not part of the experiment, and where it ran.
/// A key a run from before it was recorded lacks reads as `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunInfo {
    /// The directory the dataset's files were read from (absolute).
    pub data_dir: Option<PathBuf>,
    /// Which operations ran as Burn's and which as the hand-written kernels
    /// (`kernel::FastPaths::taken_on`).
    pub fast_paths: Option<serde_json::Value>,
    /// The machine the latest session trained on (the report shows it): the CPU's model name,
    /// the backend, and the threads of the compute pool.
    pub cpu: Option<String>,
    pub backend: Option<String>,
    pub threads: Option<usize>,
}

/// An open, locked run directory. The lock is released when this is dropped, or by the OS
/// when the process dies, so a crashed run never blocks its own resume.
#[derive(Debug)]
pub struct RunDir {
    pub path: PathBuf,
    _lock: File,
}

/// `runs/<label>-<UTC date>-<time>`, with a numeric suffix if that exists already.
pub fn generate_path(root: &Path, config: &ExperimentConfig) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace([':', 'Z'], "")
        .replace('T', "-")
        .replace('-', "");
    // 20261128053012 → 20261128-053012
    let stamp = format!("{}-{}", &stamp[..8], &stamp[8..]);
    let base = format!("{}-{stamp}", config.label());
    let mut path = root.join(&base);
    let mut n = 2;
    while path.exists() {
        path = root.join(format!("{base}-{n}"));
        n += 1;
    }
    path
}

impl RunDir {
    /// Creates (if needed) and locks `path`.
    pub fn open(path: &Path) -> Result<Self> {
        std::fs::create_dir_all(path).map_err(Error::io(format!(
            "cannot create run directory {}",
            path.display()
        )))?;
        let lock_path = path.join(LOCK_FILE);
        let mut lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .read(true)
            .open(&lock_path)
            .map_err(Error::io(format!(
                "run directory {} is not writable",
                path.display()
            )))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&lock_path).unwrap_or_default();
                return Err(Error::Other(format!(
                    "run directory {} is in use by another mnist-train process{}; wait for it \
                     to finish or choose another --run-dir",
                    path.display(),
                    holder
                        .trim()
                        .parse::<u32>()
                        .map(|pid| format!(" (pid {pid})"))
                        .unwrap_or_default()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io(format!("locking {}", lock_path.display()))(e));
            }
        }
        let _ = lock.set_len(0);
        let _ = write!(lock, "{}", std::process::id());
        Ok(Self {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn checkpoints(&self) -> PathBuf {
        self.path.join("checkpoints")
    }

    pub fn write_config(&self, config: &ExperimentConfig) -> Result<()> {
        write_atomic(
            &self.path.join(CONFIG_FILE),
            config.to_json_pretty().as_bytes(),
        )
    }

    pub fn write_info(&self, info: &RunInfo) -> Result<()> {
        write_atomic(
            &self.path.join(INFO_FILE),
            serde_json::to_string_pretty(info)
                .expect("run info serializes")
                .as_bytes(),
        )
    }
}

/// Reads `run.json` of a run directory; runs from before it existed have none.
pub fn read_info(run: &Path) -> RunInfo {
    std::fs::read_to_string(run.join(INFO_FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Reads the config saved in a run directory.
pub fn read_config(run: &Path) -> Result<ExperimentConfig> {
    let path = run.join(CONFIG_FILE);
    if !path.is_file() {
        return Err(Error::Checkpoint(format!(
            "{} is not a run directory (no {CONFIG_FILE}); --resume takes a directory that \
             mnist-train created, e.g. runs/<name>",
            run.display()
        )));
    }
    ExperimentConfig::from_file(&path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_open_of_a_locked_dir_is_refused_and_released_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let first = RunDir::open(tmp.path()).unwrap();
        let err = RunDir::open(tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains("in use by another mnist-train process"),
            "{err}"
        );
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        RunDir::open(tmp.path()).unwrap();
    }

    #[test]
    fn generated_names_are_unique_and_labelled() {
        let tmp = tempfile::tempdir().unwrap();
        let c = ExperimentConfig::default();
        let a = generate_path(tmp.path(), &c);
        std::fs::create_dir_all(&a).unwrap();
        let b = generate_path(tmp.path(), &c);
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("relu-random-normal0.05-20"), "{name}");
    }
}
