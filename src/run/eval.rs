//! `eval.json`: what the latest `mnist-train eval` of a run measured, kept beside the run so
//! that its report shows the confusion matrix and the mistakes without evaluating again.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::fs::write_atomic;
use crate::data::DatasetName;
use crate::error::Result;

pub const EVAL_FILE: &str = "eval.json";

/// `eval --json`'s object plus the most confident mistakes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    pub checkpoint: String,
    pub dataset: DatasetName,
    pub step: usize,
    pub accuracy: f64,
    pub loss: f64,
    pub images: usize,
    /// `None` (JSON null) for a class the evaluated images do not hold.
    pub per_class_accuracy: Vec<Option<f64>>,
    /// `confusion_matrix[true][predicted]` counts.
    pub confusion_matrix: Vec<Vec<u64>>,
    pub class_names: Vec<String>,
    /// The names `eval` has always printed, for scripts written against them.
    pub test_accuracy: f64,
    pub test_loss: f64,
    pub test_images: usize,
    /// Wrong predictions, most confident first (not in `eval --json`'s output).
    #[serde(default)]
    pub mistakes: Vec<Mistake>,
}

/// A test image the model got wrong (`train::evaluate` finds them; `eval.json` keeps them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mistake {
    /// Index in the test set.
    pub index: usize,
    pub label: usize,
    pub predicted: usize,
    /// The model's probability for `predicted`.
    pub probability: f32,
}

impl EvalRecord {
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_atomic(
            &dir.join(EVAL_FILE),
            serde_json::to_string_pretty(self)
                .expect("an eval record serializes")
                .as_bytes(),
        )
    }

    /// The record in `run`, if there is one that parses.
    pub fn read(run: &Path) -> Option<EvalRecord> {
        serde_json::from_str(&std::fs::read_to_string(run.join(EVAL_FILE)).ok()?).ok()
    }
}
