//! The run directory: `config.json`, `metrics.jsonl`, `summary.json`, `checkpoints/`, and a
//! lock that keeps a second trainer out while this one writes.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::config::ExperimentConfig;
use crate::error::{Error, Result};
use crate::report::StepMetrics;

pub const CONFIG_FILE: &str = "config.json";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const SUMMARY_FILE: &str = "summary.json";
const LOCK_FILE: &str = ".lock";

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
        fs::create_dir_all(path).map_err(Error::io(format!(
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
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&lock_path).unwrap_or_default();
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
            Err(fs::TryLockError::Error(e)) => {
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

    /// Opens `metrics.jsonl` for appending, first dropping lines past `keep_steps` (the steps
    /// a resumed run will redo), so the file ends up as an uninterrupted run's would.
    pub fn open_metrics(&self, keep_steps: usize) -> Result<File> {
        let path = self.path.join(METRICS_FILE);
        let ctx = || format!("writing {}", path.display());
        if keep_steps == 0 {
            return File::create(&path).map_err(Error::io(ctx()));
        }
        let mut kept = Vec::new();
        if let Ok(file) = File::open(&path) {
            for line in BufReader::new(file).lines().map_while(|l| l.ok()) {
                match serde_json::from_str::<StepMetrics>(&line) {
                    Ok(m) if m.global_step <= keep_steps => {
                        kept.extend_from_slice(line.as_bytes());
                        kept.push(b'\n');
                    }
                    // A torn last line from a crash, or steps to be redone: drop.
                    _ => {}
                }
            }
        }
        write_atomic(&path, &kept)?;
        OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(Error::io(ctx()))
    }
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

/// Writes through a temporary file and a rename, so readers never see half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let ctx = || format!("writing {}", path.display());
    let mut f = File::create(&tmp).map_err(Error::io(ctx()))?;
    f.write_all(bytes).map_err(Error::io(ctx()))?;
    f.sync_all().map_err(Error::io(ctx()))?;
    fs::rename(&tmp, path).map_err(Error::io(ctx()))
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
        fs::create_dir_all(&a).unwrap();
        let b = generate_path(tmp.path(), &c);
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("relu-random-normal0.05-20"), "{name}");
    }

    #[test]
    fn metrics_are_truncated_to_the_resumed_step() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::open(tmp.path()).unwrap();
        let mut f = run.open_metrics(0).unwrap();
        for s in 1..=5 {
            let m = StepMetrics {
                epoch: 0,
                step: s - 1,
                steps_per_epoch: 5,
                global_step: s,
                train_loss: 1.0,
                train_accuracy: 0.5,
                test_accuracy: None,
                test_loss: None,
                elapsed_s: 0.0,
            };
            writeln!(f, "{}", serde_json::to_string(&m).unwrap()).unwrap();
        }
        write!(f, "{{\"torn").unwrap();
        drop(f);
        run.open_metrics(3).unwrap();
        let text = fs::read_to_string(tmp.path().join(METRICS_FILE)).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.lines().last().unwrap().contains("\"global_step\":3"));
    }
}
