//! Smoke test on the real MNIST files, when they are available (CI: ../shared/data).

use std::path::PathBuf;

use crate::common::shared_data;

/// 10,000 training images, three epochs (234 steps), test accuracy on 2,000 test images every
/// 20 steps. One epoch of this subset reaches only about 0.89, too close to the bar.
/// Trains the subset run below into `run`.
fn train_subset(data: &std::path::Path, cwd: &std::path::Path, run: &std::path::Path) {
    crate::common::bin(cwd, data)
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
}

#[test]
fn trains_above_90_percent_on_a_real_mnist_subset() {
    let Some(data) = shared_data("the real-data tests") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    train_subset(&data, tmp.path(), &run);
    let s = crate::common::summary(&run);
    let acc = s["final_test_accuracy"].as_f64().unwrap();
    eprintln!("real MNIST subset: final test accuracy {acc:.4}");
    assert!(acc > 0.9, "test accuracy {acc} should exceed 0.9: {s}");
    assert_eq!(s["steps"], 234, "3 × (10,000 / 128 full batches)");
    assert_eq!(s["test_images"], 2000);
}

/// Issue 12, part 2: `predict` on image files gets real test digits right — as saved, drawn
/// dark on white (inverted) and enlarged on a larger canvas — and refuses bad files one line
/// each.
#[test]
fn predict_classifies_digits_from_image_files() {
    use image::{GrayImage, Luma};
    let Some(data) = shared_data("the real-data tests") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    train_subset(&data, tmp.path(), &run);

    let mnist = mnist_train::data::MnistData::load_from(
        mnist_train::data::DatasetName::Mnist,
        &data.join("mnist"),
    )
    .unwrap();
    let files = tmp.path().join("digits");
    std::fs::create_dir_all(&files).unwrap();
    let n = 30;
    let mut labels = Vec::new();
    for i in 0..n {
        let px = &mnist.test.images[i * 784..(i + 1) * 784];
        let at = |x: u32, y: u32| px[(y * 28 + x) as usize];
        labels.push(mnist.test.labels[i] as u64);
        GrayImage::from_fn(28, 28, |x, y| Luma([at(x, y)]))
            .save(files.join(format!("{i:02}-plain.png")))
            .unwrap();
        GrayImage::from_fn(28, 28, |x, y| Luma([255 - at(x, y)]))
            .save(files.join(format!("{i:02}-inverted.png")))
            .unwrap();
        // Three times larger, dark on white, off centre on a 120×100 page.
        GrayImage::from_fn(120, 100, |x, y| {
            let (sx, sy) = (x.wrapping_sub(10) / 3, y.wrapping_sub(5) / 3);
            Luma([if sx < 28 && sy < 28 {
                255 - at(sx, sy)
            } else {
                255
            }])
        })
        .save(files.join(format!("{i:02}-large.png")))
        .unwrap();
    }
    std::fs::write(files.join("zz-not-an-image.png"), b"hello").unwrap();
    GrayImage::from_pixel(40, 40, Luma([255]))
        .save(files.join("zz-blank.png"))
        .unwrap();

    let seen = tmp.path().join("seen");
    let out = crate::common::bin(tmp.path(), &data)
        .args(["predict", "--json", "--checkpoint", run.to_str().unwrap()])
        .arg(&files)
        .args(["--save-preprocessed", seen.to_str().unwrap()])
        .assert()
        // Two of the files are not digits: the others are classified, and the exit code
        // tells a script that not every input was.
        .code(3);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("zz-not-an-image.png: not a readable image"),
        "{stderr}"
    );
    assert!(stderr.contains("zz-blank.png: no digit found"), "{stderr}");
    assert!(stderr.contains("2 of "), "names how many failed: {stderr}");
    assert!(!stderr.contains("internal error"), "{stderr}");
    let rows: Vec<serde_json::Value> = String::from_utf8(out.get_output().stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3 * n);
    for kind in ["plain", "inverted", "large"] {
        let right = rows
            .iter()
            .filter(|r| {
                r["file"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("-{kind}.png"))
            })
            .filter(|r| {
                let f = std::path::Path::new(r["file"].as_str().unwrap());
                // Files are named `NN-kind.png`, NN the test index.
                let i: usize = f.file_name().unwrap().to_str().unwrap()[..2]
                    .parse()
                    .unwrap();
                r["prediction"].as_u64() == Some(labels[i])
            })
            .count();
        // The model scores about 93% on the test set; re-centring costs a little.
        assert!(right >= n * 8 / 10, "{kind}: {right} of {n} right");
        let p: Vec<f64> = serde_json::from_value(rows[0]["probabilities"].clone()).unwrap();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-3);
    }
    assert!(seen.join("00-large.png").is_file(), "what the network saw");

    // Test-set images by index, and a file list where nothing is readable: exit 3.
    let out = crate::common::bin(tmp.path(), &data)
        .args([
            "predict",
            "--checkpoint",
            run.to_str().unwrap(),
            "--test-index",
            "0,1",
        ])
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(
        text.starts_with(&format!("test image 0 (label {})", labels[0])),
        "{text}"
    );
    crate::common::bin(tmp.path(), &data)
        .args(["predict", "--checkpoint", run.to_str().unwrap()])
        .arg(files.join("zz-not-an-image.png"))
        .assert()
        .code(3);
}

/// Issue 9: evaluation computes the first layer from the test images' lit pixels only
/// (`mnist_train::kernel`), summing in another order than Burn's dense product, and the hidden
/// activations with vectorized functions instead of Burn's. On the final checkpoint of every
/// config shipped in configs/, and of a short run with each other activation, the fast path
/// and Burn's (`MNIST_TRAIN_DENSE=1`) must score the full test set within one image of each
/// other, and training's own evaluation must be the fast one.
#[test]
fn fast_evaluation_scores_every_shipped_config_as_the_dense_path() {
    let Some(data) = shared_data("the real-data tests") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let configs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&configs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut runs: Vec<(String, Vec<String>)> = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Sweep files, not configs; and the CNN's, which has no lit-pixel path (its own
        // smoke test is in cnn.rs: the full lab would take a quarter of an hour here).
        if text.contains("\"trials\"") || text.contains("\"grid\"") || text.contains("\"cnn\"") {
            continue;
        }
        let name = file.file_stem().unwrap().to_str().unwrap().to_string();
        runs.push((name, vec!["--config".into(), file.display().to_string()]));
    }
    let shipped = runs.len();
    for activation in ["tanh", "elu", "selu", "leaky-relu"] {
        runs.push((
            activation.to_string(),
            [
                "--activation",
                activation,
                "--init",
                "xavier",
                "--train-limit",
                "10000",
            ]
            .map(String::from)
            .to_vec(),
        ));
    }
    let mut checked = 0;
    for (name, flags) in runs {
        let run = tmp.path().join(&name);
        crate::common::bin(tmp.path(), &data)
            .env("MNIST_TRAIN_THREADS", "2")
            .args(["--offline", "--quiet"])
            .args(&flags)
            .args(["--eval-every", "0", "--diagnostics-every", "0"])
            .args(["--run-dir", run.to_str().unwrap()])
            .assert()
            .success();
        let accuracy = |dense: bool| {
            let mut cmd = crate::common::bin(tmp.path(), &data);
            cmd.env("MNIST_TRAIN_THREADS", "2").args([
                "eval",
                "--offline",
                "--json",
                "--checkpoint",
                run.to_str().unwrap(),
            ]);
            if dense {
                cmd.env("MNIST_TRAIN_DENSE", "1");
            }
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            v["accuracy"].as_f64().unwrap()
        };
        let (sparse, dense) = (accuracy(false), accuracy(true));
        let images_apart = ((sparse - dense) * 10_000.0).abs().round();
        eprintln!("{name}: fast path {sparse:.4}, dense {dense:.4}");
        assert!(
            images_apart <= 1.0,
            "{name}: sparse {sparse}, dense {dense}"
        );
        let trained = crate::common::summary(&run)["final_test_accuracy"]
            .as_f64()
            .unwrap();
        assert_eq!(trained, sparse, "{name}: training evaluates as eval does");
        checked += 1;
    }
    assert!(shipped >= 8, "only {shipped} shipped configs found");
    assert_eq!(checked, shipped + 4);
}

/// Issue 9: on the CPU, a training step computes the first layer's product and its weight
/// gradient from the batch's lit pixels (`src/kernel.rs`). That trains the same network as
/// Burn's dense products (`MNIST_TRAIN_DENSE=1`), up to the order of the product's sums: the
/// first step's loss agrees to rounding, the final weights to a thousandth of their norm and
/// the final accuracy to 0.2 points (measured: 2e-7 of the norm, the same accuracy).
/// And training stays reproducible: with one thread or two, the weights come out bit-identical.
#[test]
fn sparse_training_trains_as_the_dense_products_do() {
    let Some(data) = shared_data("the real-data tests") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let train = |name: &str, threads: &str, dense: bool| {
        let run = tmp.path().join(name);
        let mut cmd = crate::common::bin(tmp.path(), &data);
        cmd.env("MNIST_TRAIN_THREADS", threads)
            .args(["--offline", "--init", "he", "--train-limit", "20000"])
            .args(["--eval-every", "0", "--diagnostics-every", "0", "--quiet"])
            .args(["--run-dir", run.to_str().unwrap()]);
        if dense {
            cmd.env("MNIST_TRAIN_DENSE", "1");
        }
        cmd.assert().success();
        run
    };
    let sparse = train("sparse", "2", false);
    let again = train("sparse-1-thread", "1", false);
    let dense = train("dense", "2", true);

    assert_eq!(
        crate::common::final_weights(&sparse),
        crate::common::final_weights(&again),
        "one thread or two, the same weights"
    );
    assert_eq!(
        crate::common::without_time(crate::common::metrics(&sparse)),
        crate::common::without_time(crate::common::metrics(&again))
    );

    let (s, d) = (
        crate::common::metrics(&sparse),
        crate::common::metrics(&dense),
    );
    assert_eq!(s.len(), d.len());
    let loss = |m: &serde_json::Value| m["train_loss"].as_f64().unwrap();
    let first = (loss(&s[0]) - loss(&d[0])).abs() / loss(&d[0]);
    assert!(first < 1e-5, "step 1: {} vs {}", loss(&s[0]), loss(&d[0]));
    let accuracy = |run: &std::path::Path| {
        crate::common::summary(run)["final_test_accuracy"]
            .as_f64()
            .unwrap()
    };
    let (a_sparse, a_dense) = (accuracy(&sparse), accuracy(&dense));
    eprintln!("20,000 images, one epoch: sparse {a_sparse:.4}, dense {a_dense:.4}");
    assert!(a_sparse > 0.93, "{a_sparse}");
    assert!(
        (a_sparse - a_dense).abs() <= 0.002,
        "sparse {a_sparse}, dense {a_dense}"
    );
    let (ws, wd) = (
        crate::common::final_weights(&sparse),
        crate::common::final_weights(&dense),
    );
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let diff: Vec<f32> = ws.iter().zip(&wd).map(|(a, b)| a - b).collect();
    let apart = norm(&diff) / norm(&wd);
    eprintln!("weights apart: {apart:.2e} of their norm");
    assert!(
        apart > 0.0,
        "the sums run in another order than the dense product's"
    );
    assert!(apart < 1e-3, "{apart}");
}
