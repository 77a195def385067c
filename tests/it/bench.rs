//! `mnist-train bench` runs on a tiny generated dataset and reports sane numbers. No timing
//! thresholds: speed targets belong in the benchmark's output, not in tests.

use crate::common::{bin, write_dataset};

#[test]
fn bench_reports_every_measurement_for_each_backend() {
    let tmp = tempfile::tempdir().unwrap();
    write_dataset(tmp.path(), 1280, 300);
    let out = bin(tmp.path(), tmp.path())
        .args(["bench", "--json", "--reps", "2", "--protocol-reps", "1"])
        .args(["--backends", "flex,ndarray", "--threads", "1"])
        .assert()
        .success();
    let reports: Vec<serde_json::Value> = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(reports.len(), 2);
    for r in &reports {
        let f = |k: &str| r[k]["median"].as_f64().unwrap();
        assert_eq!(r["steps_per_epoch"], 10);
        assert_eq!(r["test_images"], 300);
        assert_eq!(r["threads"], 1);
        assert!(f("train_epoch_s") > 0.0 && f("test_pass_s") > 0.0, "{r}");
        assert_eq!(r["train_epoch_s"]["samples"], 2);
        // No timing comparisons: a loaded machine can stall any one repetition.
        assert!(
            f("step_with_eval_s") > 0.0 && f("protocol_epoch_s") > 0.0,
            "{r}"
        );
        assert_eq!(r["protocol_epoch_s"]["samples"], 1);
        // The same with the lecture's train columns (the trainer's default).
        assert_eq!(r["train_epoch_lecture_s"]["samples"], 2);
        assert_eq!(r["protocol_epoch_lecture_s"]["samples"], 1);
        assert!(r["test_images_per_s"].as_f64().unwrap() > 0.0);
        let mem = r["peak_rss_mb"].as_f64().unwrap();
        assert!(mem > 1.0 && mem < 2000.0, "peak memory {mem} MB");
    }
    assert_eq!(reports[0]["backend"], "flex");
    assert_eq!(reports[1]["backend"], "ndarray");

    // The human table names every measurement.
    let out = bin(tmp.path(), tmp.path())
        .args([
            "bench",
            "--reps",
            "1",
            "--protocol-reps",
            "0",
            "--backends",
            "flex",
        ])
        .assert()
        .success();
    let table = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    for row in [
        "training epoch, no eval",
        "training epoch, lecture's train columns",
        "test pass (ms)",
        "peak memory (MB)",
    ] {
        assert!(table.contains(row), "{table}");
    }
}
