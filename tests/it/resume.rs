//! Resuming runs: which config changes a resume accepts, what a run remembers (its data
//! directory, its last train loss), and damaged checkpoints.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::common::{assert_resume_is_exact, bin, metrics, s, setup, summary};

/// A run of the small net for `epochs`, paused (with a checkpoint) after `steps` steps.
fn paused_run(cwd: &Path, data: &Path, run: &Path, epochs: usize, steps: usize) {
    let (epochs, steps) = (epochs.to_string(), steps.to_string());
    bin(cwd, data)
        .args(["--init", "he", "--batch-size", "32", "--hidden", "32"])
        .args([
            "--epochs",
            &epochs,
            "--eval-every",
            "0",
            "--checkpoint-every",
            "5",
        ])
        .args(["--max-steps", &steps, "--run-dir", s(run), "--quiet"])
        .timeout(Duration::from_secs(120))
        .assert()
        .success();
}

fn resume(cwd: &Path, data: &Path, run: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    bin(cwd, data)
        .args(["--resume", s(run), "--quiet"])
        .args(extra)
        .timeout(Duration::from_secs(120))
        .assert()
}

fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

/// Defect A: `--resume --batch-size 1024` in the middle of an epoch spun forever.
#[test]
fn data_order_changes_mid_epoch_are_refused_naming_the_key() {
    let (tmp, data) = setup();
    let run = tmp.path().join("run");
    paused_run(tmp.path(), &data, &run, 2, 10);
    let config_before = fs::read_to_string(run.join("config.json")).unwrap();
    for (flag, value, key, code) in [
        ("--batch-size", "256", "`batch_size`", 2),
        ("--seed", "7", "`seed`", 2),
        ("--train-limit", "320", "`train_limit`", 2),
        ("--activation", "tanh", "`activation`", 2),
        ("--dropout", "0.5", "`dropout`", 2),
        ("--optimizer", "sgd", "`optimizer`", 2),
        ("--valid-split", "64", "`valid_split`", 2),
        ("--weight-decay", "0.01", "`weight_decay`", 2),
        ("--grad-clip", "1", "`grad_clip`", 2),
        // The old spelling of `epsilon`.
        ("--adam-epsilon", "1e-8", "`epsilon`", 2),
        // Another architecture: the checkpoint does not fit (exit 4, as documented).
        ("--hidden", "64", "architecture 784 → 32 → 10", 4),
    ] {
        let a = resume(tmp.path(), &data, &run, &[flag, value]).code(code);
        let err = stderr(&a);
        assert!(err.contains(key), "{flag}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    // A refused resume leaves the run as it was.
    assert_eq!(
        fs::read_to_string(run.join("config.json")).unwrap(),
        config_before
    );
    assert_eq!(metrics(&run).len(), 10);

    // Keys that only decide how long to train, what to measure and the learning rate's
    // schedule may change mid-epoch.
    resume(
        tmp.path(),
        &data,
        &run,
        &[
            "--epochs",
            "3",
            "--eval-every",
            "4",
            "--lr-schedule",
            "step",
            "--lr-decay-steps",
            "25",
        ],
    )
    .success();
    let m = metrics(&run);
    assert_eq!(m.len(), 60);
    assert!(m[11].get("test_accuracy").is_some(), "new cadence used");
    assert_eq!(m[24]["lr"], 0.001);
    let lr = m[25]["lr"].as_f64().unwrap();
    assert!(
        (lr - 1e-4).abs() < 1e-15,
        "the new schedule, at the run's own step count: {lr}"
    );
    assert_eq!(summary(&run)["config"]["epochs"], 3);
}

/// The optimizer's state (momentum velocities), the schedule's position (warm-up then
/// cosine) and clipping and weight decay all resume exactly.
#[test]
fn resume_is_exact_with_momentum_cosine_warmup_clipping_and_weight_decay() {
    assert_resume_is_exact(&[
        "--optimizer",
        "momentum",
        "--lr",
        "0.05",
        "--lr-schedule",
        "cosine",
        "--lr-warmup-steps",
        "5",
        "--lr-min",
        "0.001",
        "--grad-clip",
        "0.5",
        "--weight-decay",
        "1e-3",
    ]);
}

/// The held-out images, the best model chosen on them (kept inside each checkpoint) and the
/// early-stopping counter all resume exactly; the run stops at the same step.
#[test]
fn resume_is_exact_with_a_validation_split_and_early_stopping() {
    let s = assert_resume_is_exact(&["--valid-split", "64", "--early-stopping", "4"]);
    // It stopped, and after the interruption at step 13: the counter crossed the resume.
    let steps = s["steps"].as_u64().unwrap();
    assert!(
        s["stopped_early"].is_string() && steps > 13 && steps < 36,
        "{s}"
    );
}

/// The other optimizers' states: RMSprop's average, AdaGrad's sums and step count, AdamW's
/// moments, Nesterov's velocity; with the step and exponential schedules.
#[test]
fn resume_is_exact_with_every_optimizer_state() {
    for extra in [
        &[
            "--optimizer",
            "rmsprop",
            "--lr-schedule",
            "step",
            "--lr-decay-steps",
            "6",
        ][..],
        &[
            "--optimizer",
            "adagrad",
            "--lr",
            "0.05",
            "--lr-schedule",
            "exponential",
        ],
        &[
            "--optimizer",
            "adamw",
            "--weight-decay",
            "0.01",
            "--grad-clip",
            "1",
        ],
        &[
            "--optimizer",
            "nesterov",
            "--lr",
            "0.05",
            "--momentum",
            "0.8",
        ],
    ] {
        assert_resume_is_exact(extra);
    }
}

#[test]
fn data_order_changes_are_accepted_between_epochs() {
    let (tmp, data) = setup();
    let run = tmp.path().join("run");
    paused_run(tmp.path(), &data, &run, 2, 20);
    // The checkpoint stands at the start of epoch 1: a new batch size cuts that epoch anew.
    resume(tmp.path(), &data, &run, &["--batch-size", "64"]).success();
    let m = metrics(&run);
    assert_eq!(m.len(), 20 + 10);
    assert_eq!(m[29]["steps_per_epoch"], 10);
    assert_eq!(summary(&run)["config"]["batch_size"], 64);
}

/// Defect D: a session that ran no step wrote `"final_train_loss": null`.
#[test]
fn resuming_a_finished_run_keeps_a_numeric_train_loss() {
    let (tmp, data) = setup();
    let run = tmp.path().join("run");
    paused_run(tmp.path(), &data, &run, 1, 10);
    resume(tmp.path(), &data, &run, &[]).success();
    let loss = summary(&run)["final_train_loss"].as_f64();
    assert!(loss.is_some_and(f64::is_finite), "{loss:?}");
    // As after a kill between the last checkpoint and the summary.
    fs::remove_file(run.join("summary.json")).unwrap();
    let a = resume(tmp.path(), &data, &run, &[]).success();
    assert!(stderr(&a).contains("already finished"), "{}", stderr(&a));
    assert_eq!(summary(&run)["final_train_loss"].as_f64(), loss);
}

/// Defect E: `--resume` and `eval` without `--data-dir` forgot where the data was.
#[test]
fn resume_and_eval_find_the_data_directory_the_run_used() {
    let (tmp, data) = setup();
    let run = tmp.path().join("run");
    let cache = tmp.path().join("empty-cache");
    fs::create_dir_all(&cache).unwrap();
    let without_env = |cmd: &mut assert_cmd::Command| {
        cmd.env_remove("MNIST_DATA_DIR")
            .env("XDG_CACHE_HOME", &cache)
            .env("HOME", &cache);
    };
    let mut first = bin(tmp.path(), &data);
    without_env(&mut first);
    first
        .args(["--init", "he", "--batch-size", "32", "--hidden", "32"])
        .args([
            "--eval-every",
            "0",
            "--max-steps",
            "5",
            "--checkpoint-every",
            "5",
        ])
        .args([
            "--data-dir",
            s(&data),
            "--run-dir",
            s(&run),
            "--quiet",
            "--offline",
        ])
        .assert()
        .success();
    let mut again = bin(tmp.path(), &data);
    without_env(&mut again);
    let a = again
        .args(["--resume", s(&run), "--offline", "--quiet"])
        .timeout(Duration::from_secs(120))
        .assert()
        .success();
    assert!(stderr(&a).contains("recorded in"), "{}", stderr(&a));
    assert_eq!(metrics(&run).len(), 20);
    let mut eval = bin(tmp.path(), &data);
    without_env(&mut eval);
    eval.args(["eval", "--checkpoint", s(&run), "--offline"])
        .assert()
        .success();
}

fn truncate(path: &Path) {
    let bytes = fs::read(path).unwrap();
    fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
}

/// Defect J: a truncated newest checkpoint stopped `--resume` and `eval` (exit 4).
#[test]
fn a_damaged_newest_checkpoint_falls_back_to_the_previous_one() {
    let (tmp, data) = setup();
    let run = tmp.path().join("run");
    paused_run(tmp.path(), &data, &run, 1, 15);
    let newest = run.join("checkpoints/step-00000015");
    truncate(&newest.join("model.bpk"));

    let a = bin(tmp.path(), &data)
        .args(["eval", "--checkpoint", s(&run), "--json"])
        .assert()
        .success();
    let err = stderr(&a);
    assert!(err.contains("skipped damaged checkpoint"), "{err}");
    assert!(err.contains("step-00000015"), "{err}");
    let out: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(out["step"], 10);
    assert!(newest.exists(), "eval only reads");

    let a = resume(tmp.path(), &data, &run, &[]).success();
    let err = stderr(&a);
    assert!(err.contains("skipped damaged checkpoint"), "{err}");
    assert!(err.contains("damaged-step-00000015"), "{err}");
    assert!(
        run.join("checkpoints/damaged-step-00000015/model.bpk")
            .exists(),
        "kept aside for inspection"
    );
    let m = metrics(&run);
    assert_eq!(m.len(), 20);
    assert_eq!(summary(&run)["steps"], 20);

    // Nothing usable at all: exit 4, and the reasons.
    for (step, _) in mnist_train::train::checkpoint::list(&run.join("checkpoints")) {
        truncate(&run.join(format!("checkpoints/step-{step:08}/model.bpk")));
    }
    let a = bin(tmp.path(), &data)
        .args(["eval", "--checkpoint", s(&run)])
        .assert()
        .code(4);
    assert!(
        stderr(&a).contains("cannot load model weights"),
        "{}",
        stderr(&a)
    );
}
