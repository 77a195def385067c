//! What a run shows while it trains: the lecture's per-step line and lab 11's line at each
//! epoch's end (with a progress bar on a terminal), JSON lines for scripts, or nothing. Every reporter gets the same
//! [`StepMetrics`] through the trainer's [`Reporter`] trait; `metrics.jsonl` in the run directory is written separately, always.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use crate::run::metrics::StepMetrics;
use crate::train::{EpochEnd, Reporter};

/// Human output: the lecture's line per step, always on stdout (a terminal, a file or a pipe),
/// and a progress bar on stderr when stderr is a terminal. The bar is cleared while a line is
/// printed and drawn again below it, so the two never mix on a screen, and a redirected stdout
/// (`mnist-train > log.txt` in a terminal) gets every line.
pub struct HumanReporter {
    bar: Option<ProgressBar>,
    lines: bool,
    closed: bool,
}

impl HumanReporter {
    /// `lines: false` is `--quiet`: no per-step lines, the bar still shows on a terminal.
    pub fn new(lines: bool) -> Self {
        Self {
            bar: None,
            lines,
            closed: false,
        }
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
        let lines = self.lines;
        let print = || !lines || super::stdout_line(&m.lecture_line());
        let printed = match &self.bar {
            Some(bar) => {
                if let Some(acc) = m.test_accuracy {
                    bar.set_message(format!("test_accuracy {acc:.4}"));
                }
                let printed = bar.suspend(print);
                bar.inc(1);
                printed
            }
            None => print(),
        };
        self.closed |= !printed;
    }

    fn epoch_end(&mut self, epoch: &EpochEnd) {
        if !self.lines {
            return;
        }
        let print = || super::stdout_line(&epoch.line());
        let printed = match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        };
        self.closed |= !printed;
    }

    fn output_closed(&self) -> bool {
        self.closed
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
#[derive(Default)]
pub struct JsonReporter {
    closed: bool,
}

impl Reporter for JsonReporter {
    fn step(&mut self, m: &StepMetrics) {
        let json = serde_json::to_string(m).expect("metrics serialize");
        self.closed |= !super::stdout_line(&json);
    }

    fn output_closed(&self) -> bool {
        self.closed
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
            elapsed_s: 1.0,
            ..Default::default()
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
