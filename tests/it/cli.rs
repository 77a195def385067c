//! End-to-end behaviour of the binary on generated IDX files.

use std::fs;
use std::path::Path;

use crate::common::{
    assert_resume_is_exact, bin, final_weights, metrics, setup, summary, without_time,
    write_dataset,
};
use mnist_train::config::ExperimentConfig;
use mnist_train::model::Model;
use mnist_train::train::checkpoint;
use predicates::prelude::*;

fn small_run<'a>(cmd: &'a mut assert_cmd::Command, run: &Path) -> &'a mut assert_cmd::Command {
    cmd.args(["--init", "he", "--batch-size", "32", "--hidden", "64,32"])
        .args(["--run-dir", run.to_str().unwrap()])
}

#[test]
fn trains_prints_lecture_lines_and_writes_the_run_directory() {
    let (tmp, data) = setup();
    let run = tmp.path().join("run");
    let out = small_run(&mut bin(tmp.path(), &data), &run)
        .args([
            "--epochs",
            "2",
            "--eval-every",
            "5",
            "--checkpoint-every",
            "7",
        ])
        .assert()
        .success();
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("Epoch: ["))
        .collect();
    assert_eq!(lines.len(), 40, "one line per step:\n{stdout}");
    // Lab 11's line closes each epoch: the epoch's mean train columns and its test accuracy.
    let epochs: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("Epoch: 1 ") || l.starts_with("Epoch: 2 "))
        .collect();
    assert_eq!(epochs.len(), 2, "one line per epoch:\n{stdout}");
    let epoch_line = predicates::str::is_match(
        r"^Epoch: 2 loss = \d+\.\d{8} train accuracy = \d\.\d{4} test accuracy = \d\.\d{4}$",
    )
    .unwrap();
    assert!(epoch_line.eval(epochs[1]), "{}", epochs[1]);
    let line = predicates::str::is_match(
        r"^Epoch: \[ 1\] \[   19/   20\], train_loss: \d+\.\d{8}, train_accuracy: \d\.\d{4}, test_accuracy: \d\.\d{4}$",
    )
    .unwrap();
    assert!(line.eval(lines[39]), "{}", lines[39]);
    // Test accuracy on the cadence (every 5th step) and at each epoch end only.
    assert!(lines[3].ends_with("train_accuracy: ") || !lines[3].contains("test_accuracy"));
    assert!(lines[4].contains("test_accuracy"));
    assert!(stdout.contains("final test_accuracy"));

    let m = metrics(&run);
    assert_eq!(m.len(), 40);
    assert_eq!(m[39]["global_step"], 40);
    let evaluated = m
        .iter()
        .filter(|m| m.get("test_accuracy").is_some())
        .count();
    assert_eq!(evaluated, 8, "steps 5,10,15,20(end),25,30,35,40");

    let s = summary(&run);
    assert!(s["final_test_accuracy"].as_f64().unwrap() > 0.9, "{s}");
    assert_eq!(s["steps"], 40);
    assert_eq!(s["test_images"], 200);

    let config: ExperimentConfig =
        serde_json::from_str(&fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config.hidden, vec![64, 32]);
    assert_eq!(config.batch_size, 32);

    // Checkpoints at 7, 14, 20 (epoch end), 21, 28, 35, 40; the newest 3 kept.
    let kept: Vec<usize> = checkpoint::list(&run.join("checkpoints"))
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(kept, vec![28, 35, 40]);
}

#[test]
fn json_mode_prints_only_json_lines() {
    let (tmp, data) = setup();
    let run = tmp.path().join("run");
    let out = small_run(&mut bin(tmp.path(), &data), &run)
        .args(["--json", "--eval-every", "0"])
        .assert()
        .success();
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("every stdout line is JSON"))
        .collect();
    assert_eq!(rows.len(), 20);
    assert!(rows[0]["train_loss"].as_f64().unwrap() > 0.0);
    assert_eq!(rows[0]["lr"], 0.001, "the learning rate in force");
    assert!(rows[19]["test_accuracy"].as_f64().is_some());
    assert!(rows[18].get("test_accuracy").is_none());
}

#[test]
fn resume_mid_epoch_is_exact_plain() {
    assert_resume_is_exact(&[]);
}

#[test]
fn resume_mid_epoch_is_exact_with_dropout() {
    assert_resume_is_exact(&["--dropout", "0.5"]);
}

#[test]
fn resume_mid_epoch_is_exact_with_batchnorm() {
    assert_resume_is_exact(&["--batchnorm"]);
}

/// The hand-written fast paths (sparse first layer, scheduled dense layers, one-pass Adam,
/// host activations) against Burn's own operations (`MNIST_TRAIN_DENSE=1`), on toy data: the
/// same run to float rounding. Only the first layer's sums run in another order, so the
/// weights end a few ulp apart and every accuracy is the same.
#[test]
fn fast_paths_train_as_burns_own_operations() {
    let (tmp, data) = setup();
    for activation in ["relu", "tanh"] {
        let run = |name: &str, dense: bool| {
            let dir = tmp.path().join(format!("{name}-{activation}"));
            let mut cmd = bin(tmp.path(), &data);
            if dense {
                cmd.env("MNIST_TRAIN_DENSE", "1");
            }
            small_run(&mut cmd, &dir)
                .args([
                    "--activation",
                    activation,
                    "--dropout",
                    "0.2",
                    "--eval-every",
                    "5",
                ])
                .assert()
                .success();
            // run.json says which path ran.
            let info: serde_json::Value =
                serde_json::from_str(&fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
            let want = if dense { "burn" } else { "kernel" };
            for op in [
                "first_layer_training",
                "first_layer_evaluation",
                "adam_update",
            ] {
                assert_eq!(info["fast_paths"][op], want, "{name}: {op} in {info}");
            }
            (metrics(&dir), final_weights(&dir))
        };
        let ((fast_m, fast_w), (dense_m, dense_w)) = (run("fast", false), run("dense", true));
        assert_eq!(fast_m.len(), dense_m.len());
        for (f, d) in fast_m.iter().zip(&dense_m) {
            assert_eq!(
                f["test_accuracy"], d["test_accuracy"],
                "{activation}: {f} vs {d}"
            );
            let (fl, dl) = (
                f["train_loss"].as_f64().unwrap(),
                d["train_loss"].as_f64().unwrap(),
            );
            assert!(
                (fl - dl).abs() <= 1e-4 * dl.abs(),
                "{activation}: loss {fl} vs {dl}"
            );
        }
        let norm = dense_w.iter().map(|w| (w * w) as f64).sum::<f64>().sqrt();
        let apart = fast_w
            .iter()
            .zip(&dense_w)
            .map(|(a, b)| ((a - b) * (a - b)) as f64)
            .sum::<f64>()
            .sqrt();
        assert!(
            apart <= 1e-5 * norm,
            "{activation}: weights {apart} apart (norm {norm})"
        );
        // The sums run in another order: equal weights would mean the switch did nothing.
        assert!(
            fast_w != dense_w,
            "{activation}: MNIST_TRAIN_DENSE changed nothing"
        );
    }
}

#[test]
fn same_seed_same_numbers_other_seed_other_numbers() {
    let (tmp, data) = setup();
    let run = |name: &str, seed: &str| {
        let dir = tmp.path().join(name);
        small_run(&mut bin(tmp.path(), &data), &dir)
            .args(["--seed", seed, "--dropout", "0.3", "--eval-every", "0"])
            .assert()
            .success();
        without_time(metrics(&dir))
    };
    let a = run("a", "1");
    assert_eq!(a, run("b", "1"));
    assert_ne!(a, run("c", "2"));
}

#[test]
fn config_file_is_loaded_and_flags_override_it() {
    let (tmp, data) = setup();
    let cfg = tmp.path().join("exp.json");
    fs::write(
        &cfg,
        r#"{"name": "mine", "activation": "tanh", "hidden": [16], "epochs": 3}"#,
    )
    .unwrap();
    let run = tmp.path().join("run");
    bin(tmp.path(), &data)
        .args(["--config", cfg.to_str().unwrap(), "--epochs", "1"])
        .args(["--batch-size", "64", "--eval-every", "0", "--quiet"])
        .args(["--run-dir", run.to_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains("Epoch:").not());
    let saved: ExperimentConfig =
        serde_json::from_str(&fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(saved.activation, mnist_train::config::Activation::Tanh);
    assert_eq!(saved.hidden, vec![16]);
    assert_eq!(saved.epochs, 1, "the flag wins over the file");
    assert_eq!(metrics(&run).len(), 10);
}

#[test]
fn default_run_dir_is_generated_under_runs() {
    let (tmp, data) = setup();
    bin(tmp.path(), &data)
        .args([
            "--hidden",
            "16",
            "--batch-size",
            "64",
            "--eval-every",
            "0",
            "--quiet",
        ])
        .assert()
        .success();
    let runs: Vec<_> = fs::read_dir(tmp.path().join("runs")).unwrap().collect();
    assert_eq!(runs.len(), 1);
    let name = runs[0].as_ref().unwrap().file_name();
    assert!(
        name.to_str()
            .unwrap()
            .starts_with("relu-random-normal0.05-")
    );
}

#[test]
fn eval_reports_the_accuracy_the_run_ended_with() {
    let (tmp, data) = setup();
    let run = tmp.path().join("run");
    small_run(&mut bin(tmp.path(), &data), &run)
        .args(["--eval-every", "0", "--quiet"])
        .assert()
        .success();
    let out = bin(tmp.path(), &data)
        .args(["eval", "--json", "--checkpoint", run.to_str().unwrap()])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(
        v["test_accuracy"].as_f64().unwrap(),
        summary(&run)["final_test_accuracy"].as_f64().unwrap()
    );
    assert_eq!(v["step"], 20);
    bin(tmp.path(), &data)
        .args(["eval", "--checkpoint", run.to_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("test_accuracy: "));
}

/// Runs the binary expecting failure with `code` and a one-line message containing `needle`.
fn assert_fails(cmd: &mut assert_cmd::Command, code: i32, needle: &str) {
    let out = cmd.assert().failure().code(code);
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(stderr.contains(needle), "expected {needle:?} in:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("internal error"), "{stderr}");
}

#[test]
fn bad_input_gets_a_clear_error_and_exit_code() {
    let (tmp, data) = setup();
    let p = tmp.path();
    let file = |name: &str, text: &str| {
        let path = p.join(name);
        fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };

    // Config problems: exit 2.
    let malformed = file("bad.json", "{\"epochs\": 1,");
    assert_fails(bin(p, &data).args(["--config", &malformed]), 2, "bad.json");
    let unknown = file("unknown.json", r#"{"learning_rate": 0.1}"#);
    assert_fails(
        bin(p, &data).args(["--config", &unknown]),
        2,
        "unknown field `learning_rate`",
    );
    let wrong_type = file("type.json", r#"{"hidden": "256"}"#);
    assert_fails(
        bin(p, &data).args(["--config", &wrong_type]),
        2,
        "invalid type",
    );
    assert_fails(
        bin(p, &data).args(["--config", "no-such.json"]),
        2,
        "no-such.json",
    );
    assert_fails(bin(p, &data).args(["--dropout", "1.0"]), 2, "`dropout`");
    assert_fails(bin(p, &data).args(["--lr", "0"]), 2, "`lr`");
    // Negative numbers are values to refuse by name, not unknown flags `-1`.
    assert_fails(bin(p, &data).args(["--lr", "-1"]), 2, "`lr`: -1");
    assert_fails(
        bin(p, &data).args(["--diagnostics-every", "-1"]),
        2,
        "'-1' for '--diagnostics-every",
    );
    assert_fails(
        bin(p, &data).args(["train", "--epochs", "-2"]),
        2,
        "'-2' for '--epochs",
    );
    assert_fails(bin(p, &data).args(["--batch-size", "0"]), 2, "`batch_size`");
    assert_fails(
        bin(p, &data).args(["--train-limit", "10"]),
        2,
        "`batch_size`",
    );
    assert_fails(bin(p, &data).args(["--threads", "0"]), 2, "`threads`");

    // Data problems: exit 3.
    let empty = p.join("empty");
    fs::create_dir_all(&empty).unwrap();
    assert_fails(bin(p, &empty).arg("--offline"), 3, "mnist-train download");
    let broken = p.join("broken");
    let dir = write_dataset(&broken, 100, 20);
    fs::write(
        dir.join("t10k-labels-idx1-ubyte"),
        [0u8, 0, 8, 1, 0, 0, 0, 20],
    )
    .unwrap();
    assert_fails(
        bin(p, &broken).arg("--offline"),
        3,
        "t10k-labels-idx1-ubyte",
    );

    // Checkpoint problems: exit 4.
    assert_fails(
        bin(p, &data).args(["--resume", p.to_str().unwrap()]),
        4,
        "not a run directory",
    );
    assert_fails(
        bin(p, &data).args(["eval", "--checkpoint", p.join("nothing").to_str().unwrap()]),
        4,
        "no such file",
    );
}

#[test]
fn checkpoints_from_another_architecture_or_corrupt_are_refused() {
    let (tmp, data) = setup();
    let run = tmp.path().join("run");
    small_run(&mut bin(tmp.path(), &data), &run)
        .args(["--eval-every", "0", "--quiet", "--max-steps", "5"])
        .assert()
        .success();
    assert_fails(
        bin(tmp.path(), &data).args(["--resume", run.to_str().unwrap(), "--hidden", "128"]),
        4,
        "architecture 784 → 64 → 32 → 10",
    );
    let (_, ckpt) = checkpoint::list(&run.join("checkpoints")).pop().unwrap();
    let model = ckpt.join("model.bpk");
    let bytes = fs::read(&model).unwrap();
    fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    assert_fails(
        bin(tmp.path(), &data).args(["eval", "--checkpoint", ckpt.to_str().unwrap()]),
        4,
        "model.bpk",
    );
    fs::write(ckpt.join("state.json"), "{").unwrap();
    assert_fails(
        bin(tmp.path(), &data).args(["eval", "--checkpoint", ckpt.to_str().unwrap()]),
        4,
        "corrupt checkpoint state",
    );
}

#[test]
fn diverging_loss_stops_with_a_message_and_keeps_the_last_checkpoint() {
    let (tmp, data) = setup();
    let run = tmp.path().join("run");
    // Diverges on the very first step: nothing good to keep, so nothing is written.
    assert_fails(
        bin(tmp.path(), &data).args(["--run-dir", run.to_str().unwrap(), "--init-std", "1e19"]),
        5,
        "the loss became NaN at epoch 0, step 0 (global step 1); training stopped and no \
         checkpoint had been written yet",
    );
    assert!(checkpoint::list(&run.join("checkpoints")).is_empty());

    // Five good steps, then an absurd learning rate: the step after the blow-up fails.
    let run = tmp.path().join("run2");
    small_run(&mut bin(tmp.path(), &data), &run)
        .args([
            "--max-steps",
            "5",
            "--checkpoint-every",
            "1",
            "--eval-every",
            "0",
        ])
        .assert()
        .success();
    assert_fails(
        bin(tmp.path(), &data).args(["--resume", run.to_str().unwrap(), "--lr", "1e30"]),
        5,
        // The lecture's train_loss is taken after the update, so the step whose update blew
        // up the weights is the one that reports it.
        "global step 6); training stopped and the last good checkpoint (step 5) was kept",
    );
    let ckpts = checkpoint::list(&run.join("checkpoints"));
    assert_eq!(
        ckpts.last().unwrap().0,
        5,
        "the last step with finite weights"
    );
    for (_, dir) in ckpts {
        let c = checkpoint::open(&dir).unwrap();
        let device = mnist_train::backend::Backend::default_cpu()
            .device()
            .unwrap();
        let w = c.load_model(Model::new(&c.state.config, &device)).unwrap();
        assert!(w.parameters_flat().iter().all(|v| v.is_finite()));
    }
}

#[test]
fn existing_run_dir_is_not_overwritten() {
    let (tmp, data) = setup();
    let run = tmp.path().join("run");
    small_run(&mut bin(tmp.path(), &data), &run)
        .args(["--eval-every", "0", "--quiet"])
        .assert()
        .success();
    assert_fails(
        small_run(&mut bin(tmp.path(), &data), &run),
        2,
        "already holds a run",
    );
}

#[test]
fn help_documents_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    bin(tmp.path(), tmp.path())
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("Exit codes:"))
        .stdout(predicate::str::contains("--init-std"));
}

/// Defect B: the lecture's train columns are measured after the update — the loss in training
/// mode, the accuracy in inference mode — and measuring them changes nothing in training.
#[test]
fn lecture_train_metrics_are_taken_after_the_update_and_change_no_training() {
    use burn::module::Module;
    use mnist_train::data::batcher::{epoch_order, images_tensor, labels_tensor};
    use mnist_train::data::{DatasetName, MnistData};

    let (tmp, data) = setup();
    let run = |mode: Option<&str>| {
        let dir = tmp.path().join(mode.unwrap_or("default"));
        let mut cmd = bin(tmp.path(), &data);
        small_run(&mut cmd, &dir).args(["--dropout", "0.5", "--batchnorm", "--eval-every", "5"]);
        if let Some(mode) = mode {
            cmd.args(["--train-metrics", mode]);
        }
        cmd.args(["--quiet"]).assert().success();
        dir
    };
    let lecture = run(None);
    let batch = run(Some("batch"));
    assert_eq!(summary(&lecture)["config"]["train_metrics"], "lecture");
    assert!(
        final_weights(&lecture) == final_weights(&batch),
        "measuring must not change training"
    );
    let (ml, mb) = (metrics(&lecture), metrics(&batch));
    for (l, b) in ml.iter().zip(&mb) {
        assert_eq!(l["test_accuracy"], b["test_accuracy"]);
    }
    // With dropout 0.5 the training-mode accuracy of the batch mode reads lower.
    let mean = |m: &[serde_json::Value]| {
        m.iter()
            .map(|r| r["train_accuracy"].as_f64().unwrap())
            .sum::<f64>()
            / m.len() as f64
    };
    assert!(mean(&ml) > mean(&mb), "{} vs {}", mean(&ml), mean(&mb));

    // The last step's train_accuracy is the final model's, in inference mode, on that batch.
    let ckpt = checkpoint::open(&lecture).unwrap();
    let device = mnist_train::backend::Backend::default_cpu()
        .device()
        .unwrap();
    let model = ckpt
        .load_model(Model::new(&ckpt.state.config, &device))
        .unwrap()
        .valid();
    let mnist = MnistData::load_from(DatasetName::Mnist, &data.join("mnist")).unwrap();
    let order = epoch_order(mnist.train.len(), 0, 0);
    let idx = &order[19 * 32..20 * 32];
    let logits = model.forward(images_tensor(&mnist.train.images, idx, &device));
    let correct: i64 =
        mnist_train::model::correct_count(logits, labels_tensor(&mnist.train.labels, idx, &device))
            .into_scalar();
    assert_eq!(
        ml[19]["train_accuracy"].as_f64().unwrap() as f32,
        correct as f32 / 32.0
    );
}

/// Defect C: in a terminal, `mnist-train … > log.txt` put the step lines on the terminal
/// (through the progress bar) and none in the file.
#[test]
fn step_lines_go_to_a_redirected_stdout_when_stderr_is_a_terminal() {
    let (tmp, data) = setup();
    let run = tmp.path().join("run");
    let log = tmp.path().join("log.txt");
    let command = format!(
        "'{}' --data-dir '{}' --init he --batch-size 32 --hidden 32 --eval-every 5 --run-dir '{}' \
         > '{}'",
        env!("CARGO_BIN_EXE_mnist-train"),
        data.display(),
        run.display(),
        log.display()
    );
    // `script` runs the command in a pseudo-terminal: stderr is a terminal, stdout the file.
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("MNIST_TRAIN_THREADS", "1")
        .output()
        .expect("script (util-linux) runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = fs::read_to_string(&log).unwrap();
    let lines = text.lines().filter(|l| l.starts_with("Epoch: [")).count();
    assert_eq!(lines, 20, "every step line in the file:\n{text}");
    assert!(text.contains("final test_accuracy"));
    let terminal = String::from_utf8_lossy(&out.stdout);
    assert!(!terminal.contains("Epoch:"), "no step line on the terminal");
}

/// Defect F: `eval` evaluated only the run's `test_limit` images.
#[test]
fn eval_uses_the_whole_test_set_unless_limited() {
    let (tmp, data) = setup();
    let run = tmp.path().join("run");
    small_run(&mut bin(tmp.path(), &data), &run)
        .args(["--eval-every", "0", "--quiet", "--test-limit", "50"])
        .assert()
        .success();
    assert_eq!(summary(&run)["test_images"], 50);
    let eval = |extra: &[&str]| {
        let out = bin(tmp.path(), &data)
            .args(["eval", "--json", "--checkpoint", run.to_str().unwrap()])
            .args(extra)
            .assert()
            .success();
        serde_json::from_slice::<serde_json::Value>(&out.get_output().stdout).unwrap()
    };
    assert_eq!(eval(&[])["test_images"], 200);
    assert_eq!(eval(&["--test-limit", "20"])["test_images"], 20);
    bin(tmp.path(), &data)
        .args(["eval", "--checkpoint", run.to_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains("on 200 mnist test images"));
}

/// Defect K: `--threads 100000` hung; absurd thread counts are refused at once.
#[test]
fn thread_counts_far_beyond_the_cores_are_refused() {
    let (tmp, data) = setup();
    for args in [
        &["--threads", "100000"][..],
        &["--threads", "0"],
        &["bench", "--threads", "100000"],
        &[
            "sweep",
            "--set",
            "init=he",
            "--threads",
            "100000",
            "--dry-run",
        ],
    ] {
        assert_fails(
            bin(tmp.path(), &data)
                .args(args)
                .timeout(std::time::Duration::from_secs(30)),
            2,
            "`threads`",
        );
    }
}

#[test]
fn completions_parse_in_their_shell_and_the_man_page_renders() {
    let (tmp, data) = setup();
    for (shell, checker) in [
        ("bash", Some(["bash", "-n"])),
        ("zsh", Some(["zsh", "-n"])),
        ("fish", Some(["fish", "--no-execute"])),
        ("powershell", None),
        ("elvish", None),
    ] {
        let out = bin(tmp.path(), &data)
            .args(["completions", shell])
            .assert()
            .success();
        let script = out.get_output().stdout.clone();
        let text = String::from_utf8(script.clone()).unwrap();
        // Spelled `--dropout` by most shells, `-l dropout` by fish.
        for flag in ["dropout", "train-metrics", "resume", "sweep"] {
            assert!(text.contains(flag), "{shell} completion lacks {flag}");
        }
        let Some([prog, arg]) = checker else { continue };
        if std::process::Command::new(prog)
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                prog != "bash",
                "bash is needed to check the bash completion"
            );
            continue; // zsh / fish not installed here
        }
        let path = tmp.path().join(format!("completion.{shell}"));
        fs::write(&path, &script).unwrap();
        let check = std::process::Command::new(prog)
            .args([arg, path.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{shell} rejects its completion: {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
    let out = bin(tmp.path(), &data).arg("man").assert().success();
    let page = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH mnist-train"),
        "{}",
        &page[..80]
    );
    assert!(page.contains("dropout") && page.contains("resume"));
    bin(tmp.path(), &data)
        .args(["completions", "tcsh"])
        .assert()
        .code(2);
}

/// Issue 12, part 1: `eval` explains itself — per-class accuracy, the confusion matrix, and
/// the plots of both, beside the run or in `--out`.
#[test]
fn eval_reports_the_confusion_matrix_and_draws_it() {
    let (tmp, data) = setup();
    let run = tmp.path().join("run");
    small_run(&mut bin(tmp.path(), &data), &run)
        .args(["--eval-every", "0", "--quiet", "--epochs", "2"])
        .assert()
        .success();
    let out = bin(tmp.path(), &data)
        .args(["eval", "--json", "--checkpoint", run.to_str().unwrap()])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let matrix: Vec<Vec<u64>> = serde_json::from_value(v["confusion_matrix"].clone()).unwrap();
    assert_eq!(matrix.len(), 10);
    let total: u64 = matrix.iter().flatten().sum();
    assert_eq!(total, 200, "every test image counted once");
    let correct: u64 = (0..10).map(|c| matrix[c][c]).sum();
    assert_eq!(v["images"], 200);
    assert_eq!(v["accuracy"].as_f64().unwrap(), correct as f64 / 200.0);
    assert_eq!(v["accuracy"], summary(&run)["final_test_accuracy"]);
    let per_class: Vec<f64> = serde_json::from_value(v["per_class_accuracy"].clone()).unwrap();
    for (c, acc) in per_class.iter().enumerate() {
        let row: u64 = matrix[c].iter().sum();
        assert_eq!(*acc, matrix[c][c] as f64 / row as f64);
    }
    for file in ["confusion.svg", "confusion.png", "mistakes.png"] {
        assert!(run.join(file).is_file(), "{file} beside the run");
    }
    let svg = fs::read_to_string(run.join("confusion.svg")).unwrap();
    assert!(svg.contains("predicted class") && svg.contains("true class"));

    let elsewhere = tmp.path().join("report");
    let out = bin(tmp.path(), &data)
        .args(["eval", "--checkpoint", run.to_str().unwrap()])
        .args(["--out", elsewhere.to_str().unwrap()])
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(text.starts_with("test_accuracy: "), "{text}");
    assert!(
        text.contains("| class | images | correct | accuracy |"),
        "{text}"
    );
    assert!(text.contains("true \\ pred"), "{text}");
    assert!(elsewhere.join("mistakes.png").is_file());
}

/// Issue 12, part 3: the exports hold the network in PyTorch's names and layout (checked
/// numerically in Python by scripts/check-exports.sh in CI).
#[test]
fn export_writes_safetensors_in_pytorch_layout_and_an_onnx_model() {
    let (tmp, data) = setup();
    let run = tmp.path().join("run");
    small_run(&mut bin(tmp.path(), &data), &run)
        .args([
            "--eval-every",
            "0",
            "--quiet",
            "--batchnorm",
            "--activation",
            "tanh",
        ])
        .assert()
        .success();
    let st = tmp.path().join("model.safetensors");
    bin(tmp.path(), &data)
        .args([
            "export",
            "--checkpoint",
            run.to_str().unwrap(),
            "--format",
            "safetensors",
        ])
        .args(["--output", st.to_str().unwrap()])
        .assert()
        .success();
    let bytes = fs::read(&st).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let shape = |name: &str| file.tensor(name).unwrap().shape().to_vec();
    assert_eq!(shape("hidden.0.weight"), [64, 784], "[out, in] as PyTorch");
    assert_eq!(shape("hidden.1.weight"), [32, 64]);
    assert_eq!(shape("hidden.1.bias"), [32]);
    assert_eq!(shape("norm.0.running_var"), [64]);
    assert_eq!(shape("output.weight"), [10, 32]);
    let info = meta.metadata().as_ref().unwrap();
    assert_eq!(info["activation"], "tanh");
    assert_eq!(info["hidden"], "[64,32]");
    assert_eq!(info["batchnorm"], "true");
    // The first layer's weight transposed from the checkpoint's [in, out].
    let w = final_weights(&run);
    let exported: Vec<f32> = file
        .tensor("hidden.0.weight")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(exported[1], w[64], "row 0, column 1 = Burn's [1][0]");

    let onnx = tmp.path().join("model.onnx");
    bin(tmp.path(), &data)
        .args([
            "export",
            "--checkpoint",
            run.to_str().unwrap(),
            "--format",
            "onnx",
        ])
        .args(["-o", onnx.to_str().unwrap()])
        .assert()
        .success();
    let model = fs::read(&onnx).unwrap();
    assert_eq!(model[..2], [0x08, 8], "ModelProto.ir_version = 8");
    let text = String::from_utf8_lossy(&model);
    for op in [
        "Gemm",
        "BatchNormalization",
        "Tanh",
        "logits",
        "hidden.0.weight",
    ] {
        assert!(text.contains(op), "{op} in the ONNX graph");
    }
    assert_fails(
        bin(tmp.path(), &data)
            .args(["export", "--checkpoint", "nowhere", "--format", "onnx"])
            .args(["-o", "x.onnx"]),
        4,
        "nowhere",
    );
}
