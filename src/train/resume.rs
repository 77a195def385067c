//! Which config changes a resumed run accepts. A run's data order is a function of (seed,
//! epoch, dataset, training images in use, batch size) and its position is a step within an
//! epoch, so changing those in the middle of an epoch would show some images twice and others
//! never — or, with a larger batch, put the position past the epoch's end. Changes that only
//! decide how long to train, what to measure or how often to save are always fine.

use crate::config::ExperimentConfig;
use crate::error::{Error, Result};

/// When a key may differ from the checkpoint's config on `--resume`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Any time: how long to train, how often to evaluate and save, what to measure, the run's
    /// name, and the learning rate (fine-tuning from a checkpoint).
    Always,
    /// Only between epochs: the keys that decide the data order and the epoch's length.
    AtEpochBoundary,
    /// Never: the model's architecture and its training dynamics; the checkpoint would not be
    /// the run `config.json` describes.
    Never,
}

pub fn change_rule(key: &str) -> Change {
    match key {
        "epochs" | "eval_every" | "checkpoint_every" | "keep_checkpoints" | "train_metrics"
        | "name" | "lr" | "test_limit" | "tensorboard" | "diagnostics_every" => Change::Always,
        "batch_size" | "seed" | "train_limit" | "dataset" => Change::AtEpochBoundary,
        _ => Change::Never,
    }
}

/// Refuses (exit code 2, naming the key) a resume whose config differs from the checkpoint's
/// in a way that breaks the run. `epoch` and `step_in_epoch` are the checkpoint's position.
pub fn check_changes(
    saved: &ExperimentConfig,
    wanted: &ExperimentConfig,
    epoch: usize,
    step_in_epoch: usize,
) -> Result<()> {
    for key in saved.differing_keys(wanted) {
        let flag = format!("--{}", key.replace('_', "-"));
        match change_rule(key) {
            Change::Always => {}
            Change::AtEpochBoundary if step_in_epoch == 0 => {}
            Change::AtEpochBoundary => {
                return Err(Error::Usage(format!(
                    "cannot change `{key}` when resuming in the middle of an epoch (the run \
                     stopped at epoch {epoch}, step {step_in_epoch}): it decides the data order \
                     and the epoch's length, so images would be seen twice or not at all. \
                     Resume without {flag}; it can change once the epoch is done"
                )));
            }
            Change::Never => {
                return Err(Error::Usage(format!(
                    "cannot change `{key}` when resuming: the checkpoint was trained with \
                     another value, and the run would no longer be the one its config.json \
                     describes. Resume without {flag}, or start a new run"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Activation;

    #[test]
    fn free_keys_change_any_time() {
        let saved = ExperimentConfig::default();
        let wanted = ExperimentConfig {
            epochs: 5,
            eval_every: 10,
            lr: 1e-4,
            ..saved.clone()
        };
        check_changes(&saved, &wanted, 0, 20).unwrap();
    }

    #[test]
    fn data_order_keys_change_only_between_epochs() {
        let saved = ExperimentConfig::default();
        for wanted in [
            ExperimentConfig {
                batch_size: 1024,
                ..saved.clone()
            },
            ExperimentConfig {
                seed: 3,
                ..saved.clone()
            },
            ExperimentConfig {
                train_limit: Some(100),
                ..saved.clone()
            },
        ] {
            let key = saved.differing_keys(&wanted)[0];
            let err = check_changes(&saved, &wanted, 0, 20).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains(&format!("`{key}`")), "{err}");
            check_changes(&saved, &wanted, 1, 0).unwrap();
        }
    }

    #[test]
    fn architecture_and_dynamics_never_change() {
        let saved = ExperimentConfig::default();
        let wanted = ExperimentConfig {
            activation: Activation::Tanh,
            ..saved.clone()
        };
        let err = check_changes(&saved, &wanted, 1, 0).unwrap_err();
        assert!(err.to_string().contains("`activation`"), "{err}");
        assert_eq!(change_rule("hidden"), Change::Never);
        assert_eq!(change_rule("dropout"), Change::Never);
        assert_eq!(change_rule("no_such_key"), Change::Never);
    }
}
