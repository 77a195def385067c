//! Smoke test on the real MNIST files, when they are available (CI: ../shared/data).

mod common;

use std::path::PathBuf;

fn shared_data() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if dir.join("mnist").is_dir() {
        return Some(dir);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "CI must run the real-data test, but {} is missing",
            dir.display()
        );
    }
    eprintln!("skipped: real MNIST not found at {}", dir.display());
    None
}

/// 10,000 training images, three epochs (234 steps), test accuracy on 2,000 test images every
/// 20 steps. One epoch of this subset reaches only about 0.89, too close to the bar.
#[test]
fn trains_above_90_percent_on_a_real_mnist_subset() {
    let Some(data) = shared_data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    common::bin(tmp.path(), &data)
        .env("MNIST_TRAIN_THREADS", "2")
        .args([
            "--offline",
            "--init",
            "he",
            "--train-limit",
            "10000",
            "--epochs",
            "3",
        ])
        .args(["--test-limit", "2000", "--eval-every", "20", "--quiet"])
        .args(["--run-dir", run.to_str().unwrap()])
        .assert()
        .success();
    let s = common::summary(&run);
    let acc = s["final_test_accuracy"].as_f64().unwrap();
    eprintln!("real MNIST subset: final test accuracy {acc:.4}");
    assert!(acc > 0.9, "test accuracy {acc} should exceed 0.9: {s}");
    assert_eq!(s["steps"], 234, "3 × (10,000 / 128 full batches)");
    assert_eq!(s["test_images"], 2000);
}
