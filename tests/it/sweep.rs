//! `mnist-train sweep` end to end on generated IDX files: tables, skipping finished trials,
//! sharding, failures and error messages.

use std::fs;
use std::path::Path;

use crate::common::bin;
use predicates::prelude::*;

/// 2 inits × 2 seeds = 4 trials of 20 steps (640 images, batch 32) on a 16-unit net.
const TINY: &str = r#"{
  "name": "tiny",
  "base": {"batch_size": 32, "hidden": [16], "eval_every": 5, "checkpoint_every": 0},
  "grid": {"init": ["he", "xavier"]},
  "seeds": [0, 1]
}"#;

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let (tmp, data) = crate::common::setup();
    fs::write(tmp.path().join("tiny.json"), TINY).unwrap();
    (tmp, data)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

/// Drops every `wall_time_s` (the only thing that differs between equal runs).
fn without_wall_time(mut v: serde_json::Value) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("wall_time_s");
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

#[test]
fn sweep_tabulates_skips_finished_trials_and_shards_merge_to_the_same_table() {
    let (tmp, data) = setup();
    let local = tmp.path().join("local");
    let out = bin(tmp.path(), &data)
        .args([
            "sweep",
            "tiny.json",
            "--jobs",
            "2",
            "--threads",
            "2",
            "--out",
        ])
        .arg(&local)
        .assert()
        .success();
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(stdout.contains("| relu-he-uniform-1x16 | 2 |"), "{stdout}");
    assert!(
        stdout.contains("| relu-xavier-uniform-1x16 | 2 |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("evaluated every 5 steps"),
        "caption states the cadence: {stdout}"
    );

    let manifest = json(&local.join("sweep.json"));
    let trials = manifest["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 4);
    for t in trials {
        let dir = local.join(t["dir"].as_str().unwrap());
        assert!(dir.join("summary.json").is_file(), "{}", dir.display());
        assert!(dir.join("metrics.jsonl").is_file());
        if cfg!(feature = "plots") {
            assert!(dir.join("curves.png").is_file());
            assert!(dir.join("curves.svg").is_file());
        }
    }
    let name = trials[1]["dir"].as_str().unwrap();
    assert!(
        predicates::str::is_match(r"^relu-he-uniform-1x16-s1-[0-9a-f]{8}$")
            .unwrap()
            .eval(name),
        "{name}"
    );
    for file in ["results.md", "results.csv", "results.json"] {
        assert!(local.join(file).is_file(), "{file}");
    }
    if cfg!(feature = "plots") {
        for file in [
            "accuracy-vs-step.png",
            "accuracy-vs-step.svg",
            "final-accuracy.png",
            "final-accuracy.svg",
        ] {
            assert!(local.join(file).is_file(), "{file}");
        }
    }
    let results = json(&local.join("results.json"));
    assert_eq!(results["done"], 4);
    let row = &results["rows"][0];
    assert_eq!(row["final_test_accuracy"]["n"], 2);
    assert!(
        row["final_test_accuracy"]["mean"].as_f64().unwrap() > 80.0,
        "{row}"
    );
    let csv = fs::read_to_string(local.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3);
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .starts_with("relu-he-uniform-1x16,2,2,0,")
    );

    // The same sweep again: everything is finished, nothing runs.
    bin(tmp.path(), &data)
        .args(["sweep", "tiny.json", "--threads", "2", "--out"])
        .arg(&local)
        .assert()
        .success()
        .stderr(predicate::str::contains("already finished, skipped").count(4))
        .stderr(predicate::str::contains(
            "ran 0 trials (4 already finished)",
        ));

    // Two shards into another directory: one by flag, one from a Slurm array's environment.
    let sharded = tmp.path().join("sharded");
    bin(tmp.path(), &data)
        .args([
            "sweep",
            "tiny.json",
            "--threads",
            "2",
            "--shard",
            "0/2",
            "--out",
        ])
        .arg(&sharded)
        .assert()
        .success()
        .stderr(predicate::str::contains("4 trials (2 in shard 0/2)"));
    let partial = json(&sharded.join("results.json"));
    assert_eq!(partial["done"], 2, "a shard reports what has finished");
    bin(tmp.path(), &data)
        .args(["sweep", "tiny.json", "--threads", "2", "--out"])
        .arg(&sharded)
        .env("SLURM_ARRAY_TASK_ID", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "2")
        .assert()
        .success()
        .stderr(predicate::str::contains("4 trials (2 in shard 1/2)"));
    fs::remove_file(sharded.join("results.json")).unwrap();
    bin(tmp.path(), &data)
        .args(["sweep", "report"])
        .arg(&sharded)
        .assert()
        .success()
        .stdout(predicate::str::contains("4 of 4 trials finished"));
    assert_eq!(
        without_wall_time(json(&sharded.join("results.json"))),
        without_wall_time(json(&local.join("results.json"))),
        "sharded and local runs give the same table"
    );
}

#[test]
fn set_sweeps_without_a_file_and_a_failing_trial_fails_the_sweep_at_the_end() {
    let (tmp, data) = setup();
    let out_dir = tmp.path().join("out");
    // batch 1000 > 640 training images: that trial's child exits 2; the other still runs.
    let out = bin(tmp.path(), &data)
        .args([
            "sweep",
            "--set",
            "batch_size=1000,32",
            "--set",
            "hidden=[16]",
            "--set",
            "eval_every=0",
            "--threads",
            "1",
            "--out",
        ])
        .arg(&out_dir)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("1 of 2 trials failed"));
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(stdout.contains("failed (exit 2)"), "{stdout}");
    assert!(stdout.contains("1 of 2 trials finished"), "{stdout}");
    let results = json(&out_dir.join("results.json"));
    assert_eq!(results["failed"], 1);
    assert_eq!(results["rows"][0]["trials"][0]["status"], "failed");
    assert_eq!(results["rows"][0]["trials"][0]["exit_code"], 2);
    assert_eq!(results["rows"][1]["done"], 1);
}

#[test]
fn bad_sweeps_are_one_line_usage_errors() {
    let (tmp, data) = setup();
    let cases: &[(&str, &[&str], &str)] = &[
        (
            r#"{"grid": {"init": []}}"#,
            &[],
            "`grid.init` is an empty list",
        ),
        (r#"{"grid": {}}"#, &[], "`grid` is empty"),
        (r#"{"grids": {"init": ["he"]}}"#, &[], "unknown key `grids`"),
        (
            r#"{"trials": [{"dropuot": 0.5}]}"#,
            &[],
            "`trials[0].dropuot`",
        ),
        (r#"{"grid": {"dropout": [0.5, 1.0]}}"#, &[], "`dropout`"),
        (
            r#"{"seeds": [0]}"#,
            &["--set", "init"],
            "--set init: expected KEY=VALUE",
        ),
        (
            r#"{"seeds": [0]}"#,
            &["--set", "init=hee"],
            "unknown variant `hee`",
        ),
        (r#"{"seeds": [0]}"#, &["--shard", "2/2"], "--shard 2/2"),
        (r#"{"seeds": [0]}"#, &["--jobs", "0"], "`jobs`"),
    ];
    for (i, (file, extra, message)) in cases.iter().enumerate() {
        let path = tmp.path().join(format!("bad{i}.json"));
        fs::write(&path, file).unwrap();
        let out = bin(tmp.path(), &data)
            .arg("sweep")
            .arg(&path)
            .args(*extra)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(*message));
        let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
        assert_eq!(stderr.trim().lines().count(), 1, "case {i}: {stderr}");
        assert!(!tmp.path().join("runs").exists(), "case {i} ran something");
    }
    bin(tmp.path(), &data)
        .args(["sweep"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "needs a sweep file or at least one --set",
        ));
    bin(tmp.path(), &data)
        .args(["sweep", "report"])
        .arg(tmp.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not a sweep directory"));
}

/// With a validation split, a row's "best" is the test accuracy of the model chosen on
/// validation, as the caption says, not the highest test evaluation.
#[test]
fn with_a_validation_split_best_is_chosen_on_validation() {
    let (tmp, data) = setup();
    let out = tmp.path().join("out");
    bin(tmp.path(), &data)
        .args([
            "sweep",
            "tiny.json",
            "--set",
            "valid_split=64",
            "--set",
            "seed=0",
        ])
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "of the model chosen on the validation set",
        ));
    let report = json(&out.join("results.json"));
    for row in report["rows"].as_array().unwrap() {
        let trial = &row["trials"][0];
        let summary = json(
            &out.join(trial["dir"].as_str().unwrap())
                .join("summary.json"),
        );
        let chosen = summary["test_accuracy_at_best_valid"].as_f64().unwrap() * 100.0;
        assert!((trial["best_test_accuracy"].as_f64().unwrap() - chosen).abs() < 1e-9);
    }
}

/// Several sweep processes on one directory share its trials: each trial runs in one of them,
/// the others leave it ("running in another sweep process"), nobody fails, and each trial's
/// log and status come from the process that ran it.
#[test]
fn sweeps_started_together_on_one_directory_share_the_trials() {
    let (tmp, data) = crate::common::setup();
    fs::write(
        tmp.path().join("shared.json"),
        r#"{"base": {"batch_size": 32, "hidden": [16], "eval_every": 0, "epochs": 15},
            "grid": {"init": ["he", "xavier"]}, "seeds": [0, 1]}"#,
    )
    .unwrap();
    let out = tmp.path().join("shared");
    let children: Vec<std::process::Child> = (0..3)
        .map(|_| {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mnist-train"));
            cmd.current_dir(tmp.path())
                .env("MNIST_DATA_DIR", &data)
                .env_remove("MNIST_TRAIN_BACKEND")
                .args(["sweep", "shared.json", "--threads", "1", "--out"])
                .arg(&out)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let mut ran = 0;
    for child in children {
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        assert!(!stderr.contains("FAILED"), "{stderr}");
        ran += stderr.matches(": test accuracy").count();
        // Each ends with the table of what is finished so far.
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(stdout.contains("trials finished"), "{stdout}");
    }
    assert_eq!(ran, 4, "each trial ran in exactly one process");
    bin(tmp.path(), &data)
        .args(["sweep", "report"])
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains("4 of 4 trials finished"));
    for entry in fs::read_dir(&out).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let log = fs::read_to_string(dir.join("train.log")).unwrap();
        assert_eq!(log.matches("training ").count(), 1, "one trainer: {log}");
        assert!(!dir.join("sweep-status.json").exists());
    }
}

/// A sweep process killed with `kill -9` mid-trial takes its trainer down with a checkpoint
/// (SIGTERM), and the next sweep process on the directory resumes the trial.
#[test]
fn a_trial_of_a_killed_sweep_is_resumed_by_the_next_one() {
    let (tmp, data) = crate::common::setup();
    fs::write(
        tmp.path().join("long.json"),
        r#"{"base": {"batch_size": 32, "hidden": [16], "eval_every": 0, "epochs": 150,
            "checkpoint_every": 10}}"#,
    )
    .unwrap();
    let out = tmp.path().join("long");
    let mut first = std::process::Command::new(env!("CARGO_BIN_EXE_mnist-train"))
        .current_dir(tmp.path())
        .env("MNIST_DATA_DIR", &data)
        .args(["sweep", "long.json", "--threads", "1", "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let trial = || {
        fs::read_dir(&out)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.join("metrics.jsonl").is_file())
    };
    let steps = |dir: &Path| {
        fs::read_to_string(dir.join("metrics.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let dir = loop {
        if let Some(dir) = trial().filter(|d| steps(d) > 50) {
            break dir;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the trial never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    // The orphaned trainer checkpoints and leaves.
    let log = || fs::read_to_string(dir.join("train.log")).unwrap_or_default();
    while !log().contains("interrupted by SIGTERM") {
        assert!(
            std::time::Instant::now() < deadline,
            "the trainer kept running: {}",
            log()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let stopped_at = steps(&dir);
    assert!(stopped_at < 150 * 20, "killed mid-trial");
    bin(tmp.path(), &data)
        .args(["sweep", "long.json", "--threads", "1", "--out"])
        .arg(&out)
        .assert()
        .success();
    assert!(log().contains("resuming"), "{}", log());
    let summary = crate::common::summary(&dir);
    assert_eq!(summary["steps"], 150 * 20);
}
