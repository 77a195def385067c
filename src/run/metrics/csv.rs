//! `metrics.csv`: the steps of `metrics.jsonl` as a table, one row per step, with empty cells
//! where a step has no evaluation (the habit of Keras' CSVLogger), for spreadsheets and pandas.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{MetricsSink, StepMetrics};
use crate::error::{Error, Result};
use crate::run::fs::write_atomic;

pub const CSV_FILE: &str = "metrics.csv";

/// One row. Its own type, not `StepMetrics`: a CSV row needs every column on every line, where
/// the JSON lines leave keys out.
#[derive(Default, Serialize)]
struct Row {
    epoch: usize,
    step: usize,
    steps_per_epoch: usize,
    global_step: usize,
    train_loss: f32,
    train_accuracy: f32,
    lr: Option<f64>,
    valid_accuracy: Option<f32>,
    valid_loss: Option<f32>,
    test_accuracy: Option<f32>,
    test_loss: Option<f32>,
    elapsed_s: f64,
}

impl From<&StepMetrics> for Row {
    fn from(m: &StepMetrics) -> Self {
        Row {
            epoch: m.epoch,
            step: m.step,
            steps_per_epoch: m.steps_per_epoch,
            global_step: m.global_step,
            train_loss: m.train_loss,
            train_accuracy: m.train_accuracy,
            lr: m.lr,
            valid_accuracy: m.valid_accuracy,
            valid_loss: m.valid_loss,
            test_accuracy: m.test_accuracy,
            test_loss: m.test_loss,
            elapsed_s: m.elapsed_s,
        }
    }
}

pub struct Csv {
    writer: ::csv::Writer<File>,
    path: PathBuf,
}

impl Csv {
    /// Rewrites the file with the header and `kept`, then opens it for appending.
    pub fn open(run: &Path, kept: &[StepMetrics]) -> Result<Self> {
        let path = run.join(CSV_FILE);
        let err = |e: ::csv::Error| Error::Other(format!("writing {}: {e}", path.display()));
        let mut text = ::csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        // The header even with no rows yet; serde would write it only with the first row.
        text.write_record(header()).map_err(err)?;
        for m in kept {
            text.serialize(Row::from(m)).map_err(err)?;
        }
        let text = text
            .into_inner()
            .map_err(|e| Error::Other(format!("writing {}: {e}", path.display())))?;
        write_atomic(&path, &text)?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(Error::io(format!("writing {}", path.display())))?;
        let writer = ::csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(file);
        Ok(Csv { writer, path })
    }
}

/// The column names: [`Row`]'s fields, as the csv crate writes them with the first row.
fn header() -> Vec<String> {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    w.serialize(Row::default()).expect("a row serializes");
    let text = String::from_utf8(w.into_inner().expect("in memory")).expect("utf-8");
    let first = text.lines().next().unwrap_or_default();
    first.split(',').map(String::from).collect()
}

impl MetricsSink for Csv {
    fn record(&mut self, m: &StepMetrics) -> Result<()> {
        let path = &self.path;
        self.writer
            .serialize(Row::from(m))
            .map_err(|e| Error::Other(format!("writing {}: {e}", path.display())))?;
        self.writer
            .flush()
            .map_err(Error::io(format!("writing {}", self.path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key added to `StepMetrics` must get a column here too.
    #[test]
    fn every_metrics_key_has_a_column() {
        let m = crate::run::metrics::full_step();
        let json = serde_json::to_value(&m).unwrap();
        let columns = header();
        // The per-layer diagnostics are nested (a list of layers), and stay in metrics.jsonl
        // and TensorBoard.
        for key in json.as_object().unwrap().keys().filter(|k| *k != "layers") {
            assert!(columns.contains(key), "no column for {key}");
        }
    }

    #[test]
    fn steps_without_evaluation_leave_empty_cells() {
        let tmp = tempfile::tempdir().unwrap();
        let mut csv = Csv::open(tmp.path(), &[]).unwrap();
        let mut m = StepMetrics {
            epoch: 0,
            step: 0,
            steps_per_epoch: 2,
            global_step: 1,
            train_loss: 0.5,
            train_accuracy: 0.25,
            test_accuracy: None,
            test_loss: None,
            lr: Some(0.001),
            elapsed_s: 1.5,
            ..Default::default()
        };
        csv.record(&m).unwrap();
        m.step = 1;
        m.global_step = 2;
        m.test_accuracy = Some(0.75);
        m.test_loss = Some(0.125);
        csv.record(&m).unwrap();
        let text = std::fs::read_to_string(tmp.path().join(CSV_FILE)).unwrap();
        assert_eq!(
            text,
            "epoch,step,steps_per_epoch,global_step,train_loss,train_accuracy,lr,valid_accuracy,\
             valid_loss,test_accuracy,test_loss,elapsed_s\n\
             0,0,2,1,0.5,0.25,0.001,,,,,1.5\n\
             0,1,2,2,0.5,0.25,0.001,,,0.75,0.125,1.5\n"
        );
    }
}
