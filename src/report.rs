//! What a run shows while it trains: the lecture's per-step line on a terminal (with a
//! progress bar there), JSON lines for scripts, or nothing. Every reporter gets the same
//! [`StepMetrics`]; `metrics.jsonl` in the run directory is written separately, always.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

/// One training step, as printed and as stored in `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    pub epoch: usize,
    /// Index of the step within its epoch (0-based, as in the lecture's output).
    pub step: usize,
    pub steps_per_epoch: usize,
    /// Steps completed after this one, over all epochs.
    pub global_step: usize,
    pub train_loss: f32,
    pub train_accuracy: f32,
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
        if let Some(acc) = self.test_accuracy {
            line.push_str(&format!(", test_accuracy: {acc:.4}"));
        }
        line
    }
}

/// Receives the events of a run.
pub trait Reporter {
    /// Called once before the first step with the total number of steps and those done.
    fn start(&mut self, _total_steps: usize, _done: usize) {}
    fn step(&mut self, metrics: &StepMetrics);
    /// A message for the person at the terminal (goes to stderr).
    fn note(&mut self, message: &str) {
        eprintln!("{message}");
    }
    fn finish(&mut self) {}
}

/// Human output: the lecture's line per step on stdout, and a progress bar when stderr is a
/// terminal. Piped output gets plain lines only.
pub struct HumanReporter {
    bar: Option<ProgressBar>,
    lines: bool,
}

impl HumanReporter {
    /// `lines: false` is `--quiet`: no per-step lines, the bar still shows on a terminal.
    pub fn new(lines: bool) -> Self {
        Self { bar: None, lines }
    }
}

impl Reporter for HumanReporter {
    fn start(&mut self, total_steps: usize, done: usize) {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total_steps as u64).with_position(done as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40.cyan/blue} {pos}/{len} steps  {elapsed} elapsed, eta {eta}  {msg}",
                )
                .expect("valid template"),
            );
            self.bar = Some(bar);
        }
    }

    fn step(&mut self, m: &StepMetrics) {
        if let Some(bar) = &self.bar {
            if let Some(acc) = m.test_accuracy {
                bar.set_message(format!("test_accuracy {acc:.4}"));
            }
            if self.lines {
                bar.println(m.lecture_line());
            }
            bar.inc(1);
        } else if self.lines {
            println!("{}", m.lecture_line());
        }
    }

    fn note(&mut self, message: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{message}")),
            None => eprintln!("{message}"),
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// `--json`: one JSON object per step on stdout, nothing else there.
pub struct JsonReporter;

impl Reporter for JsonReporter {
    fn step(&mut self, m: &StepMetrics) {
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut out, m);
        let _ = out.write_all(b"\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(test: Option<f32>) -> StepMetrics {
        StepMetrics {
            epoch: 0,
            step: 467,
            steps_per_epoch: 468,
            global_step: 468,
            train_loss: 0.066_102_33,
            train_accuracy: 0.984_375,
            test_accuracy: test,
            test_loss: None,
            elapsed_s: 1.0,
        }
    }

    #[test]
    fn lecture_line_matches_the_lecture_format() {
        assert_eq!(
            metrics(Some(0.9599)).lecture_line(),
            "Epoch: [ 0] [  467/  468], train_loss: 0.06610233, train_accuracy: 0.9844, \
             test_accuracy: 0.9599"
        );
        assert!(!metrics(None).lecture_line().contains("test_accuracy"));
    }

    #[test]
    fn json_omits_absent_test_metrics() {
        let json = serde_json::to_string(&metrics(None)).unwrap();
        assert!(!json.contains("test_accuracy"));
        let back: StepMetrics = serde_json::from_str(&json).unwrap();
        assert_eq!(back, metrics(None));
    }
}
