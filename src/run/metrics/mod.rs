//! The per-step metrics of a run: `metrics.jsonl` (one JSON object per step, the record the
//! others are made from), `metrics.csv` and a TensorBoard event file. All are appended as the
//! run goes and cut back to the checkpoint's step when a run resumes, so that they read as an
//! uninterrupted run's.

mod csv;
mod tensorboard;

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::fs::write_atomic;
use super::{METRICS_FILE, RunDir};
use crate::error::{Error, Result};
pub use csv::CSV_FILE;
pub use tensorboard::EVENTS_FILE;

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
    /// Per-layer diagnostics, from the input to the output, on steps where they were taken
    /// (`diagnostics_every`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub layers: Option<Vec<LayerDiagnostics>>,
}

/// What one dense layer looked like on a diagnostics step: how large its gradient, weights and
/// update were, and (hidden layers) what its units put out on the step's batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerDiagnostics {
    /// `hidden.0`, `hidden.1`, …, `output`.
    pub name: String,
    /// L2 norm of the loss's gradient with respect to the layer's weight matrix.
    pub grad_norm: f32,
    /// L2 norm of the weight matrix after the step.
    pub weight_norm: f32,
    /// ‖Δw‖ / ‖w‖: the step's change of the weight matrix relative to its norm before it.
    pub update_ratio: f32,
    /// Mean and standard deviation of the layer's outputs (after the activation) over the
    /// batch and the units. Hidden layers only.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub act_mean: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub act_std: Option<f32>,
    /// relu family: the share of units whose output is ≤ 0 (zero for relu) for every image of
    /// the batch, i.e. that pass no gradient (or, leaky, almost none) on it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dead_fraction: Option<f32>,
    /// sigmoid and tanh: the share of outputs within 2% of the activation's range from its
    /// bounds, where its gradient vanishes.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub saturated_fraction: Option<f32>,
    /// With batchnorm: mean and standard deviation after normalization, before the activation.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub norm_mean: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub norm_std: Option<f32>,
}

impl LayerDiagnostics {
    /// The statistics present, by name.
    pub fn values(&self) -> Vec<(&'static str, f32)> {
        let mut v = vec![
            ("grad_norm", self.grad_norm),
            ("weight_norm", self.weight_norm),
            ("update_ratio", self.update_ratio),
        ];
        let optional = [
            ("act_mean", self.act_mean),
            ("act_std", self.act_std),
            ("dead_fraction", self.dead_fraction),
            ("saturated_fraction", self.saturated_fraction),
            ("norm_mean", self.norm_mean),
            ("norm_std", self.norm_std),
        ];
        v.extend(optional.into_iter().filter_map(|(k, x)| x.map(|x| (k, x))));
        v
    }
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

    /// The values TensorBoard plots, tagged with their `metrics.jsonl` keys; the per-layer
    /// diagnostics as `layers/<layer>/<statistic>`.
    pub fn scalars(&self) -> Vec<(String, f32)> {
        let mut v = vec![
            ("train_loss".to_string(), self.train_loss),
            ("train_accuracy".to_string(), self.train_accuracy),
        ];
        if let Some(x) = self.lr {
            v.push(("lr".into(), x as f32));
        }
        if let Some(x) = self.valid_accuracy {
            v.push(("valid_accuracy".into(), x));
        }
        if let Some(x) = self.valid_loss {
            v.push(("valid_loss".into(), x));
        }
        if let Some(x) = self.test_accuracy {
            v.push(("test_accuracy".into(), x));
        }
        if let Some(x) = self.test_loss {
            v.push(("test_loss".into(), x));
        }
        for layer in self.layers.iter().flatten() {
            for (stat, x) in layer.values() {
                v.push((format!("layers/{}/{stat}", layer.name), x));
            }
        }
        v
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

/// A step with every key set, for tests of the formats that must carry each of them.
#[cfg(test)]
pub(crate) fn full_step() -> StepMetrics {
    StepMetrics {
        epoch: 1,
        step: 2,
        steps_per_epoch: 3,
        global_step: 6,
        train_loss: 0.5,
        train_accuracy: 0.25,
        lr: Some(0.01),
        valid_accuracy: Some(0.5),
        valid_loss: Some(0.25),
        test_accuracy: Some(0.75),
        test_loss: Some(0.125),
        elapsed_s: 1.5,
        layers: Some(vec![LayerDiagnostics {
            name: "hidden.0".into(),
            act_mean: Some(0.5),
            act_std: Some(0.5),
            dead_fraction: Some(0.5),
            saturated_fraction: Some(0.5),
            norm_mean: Some(0.5),
            norm_std: Some(0.5),
            ..Default::default()
        }]),
    }
}

/// One place the steps go, in a format of its own ([`MetricsLog`] feeds them all).
pub trait MetricsSink {
    /// Appends one step; it is on disk (not in a buffer of ours) when this returns, so an
    /// interrupted run loses no step it reported.
    fn record(&mut self, m: &StepMetrics) -> Result<()>;
}

/// `metrics.jsonl`.
struct Jsonl {
    file: File,
    path: PathBuf,
}

impl MetricsSink for Jsonl {
    fn record(&mut self, m: &StepMetrics) -> Result<()> {
        let line = serde_json::to_string(m).expect("metrics serialize") + "\n";
        self.file
            .write_all(line.as_bytes())
            .map_err(Error::io(format!("writing {}", self.path.display())))
    }
}

/// Every metrics file of a run, written together.
pub struct MetricsLog {
    sinks: Vec<Box<dyn MetricsSink>>,
}

impl MetricsLog {
    pub fn record(&mut self, m: &StepMetrics) -> Result<()> {
        self.sinks.iter_mut().try_for_each(|s| s.record(m))
    }
}

/// The lines of `metrics.jsonl` up to `keep_steps`, as text and parsed; a torn last line from a
/// crash, and steps a resumed run will redo, are dropped.
fn kept_lines(path: &Path, keep_steps: usize) -> (Vec<u8>, Vec<StepMetrics>) {
    let (mut text, mut steps) = (Vec::new(), Vec::new());
    if keep_steps == 0 {
        return (text, steps);
    }
    if let Ok(file) = File::open(path) {
        for line in BufReader::new(file).lines().map_while(|l| l.ok()) {
            if let Ok(m) = serde_json::from_str::<StepMetrics>(&line)
                && m.global_step <= keep_steps
            {
                text.extend_from_slice(line.as_bytes());
                text.push(b'\n');
                steps.push(m);
            }
        }
    }
    (text, steps)
}

impl RunDir {
    /// Opens the metrics files for appending, first dropping steps past `keep_steps` (the
    /// steps a resumed run will redo). `metrics.csv` and the event file are rewritten from
    /// `metrics.jsonl`, so they match it even if they were lost or turned on only now; with
    /// `tensorboard` off, an event file from before is removed.
    pub fn open_metrics(&self, keep_steps: usize, tensorboard: bool) -> Result<MetricsLog> {
        let path = self.path.join(METRICS_FILE);
        let (text, kept) = kept_lines(&path, keep_steps);
        write_atomic(&path, &text)?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(Error::io(format!("writing {}", path.display())))?;
        let mut sinks: Vec<Box<dyn MetricsSink>> = vec![
            Box::new(Jsonl { file, path }),
            Box::new(csv::Csv::open(&self.path, &kept)?),
        ];
        if tensorboard {
            sinks.push(Box::new(tensorboard::Events::open(&self.path, &kept)?));
        } else {
            // Turned off on a resume: an event file that stops where the run went on would
            // plot a run that never was. metrics.jsonl keeps every value, and a resume with
            // `--tensorboard` writes the file again from it.
            let events = self.path.join(EVENTS_FILE);
            if events.exists() {
                std::fs::remove_file(&events)
                    .map_err(Error::io(format!("removing {}", events.display())))?;
            }
        }
        Ok(MetricsLog { sinks })
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
        let mut log = run.open_metrics(0, true).unwrap();
        for s in 1..=5 {
            let m = StepMetrics {
                epoch: 0,
                step: s - 1,
                steps_per_epoch: 5,
                global_step: s,
                train_loss: 1.0,
                train_accuracy: 0.5,
                test_accuracy: (s % 2 == 0).then_some(0.9),
                test_loss: (s % 2 == 0).then_some(0.3),
                lr: Some(0.001),
                elapsed_s: s as f64,
                ..Default::default()
            };
            log.record(&m).unwrap();
        }
        drop(log);
        let mut f = OpenOptions::new()
            .append(true)
            .open(tmp.path().join(METRICS_FILE))
            .unwrap();
        write!(f, "{{\"torn").unwrap();
        drop(f);
        let whole_csv = std::fs::read_to_string(tmp.path().join(CSV_FILE)).unwrap();
        let whole_events = std::fs::read(tmp.path().join(EVENTS_FILE)).unwrap();
        run.open_metrics(3, true).unwrap();
        let text = std::fs::read_to_string(tmp.path().join(METRICS_FILE)).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.lines().last().unwrap().contains("\"global_step\":3"));
        // The header and three steps: the CSV is cut back with the JSON lines.
        let csv = std::fs::read_to_string(tmp.path().join(CSV_FILE)).unwrap();
        assert_eq!(csv.lines().count(), 4);
        assert!(whole_csv.starts_with(&csv), "{csv}\n----\n{whole_csv}");
        // So is the event file: a prefix of the uninterrupted one, apart from its first
        // record's time.
        let events = std::fs::read(tmp.path().join(EVENTS_FILE)).unwrap();
        assert!(events.len() < whole_events.len());
        assert_eq!(read(tmp.path()).len(), 3);
        // Turned off on a resume: no event file that stops where the run goes on.
        run.open_metrics(3, false).unwrap();
        assert!(!tmp.path().join(EVENTS_FILE).exists());
        // Turned on again: written anew from metrics.jsonl.
        run.open_metrics(3, true).unwrap();
        assert_eq!(
            std::fs::read(tmp.path().join(EVENTS_FILE)).unwrap().len(),
            events.len()
        );
    }
}
