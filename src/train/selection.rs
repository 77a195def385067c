//! Honest model selection: with a validation split (`valid_split`) the best model is the one
//! with the best validation accuracy, and early stopping watches the validation set too. The
//! test set only reports, so its accuracy at the chosen step is an unbiased estimate.

use super::checkpoint::TrainState;
use super::evaluate::Evaluation;
use crate::config::ExperimentConfig;

/// Records one evaluation of the validation set (and the test set at the same step). Returns
/// true when the validation accuracy beats every earlier one (ties keep the earlier model).
pub fn record(state: &mut TrainState, valid: &Evaluation, test: &Evaluation) -> bool {
    if state
        .best_valid_accuracy
        .is_none_or(|best| valid.accuracy > best)
    {
        state.best_valid_accuracy = Some(valid.accuracy);
        state.best_valid_step = Some(state.global_step);
        state.test_accuracy_at_best_valid = Some(test.accuracy);
        state.evals_since_best = 0;
        true
    } else {
        state.evals_since_best += 1;
        false
    }
}

/// True once `early_stopping` evaluations in a row have not improved on the best.
pub fn patience_spent(config: &ExperimentConfig, state: &TrainState) -> bool {
    config
        .early_stopping
        .is_some_and(|patience| state.evals_since_best >= patience)
}

/// Why the run stopped early, for the user and `summary.json`.
pub fn stop_reason(state: &TrainState) -> String {
    format!(
        "early stopping after step {}: no better validation accuracy in {} evaluations (best \
         {:.4} at step {})",
        state.global_step,
        state.evals_since_best,
        state.best_valid_accuracy.unwrap_or(f64::NAN),
        state.best_valid_step.unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(accuracy: f64) -> Evaluation {
        Evaluation {
            accuracy,
            loss: 1.0 - accuracy,
            images: 100,
        }
    }

    #[test]
    fn the_best_is_chosen_on_validation_and_patience_counts_evaluations() {
        let config = ExperimentConfig {
            valid_split: 100,
            early_stopping: Some(2),
            ..Default::default()
        };
        let mut state = TrainState::new(&config, "flex");
        let step = |state: &mut TrainState, valid, test| {
            state.global_step += 10;
            record(state, &eval(valid), &eval(test))
        };
        assert!(step(&mut state, 0.90, 0.91));
        assert!(step(&mut state, 0.95, 0.93));
        // A better test accuracy does not choose the model; an equal validation one neither.
        assert!(!step(&mut state, 0.95, 0.99));
        assert!(!patience_spent(&config, &state));
        assert!(!step(&mut state, 0.94, 0.98));
        assert!(patience_spent(&config, &state));
        assert_eq!(state.best_valid_accuracy, Some(0.95));
        assert_eq!(state.best_valid_step, Some(20));
        assert_eq!(state.test_accuracy_at_best_valid, Some(0.93));
        assert!(stop_reason(&state).contains("in 2 evaluations (best 0.9500 at step 20)"));
        // An improvement resets the count.
        assert!(step(&mut state, 0.96, 0.94));
        assert_eq!(state.evals_since_best, 0);
    }
}
