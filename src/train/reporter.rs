//! What the training loop tells whoever watches it. The loop knows only this trait; the
//! people-facing implementations (the lecture's lines, JSON lines) live in `output::progress`,
//! so the dependency points from output to training, never back.

use crate::run::metrics::StepMetrics;

/// Receives the events of a run. `Send`: the run may train on a thread of the CPU pool.
pub trait Reporter: Send {
    /// Called once before the first step with the total number of steps and those done.
    fn start(&mut self, _total_steps: usize, _done: usize) {}
    fn step(&mut self, metrics: &StepMetrics);
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
