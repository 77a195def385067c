//! Optimizers and learning-rate schedules: each optimizer learns, and the `lr` recorded per
//! step follows the schedule's formula.

use std::path::Path;

use crate::common::{bin, metrics, s, summary, write_dataset};

/// Every optimizer, at a learning rate usual for it, learns the toy problem in one short
/// epoch (2,000 images at batch 32: 62 steps).
#[test]
fn every_optimizer_learns() {
    let tmp = tempfile::tempdir().unwrap();
    write_dataset(tmp.path(), 2000, 500);
    for (optimizer, lr) in [
        ("sgd", "0.1"),
        ("momentum", "0.02"),
        ("nesterov", "0.02"),
        ("rmsprop", "0.001"),
        ("adagrad", "0.02"),
        ("adam", "0.001"),
        ("adamw", "0.001"),
    ] {
        let run = tmp.path().join(optimizer);
        bin(tmp.path(), tmp.path())
            .args([
                "--optimizer",
                optimizer,
                "--lr",
                lr,
                "--weight-decay",
                "1e-4",
            ])
            .args(["--init", "he", "--hidden", "64", "--batch-size", "32"])
            .args(["--eval-every", "0", "--quiet", "--run-dir", s(&run)])
            .assert()
            .success();
        let acc = summary(&run)["final_test_accuracy"].as_f64().unwrap();
        assert!(acc > 0.9, "{optimizer} at lr {lr}: test accuracy {acc}");
        assert_eq!(summary(&run)["config"]["optimizer"], optimizer);
    }
}

/// The `lr` of each line of metrics.jsonl, for a 2-epoch run of 20 steps per epoch.
fn recorded_lrs(tmp: &Path, name: &str, flags: &[&str]) -> Vec<f64> {
    let run = tmp.join(name);
    bin(tmp, tmp)
        .args(["--hidden", "8", "--batch-size", "32", "--epochs", "2"])
        .args(["--eval-every", "0", "--checkpoint-every", "0", "--quiet"])
        .args(["--run-dir", s(&run)])
        .args(flags)
        .assert()
        .success();
    let m = metrics(&run);
    assert_eq!(m.len(), 40);
    m.iter().map(|l| l["lr"].as_f64().unwrap()).collect()
}

fn assert_follows(name: &str, got: &[f64], formula: impl Fn(f64) -> f64) {
    for (k, &lr) in got.iter().enumerate() {
        let want = formula(k as f64);
        assert!(
            (lr - want).abs() <= 1e-12 * want.abs(),
            "{name}: step {k} trained at lr {lr}, the formula gives {want}"
        );
    }
}

#[test]
fn recorded_learning_rates_follow_the_schedules() {
    let tmp = tempfile::tempdir().unwrap();
    write_dataset(tmp.path(), 640, 100);
    let t = tmp.path();

    let constant = recorded_lrs(t, "constant", &[]);
    assert!(constant.iter().all(|&lr| lr == 0.001), "{constant:?}");

    let step = recorded_lrs(
        t,
        "step",
        &[
            "--lr-schedule",
            "step",
            "--lr",
            "0.1",
            "--lr-decay-rate",
            "0.5",
            "--lr-decay-steps",
            "7",
        ],
    );
    assert_follows("step", &step, |k| 0.1 * 0.5f64.powf((k / 7.0).floor()));

    // Without lr_decay_steps: by lr_decay_rate per epoch (20 steps), smoothly.
    let exponential = recorded_lrs(
        t,
        "exponential",
        &["--lr-schedule", "exponential", "--lr-decay-rate", "0.25"],
    );
    assert_follows("exponential", &exponential, |k| {
        0.001 * 0.25f64.powf(k / 20.0)
    });

    // Warm-up over steps 0..6 to the peak, then half a cosine to lr_min at the end of the run.
    let cosine = recorded_lrs(
        t,
        "cosine",
        &[
            "--lr-schedule",
            "cosine",
            "--lr",
            "0.01",
            "--lr-min",
            "0.001",
            "--lr-warmup-steps",
            "6",
        ],
    );
    assert_follows("cosine with warm-up", &cosine, |k| {
        if k < 6.0 {
            0.01 * (k + 1.0) / 6.0
        } else {
            let progress = (k - 6.0) / (40.0 - 6.0);
            0.001 + 0.5 * (0.01 - 0.001) * (1.0 + (std::f64::consts::PI * progress).cos())
        }
    });
    assert!(cosine[39] > 0.001 && cosine[39] < 0.0011, "{}", cosine[39]);

    // Warm-up then constant.
    let warm = recorded_lrs(t, "warm", &["--lr-warmup-steps", "4"]);
    assert_follows("warm-up", &warm, |k| 0.001 * ((k + 1.0) / 4.0).min(1.0));
}
