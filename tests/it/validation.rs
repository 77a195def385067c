//! Honest model selection: a validation split held out of training, the best model chosen on
//! it, and early stopping that watches it.

use std::time::Duration;

use crate::common::{bin, metrics, s, summary, write_dataset};

#[test]
fn early_stopping_stops_on_validation_and_keeps_the_model_chosen_there() {
    let tmp = tempfile::tempdir().unwrap();
    write_dataset(tmp.path(), 640, 200);
    let run = tmp.path().join("run");
    // 512 training images at batch 32: 16 steps per epoch; 50 epochs would be 800 steps.
    let a = bin(tmp.path(), tmp.path())
        .args(["--init", "he", "--hidden", "32", "--batch-size", "32"])
        .args(["--valid-split", "128", "--early-stopping", "3"])
        .args(["--eval-every", "2", "--epochs", "50", "--run-dir", s(&run)])
        .timeout(Duration::from_secs(120))
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    let stdout = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    assert!(stderr.contains("early stopping after step"), "{stderr}");
    assert!(stderr.contains("128 validation"), "{stderr}");
    assert!(stdout.contains("best on validation"), "{stdout}");
    assert!(stdout.contains("valid_accuracy: "), "lecture lines show it");

    let sum = summary(&run);
    assert_eq!(sum["train_images"], 512);
    assert_eq!(sum["valid_images"], 128);
    let steps = sum["steps"].as_u64().unwrap();
    assert!(steps < 800, "stopped early: {sum}");
    assert!(
        sum["stopped_early"]
            .as_str()
            .unwrap()
            .contains("3 evaluations")
    );
    let best_valid = sum["valid_accuracy_best"].as_f64().unwrap();
    let best_step = sum["best_valid_step"].as_u64().unwrap();
    let test_at_best = sum["test_accuracy_at_best_valid"].as_f64().unwrap();

    // Every evaluation scored both sets; the last 3 did not beat the best, which is the first
    // evaluation to reach it.
    let m = metrics(&run);
    assert_eq!(m.len() as u64, steps);
    let evals: Vec<&serde_json::Value> = m
        .iter()
        .filter(|l| l.get("test_accuracy").is_some())
        .collect();
    assert!(evals.iter().all(|l| l.get("valid_loss").is_some()));
    let valid = |l: &serde_json::Value| l["valid_accuracy"].as_f64().unwrap();
    assert_eq!(evals.last().unwrap()["global_step"].as_u64(), Some(steps));
    let chosen = evals
        .iter()
        .position(|l| l["global_step"].as_u64() == Some(best_step))
        .unwrap();
    assert_eq!(evals.len() - 1 - chosen, 3);
    assert!((valid(evals[chosen]) - best_valid).abs() < 1e-6);
    assert!(
        evals[..chosen]
            .iter()
            .all(|l| valid(l) < valid(evals[chosen]))
    );
    assert!(
        evals[chosen + 1..]
            .iter()
            .all(|l| valid(l) <= best_valid + 1e-6)
    );

    // The model chosen on validation is kept, and eval reads it.
    let best = run.join("checkpoints/best");
    let a = bin(tmp.path(), tmp.path())
        .args(["eval", "--checkpoint", s(&best), "--json"])
        .assert()
        .success();
    let out: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(out["step"].as_u64(), Some(best_step));
    assert!((out["accuracy"].as_f64().unwrap() - test_at_best).abs() < 1e-9);

    // Resuming a run that stopped early trains no further unless the patience grows.
    let a = bin(tmp.path(), tmp.path())
        .args(["--resume", s(&run), "--quiet"])
        .assert()
        .success();
    assert!(
        String::from_utf8_lossy(&a.get_output().stderr).contains("already stopped early"),
        "{a:?}"
    );
    assert_eq!(metrics(&run).len() as u64, steps);
    assert_eq!(summary(&run)["stopped_early"], sum["stopped_early"]);
    assert_eq!(summary(&run)["test_accuracy_at_best_valid"], test_at_best);

    // A larger patience continues it, from where it stopped.
    bin(tmp.path(), tmp.path())
        .args(["--resume", s(&run), "--quiet", "--early-stopping", "6"])
        .assert()
        .success();
    let more = metrics(&run).len() as u64;
    assert!(more > steps, "{more} steps");
    assert_eq!(summary(&run)["config"]["early_stopping"], 6);
}

/// Without a validation split nothing changes: no validation columns, no best checkpoint,
/// and the summary has none of the new fields.
#[test]
fn without_a_split_runs_are_the_lectures() {
    let tmp = tempfile::tempdir().unwrap();
    write_dataset(tmp.path(), 640, 200);
    let run = tmp.path().join("run");
    bin(tmp.path(), tmp.path())
        .args(["--hidden", "16", "--batch-size", "32", "--eval-every", "5"])
        .args(["--quiet", "--run-dir", s(&run)])
        .assert()
        .success();
    let sum = summary(&run);
    assert_eq!(sum["train_images"], 640);
    assert_eq!(sum["valid_images"], 0);
    for key in [
        "valid_accuracy_best",
        "test_accuracy_at_best_valid",
        "stopped_early",
    ] {
        assert!(sum.get(key).is_none(), "{key}: {sum}");
    }
    assert!(
        metrics(&run)
            .iter()
            .all(|l| l.get("valid_accuracy").is_none())
    );
    assert!(!run.join("checkpoints/best").exists());
}
