//! What the training loop tells whoever watches it. The loop knows only this trait; the
//! people-facing implementations (the lecture's lines, JSON lines) live in `output::progress`,
//! so the dependency points from output to training, never back.

use crate::run::metrics::StepMetrics;

/// Receives the events of a run. `Send`: the run may train on a thread of the CPU pool.
pub trait Reporter: Send {
    /// Called once before the first step with the total number of steps and those done.
    fn start(&mut self, _total_steps: usize, _done: usize) {}
    fn step(&mut self, metrics: &StepMetrics);
    /// Called after the last step of each epoch, after its [`Reporter::step`].
    fn epoch_end(&mut self, _epoch: &EpochEnd) {}
    /// A message for the person at the terminal (goes to stderr).
    fn note(&mut self, message: &str) {
        eprintln!("{message}");
    }
    fn finish(&mut self) {}
    /// True once stdout's reader has gone away: the run should checkpoint and stop.
    fn output_closed(&self) -> bool {
        false
    }
}

/// An epoch's means of the train columns and its closing evaluation: lab 11's line.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochEnd {
    /// Counted from 1, as lab 11 prints it.
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub valid_accuracy: Option<f64>,
    pub test_accuracy: Option<f64>,
}

impl EpochEnd {
    /// `Epoch: 1 loss = 0.18932112 train accuracy = 0.9436 test accuracy = 0.9843`.
    pub fn line(&self) -> String {
        let mut line = format!(
            "Epoch: {} loss = {:.8} train accuracy = {:.4}",
            self.epoch, self.train_loss, self.train_accuracy
        );
        if let Some(acc) = self.valid_accuracy {
            line.push_str(&format!(" valid accuracy = {acc:.4}"));
        }
        if let Some(acc) = self.test_accuracy {
            line.push_str(&format!(" test accuracy = {acc:.4}"));
        }
        line
    }
}
