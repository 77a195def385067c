//! The run's TensorBoard event file: every step's scalars from `metrics.jsonl`, with the global
//! step as TensorBoard's step.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{MetricsSink, StepMetrics};
use crate::error::{Error, Result};
use crate::run::fs::write_atomic;
use crate::tensorboard;

/// A fixed name, not TensorBoard's usual `events.out.tfevents.<time>.<host>`: a resumed run
/// rewrites this one file instead of adding another whose redone steps TensorBoard would plot
/// twice. TensorBoard reads every file whose name holds `tfevents`, in name order, so the
/// sweep's `…hparams` file sorts before it.
pub const EVENTS_FILE: &str = "events.out.tfevents.metrics";

pub struct Events {
    file: File,
    path: PathBuf,
    /// `wall_time` = `time_zero + elapsed_s`: the training time TensorBoard's "relative" axis
    /// shows, continuous across a resume, and the same whether a step was written live or
    /// rewritten from `metrics.jsonl`.
    time_zero: f64,
}

impl Events {
    /// Rewrites the file from `kept` (the steps of `metrics.jsonl` a resumed run keeps), then
    /// opens it for appending.
    pub fn open(run: &Path, kept: &[StepMetrics]) -> Result<Self> {
        let path = run.join(EVENTS_FILE);
        let time_zero = tensorboard::now() - kept.last().map_or(0.0, |m| m.elapsed_s);
        let mut bytes = tensorboard::file_version(time_zero);
        for m in kept {
            bytes.extend(encode(time_zero, m));
        }
        write_atomic(&path, &bytes)?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(Error::io(format!("writing {}", path.display())))?;
        Ok(Events {
            file,
            path,
            time_zero,
        })
    }
}

fn encode(time_zero: f64, m: &StepMetrics) -> Vec<u8> {
    tensorboard::scalars(time_zero + m.elapsed_s, m.global_step as u64, &m.scalars())
}

impl MetricsSink for Events {
    fn record(&mut self, m: &StepMetrics) -> Result<()> {
        // One write per record, so a reader never sees half of one unless we crash mid-write,
        // which TensorBoard's reader tolerates at the end of a file.
        self.file
            .write_all(&encode(self.time_zero, m))
            .map_err(Error::io(format!("writing {}", self.path.display())))
    }
}

#[cfg(test)]
mod tests {
    /// A float key added to `StepMetrics` must reach TensorBoard too.
    #[test]
    fn every_metric_value_is_a_scalar() {
        let m = crate::run::metrics::full_step();
        let json = serde_json::to_value(&m).unwrap();
        let scalars = m.scalars();
        let tags: Vec<&str> = scalars.iter().map(|(t, _)| t.as_str()).collect();
        // Positions and times are TensorBoard's step and wall time, not plotted values.
        let not_plotted = [
            "epoch",
            "step",
            "steps_per_epoch",
            "global_step",
            "elapsed_s",
        ];
        for (key, value) in json.as_object().unwrap() {
            if key == "layers" {
                for stat in value[0].as_object().unwrap().keys() {
                    let tag = format!("layers/hidden.0/{stat}");
                    assert!(
                        stat == "name" || tags.contains(&tag.as_str()),
                        "{tag} is not written"
                    );
                }
                continue;
            }
            assert!(
                tags.contains(&key.as_str()) || not_plotted.contains(&key.as_str()),
                "{key} is not written to TensorBoard"
            );
        }
    }
}
