//! The CNN of lab 11 (`--model cnn`): it trains, resumes exactly, reports its conv layers,
//! exports, joins ensembles, and refuses what does not fit it.

use std::path::Path;
use std::time::Duration;

use predicates::prelude::*;

use crate::common::{assert_resume_is_exact, bin, metrics, s, setup, shared_data, summary};

/// A small CNN (4 and 8 filters, dense 16) on the toy data, `extra` flags after these.
fn small_cnn(cwd: &Path, data: &Path, run: &Path, extra: &[&str]) -> assert_cmd::Command {
    let mut cmd = bin(cwd, data);
    cmd.args(["--model", "cnn", "--conv-channels", "4,8", "--hidden", "16"])
        .args(["--init", "he", "--batch-size", "32", "--eval-every", "0"])
        .args(["--run-dir", s(run), "--quiet"])
        .args(extra)
        .timeout(Duration::from_secs(300));
    cmd
}

#[test]
fn a_cnn_learns_the_toy_data_and_says_what_it_is() {
    let (tmp, data) = setup();
    let run = tmp.path().join("cnn");
    small_cnn(tmp.path(), &data, &run, &["--epochs", "2"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "28×28 → conv3×3 4 → pool → conv3×3 8 → pool → 392 → 16 → 10",
        ));
    let sum = summary(&run);
    let acc = sum["final_test_accuracy"].as_f64().unwrap();
    assert!(acc > 0.5, "toy classes are easy: {acc}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model"], "cnn");
    assert_eq!(config["conv_channels"], serde_json::json!([4, 8]));

    // The diagnostics see the convolutions: their gradients, and dead channels.
    let m = metrics(&run);
    let layers = m[0]["layers"]
        .as_array()
        .expect("the first step's diagnostics");
    let names: Vec<&str> = layers.iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["conv.0", "conv.1", "hidden.0", "output"]);
    for layer in &layers[..3] {
        assert!(layer["grad_norm"].as_f64().unwrap() > 0.0, "{layer}");
        let dead = layer["dead_fraction"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&dead), "{layer}");
    }
    // TensorBoard gets the conv layers' statistics; the page draws the network.
    let events = std::fs::read(run.join("events.out.tfevents.metrics")).unwrap();
    let tag = b"layers/conv.1/grad_norm";
    assert!(events.windows(tag.len()).any(|w| w == tag));
    let page = std::fs::read_to_string(run.join("report.html")).unwrap();
    for shape in [">28×28×4<", ">14×14×8<", ">7×7×8<", ">392<"] {
        assert!(page.contains(shape), "the report draws {shape}");
    }
    // The run records that the MLP's lit-pixel kernels did not serve it, the convolution
    // kernels did.
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(info["fast_paths"]["first_layer_training"], "burn");
    assert_eq!(info["fast_paths"]["convolutions"], "kernel");
}

/// The convolution and pooling kernels (`kernel::conv`) train a CNN, batchnorm and the 7 → 4
/// pooling included, as Burn's own operations do (`MNIST_TRAIN_DENSE=1`): the train and test
/// losses to float rounding at every step (their sums run in another order), and the test
/// accuracy within three images of the 200 (the toy set's images sit near the boundaries,
/// where rounding moves one).
#[test]
fn the_convolution_kernels_train_as_burns_own_operations() {
    let (tmp, data) = setup();
    let run = |name: &str, burn: bool| {
        let dir = tmp.path().join(name);
        let mut cmd = bin(tmp.path(), &data);
        cmd.args([
            "--model",
            "cnn",
            "--conv-channels",
            "4,8,8",
            "--hidden",
            "16",
        ])
        .args([
            "--init",
            "he",
            "--batch-size",
            "32",
            "--batchnorm",
            "--epochs",
            "2",
        ])
        .args(["--run-dir", s(&dir), "--quiet"])
        .timeout(Duration::from_secs(300));
        if burn {
            cmd.env("MNIST_TRAIN_DENSE", "1");
        }
        cmd.assert().success();
        let info: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
        let want = if burn { "burn" } else { "kernel" };
        assert_eq!(info["fast_paths"]["convolutions"], want, "{info}");
        let want = if burn { "burn" } else { "winograd" };
        assert_eq!(info["fast_paths"]["convolution_products"], want, "{info}");
        metrics(&dir)
    };
    let (ours, burns) = (run("kernels", false), run("burn", true));
    assert_eq!(ours.len(), burns.len());
    for (o, b) in ours.iter().zip(&burns) {
        let (oa, ba) = (
            o["test_accuracy"].as_f64().unwrap(),
            b["test_accuracy"].as_f64().unwrap(),
        );
        assert!((oa - ba).abs() <= 3.0 / 200.0 + 1e-9, "{o} vs {b}");
        for loss in ["train_loss", "test_loss"] {
            let (ol, bl) = (o[loss].as_f64().unwrap(), b[loss].as_f64().unwrap());
            assert!((ol - bl).abs() <= 1e-3 * bl.abs(), "{loss} {ol} vs {bl}");
        }
    }
}

/// CI's smoke test on real MNIST: a few hundred images, one epoch, seconds, above chance.
#[test]
fn the_lab11_config_trains_a_subset_of_real_mnist_above_chance() {
    let Some(data) = shared_data("the CNN smoke test") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("lab11");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/lab11-cnn.json");
    let out = bin(tmp.path(), &data)
        .args(["--config", s(&config), "--epochs", "1"])
        .args(["--train-limit", "600", "--test-limit", "1000"])
        .args(["--run-dir", s(&run)])
        .env("MNIST_TRAIN_THREADS", "2")
        .timeout(Duration::from_secs(300))
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    // Six steps of 100, each the lecture's line, then lab 11's epoch line.
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("Epoch: [")).count(),
        6
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("Epoch: 1 loss = ")),
        "{stdout}"
    );
    let acc = summary(&run)["final_test_accuracy"].as_f64().unwrap();
    assert!(
        acc > 0.3,
        "600 images, one epoch: well above chance (0.1): {acc}"
    );
}

#[test]
fn an_interrupted_cnn_resumes_bit_identically() {
    assert_resume_is_exact(&["--model", "cnn", "--conv-channels", "4,8"]);
}

#[test]
fn an_augmented_cnn_with_batchnorm_and_dropout_resumes_bit_identically() {
    assert_resume_is_exact(&[
        "--model",
        "cnn",
        "--conv-channels",
        "4",
        "--batchnorm",
        "--dropout",
        "0.3",
        "--augment",
        "rotate=15,shift=2",
    ]);
}

#[test]
fn an_augmented_mlp_resumes_bit_identically() {
    assert_resume_is_exact(&["--augment", "rotate=10,shift=1.5"]);
}

#[test]
fn augmentation_changes_the_batches_and_the_seed_fixes_them() {
    let (tmp, data) = setup();
    let train = |name: &str, augment: Option<&str>| {
        let run = tmp.path().join(name);
        let mut cmd = bin(tmp.path(), &data);
        cmd.args(["--init", "he", "--batch-size", "32", "--hidden", "32"])
            .args(["--eval-every", "0", "--quiet", "--run-dir", s(&run)]);
        if let Some(a) = augment {
            cmd.args(["--augment", a]);
        }
        cmd.assert().success();
        crate::common::without_time(metrics(&run))
    };
    let plain = train("plain", None);
    let a = train("a", Some("rotate=15,shift=2"));
    let b = train("b", Some("rotate=15,shift=2"));
    assert_eq!(a, b, "the same seed draws the same augmentation");
    assert_ne!(a, plain, "augmented batches train another model");
}

#[test]
fn bad_cnn_input_is_one_line_and_a_documented_exit_code() {
    let (tmp, data) = setup();
    let run = tmp.path().join("run");
    for (args, code, says) in [
        (
            vec!["--model", "cnn", "--conv-channels", "0"],
            2,
            "`conv_channels`",
        ),
        (
            vec!["--model", "cnn", "--conv-channels", ""],
            2,
            "conv-channels",
        ),
        (
            vec!["--model", "cnn", "--conv-channels", "8,8,8,8,8,8"],
            2,
            "1..=5 convolutions",
        ),
        (vec!["--conv-channels", "8"], 2, "--model cnn"),
        (vec!["--model", "rnn"], 2, "rnn"),
        (
            vec!["--augment", "spin=3"],
            2,
            "unknown augmentation `spin`",
        ),
        (vec!["--augment", "rotate=x"], 2, "not a number"),
        (vec!["--augment", "shift=20"], 2, "`augment`"),
    ] {
        let out = bin(tmp.path(), &data)
            .args(&args)
            .args(["--run-dir", s(&run), "--quiet"])
            .assert()
            .code(code);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!run.exists(), "{args:?}: a refused run leaves no directory");
    }
}

#[test]
fn resuming_across_the_model_family_is_refused_with_exit_4() {
    let (tmp, data) = setup();
    let mlp = tmp.path().join("mlp");
    bin(tmp.path(), &data)
        .args(["--hidden", "16", "--batch-size", "32", "--eval-every", "0"])
        .args([
            "--epochs",
            "2",
            "--max-steps",
            "5",
            "--checkpoint-every",
            "5",
        ])
        .args(["--run-dir", s(&mlp), "--quiet"])
        .assert()
        .success();
    let config_before = std::fs::read_to_string(mlp.join("config.json")).unwrap();
    bin(tmp.path(), &data)
        .args(["--resume", s(&mlp), "--model", "cnn", "--quiet"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("architecture"));
    assert_eq!(
        std::fs::read_to_string(mlp.join("config.json")).unwrap(),
        config_before,
        "a refused resume leaves the run as it was"
    );

    let cnn = tmp.path().join("cnn");
    small_cnn(
        tmp.path(),
        &data,
        &cnn,
        &[
            "--epochs",
            "2",
            "--max-steps",
            "5",
            "--checkpoint-every",
            "5",
        ],
    )
    .assert()
    .success();
    for change in [["--model", "mlp"], ["--conv-channels", "4,16"]] {
        bin(tmp.path(), &data)
            .args(["--resume", s(&cnn), "--quiet"])
            .args(change)
            .assert()
            .code(4)
            .stderr(predicate::str::contains("architecture"));
    }
    // Without changes it goes on.
    bin(tmp.path(), &data)
        .args(["--resume", s(&cnn), "--quiet"])
        .timeout(Duration::from_secs(300))
        .assert()
        .success();
    assert_eq!(summary(&cnn)["steps"], 40);
}

#[test]
fn eval_scores_an_ensemble_beside_each_model_and_predict_takes_it_too() {
    let (tmp, data) = setup();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    small_cnn(tmp.path(), &data, &a, &[]).assert().success();
    // A member of another family: an ensemble sums logits, whatever made them.
    bin(tmp.path(), &data)
        .args(["--hidden", "32", "--batch-size", "32", "--eval-every", "0"])
        .args(["--seed", "3", "--run-dir", s(&b), "--quiet"])
        .assert()
        .success();
    let out = bin(tmp.path(), &data)
        .args([
            "eval",
            "--checkpoint",
            s(&a),
            "--checkpoint",
            s(&b),
            "--json",
        ])
        .assert()
        .success();
    let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let members = json["ensemble"]["members"].as_array().unwrap();
    assert_eq!(json["ensemble"]["models"], 2);
    assert_eq!(members[0]["model"], "cnn");
    assert_eq!(members[1]["model"], "mlp");
    let own = |run: &Path| summary(run)["final_test_accuracy"].as_f64().unwrap();
    for (member, run) in members.iter().zip([&a, &b]) {
        let acc = member["accuracy"].as_f64().unwrap();
        assert!((acc - own(run)).abs() < 1e-9, "{member} vs {}", own(run));
    }
    assert!(json["accuracy"].as_f64().unwrap() > 0.5);
    assert!(
        !tmp.path().join("eval.json").exists() && !a.join("eval.json").exists(),
        "an ensemble writes files only where --out says"
    );

    bin(tmp.path(), &data)
        .args(["eval", "--checkpoint", s(&a), "--checkpoint", s(&b)])
        .assert()
        .success()
        .stdout(predicate::str::contains("ensemble test_accuracy:"))
        .stdout(predicate::str::contains("model 2: test_accuracy:"));

    let out = bin(tmp.path(), &data)
        .args(["predict", "--checkpoint", s(&a), "--checkpoint", s(&b)])
        .args(["--test-index", "0,1", "--json"])
        .assert()
        .success()
        .stderr(predicate::str::contains("ensemble of 2 models"));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.get_output().stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let p: f64 = lines[0]["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert!((p - 1.0).abs() < 1e-4, "{p}");
}

#[test]
fn a_cnn_exports_in_pytorch_names_and_layouts() {
    let (tmp, data) = setup();
    let run = tmp.path().join("cnn");
    small_cnn(tmp.path(), &data, &run, &["--batchnorm"])
        .assert()
        .success();
    let export = |format: &str| {
        let file = tmp.path().join(format!("cnn.{format}"));
        bin(tmp.path(), &data)
            .args(["export", "--checkpoint", s(&run), "--format", format])
            .args(["--output", s(&file)])
            .assert()
            .success();
        std::fs::read(&file).unwrap()
    };
    let bytes = export("safetensors");
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let shape = |name: &str| st.tensor(name).unwrap().shape().to_vec();
    assert_eq!(shape("conv.0.weight"), [4, 1, 3, 3]);
    assert_eq!(shape("conv.1.weight"), [8, 4, 3, 3]);
    assert_eq!(shape("conv.1.bias"), [8]);
    assert_eq!(shape("conv_norm.1.running_var"), [8]);
    // 28 → 14 → 7 after two poolings: 8 × 7 × 7 inputs to the dense layer, [out, in].
    assert_eq!(shape("hidden.0.weight"), [16, 392]);
    assert_eq!(shape("norm.0.weight"), [16]);
    assert_eq!(shape("output.weight"), [10, 16]);
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert_eq!(meta["model"], "cnn");
    assert_eq!(meta["conv_channels"], "[4,8]");

    let graph = export("onnx");
    for op in [
        "Conv",
        "MaxPool",
        "Flatten",
        "Reshape",
        "BatchNormalization",
        "Gemm",
    ] {
        assert!(
            graph.windows(op.len()).any(|w| w == op.as_bytes()),
            "the ONNX graph has a {op} node"
        );
    }
}

/// One sweep file crosses the two families and the CNN's own keys.
#[test]
fn a_sweep_grids_over_the_model_family_and_the_convolutions() {
    let (tmp, data) = setup();
    std::fs::write(
        tmp.path().join("family.json"),
        r#"{
  "name": "family",
  "base": {"batch_size": 32, "hidden": [16], "init": "he", "eval_every": 0,
           "checkpoint_every": 0, "epochs": 1},
  "trials": [{"model": "mlp"}, {"model": "cnn", "conv_channels": [4]},
             {"model": "cnn", "conv_channels": [4, 8], "batchnorm": true}]
}"#,
    )
    .unwrap();
    let out_dir = tmp.path().join("sweep");
    let out = bin(tmp.path(), &data)
        .args(["sweep", "family.json", "--jobs", "1", "--out", s(&out_dir)])
        .timeout(Duration::from_secs(300))
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    for label in [
        "| relu-he-uniform-1x16 |",
        "| cnn-relu-he-uniform-c4-1x16 |",
    ] {
        assert!(stdout.contains(label), "{label}: {stdout}");
    }
    assert!(
        stdout.contains("cnn-relu-he-uniform-bn-c4x8-1x16"),
        "{stdout}"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("sweep.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["trials"].as_array().unwrap().len(), 3);
}
