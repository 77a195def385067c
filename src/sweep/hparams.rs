//! The sweep as TensorBoard's HParams tab sees it: an experiment summary in the sweep directory
//! (the keys the trials vary, and the metrics to show), and in each trial's directory a session
//! with that trial's values and, once it ends, its status.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::Trial;
use crate::error::Result;
use crate::run::write_atomic;
use crate::tensorboard::{self, HParamInfo, HValue, SessionStatus};

/// The hparams file of the sweep and of each trial. It sorts before the metrics' event file
/// ([`crate::run::metrics::EVENTS_FILE`]), which TensorBoard reads after it.
pub const HPARAMS_FILE: &str = "events.out.tfevents.hparams";

/// The metrics the HParams tab shows per trial: the last value of each tag in its run.
const METRICS: &[&str] = &["test_accuracy", "test_loss", "train_loss", "train_accuracy"];

/// Whether any trial writes TensorBoard files at all.
pub fn wanted(trials: &[Trial]) -> bool {
    trials.iter().any(|t| t.config.tensorboard)
}

/// The sweep as a table: the keys whose values differ between trials, in the config's order,
/// always with `seed` (so that a one-config sweep still has a column that tells its trials
/// apart), and each trial's values of them.
fn table(trials: &[Trial]) -> (Vec<String>, Vec<Vec<(String, HValue)>>) {
    let configs: Vec<Value> = trials.iter().map(|t| config_json(&t.config)).collect();
    let keys: Vec<String> = crate::config::KEYS
        .iter()
        .filter(|key| {
            **key == "seed"
                || configs
                    .iter()
                    .any(|c| c.get(**key) != configs.first().and_then(|f| f.get(**key)))
        })
        .map(|k| k.to_string())
        .collect();
    let rows = values(&configs, &keys);
    (keys, rows)
}

fn config_json(config: &crate::config::ExperimentConfig) -> Value {
    serde_json::to_value(config).expect("config serializes")
}

/// A config value as the HParams tab shows it: numbers and booleans as such, lists (the hidden
/// sizes) as `256,256`, an absent value as `none`.
fn hvalue(v: Option<&Value>) -> HValue {
    match v {
        Some(Value::Number(n)) => HValue::Number(n.as_f64().unwrap_or(f64::NAN)),
        Some(Value::Bool(b)) => HValue::Bool(*b),
        Some(Value::String(s)) => HValue::Text(s.clone()),
        Some(Value::Array(items)) => HValue::Text(
            items
                .iter()
                .map(|i| i.to_string().trim_matches('"').to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
        Some(Value::Null) | None | Some(Value::Object(_)) => HValue::Text("none".into()),
    }
}

/// The values of `keys` in each config. A key whose values are of mixed kinds (a limit that is
/// absent in one trial and a number in another) becomes text in all, since the HParams tab
/// wants one type per column.
fn values(configs: &[Value], keys: &[String]) -> Vec<Vec<(String, HValue)>> {
    let mut rows: Vec<Vec<(String, HValue)>> = vec![Vec::new(); configs.len()];
    for key in keys {
        let mut column: Vec<HValue> = configs.iter().map(|c| hvalue(c.get(key))).collect();
        let kinds = |v: &HValue| std::mem::discriminant(v);
        if column.iter().any(|v| kinds(v) != kinds(&column[0])) {
            column = column
                .into_iter()
                .map(|v| match v {
                    HValue::Number(x) => HValue::Text(x.to_string()),
                    HValue::Bool(b) => HValue::Text(b.to_string()),
                    t => t,
                })
                .collect();
        }
        for (row, v) in rows.iter_mut().zip(column) {
            row.push((key.clone(), v));
        }
    }
    rows
}

/// Writes the experiment summary into the sweep directory. Every shard of a sweep writes the
/// same one (from all trials, not only its own), so whichever lands last is right.
pub fn write_experiment(out: &Path, name: &str, trials: &[Trial]) -> Result<()> {
    let (keys, rows) = table(trials);
    let infos = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let mut distinct: Vec<HValue> = Vec::new();
            for row in &rows {
                if !distinct.contains(&row[i].1) {
                    distinct.push(row[i].1.clone());
                }
            }
            HParamInfo {
                name: key.clone(),
                values: distinct,
            }
        })
        .collect::<Vec<_>>();
    let mut metrics = METRICS.to_vec();
    if trials.iter().any(|t| t.config.valid_split > 0) {
        metrics.splice(0..0, ["valid_accuracy", "valid_loss"]);
    }
    let now = tensorboard::now();
    let mut bytes = tensorboard::file_version(now);
    bytes.extend(tensorboard::experiment(now, name, &infos, &metrics));
    write_atomic(&out.join(HPARAMS_FILE), &bytes)
}

/// Each trial's hyperparameter values, by trial hash, for its session.
#[derive(Debug, Clone, Default)]
pub struct Sessions(HashMap<String, Vec<(String, HValue)>>);

impl Sessions {
    /// The values of the sweep's varying keys for each of `all` (the whole sweep, which
    /// decides the keys and their types, whichever shard runs here).
    pub fn new(all: &[Trial]) -> Self {
        let (_, rows) = table(all);
        Sessions(
            all.iter()
                .zip(rows)
                .filter(|(t, _)| t.config.tensorboard)
                .map(|(t, row)| (t.hash.clone(), row))
                .collect(),
        )
    }

    /// Writes a trial's session into its directory: its values, the time it started, and its
    /// end when `end` is given.
    pub fn write(
        &self,
        dir: &Path,
        trial: &Trial,
        started: f64,
        end: Option<SessionStatus>,
    ) -> Result<()> {
        let Some(row) = self.0.get(&trial.hash) else {
            return Ok(());
        };
        let mut bytes = tensorboard::file_version(started);
        bytes.extend(tensorboard::session_start(started, row));
        if let Some(status) = end {
            bytes.extend(tensorboard::session_end(tensorboard::now(), status));
        }
        write_atomic(&dir.join(HPARAMS_FILE), &bytes)
    }
}
