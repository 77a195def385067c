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
    /// name, and the learning rate and its schedule (fine-tuning from a checkpoint: the lr of
    /// a step is a function of these keys and the step, so the run goes on with the new
    /// schedule from where it stands).
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
        | "name" | "lr" | "test_limit" | "tensorboard" | "diagnostics_every" | "lr_schedule"
        | "lr_warmup_steps" | "lr_decay_rate" | "lr_decay_steps" | "lr_min" | "early_stopping" => {
            Change::Always
        }
        "batch_size" | "seed" | "train_limit" | "dataset" => Change::AtEpochBoundary,
        // The optimizer and its hyperparameters (momentum, rho, betas, epsilon, weight decay,
        // clipping) shape the saved optimizer state and the dynamics that produced it;
        // `valid_split` decides which images were trained on.
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
        // With a validation split these also choose the held-out images: changed, images
        // validated on so far would be trained on.
        if saved.valid_split > 0 && matches!(key, "seed" | "train_limit" | "dataset") {
            return Err(Error::Usage(format!(
                "cannot change `{key}` when resuming a run that holds out a validation set: \
                 it chooses the held-out images, and images validated on so far would be \
                 trained on. Resume without {flag}, or start a new run"
            )));
        }
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

    #[test]
    fn the_validation_split_and_what_chooses_it_never_change() {
        let saved = ExperimentConfig {
            valid_split: 100,
            early_stopping: Some(3),
            ..Default::default()
        };
        // Patience is how long to train: it may change.
        let wanted = ExperimentConfig {
            early_stopping: Some(10),
            ..saved.clone()
        };
        check_changes(&saved, &wanted, 0, 20).unwrap();
        for wanted in [
            ExperimentConfig {
                valid_split: 200,
                ..saved.clone()
            },
            ExperimentConfig {
                seed: 1,
                ..saved.clone()
            },
            ExperimentConfig {
                train_limit: Some(1000),
                ..saved.clone()
            },
        ] {
            let key = saved.differing_keys(&wanted)[0];
            // Not even between epochs.
            let err = check_changes(&saved, &wanted, 1, 0).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains(&format!("`{key}`")), "{err}");
        }
    }

    #[test]
    fn the_schedule_may_change_but_not_the_optimizer() {
        use crate::config::{LrSchedule, Optimizer};
        let saved = ExperimentConfig::default();
        let wanted = ExperimentConfig {
            lr_schedule: LrSchedule::Cosine,
            lr_warmup_steps: 10,
            lr_decay_rate: 0.5,
            lr_decay_steps: Some(3),
            lr_min: 1e-5,
            ..saved.clone()
        };
        check_changes(&saved, &wanted, 0, 20).unwrap();
        for (key, wanted) in [
            (
                "optimizer",
                ExperimentConfig {
                    optimizer: Optimizer::Sgd,
                    ..saved.clone()
                },
            ),
            (
                "momentum",
                ExperimentConfig {
                    momentum: 0.5,
                    ..saved.clone()
                },
            ),
            (
                "rho",
                ExperimentConfig {
                    rho: 0.5,
                    ..saved.clone()
                },
            ),
            (
                "epsilon",
                ExperimentConfig {
                    epsilon: 1e-8,
                    ..saved.clone()
                },
            ),
            (
                "weight_decay",
                ExperimentConfig {
                    weight_decay: 1e-4,
                    ..saved.clone()
                },
            ),
            (
                "grad_clip",
                ExperimentConfig {
                    grad_clip: Some(1.0),
                    ..saved.clone()
                },
            ),
        ] {
            let err = check_changes(&saved, &wanted, 1, 0).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains(&format!("`{key}`")), "{err}");
        }
    }
}
