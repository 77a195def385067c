//! `summary.json`: what a finished run reports, and what sweeps read to know a trial is done.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::SUMMARY_FILE;
use super::fs::write_atomic;
use crate::config::ExperimentConfig;
use crate::error::Result;

/// Written to `summary.json` when a run ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub run_dir: String,
    pub backend: String,
    pub config: ExperimentConfig,
    pub steps: usize,
    pub epochs: usize,
    pub final_test_accuracy: f64,
    pub final_test_loss: f64,
    pub best_test_accuracy: f64,
    pub final_train_loss: f64,
    /// Training wall time in seconds, evaluation included, summed over resumed sessions.
    pub wall_time_s: f64,
    /// Training images processed per second of wall time.
    pub images_per_s: f64,
    pub train_images: usize,
    pub test_images: usize,
    /// Images held out for validation (`valid_split`).
    #[serde(default)]
    pub valid_images: usize,
    /// With a validation split: the best validation accuracy, the step that reached it, and
    /// the test accuracy of that model — the honest estimate (`best_test_accuracy` picks the
    /// best of many test evaluations, which overstates it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_accuracy_best: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_valid_step: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy_at_best_valid: Option<f64>,
    /// Why the run ended before its last epoch (early stopping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<String>,
}

impl Summary {
    pub fn write(&self, run: &Path) -> Result<()> {
        write_atomic(
            &run.join(SUMMARY_FILE),
            serde_json::to_string_pretty(self)
                .expect("summary serializes")
                .as_bytes(),
        )
    }

    /// The summary in `run`, if there is one that parses.
    pub fn read(run: &Path) -> Option<Summary> {
        let text = std::fs::read_to_string(run.join(SUMMARY_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }
}
