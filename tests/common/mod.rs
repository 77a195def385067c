//! Shared helpers for the integration tests: tiny generated datasets and the binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use mnist_train::data::idx::{encode_images, encode_labels};

/// A learnable toy dataset: class `c` lights up rows 3c..3c+2, plus deterministic noise.
pub fn synthetic(n: usize, salt: u64) -> (Vec<u8>, Vec<u8>) {
    let mut state = 0x2545_f491_4f6c_dd1d_u64 ^ salt;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut images = Vec::with_capacity(n * 784);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let c = (next() % 10) as usize;
        labels.push(c as u8);
        for r in 0..28 {
            for _ in 0..28 {
                let noise = (next() % 60) as u8;
                let on = r / 3 == c;
                images.push(if on { 180 + noise } else { noise });
            }
        }
    }
    (images, labels)
}

/// Writes a toy MNIST (train `n_train`, test `n_test`) under `root/mnist/`, raw IDX files.
pub fn write_dataset(root: &Path, n_train: usize, n_test: usize) -> PathBuf {
    let dir = root.join("mnist");
    std::fs::create_dir_all(&dir).unwrap();
    let (ti, tl) = synthetic(n_train, 1);
    let (vi, vl) = synthetic(n_test, 2);
    std::fs::write(
        dir.join("train-images-idx3-ubyte"),
        encode_images(&ti, n_train),
    )
    .unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), encode_labels(&tl)).unwrap();
    std::fs::write(
        dir.join("t10k-images-idx3-ubyte"),
        encode_images(&vi, n_test),
    )
    .unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), encode_labels(&vl)).unwrap();
    dir
}

/// A toy MNIST of 640 training images (20 steps of 32 per epoch) and 200 test images, in a
/// temporary directory that is also the data directory.
pub fn setup() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    write_dataset(tmp.path(), 640, 200);
    let data = tmp.path().to_path_buf();
    (tmp, data)
}

/// A path as the `&str` an argument list wants.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Whether this runs under CI, where a test that lacks what it needs fails instead of
/// skipping (`CI` set, and not empty or `false`).
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// The real datasets beside the checkout (`../shared/data`), or `None` after saying the test
/// is skipped; under CI their absence fails the test `what` names.
pub fn shared_data(what: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if dir.join("mnist").is_dir() {
        return Some(dir);
    }
    if under_ci() {
        panic!("CI must run {what}, but {} is missing", dir.display());
    }
    eprintln!("skipped: real MNIST not found at {}", dir.display());
    None
}

/// The binary with a clean environment: data from `data_dir`, runs inside `cwd`.
pub fn bin(cwd: &Path, data_dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("mnist-train").unwrap();
    cmd.current_dir(cwd)
        .env_remove("MNIST_DATA_DIR")
        .env_remove("MNIST_TRAIN_BACKEND")
        .env("MNIST_DATA_DIR", data_dir)
        .env("MNIST_TRAIN_THREADS", "1");
    cmd
}

/// Parsed `metrics.jsonl` of a run.
pub fn metrics(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn summary(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap()
}

/// Final weights of a run's newest checkpoint, loaded on the CPU.
pub fn final_weights(run: &Path) -> Vec<f32> {
    let ckpt = mnist_train::train::checkpoint::open(run).unwrap();
    let device = mnist_train::backend::Backend::default_cpu()
        .device()
        .unwrap();
    let model = ckpt
        .load_model(mnist_train::model::Model::new(&ckpt.state.config, &device))
        .unwrap();
    model.parameters_flat()
}

/// Metrics without their wall-clock column, for comparing two runs.
pub fn without_time(m: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    m.into_iter()
        .map(|mut v| {
            v.as_object_mut().unwrap().remove("elapsed_s");
            v
        })
        .collect()
}

/// Trains a small net (640 toy images, batch 32: 20 steps per epoch) for 2 epochs with `extra`
/// flags, once straight through and once interrupted at step 13 (mid-epoch, between two
/// periodic checkpoints) and resumed; both must end with bit-identical weights and metrics.
/// Returns the summary of the run.
pub fn assert_resume_is_exact(extra: &[&str]) -> serde_json::Value {
    let tmp = tempfile::tempdir().unwrap();
    write_dataset(tmp.path(), 640, 200);
    let data = tmp.path();
    let whole = tmp.path().join("whole");
    let split = tmp.path().join("split");
    let train = |run: &Path| {
        let mut cmd = bin(tmp.path(), data);
        cmd.args(["--init", "he", "--batch-size", "32", "--hidden", "64,32"])
            .args([
                "--epochs",
                "2",
                "--eval-every",
                "3",
                "--checkpoint-every",
                "4",
            ])
            .args(["--run-dir", run.to_str().unwrap()])
            .args(extra);
        cmd
    };
    train(&whole).assert().success();
    train(&split)
        .args(["--max-steps", "13"])
        .assert()
        .success()
        .stderr(predicates::str::contains("--resume"));
    assert_eq!(metrics(&split).len(), 13);
    bin(tmp.path(), data)
        .args(["--resume", split.to_str().unwrap()])
        .assert()
        .success();

    let (a, b) = (final_weights(&whole), final_weights(&split));
    assert_eq!(a.len(), b.len());
    assert!(
        a == b,
        "{extra:?}: resumed weights differ from the uninterrupted run's"
    );
    assert_eq!(without_time(metrics(&whole)), without_time(metrics(&split)));
    let (s, t) = (summary(&whole), summary(&split));
    for key in [
        "steps",
        "final_test_accuracy",
        "best_test_accuracy",
        "valid_accuracy_best",
        "best_valid_step",
        "test_accuracy_at_best_valid",
        "stopped_early",
    ] {
        assert_eq!(s.get(key), t.get(key), "{extra:?}: {key}");
    }
    // The model chosen on validation, when there is one, is the same model too.
    let best = |run: &Path| run.join("checkpoints/best");
    assert_eq!(best(&whole).exists(), best(&split).exists());
    if best(&whole).exists() {
        assert!(
            final_weights(&best(&whole)) == final_weights(&best(&split)),
            "{extra:?}: the best checkpoints differ"
        );
    }
    s
}

/// Polls `done` every 20 ms until it holds, failing with `what` after `limit`.
pub fn wait_until(limit: std::time::Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
