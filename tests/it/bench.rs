//! `mnist-train bench` runs on a tiny generated dataset and reports sane numbers. No timing
//! thresholds: speed targets belong in the benchmark's output, not in tests.

use crate::common::{bin, wait_until, write_dataset};

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

/// `bench` measures the experiment its flags describe, as `train` takes them: `--model cnn`
/// is lab 11's network unless flags change it, and bad values are refused as `train` refuses
/// them.
#[test]
fn bench_takes_the_experiment_flags() {
    let tmp = tempfile::tempdir().unwrap();
    write_dataset(tmp.path(), 1000, 200);
    let out = bin(tmp.path(), tmp.path())
        .args(["bench", "--json", "--reps", "1", "--protocol-reps", "0"])
        .args(["--backends", "flex", "--threads", "2"])
        .args(["--model", "cnn", "--conv-channels", "4,8", "--hidden", "16"])
        .assert()
        .success();
    let reports: Vec<serde_json::Value> = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let r = &reports[0];
    // Lab 11's batch of 100 unless a flag says otherwise.
    assert_eq!(r["steps_per_epoch"], 10, "{r}");
    assert_eq!(r["batch_size"], 100);
    let arch = r["architecture"].as_str().unwrap();
    assert!(
        arch.starts_with("28×28 → conv3×3 4 → pool → conv3×3 8 → pool → 392 → 16 → 10"),
        "{arch}"
    );
    // Lab 11's dropout and init, and its train columns from the training pass: no lecture rows.
    assert!(arch.contains("xavier-uniform-d0.4"), "{arch}");
    assert!(r["train_epoch_lecture_s"].is_null(), "{r}");
    assert_eq!(r["convolutions"], "kernel");
    assert_eq!(r["convolution_products"], "winograd");
    assert_eq!(
        r["train_first_layer"], "dense",
        "no lit-pixel path for a CNN"
    );

    // A config file, and a flag over it.
    let config = tmp.path().join("small.json");
    std::fs::write(
        &config,
        r#"{"model": "cnn", "conv_channels": [4], "hidden": [8], "batch_size": 50}"#,
    )
    .unwrap();
    let out = bin(tmp.path(), tmp.path())
        .args(["bench", "--json", "--reps", "1", "--protocol-reps", "0"])
        .args(["--backends", "flex", "--config"])
        .arg(&config)
        .args(["--batch-size", "100"])
        .assert()
        .success();
    let reports: Vec<serde_json::Value> = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(reports[0]["steps_per_epoch"], 10);
    let arch = reports[0]["architecture"].as_str().unwrap();
    assert!(
        arch.starts_with("28×28 → conv3×3 4 → pool → 784 → 8 → 10"),
        "{arch}"
    );

    // Bad values: one line, exit 2, before any child runs.
    let out = bin(tmp.path(), tmp.path())
        .args([
            "bench",
            "--backends",
            "flex",
            "--model",
            "cnn",
            "--conv-channels",
            "0",
        ])
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("conv_channels"), "{err}");
}

/// A benchmark killed (even by SIGKILL, which it cannot catch) takes its measuring child with
/// it: nothing keeps the cores busy after the user stopped it.
#[cfg(target_os = "linux")]
#[test]
fn a_killed_bench_leaves_no_measuring_child() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 1000, 200);
    let mut parent = std::process::Command::new(assert_cmd::cargo::cargo_bin("mnist-train"))
        .args([
            "bench",
            "--reps",
            "1000",
            "--backends",
            "flex",
            "--threads",
            "1",
        ])
        .arg("--data-dir")
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The child names the data directory on its command line.
    let marker = data.to_string_lossy().to_string();
    let children = || -> Vec<u32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline);
                cmdline.contains("--child") && cmdline.contains(&marker)
            })
            .collect()
    };
    let secs = std::time::Duration::from_secs;
    wait_until(secs(60), "no measuring child started", || {
        !children().is_empty()
    });
    parent.kill().unwrap(); // SIGKILL
    parent.wait().unwrap();
    wait_until(
        secs(10),
        "the measuring child outlived its killed parent",
        || children().is_empty(),
    );
}
