//! Per-layer diagnostics as a user meets them: in metrics.jsonl and the --json stream on the
//! steps `--diagnostics-every` names, in TensorBoard and the plots, and changing nothing about
//! training.

use std::path::Path;
use std::time::Duration;

use crate::common::{bin, final_weights, metrics, s, write_dataset};

/// 640 toy images at batch 32: 20 steps per epoch; 2 epochs.
fn train(cwd: &Path, data: &Path, run: &Path, extra: &[&str]) -> String {
    let out = bin(cwd, data)
        .args(["--batch-size", "32", "--hidden", "32,16", "--epochs", "2"])
        .args(["--eval-every", "0", "--run-dir", s(run), "--json"])
        .args(extra)
        .timeout(Duration::from_secs(120))
        .assert()
        .success();
    String::from_utf8_lossy(&out.get_output().stdout).into_owned()
}

#[test]
fn diagnostics_land_on_their_steps_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 640, 100);
    let (on, off) = (tmp.path().join("on"), tmp.path().join("off"));
    let stdout = train(
        tmp.path(),
        &data,
        &on,
        &["--diagnostics-every", "7", "--activation", "tanh"],
    );
    train(
        tmp.path(),
        &data,
        &off,
        &["--diagnostics-every", "0", "--activation", "tanh"],
    );

    assert_eq!(
        final_weights(&on),
        final_weights(&off),
        "looking at the layers must not change training"
    );
    let steps = metrics(&on);
    let with: Vec<u64> = steps
        .iter()
        .filter(|m| m.get("layers").is_some())
        .map(|m| m["global_step"].as_u64().unwrap())
        .collect();
    assert_eq!(with, [1, 7, 14, 21, 28, 35], "the first step and every 7th");
    assert!(metrics(&off).iter().all(|m| m.get("layers").is_none()));

    let layers = steps[0]["layers"].as_array().unwrap();
    let names: Vec<&str> = layers.iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["hidden.0", "hidden.1", "output"]);
    for l in layers {
        for key in ["grad_norm", "weight_norm", "update_ratio"] {
            let v = l[key].as_f64().unwrap();
            assert!(v.is_finite() && v > 0.0, "{key} = {v}");
        }
    }
    // tanh: hidden layers report saturation, not dead units; the output layer neither.
    assert!(layers[0]["saturated_fraction"].is_number());
    assert!(layers[0].get("dead_fraction").is_none());
    assert!(layers[2].get("act_std").is_none());

    // The --json stream carries the same records.
    let streamed: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v.get("layers").is_some())
        .collect();
    assert_eq!(streamed.len(), with.len());
    assert_eq!(streamed[1]["layers"], steps[6]["layers"]);

    // And the run's diagnostics plot exists (with the default plots feature).
    if cfg!(feature = "plots") {
        assert!(on.join("diagnostics.png").is_file());
        assert!(!off.join("diagnostics.png").exists());
    }
}

#[test]
fn dead_relu_units_show_after_a_huge_learning_rate() {
    // lr 1.0 with Adam kills most relu units within a few steps: the diagnostics must say so.
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 640, 100);
    let run = tmp.path().join("run");
    bin(tmp.path(), &data)
        .args([
            "--batch-size",
            "32",
            "--hidden",
            "64",
            "--lr",
            "1.0",
            "--init",
            "he",
        ])
        .args(["--eval-every", "0", "--diagnostics-every", "1", "--quiet"])
        .args(["--run-dir", s(&run)])
        .timeout(Duration::from_secs(120))
        .assert()
        .success();
    let steps = metrics(&run);
    let dead = |m: &serde_json::Value| m["layers"][0]["dead_fraction"].as_f64().unwrap();
    assert!(
        dead(&steps[0]) < 0.2,
        "few dead units at the start: {}",
        dead(&steps[0])
    );
    let last = dead(steps.last().unwrap());
    assert!(last > 0.5, "most units dead after lr 1.0: {last}");
}
