//! `metrics.jsonl`: one JSON object per training step, appended as the run goes, cut back to
//! the checkpoint's step when a run resumes so that it reads as an uninterrupted run's.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::fs::write_atomic;
use super::{METRICS_FILE, RunDir};
use crate::error::{Error, Result};

/// One training step, as printed and as stored in `metrics.jsonl`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    pub epoch: usize,
    /// Index of the step within its epoch (0-based, as in the lecture's output).
    pub step: usize,
    pub steps_per_epoch: usize,
    /// Steps completed after this one, over all epochs.
    pub global_step: usize,
    pub train_loss: f32,
    pub train_accuracy: f32,
    /// The learning rate this step trained with (absent in lines written before it was
    /// recorded).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub lr: Option<f64>,
    /// Present on evaluated steps when images are held out for validation (`valid_split`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub valid_accuracy: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub valid_loss: Option<f32>,
    /// Present on steps where the test set was evaluated.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub test_accuracy: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub test_loss: Option<f32>,
    /// Training wall time so far, seconds.
    pub elapsed_s: f64,
}

impl StepMetrics {
    /// The lecture's line: `Epoch: [ 0] [  467/  468], train_loss: …, train_accuracy: …,
    /// test_accuracy: …`.
    pub fn lecture_line(&self) -> String {
        let mut line = format!(
            "Epoch: [{:2}] [{:5}/{:5}], train_loss: {:.8}, train_accuracy: {:.4}",
            self.epoch, self.step, self.steps_per_epoch, self.train_loss, self.train_accuracy
        );
        if let Some(acc) = self.valid_accuracy {
            line.push_str(&format!(", valid_accuracy: {acc:.4}"));
        }
        if let Some(acc) = self.test_accuracy {
            line.push_str(&format!(", test_accuracy: {acc:.4}"));
        }
        line
    }
}

/// The steps recorded in a run's `metrics.jsonl`, skipping lines that do not parse (a torn
/// last line after a crash). Empty when the file is missing.
pub fn read(run: &Path) -> Vec<StepMetrics> {
    let Ok(file) = File::open(run.join(METRICS_FILE)) else {
        return Vec::new();
    };
    BufReader::new(file)
        .lines()
        .map_while(|l| l.ok())
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect()
}

impl RunDir {
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

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
                lr: Some(0.001),
                elapsed_s: 0.0,
                ..Default::default()
            };
            writeln!(f, "{}", serde_json::to_string(&m).unwrap()).unwrap();
        }
        write!(f, "{{\"torn").unwrap();
        drop(f);
        run.open_metrics(3).unwrap();
        let text = std::fs::read_to_string(tmp.path().join(METRICS_FILE)).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.lines().last().unwrap().contains("\"global_step\":3"));
    }
}
