//! `--backend wgpu` end to end, on whatever adapter the machine has: a GPU when there is one,
//! else a software Vulkan adapter (CI: Mesa's lavapipe, `mesa-vulkan-drivers`). Built only
//! with `--features wgpu`:
//!
//! ```sh
//! cargo test --release --features wgpu --test wgpu
//! ```
//!
//! Without any adapter the tests print `skipped` and pass, except under `CI=true`, where they
//! fail. `MNIST_TRAIN_TEST_ADAPTER` picks the adapter (default: `auto` when a GPU is found,
//! else `cpu`). The runs share one kernel autotune cache (the default location), so only the
//! first run on a machine pays for tuning.
#![cfg(feature = "wgpu")]

use std::path::Path;
use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::common::{bin, final_weights, metrics, shared_data, summary, under_ci};
use assert_cmd::Command;
use mnist_train::backend::gpu::{self, AdapterChoice};
use predicates::prelude::*;

/// Test accuracies of the same config trained from scratch on the CPU and on wgpu may differ
/// by this much: the two backends draw different initial weights from their own RNGs (data
/// order and everything else are the same), which moves 2 epochs × 15 steps on 2,000 images by
/// a percent or two.
const FROM_SCRATCH_TOLERANCE: f64 = 0.04;

/// Resumed from the same checkpoint (same weights, same batches, no dropout), the two backends
/// differ only by float rounding: at most this many of the 500 test images may flip.
const SAME_START_FLIPS: f64 = 3.0;

/// Runs use every core (lavapipe renders on all of them) and share the autotune cache: one
/// at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `--adapter` the tests train on, or `None` (skip) when the machine has none.
fn adapter() -> Option<&'static str> {
    static CHOICE: OnceLock<Option<String>> = OnceLock::new();
    CHOICE
        .get_or_init(|| {
            if let Ok(a) = std::env::var("MNIST_TRAIN_TEST_ADAPTER") {
                return Some(a);
            }
            let found = gpu::adapters();
            if gpu::select(AdapterChoice::Auto, &found).is_ok() {
                return Some("auto".into());
            }
            match gpu::select(AdapterChoice::Cpu, &found) {
                Ok(_) => Some("cpu".into()),
                Err(why) if under_ci() => panic!(
                    "CI must run the wgpu tests on lavapipe (.ci/run installs \
                     mesa-vulkan-drivers and libvulkan1), but: {why}"
                ),
                Err(why) => {
                    eprintln!("skipped: no wgpu adapter: {why}");
                    None
                }
            }
        })
        .as_deref()
}

/// The binary on `backend` (`wgpu` on the test adapter, or a CPU backend), real data, offline;
/// `sub` is the subcommand (and its leading arguments), if any.
fn on(backend: &str, cwd: &Path, data: &Path, sub: &[&str]) -> Command {
    let mut cmd = bin(cwd, data);
    cmd.args(sub)
        .env_remove("MNIST_TRAIN_GPU_CACHE")
        .env_remove("MNIST_TRAIN_ADAPTER")
        .env("MNIST_TRAIN_THREADS", "2")
        .args(["--offline", "--backend", backend]);
    if backend == "wgpu" {
        cmd.args(["--adapter", adapter().expect("checked by the caller")]);
    }
    cmd
}

/// 2,000 training images (15 steps per epoch), 500 test images, test pass every 10 steps.
fn subset<'a>(cmd: &'a mut Command, run: &Path) -> &'a mut Command {
    cmd.args([
        "--init",
        "he",
        "--train-limit",
        "2000",
        "--test-limit",
        "500",
    ])
    .args([
        "--epochs",
        "2",
        "--eval-every",
        "10",
        "--checkpoint-every",
        "5",
    ])
    .args(["--quiet", "--run-dir", run.to_str().unwrap()])
}

fn final_accuracy(run: &Path) -> f64 {
    summary(run)["final_test_accuracy"].as_f64().unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != ".lock" {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn trains_on_wgpu_like_on_the_cpu() {
    let (Some(_), Some(data)) = (adapter(), shared_data("the wgpu tests on real MNIST")) else {
        return;
    };
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (cpu, gpu) = (tmp.path().join("cpu"), tmp.path().join("gpu"));
    subset(&mut on("flex", tmp.path(), &data, &[]), &cpu)
        .assert()
        .success();
    let started = std::time::Instant::now();
    subset(&mut on("wgpu", tmp.path(), &data, &[]), &gpu)
        .assert()
        .success()
        .stderr(
            predicate::str::is_match(
                r"wgpu adapter: .+ \((DiscreteGpu|IntegratedGpu|VirtualGpu|Cpu), \w+\)",
            )
            .unwrap(),
        );
    eprintln!(
        "wgpu run (30 steps, 5 test passes of 500): {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Same per-step record as the CPU path: every step, test accuracy on the cadence.
    let m = metrics(&gpu);
    assert_eq!(m.len(), 30);
    let evaluated: Vec<u64> = m
        .iter()
        .filter(|r| r.get("test_accuracy").is_some())
        .map(|r| r["global_step"].as_u64().unwrap())
        .collect();
    assert_eq!(
        evaluated,
        [10, 15, 20, 30],
        "every 10 steps and at each epoch end"
    );
    assert!(
        m.iter()
            .all(|r| r["train_loss"].as_f64().unwrap().is_finite())
    );
    let s = summary(&gpu);
    assert_eq!(s["backend"], "wgpu");
    assert_eq!(s["steps"], 30);

    let (a_cpu, a_gpu) = (final_accuracy(&cpu), final_accuracy(&gpu));
    eprintln!("from scratch: cpu {a_cpu:.4}, wgpu {a_gpu:.4}");
    assert!(a_gpu > 0.75, "wgpu learned too little: {s}");
    assert!(
        (a_cpu - a_gpu).abs() <= FROM_SCRATCH_TOLERANCE,
        "test accuracy cpu {a_cpu} vs wgpu {a_gpu} differ by more than {FROM_SCRATCH_TOLERANCE}"
    );
}

/// A checkpoint written on the CPU resumes on wgpu, and one written on wgpu is evaluated on
/// the CPU (and the other way round); from the same start both backends end in the same place.
#[test]
fn checkpoints_move_between_cpu_and_wgpu() {
    let (Some(_), Some(data)) = (adapter(), shared_data("the wgpu tests on real MNIST")) else {
        return;
    };
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (cpu, gpu) = (tmp.path().join("cpu"), tmp.path().join("gpu"));
    // 12 steps on the CPU (checkpoint at 10 and at the pause), then each backend finishes.
    subset(&mut on("flex", tmp.path(), &data, &[]), &cpu)
        .args(["--max-steps", "12"])
        .assert()
        .success();
    copy_dir(&cpu, &gpu);
    for (backend, run) in [("flex", &cpu), ("wgpu", &gpu)] {
        on(backend, tmp.path(), &data, &[])
            .args(["--quiet", "--resume", run.to_str().unwrap()])
            .assert()
            .success();
        assert_eq!(summary(run)["steps"], 30, "{backend}");
    }
    let (a_cpu, a_gpu) = (final_accuracy(&cpu), final_accuracy(&gpu));
    let diff = max_abs_diff(&final_weights(&cpu), &final_weights(&gpu));
    eprintln!("same start: cpu {a_cpu:.4}, wgpu {a_gpu:.4}, max weight difference {diff:.2e}");
    assert!(
        (a_cpu - a_gpu).abs() * 500.0 <= SAME_START_FLIPS,
        "cpu {a_cpu} vs wgpu {a_gpu}"
    );
    assert!(diff < 1e-2, "weights drifted apart by {diff}");

    // Each run's final checkpoint, evaluated on the other backend, scores what it did at home.
    for (backend, run) in [("flex", &gpu), ("wgpu", &cpu)] {
        // The 500 test images the runs were scored on (eval takes the whole set by default).
        let out = on(backend, tmp.path(), &data, &["eval"])
            .args([
                "--json",
                "--test-limit",
                "500",
                "--checkpoint",
                run.to_str().unwrap(),
            ])
            .assert()
            .success();
        let r: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        let (there, home) = (r["test_accuracy"].as_f64().unwrap(), final_accuracy(run));
        assert_eq!(r["test_images"], 500);
        assert!(
            (there - home).abs() * 500.0 <= 1.0,
            "{} evaluated on {backend}: {there}, at home {home}",
            run.display()
        );
    }
}

/// An interrupted wgpu run resumed on wgpu ends where an uninterrupted one does.
#[test]
fn resume_on_wgpu_matches_an_uninterrupted_run() {
    let (Some(_), Some(data)) = (adapter(), shared_data("the wgpu tests on real MNIST")) else {
        return;
    };
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (whole, split) = (tmp.path().join("whole"), tmp.path().join("split"));
    subset(&mut on("wgpu", tmp.path(), &data, &[]), &whole)
        .assert()
        .success();
    subset(&mut on("wgpu", tmp.path(), &data, &[]), &split)
        .args(["--max-steps", "13"])
        .assert()
        .success();
    on("wgpu", tmp.path(), &data, &[])
        .args(["--quiet", "--resume", split.to_str().unwrap()])
        .assert()
        .success();
    let strip = |run: &Path| -> Vec<serde_json::Value> {
        metrics(run)
            .into_iter()
            .map(|mut v| {
                v.as_object_mut().unwrap().remove("elapsed_s");
                v
            })
            .collect()
    };
    let diff = max_abs_diff(&final_weights(&whole), &final_weights(&split));
    eprintln!("wgpu resume: max weight difference {diff:.2e}");
    assert_eq!(
        strip(&whole),
        strip(&split),
        "per-step metrics differ after resume"
    );
    assert_eq!(
        diff, 0.0,
        "resumed weights differ from the uninterrupted run's"
    );
}

/// The kernel autotune cache goes to the user cache directory or `$MNIST_TRAIN_GPU_CACHE`,
/// never into a `target/` beside a `Cargo.toml` the user happens to run in (cubecl's own
/// default), and nothing else is left in the working directory.
#[test]
fn autotune_cache_stays_out_of_the_working_directory() {
    let (Some(_), Some(data)) = (adapter(), shared_data("the wgpu tests on real MNIST")) else {
        return;
    };
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("someone-elses-project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("Cargo.toml"), "[package]\nname = \"x\"\n").unwrap();
    let run = |cmd: &mut Command, name: &str| {
        let run_dir = tmp.path().join(name);
        subset(cmd.current_dir(&project), &run_dir)
            .assert()
            .success();
    };
    let in_project = |step: &str| {
        let names: Vec<_> = std::fs::read_dir(&project)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            ["Cargo.toml"],
            "{step}: stray files in the working directory"
        );
    };

    // The default: the user cache directory.
    run(&mut on("wgpu", tmp.path(), &data, &[]), "default");
    in_project("default cache");
    let default = gpu::cache_dir();
    assert!(default.is_dir(), "{} missing", default.display());

    // An explicit directory (seeded with the default's tuning results, so no re-tuning), and a
    // cubecl setting of the user's (an environment variable) kept alongside.
    let cache = tmp.path().join("gpu-cache");
    std::fs::create_dir_all(&cache).unwrap();
    for entry in std::fs::read_dir(&default).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), cache.join(entry.file_name())).unwrap();
        }
    }
    let before = std::time::SystemTime::now();
    run(
        on("wgpu", tmp.path(), &data, &[])
            .env("MNIST_TRAIN_GPU_CACHE", &cache)
            .env("CUBECL_AUTOTUNE_LEVEL", "minimal"),
        "explicit",
    );
    in_project("MNIST_TRAIN_GPU_CACHE");
    let written = std::fs::read_dir(&cache)
        .unwrap()
        .filter_map(|e| e.unwrap().metadata().ok()?.modified().ok())
        .any(|t| t >= before);
    assert!(written, "the run wrote nothing to {}", cache.display());
}

/// No Vulkan driver (simulated by pointing the loader at nothing): a one-line error that says
/// what was found and what to install, exit code 6, no panic.
#[test]
fn no_adapter_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let no_vulkan = |cmd: &mut Command| {
        cmd.env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
            .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
            .args(["--offline", "--backend", "wgpu"]);
    };
    let mut choices = vec!["discrete:9"];
    // On a machine without a GPU (CI), `auto` must refuse the software adapter too.
    if gpu::select(AdapterChoice::Auto, &gpu::adapters()).is_err() {
        choices.extend(["auto", "discrete", "integrated"]);
    }
    for choice in choices {
        let mut cmd = bin(tmp.path(), tmp.path());
        no_vulkan(&mut cmd);
        let out = cmd.args(["--adapter", choice]).assert().code(6);
        let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
        assert!(
            stderr.starts_with("error: --backend wgpu: no "),
            "{choice}: {stderr}"
        );
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{choice}: one line: {stderr}"
        );
        for hint in [
            "found:",
            "mesa-vulkan-drivers libvulkan1",
            "NVIDIA",
            "--backend flex",
        ] {
            assert!(stderr.contains(hint), "{choice}: no `{hint}` in {stderr}");
        }
        assert!(
            !stderr.contains("panicked") && !stderr.contains("internal error"),
            "{stderr}"
        );
    }
}

/// `bench --backends wgpu` measures the GPU too, its child on the chosen adapter.
#[test]
fn bench_measures_wgpu() {
    let (Some(adapter), Some(data)) = (adapter(), shared_data("the wgpu tests on real MNIST"))
    else {
        return;
    };
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    // The other tests' shapes (batch 128, 500 test images), so the tuning cache is warm.
    let out = bin(tmp.path(), &data)
        .env_remove("MNIST_TRAIN_GPU_CACHE")
        .args([
            "bench",
            "--json",
            "--reps",
            "1",
            "--protocol-reps",
            "1",
            "--offline",
        ])
        .args(["--train-limit", "1280", "--test-limit", "500"])
        .args(["--backends", "wgpu", "--adapter", adapter])
        .assert()
        .success()
        .stderr(predicate::str::contains("wgpu adapter: "));
    let reports: Vec<serde_json::Value> = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["backend"], "wgpu");
    assert_eq!(reports[0]["steps_per_epoch"], 10);
    assert_eq!(reports[0]["test_images"], 500);
    assert!(reports[0]["test_pass_s"]["median"].as_f64().unwrap() > 0.0);
}

/// The CNN on wgpu: resumed there from a CPU checkpoint, it ends where the CPU does — its
/// convolutions, batchnorm per channel and the SAME pooling of an odd side (7 → 4) included.
#[test]
fn the_cnn_trains_on_wgpu_as_on_the_cpu() {
    let (Some(_), Some(data)) = (adapter(), shared_data("the wgpu tests on real MNIST")) else {
        return;
    };
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (cpu, gpu) = (tmp.path().join("cpu"), tmp.path().join("gpu"));
    on("flex", tmp.path(), &data, &[])
        .args([
            "--model",
            "cnn",
            "--conv-channels",
            "4,8,8",
            "--hidden",
            "32",
        ])
        .args(["--batchnorm", "--batchnorm-momentum", "0.9", "--init", "he"])
        .args([
            "--train-limit",
            "1000",
            "--test-limit",
            "500",
            "--batch-size",
            "50",
        ])
        .args([
            "--eval-every",
            "0",
            "--checkpoint-every",
            "5",
            "--max-steps",
            "10",
        ])
        .args(["--quiet", "--run-dir", cpu.to_str().unwrap()])
        .assert()
        .success();
    copy_dir(&cpu, &gpu);
    let started = std::time::Instant::now();
    for (backend, run) in [("flex", &cpu), ("wgpu", &gpu)] {
        on(backend, tmp.path(), &data, &[])
            .args(["--quiet", "--resume", run.to_str().unwrap()])
            .assert()
            .success();
        assert_eq!(summary(run)["steps"], 20, "{backend}");
    }
    let (a_cpu, a_gpu) = (final_accuracy(&cpu), final_accuracy(&gpu));
    let diff = max_abs_diff(&final_weights(&cpu), &final_weights(&gpu));
    eprintln!(
        "cnn, same start: cpu {a_cpu:.4}, wgpu {a_gpu:.4}, max weight difference {diff:.2e} \
         ({:.1} s for both)",
        started.elapsed().as_secs_f64()
    );
    assert!(
        a_gpu > 0.2,
        "the CNN learned on wgpu (chance is 0.1): {a_gpu}"
    );
    assert!(
        (a_cpu - a_gpu).abs() * 500.0 <= SAME_START_FLIPS,
        "cpu {a_cpu} vs wgpu {a_gpu}"
    );
    // Adam moves a weight by about lr a step whatever its gradient's size: a rounding that
    // flips a tiny gradient's sign can part the two runs by 2 · lr per step, no more.
    let bound = 2.0 * 1e-3 * 10.0;
    assert!(
        diff < bound,
        "weights drifted apart by {diff} (bound {bound})"
    );
}
