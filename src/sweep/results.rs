//! The results of a sweep: one row per config (mean ± sd over its seeds), as Markdown, CSV and
//! JSON, plus plots. Built from the run directories listed in `sweep.json`, so it works on a
//! finished sweep, a running one, or the shared directory of a sharded one.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::ExperimentConfig;
use crate::error::{Error, Result};
use crate::run::summary::Summary;
use crate::run::{CONFIG_FILE, metrics, write_atomic};

/// Lists the trials of the current sweep; the report uses these and nothing else.
pub const MANIFEST_FILE: &str = "sweep.json";
/// Written into a trial's directory when its child process failed.
pub const STATUS_FILE: &str = "sweep-status.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub trials: Vec<ManifestTrial>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestTrial {
    pub index: usize,
    /// Directory name under the sweep directory.
    pub dir: String,
    pub label: String,
    pub group: String,
    pub seed: u64,
    pub hash: String,
    pub config: ExperimentConfig,
}

/// A failed child, as recorded in [`STATUS_FILE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureRecord {
    pub exit_code: i32,
    pub message: String,
}

/// Where one trial stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum TrialStatus {
    Done,
    Failed {
        exit_code: i32,
    },
    /// Started (config.json present), not finished: running now, or interrupted.
    Incomplete,
    Pending,
}

pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::Usage(format!(
            "{} is not a sweep directory (cannot read {MANIFEST_FILE}: {e})",
            dir.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| Error::ConfigFile {
        path,
        message: e.to_string(),
    })
}

pub fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<()> {
    write_atomic(
        &dir.join(MANIFEST_FILE),
        serde_json::to_string_pretty(manifest)
            .expect("manifest serializes")
            .as_bytes(),
    )
}

/// The summary of a finished trial, if it is this trial's.
pub fn finished_summary(run: &Path, config: &ExperimentConfig) -> Option<Summary> {
    let summary = Summary::read(run)?;
    (summary.config == *config).then_some(summary)
}

pub fn trial_status(run: &Path, config: &ExperimentConfig) -> TrialStatus {
    if finished_summary(run, config).is_some() {
        return TrialStatus::Done;
    }
    if let Some(f) = std::fs::read_to_string(run.join(STATUS_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<FailureRecord>(&t).ok())
    {
        return TrialStatus::Failed {
            exit_code: f.exit_code,
        };
    }
    if run.join(CONFIG_FILE).exists() {
        TrialStatus::Incomplete
    } else {
        TrialStatus::Pending
    }
}

/// Mean and sample standard deviation (n − 1; 0 for a single value).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stat {
    pub n: usize,
    pub mean: f64,
    pub sd: f64,
}

pub fn stat(xs: &[f64]) -> Option<Stat> {
    if xs.is_empty() {
        return None;
    }
    let n = xs.len();
    let mean = xs.iter().sum::<f64>() / n as f64;
    let sd = if n > 1 {
        (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    Some(Stat { n, mean, sd })
}

/// One trial in the report.
#[derive(Debug, Clone, Serialize)]
pub struct TrialResult {
    pub dir: String,
    pub seed: u64,
    #[serde(flatten)]
    pub status: TrialStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_test_accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_test_accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_train_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wall_time_s: Option<f64>,
}

/// One config (all its seeds): a table row. Accuracies in percent.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub label: String,
    pub group: String,
    pub seeds: usize,
    pub done: usize,
    pub final_test_accuracy: Option<Stat>,
    pub best_test_accuracy: Option<Stat>,
    pub final_train_loss: Option<Stat>,
    pub wall_time_s: Option<Stat>,
    pub eval_every: usize,
    pub epochs: usize,
    /// The row's config, seed aside (the first seed's).
    pub config: ExperimentConfig,
    pub trials: Vec<TrialResult>,
    /// Test accuracy (%) vs global step: mean and sd over the finished seeds.
    #[serde(skip)]
    pub curve: Curve,
    /// First-layer / output-layer gradient norm vs global step: mean and sd over the finished
    /// seeds, on the steps that took diagnostics.
    #[serde(skip)]
    pub gradient_ratio: Curve,
}

#[derive(Debug, Clone, Default)]
pub struct Curve {
    pub steps: Vec<f64>,
    pub mean: Vec<f64>,
    pub sd: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    pub name: String,
    pub caption: String,
    pub trials: usize,
    pub done: usize,
    pub failed: usize,
    pub rows: Vec<Row>,
}

/// Test-accuracy points (step, %) of a run's metrics.
fn accuracy_points(steps: &[metrics::StepMetrics]) -> Vec<(usize, f64)> {
    steps
        .iter()
        .filter_map(|m| m.test_accuracy.map(|a| (m.global_step, a as f64 * 100.0)))
        .collect()
}

/// First-layer over output-layer gradient norm (step, ratio) on the diagnostics steps: far
/// below 1, the first layer learns much slower than the last (sigmoid's vanishing gradient).
fn gradient_ratio_points(steps: &[metrics::StepMetrics]) -> Vec<(usize, f64)> {
    steps
        .iter()
        .filter_map(|m| {
            let layers = m.layers.as_ref()?;
            let (first, last) = (layers.first()?, layers.last()?);
            (last.grad_norm > 0.0 && layers.len() > 1).then(|| {
                (
                    m.global_step,
                    first.grad_norm as f64 / last.grad_norm as f64,
                )
            })
        })
        .collect()
}

fn mean_curve(runs: &[Vec<(usize, f64)>]) -> Curve {
    let mut by_step: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for run in runs {
        for &(step, acc) in run {
            by_step.entry(step).or_default().push(acc);
        }
    }
    let mut curve = Curve::default();
    for (step, accs) in by_step {
        let s = stat(&accs).expect("non-empty");
        curve.steps.push(step as f64);
        curve.mean.push(s.mean);
        curve.sd.push(s.sd);
    }
    curve
}

/// A run's "best" test accuracy: with a validation split, that of the model chosen on it (the
/// highest of the test evaluations would be a selected, optimistic number).
fn best_test_accuracy(summary: &Summary) -> f64 {
    summary
        .test_accuracy_at_best_valid
        .unwrap_or(summary.best_test_accuracy)
}

/// Reads every trial of the sweep in `dir` and aggregates them.
pub fn build(dir: &Path) -> Result<SweepReport> {
    let manifest = read_manifest(dir)?;
    let mut order: Vec<String> = Vec::new();
    let mut by_group: BTreeMap<String, Vec<&ManifestTrial>> = BTreeMap::new();
    for t in &manifest.trials {
        if !by_group.contains_key(&t.group) {
            order.push(t.group.clone());
        }
        by_group.entry(t.group.clone()).or_default().push(t);
    }
    let mut rows = Vec::new();
    let (mut done_total, mut failed_total) = (0, 0);
    let mut test_images = BTreeMap::new();
    let mut steps = BTreeMap::new();
    for group in order {
        let members = &by_group[&group];
        let first = members[0];
        let mut trials = Vec::new();
        let mut curves = Vec::new();
        let mut ratios = Vec::new();
        let (mut finals, mut bests, mut losses, mut walls) = (vec![], vec![], vec![], vec![]);
        for t in members {
            let run = dir.join(&t.dir);
            let status = trial_status(&run, &t.config);
            let summary = match status {
                TrialStatus::Done => finished_summary(&run, &t.config),
                _ => None,
            };
            if let Some(s) = &summary {
                finals.push(s.final_test_accuracy * 100.0);
                bests.push(best_test_accuracy(s) * 100.0);
                losses.push(s.final_train_loss);
                walls.push(s.wall_time_s);
                let recorded = metrics::read(&run);
                curves.push(accuracy_points(&recorded));
                ratios.push(gradient_ratio_points(&recorded));
                *test_images.entry(s.test_images).or_insert(0) += 1;
                *steps.entry(s.steps).or_insert(0) += 1;
                done_total += 1;
            }
            if matches!(status, TrialStatus::Failed { .. }) {
                failed_total += 1;
            }
            trials.push(TrialResult {
                dir: t.dir.clone(),
                seed: t.seed,
                status,
                final_test_accuracy: summary.as_ref().map(|s| s.final_test_accuracy * 100.0),
                best_test_accuracy: summary.as_ref().map(|s| best_test_accuracy(s) * 100.0),
                final_train_loss: summary.as_ref().map(|s| s.final_train_loss),
                wall_time_s: summary.as_ref().map(|s| s.wall_time_s),
            });
        }
        rows.push(Row {
            label: first.label.clone(),
            group,
            seeds: members.len(),
            done: finals.len(),
            final_test_accuracy: stat(&finals),
            best_test_accuracy: stat(&bests),
            final_train_loss: stat(&losses),
            wall_time_s: stat(&walls),
            eval_every: first.config.eval_every,
            epochs: first.config.epochs,
            config: first.config.clone(),
            trials,
            curve: mean_curve(&curves),
            gradient_ratio: mean_curve(&ratios),
        });
    }
    let caption = caption(&manifest, &rows, &test_images, &steps, done_total);
    Ok(SweepReport {
        name: manifest.name,
        caption,
        trials: manifest.trials.len(),
        done: done_total,
        failed: failed_total,
        rows,
    })
}

fn uniform<T: Clone + PartialEq>(values: impl IntoIterator<Item = T>) -> Option<T> {
    let mut it = values.into_iter();
    let first = it.next()?;
    it.all(|v| v == first).then_some(first)
}

fn caption(
    manifest: &Manifest,
    rows: &[Row],
    test_images: &BTreeMap<usize, usize>,
    steps: &BTreeMap<usize, usize>,
    done: usize,
) -> String {
    let datasets = uniform(manifest.trials.iter().map(|t| t.config.dataset))
        .map(|d| d.to_string())
        .unwrap_or_else(|| "mixed datasets".into());
    let mut c = format!(
        "Sweep `{}` on {datasets}: {done} of {} trials finished. ",
        manifest.name,
        manifest.trials.len()
    );
    let seeds = uniform(rows.iter().map(|r| r.seeds));
    match seeds {
        Some(1) => c.push_str("One seed per config (no sd)"),
        Some(n) => write!(c, "Mean ± sd (sample sd) over {n} seeds per config").unwrap(),
        None => c.push_str("Mean ± sd (sample sd) over each config's seeds"),
    }
    c.push_str(" of the test accuracy (%)");
    if test_images.len() == 1 {
        let n = test_images.keys().next().expect("one");
        write!(c, " on {n} test images").unwrap();
    }
    c.push_str("; final = after the last step, best = highest evaluation of a run");
    if manifest.trials.iter().any(|t| t.config.valid_split > 0) {
        c.push_str(" (with valid_split: of the model chosen on the validation set)");
    }
    c.push_str(". ");
    let epochs = uniform(rows.iter().map(|r| r.epochs));
    let batch = uniform(manifest.trials.iter().map(|t| t.config.batch_size));
    if let (Some(e), Some(b)) = (epochs, batch) {
        write!(c, "{e} epoch{}", if e == 1 { "" } else { "s" }).unwrap();
        if steps.len() == 1 {
            write!(c, " ({} steps", steps.keys().next().expect("one")).unwrap();
            write!(c, " of batch {b})").unwrap();
        } else {
            write!(c, " (batch {b})").unwrap();
        }
        c.push_str("; ");
    }
    match uniform(rows.iter().map(|r| r.eval_every)) {
        Some(0) => c.push_str("test set evaluated at the end of each epoch only"),
        Some(1) => c.push_str("test set evaluated after every step"),
        Some(n) => write!(
            c,
            "test set evaluated every {n} steps and at the end of each epoch"
        )
        .unwrap(),
        None => c.push_str("test cadence differs per config (see eval_every in results.csv)"),
    }
    c.push_str(
        ". Train loss: the last batch's. Wall time: per trial, training and evaluation, \
         data loading excluded.",
    );
    c
}

fn pm(s: Option<Stat>, digits: usize) -> String {
    match s {
        Some(s) if s.n > 1 => format!("{:.*} ± {:.*}", digits, s.mean, digits, s.sd),
        Some(s) => format!("{:.*}", digits, s.mean),
        None => "–".into(),
    }
}

impl Row {
    /// The seeds column: `5`, or `3/5` with failures and missing ones named.
    fn seeds_cell(&self) -> String {
        let mut cell = if self.done == self.seeds {
            self.seeds.to_string()
        } else {
            format!("{}/{}", self.done, self.seeds)
        };
        let failed: Vec<String> = self
            .trials
            .iter()
            .filter_map(|t| match t.status {
                TrialStatus::Failed { exit_code } => {
                    Some(format!("seed {} failed (exit {exit_code})", t.seed))
                }
                _ => None,
            })
            .collect();
        let unfinished = self
            .trials
            .iter()
            .filter(|t| matches!(t.status, TrialStatus::Incomplete | TrialStatus::Pending))
            .count();
        let mut notes = failed;
        if unfinished > 0 {
            notes.push(format!("{unfinished} not finished"));
        }
        if !notes.is_empty() {
            write!(cell, " ({})", notes.join(", ")).unwrap();
        }
        cell
    }
}

impl SweepReport {
    pub fn markdown(&self) -> String {
        let mut s = format!("{}\n\n", self.caption);
        s.push_str(
            "| config | seeds | final test acc (%) | best test acc (%) | final train loss | \
             wall time / trial (s) |\n|---|---|---|---|---|---|\n",
        );
        for r in &self.rows {
            let failed_all = r.done == 0
                && r.trials
                    .iter()
                    .all(|t| matches!(t.status, TrialStatus::Failed { .. }));
            let acc = if failed_all {
                "failed".to_string()
            } else {
                pm(r.final_test_accuracy, 2)
            };
            writeln!(
                s,
                "| {} | {} | {acc} | {} | {} | {} |",
                r.label,
                r.seeds_cell(),
                pm(r.best_test_accuracy, 2),
                pm(r.final_train_loss, 3),
                pm(r.wall_time_s, 1),
            )
            .unwrap();
        }
        s
    }

    /// `results.csv`: one row per config, means and sample standard deviations over its
    /// seeds; empty cells where no seed finished. Written by the csv crate, which quotes a
    /// label holding a comma or a quote.
    pub fn csv(&self) -> String {
        #[derive(Serialize)]
        struct CsvRow<'a> {
            config: &'a str,
            seeds: usize,
            done: usize,
            failed: usize,
            final_test_acc_mean: Option<f64>,
            final_test_acc_sd: Option<f64>,
            best_test_acc_mean: Option<f64>,
            best_test_acc_sd: Option<f64>,
            final_train_loss_mean: Option<f64>,
            final_train_loss_sd: Option<f64>,
            wall_time_s_mean: Option<f64>,
            wall_time_s_sd: Option<f64>,
            eval_every: usize,
            epochs: usize,
            failed_exit_codes: String,
        }
        let mut w = csv::Writer::from_writer(Vec::new());
        for r in &self.rows {
            let codes: Vec<String> = r
                .trials
                .iter()
                .filter_map(|t| match t.status {
                    TrialStatus::Failed { exit_code } => Some(exit_code.to_string()),
                    _ => None,
                })
                .collect();
            let mean = |s: Option<Stat>| s.map(|s| s.mean);
            let sd = |s: Option<Stat>| s.map(|s| s.sd);
            w.serialize(CsvRow {
                config: &r.label,
                seeds: r.seeds,
                done: r.done,
                failed: codes.len(),
                final_test_acc_mean: mean(r.final_test_accuracy),
                final_test_acc_sd: sd(r.final_test_accuracy),
                best_test_acc_mean: mean(r.best_test_accuracy),
                best_test_acc_sd: sd(r.best_test_accuracy),
                final_train_loss_mean: mean(r.final_train_loss),
                final_train_loss_sd: sd(r.final_train_loss),
                wall_time_s_mean: mean(r.wall_time_s),
                wall_time_s_sd: sd(r.wall_time_s),
                eval_every: r.eval_every,
                epochs: r.epochs,
                failed_exit_codes: codes.join(" "),
            })
            .expect("a row of numbers and text serializes");
        }
        String::from_utf8(w.into_inner().expect("in memory")).expect("utf-8")
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serializes")
    }

    /// Writes results.md/.csv/.json and the plots (when built with them); returns the paths.
    /// Writes the tables (`results.md`, `.csv`, `.json`) into `dir`; the plots are drawn by
    /// [`crate::output::plot::sweep_plots`].
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        for (file, text) in [
            ("results.md", self.markdown()),
            ("results.csv", self.csv()),
            ("results.json", self.json()),
        ] {
            let path = dir.join(file);
            write_atomic(&path, text.as_bytes())?;
            written.push(path);
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_sd() {
        let s = stat(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
        assert_eq!(s.n, 8);
        assert!((s.mean - 5.0).abs() < 1e-12);
        // Sample sd: sqrt(32 / 7).
        assert!((s.sd - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!(stat(&[3.5]).unwrap().sd, 0.0);
        assert!(stat(&[]).is_none());
        assert_eq!(pm(stat(&[96.0, 97.0]), 2), "96.50 ± 0.71");
        assert_eq!(pm(stat(&[96.0]), 2), "96.00");
        assert_eq!(pm(None, 2), "–");
    }

    #[test]
    fn curves_average_over_seeds_per_step() {
        let c = mean_curve(&[vec![(10, 90.0), (20, 94.0)], vec![(10, 92.0), (20, 96.0)]]);
        assert_eq!(c.steps, vec![10.0, 20.0]);
        assert_eq!(c.mean, vec![91.0, 95.0]);
        assert!((c.sd[0] - 2f64.sqrt()).abs() < 1e-12);
    }
}
