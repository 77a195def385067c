//! Reliability, end to end through the binary: bad input of every kind gets one clear line and
//! the documented exit code (never a panic); Ctrl-C / SIGTERM stop gracefully and resume; two
//! trainers never share a run directory.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::{metrics, summary, write_dataset};
use mnist_train::data::idx::{encode_images, encode_labels};
use mnist_train::train::checkpoint;

const BIN: &str = env!("CARGO_BIN_EXE_mnist-train");

/// The binary with a clean environment; data only from explicit `--data-dir` flags.
fn cmd(cwd: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(cwd)
        .env_remove("MNIST_DATA_DIR")
        .env_remove("MNIST_TRAIN_BACKEND")
        .env_remove("RUST_BACKTRACE")
        .env("MNIST_TRAIN_THREADS", "1")
        .stdin(Stdio::null());
    c
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// One bad-input case: arguments, the exit code the README documents, and what the one-line
/// message must say (what is wrong, where, how to fix it).
struct Case {
    name: &'static str,
    args: Vec<String>,
    code: i32,
    needles: Vec<String>,
    /// clap's own usage errors: a multi-line block that starts with `error:` and ends with a
    /// pointer to `--help`.
    clap: bool,
}

fn case(name: &'static str, args: &[&str], code: i32, needles: &[&str]) -> Case {
    Case {
        name,
        args: args.iter().map(|a| a.to_string()).collect(),
        code,
        needles: needles.iter().map(|n| n.to_string()).collect(),
        clap: false,
    }
}

/// Lines the trainer prints on stderr before an error that comes from inside the training
/// loop (a checkpoint refused on resume); everything else must be the error line alone.
fn is_note(line: &str) -> bool {
    ["training ", "resuming ", "from checkpoint "]
        .iter()
        .any(|p| line.starts_with(p))
}

/// Runs `c` and returns a description of every way it broke the promise (empty when kept).
fn check_case(cwd: &Path, c: &Case) -> Vec<String> {
    let out = cmd(cwd).args(&c.args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut problems = Vec::new();
    if out.status.code() != Some(c.code) {
        problems.push(format!("exit {:?}, expected {}", out.status.code(), c.code));
    }
    for bad in [
        "panicked",
        "internal error",
        "RUST_BACKTRACE",
        "stack backtrace",
    ] {
        if stderr.contains(bad) {
            problems.push(format!("stderr contains {bad:?}"));
        }
    }
    for needle in &c.needles {
        if !stderr.contains(needle.as_str()) {
            problems.push(format!("stderr lacks {needle:?}"));
        }
    }
    // Shown with `--nocapture`: the message each case gets.
    println!(
        "[{}] exit {:?}: {}",
        c.name,
        out.status.code(),
        stderr.trim_end()
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    if c.clap {
        if !lines.first().is_some_and(|l| l.starts_with("error: ")) || !stderr.contains("--help") {
            problems.push("not a clap usage error".into());
        }
    } else {
        let errors: Vec<&&str> = lines.iter().filter(|l| l.starts_with("error: ")).collect();
        if errors.len() != 1 || !lines.last().is_some_and(|l| l.starts_with("error: ")) {
            problems.push("stderr does not end in exactly one `error: ` line".into());
        }
        if let Some(extra) = lines[..lines.len().saturating_sub(1)]
            .iter()
            .find(|l| !is_note(l))
        {
            problems.push(format!("unexpected stderr line {extra:?}"));
        }
    }
    if problems.is_empty() {
        return problems;
    }
    vec![format!(
        "case `{}` ({}): {}\n--- stderr:\n{stderr}",
        c.name,
        c.args.join(" "),
        problems.join("; ")
    )]
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A toy dataset under `root/<name>/mnist/` with one file replaced by `bytes` (written under
/// `file`, which may end in `.gz`, the raw file of that name removed). Returns the data dir.
fn broken_dataset(root: &Path, name: &str, file: &str, bytes: &[u8]) -> PathBuf {
    let data = root.join(name);
    let dir = write_dataset(&data, 100, 20);
    fs::remove_file(dir.join(file.trim_end_matches(".gz"))).unwrap();
    fs::write(dir.join(file), bytes).unwrap();
    data
}

const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

fn pixels(n: usize) -> Vec<u8> {
    (0..n * 784).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn every_kind_of_bad_input_gets_one_clear_line_and_its_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = root.join("data");
    write_dataset(&data, 640, 100);
    let d = s(&data);
    let file = |name: &str, text: &[u8]| {
        let path = root.join(name);
        fs::write(&path, text).unwrap();
        s(&path)
    };
    // Every training case starts from these; all of them fail before the first step.
    let train = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["--offline", "--data-dir", &d, "--quiet"]
            .iter()
            .map(|a| a.to_string())
            .collect();
        v.extend(extra.iter().map(|a| a.to_string()));
        v
    };
    let t = |name, extra: &[&str], code, needles: &[&str]| Case {
        args: train(extra),
        ..case(name, &[], code, needles)
    };

    // A finished small run and one of another architecture, for the checkpoint cases.
    let run = root.join("run");
    let other = root.join("other");
    for (dir, hidden) in [(&run, "16"), (&other, "8,8")] {
        let st = cmd(root)
            .args(train(&["--hidden", hidden, "--batch-size", "64"]))
            .args(["--eval-every", "0", "--checkpoint-every", "2"])
            .args(["--max-steps", "5", "--run-dir", &s(dir)])
            .status()
            .unwrap();
        assert!(st.success());
    }
    let ckpt = checkpoint::list(&run.join("checkpoints")).pop().unwrap().1;
    let ckpt_copy = |name: &str| {
        let dst = root.join(name);
        fs::create_dir_all(&dst).unwrap();
        for f in ["model.bpk", "optimizer.bpk", "state.json"] {
            fs::copy(ckpt.join(f), dst.join(f)).unwrap();
        }
        dst
    };
    let truncated_model = ckpt_copy("ckpt-truncated");
    let bytes = fs::read(truncated_model.join("model.bpk")).unwrap();
    fs::write(truncated_model.join("model.bpk"), &bytes[..bytes.len() / 3]).unwrap();
    let garbage_model = ckpt_copy("ckpt-garbage");
    fs::write(garbage_model.join("model.bpk"), vec![0xA5u8; bytes.len()]).unwrap();
    let empty_model = ckpt_copy("ckpt-empty");
    fs::write(empty_model.join("model.bpk"), b"").unwrap();
    let foreign_model = ckpt_copy("ckpt-foreign");
    let other_ckpt = checkpoint::list(&other.join("checkpoints"))
        .pop()
        .unwrap()
        .1;
    fs::copy(
        other_ckpt.join("model.bpk"),
        foreign_model.join("model.bpk"),
    )
    .unwrap();
    let bad_state = ckpt_copy("ckpt-bad-state");
    fs::write(bad_state.join("state.json"), "{\"format\": 1, \"glob").unwrap();
    let future_state = ckpt_copy("ckpt-future");
    let text = fs::read_to_string(future_state.join("state.json")).unwrap();
    fs::write(
        future_state.join("state.json"),
        text.replacen("\"format\": 1", "\"format\": 99", 1),
    )
    .unwrap();
    // A run whose newest checkpoint lost its optimizer state half-way.
    let run_bad_optim = root.join("run-bad-optim");
    fs::create_dir_all(run_bad_optim.join("checkpoints")).unwrap();
    fs::copy(run.join("config.json"), run_bad_optim.join("config.json")).unwrap();
    let dst = run_bad_optim.join("checkpoints").join("step-00000005");
    fs::create_dir_all(&dst).unwrap();
    for f in ["model.bpk", "state.json"] {
        fs::copy(ckpt.join(f), dst.join(f)).unwrap();
    }
    let optim = fs::read(ckpt.join("optimizer.bpk")).unwrap();
    fs::write(dst.join("optimizer.bpk"), &optim[..optim.len() / 2]).unwrap();
    // A run whose config.json was damaged.
    let run_bad_config = root.join("run-bad-config");
    fs::create_dir_all(&run_bad_config).unwrap();
    fs::write(run_bad_config.join("config.json"), "{\"hidden\": [16],").unwrap();
    // Run directories that cannot be written: below a regular file (root ignores mode bits,
    // not file types), and one whose checkpoints/ is a file, so the first save fails.
    let blocker = file("blocker", b"x");
    let under_file = format!("{blocker}/run");
    let ckpt_is_file = root.join("ckpt-is-file");
    fs::create_dir_all(&ckpt_is_file).unwrap();
    fs::write(ckpt_is_file.join("checkpoints"), b"x").unwrap();

    let gz_not_gzip = broken_dataset(
        root,
        "gz-not-gzip",
        &format!("{TRAIN_LABELS}.gz"),
        &encode_labels(&[1; 100]),
    );
    let good_gz = gzip(&encode_images(&pixels(100), 100));
    let gz_truncated = broken_dataset(
        root,
        "gz-truncated",
        &format!("{TRAIN_IMAGES}.gz"),
        &good_gz[..good_gz.len() / 2],
    );
    let mut flipped = good_gz.clone();
    let n = flipped.len();
    for b in &mut flipped[12..(n - 12).min(40)] {
        *b ^= 0x5a;
    }
    let gz_corrupt = broken_dataset(root, "gz-corrupt", &format!("{TRAIN_IMAGES}.gz"), &flipped);
    let truncated = encode_images(&pixels(100), 100);
    let truncated_idx = broken_dataset(
        root,
        "truncated",
        TRAIN_IMAGES,
        &truncated[..truncated.len() - 500],
    );
    let mut trailing = encode_labels(&[3; 100]);
    trailing.extend_from_slice(b"junk");
    let trailing = broken_dataset(root, "trailing", TRAIN_LABELS, &trailing);
    let wrong_magic = broken_dataset(root, "magic", TRAIN_IMAGES, &encode_labels(&[1; 100]));
    let mut dims = encode_images(&pixels(100), 100);
    dims[11] = 32; // rows = 32
    let wrong_dims = broken_dataset(root, "dims", TRAIN_IMAGES, &dims);
    let count_mismatch = broken_dataset(root, "counts", TRAIN_LABELS, &encode_labels(&[1; 99]));
    let mut labels = vec![4u8; 20];
    labels[13] = 12;
    let bad_label = broken_dataset(root, "label", TEST_LABELS, &encode_labels(&labels));
    let empty_file = broken_dataset(root, "empty-file", TEST_LABELS, b"");
    let short_header = broken_dataset(root, "short", TRAIN_IMAGES, &[0, 0, 8, 3, 0]);
    let mut absurd = encode_labels(&[]);
    absurd[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    let absurd = broken_dataset(root, "absurd", TEST_LABELS, &absurd);
    let empty_dir = root.join("empty-dir");
    fs::create_dir_all(&empty_dir).unwrap();

    let malformed = file("malformed.json", b"{\"epochs\": 1,");
    let empty_json = file("empty.json", b"");
    let not_object = file("array.json", b"[1, 2]");
    let unknown = file("unknown.json", br#"{"learning_rate": 0.1}"#);
    let wrong_type = file("type.json", br#"{"hidden": "256"}"#);
    let negative = file("negative.json", br#"{"epochs": -1}"#);
    let bad_enum = file("enum.json", br#"{"activation": "swish"}"#);
    let no_hidden = file("no-hidden.json", br#"{"hidden": []}"#);
    let bad_name = file("name.json", br#"{"name": "../escape"}"#);
    let not_utf8 = file("latin1.json", b"{\"name\": \"caf\xe9\"}");
    let dir_as_config = s(&data);

    let data_case = |name, dir: &Path, needles: &[&str]| Case {
        args: vec!["--offline".into(), "--data-dir".into(), s(dir)],
        ..case(name, &[], 3, needles)
    };
    let eval = |name, path: &Path, needles: &[&str]| Case {
        args: [
            "eval",
            "--offline",
            "--data-dir",
            &d,
            "--checkpoint",
            &s(path),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect(),
        ..case(name, &[], 4, needles)
    };
    let resume = |name, path: &Path, extra: &[&str], code, needles: &[&str]| {
        let mut args = vec!["--resume", path.to_str().unwrap()];
        args.extend_from_slice(extra);
        Case {
            args: train(&args),
            ..case(name, &[], code, needles)
        }
    };

    let cases = vec![
        // Config files and flags: exit 2, naming the file or key and what is allowed.
        t(
            "malformed JSON",
            &["--config", &malformed],
            2,
            &["malformed.json", "EOF while parsing", "line 1"],
        ),
        t(
            "empty config file",
            &["--config", &empty_json],
            2,
            &["empty.json", "EOF"],
        ),
        t(
            "config is not an object",
            &["--config", &not_object],
            2,
            &["array.json", "invalid type"],
        ),
        t(
            "config not UTF-8",
            &["--config", &not_utf8],
            2,
            &["latin1.json", "cannot read"],
        ),
        t(
            "unknown config key",
            &["--config", &unknown],
            2,
            &["unknown field `learning_rate`", "expected one of", "`lr`"],
        ),
        t(
            "wrong type",
            &["--config", &wrong_type],
            2,
            &[
                "type.json",
                "invalid type: string \"256\"",
                "expected a sequence",
            ],
        ),
        t(
            "negative count",
            &["--config", &negative],
            2,
            &["negative.json", "invalid value: integer `-1`"],
        ),
        t(
            "unknown enum value",
            &["--config", &bad_enum],
            2,
            &["unknown variant `swish`", "relu"],
        ),
        t(
            "missing config file",
            &["--config", "no-such.json"],
            2,
            &["no-such.json", "cannot read", "No such file"],
        ),
        t(
            "config is a directory",
            &["--config", &dir_as_config],
            2,
            &["cannot read"],
        ),
        t(
            "empty hidden layers",
            &["--config", &no_hidden],
            2,
            &["`hidden`", "at least one hidden layer"],
        ),
        t(
            "hidden layer of 0",
            &["--hidden", "64,0"],
            2,
            &["`hidden`", "layer of 0", "1..=65536"],
        ),
        t(
            "dropout 1.0",
            &["--dropout", "1.0"],
            2,
            &["`dropout`: 1", "[0, 1)"],
        ),
        t(
            "negative dropout",
            &["--dropout=-0.1"],
            2,
            &["`dropout`", "[0, 1)"],
        ),
        t("lr 0", &["--lr", "0"], 2, &["`lr`: 0", "finite number > 0"]),
        t(
            "negative lr",
            &["--lr=-0.5"],
            2,
            &["`lr`: -0.5", "finite number > 0"],
        ),
        t("lr NaN", &["--lr", "NaN"], 2, &["`lr`: NaN"]),
        t("lr infinite", &["--lr", "inf"], 2, &["`lr`: inf"]),
        t(
            "momentum 1",
            &["--optimizer", "momentum", "--momentum", "1"],
            2,
            &["`momentum`: 1", "[0, 1)"],
        ),
        t(
            "negative rho",
            &["--rho=-0.5"],
            2,
            &["`rho`: -0.5", "[0, 1)"],
        ),
        t(
            "epsilon 0",
            &["--epsilon", "0"],
            2,
            &["`epsilon`: 0", "finite number > 0"],
        ),
        t(
            "old adam-epsilon flag",
            &["--adam-epsilon=-1"],
            2,
            &["`epsilon`: -1"],
        ),
        t(
            "negative weight decay",
            &["--weight-decay=-0.1"],
            2,
            &["`weight_decay`: -0.1", ">= 0"],
        ),
        t(
            "grad clip 0",
            &["--grad-clip", "0"],
            2,
            &["`grad_clip`: 0", "finite number > 0"],
        ),
        t(
            "decay rate 0",
            &["--lr-decay-rate", "0"],
            2,
            &["`lr_decay_rate`: 0", "(0, 1]"],
        ),
        t(
            "decay steps 0",
            &["--lr-decay-steps", "0"],
            2,
            &["`lr_decay_steps`: 0", ">= 1"],
        ),
        t(
            "negative lr_min",
            &["--lr-min=-1"],
            2,
            &["`lr_min`: -1", ">= 0"],
        ),
        t(
            "cosine floor above lr",
            &["--lr-schedule", "cosine", "--lr-min", "0.1"],
            2,
            &["`lr_min`: 0.1", "must not exceed lr"],
        ),
        t(
            "lr above 1 with a warm-up",
            &["--lr", "2", "--lr-warmup-steps", "10"],
            2,
            &["`lr`: 2", "at most 1"],
        ),
        t(
            "validation split as large as the data",
            &["--valid-split", "640"],
            2,
            &["`valid_split`: 640", "less than the 640 training images"],
        ),
        t(
            "early stopping without a validation split",
            &["--early-stopping", "3"],
            2,
            &["`early_stopping`: 3", "valid_split"],
        ),
        t(
            "early stopping 0",
            &["--valid-split", "64", "--early-stopping", "0"],
            2,
            &["`early_stopping`: 0", ">= 1"],
        ),
        Case {
            clap: true,
            ..t(
                "unknown optimizer",
                &["--optimizer", "adamax"],
                2,
                &["invalid value 'adamax'", "nesterov"],
            )
        },
        Case {
            clap: true,
            ..t(
                "unknown schedule",
                &["--lr-schedule", "linear"],
                2,
                &["invalid value 'linear'", "cosine"],
            )
        },
        Case {
            clap: true,
            ..t(
                "negative warm-up",
                &["--lr-warmup-steps=-1"],
                2,
                &["invalid value '-1'", "--lr-warmup-steps"],
            )
        },
        t("init_std 0", &["--init-std", "0"], 2, &["`init_std`"]),
        t(
            "batch 0",
            &["--batch-size", "0"],
            2,
            &["`batch_size`: 0", "1..=60000"],
        ),
        t(
            "batch larger than the data",
            &["--batch-size", "1000"],
            2,
            &["`batch_size`: 1000", "640 training images"],
        ),
        t(
            "batch larger than the limited data",
            &["--train-limit", "10"],
            2,
            &["`batch_size`: 128", "10 training images"],
        ),
        t(
            "hidden layer too large",
            &["--hidden", "100000"],
            2,
            &["`hidden`", "1..=65536"],
        ),
        t(
            "net too large for memory",
            &["--hidden", "65536,65536"],
            2,
            &["`hidden`", "4347133962 parameters", "at most 500000000"],
        ),
        t("epochs 0", &["--epochs", "0"], 2, &["`epochs`: 0", ">= 1"]),
        t(
            "keep 0 checkpoints",
            &["--keep-checkpoints", "0"],
            2,
            &["`keep_checkpoints`"],
        ),
        t(
            "train limit 0",
            &["--train-limit", "0"],
            2,
            &["`train_limit`"],
        ),
        t(
            "threads 0",
            &["--threads", "0"],
            2,
            &["`threads`", "must be in 1..="],
        ),
        t(
            "threads far beyond the cores",
            &["--threads", "100000"],
            2,
            &["`threads`", "one per core is fastest"],
        ),
        t(
            "name that escapes runs/",
            &["--config", &bad_name],
            2,
            &["`name`", "letters, digits"],
        ),
        t(
            "--config with --resume",
            &["--config", &malformed, "--resume", &s(&run)],
            2,
            &["--config cannot be combined with --resume"],
        ),
        t(
            "existing run dir",
            &["--run-dir", &s(&run)],
            2,
            &["already holds a run", "--resume"],
        ),
        Case {
            clap: true,
            ..t(
                "unknown flag",
                &["--learning-rate", "0.1"],
                2,
                &["unexpected argument '--learning-rate'", "--lr"],
            )
        },
        Case {
            clap: true,
            ..t(
                "not a number",
                &["--lr", "fast"],
                2,
                &["invalid value 'fast'"],
            )
        },
        Case {
            clap: true,
            ..t(
                "unknown activation flag",
                &["--activation", "swish"],
                2,
                &["invalid value 'swish'", "relu"],
            )
        },
        // Data: exit 3, naming the file and the fix.
        data_case(
            "missing data directory",
            &root.join("nowhere"),
            &[
                "dataset not found",
                "does not exist",
                "mnist-train download",
            ],
        ),
        data_case(
            "data directory without the files",
            &empty_dir,
            &["has none of the files", "mnist-train download"],
        ),
        data_case(
            "truncated IDX",
            &truncated_idx,
            &[TRAIN_IMAGES, "truncated", "download it again"],
        ),
        data_case(
            "trailing bytes",
            &trailing,
            &[TRAIN_LABELS, "trailing bytes"],
        ),
        data_case(
            "wrong magic",
            &wrong_magic,
            &[TRAIN_IMAGES, "magic number 2049", "looks like a label file"],
        ),
        data_case(
            "wrong dimensions",
            &wrong_dims,
            &[TRAIN_IMAGES, "32x28", "expected 28x28"],
        ),
        data_case(
            "image/label count mismatch",
            &count_mismatch,
            &["100 images", "99 labels", TRAIN_LABELS],
        ),
        data_case(
            "label > 9",
            &bad_label,
            &[TEST_LABELS, "label 12 at index 13", "0-9"],
        ),
        data_case(
            "a .gz that is not gzip",
            &gz_not_gzip,
            &[TRAIN_LABELS, "not the gzip signature"],
        ),
        data_case(
            "truncated gzip",
            &gz_truncated,
            &[TRAIN_IMAGES, "truncated gzip", "download it again"],
        ),
        data_case(
            "corrupt gzip",
            &gz_corrupt,
            &[TRAIN_IMAGES, "not valid gzip"],
        ),
        data_case(
            "empty file",
            &empty_file,
            &[TEST_LABELS, "is empty (0 bytes)"],
        ),
        data_case(
            "header too short",
            &short_header,
            &[TRAIN_IMAGES, "too short"],
        ),
        data_case(
            "absurd item count",
            &absurd,
            &[TEST_LABELS, "claims 4294967295 items"],
        ),
        // Checkpoints: exit 4, naming the file.
        resume(
            "--resume of a directory that is not a run",
            &data,
            &[],
            4,
            &["not a run directory", "runs/<name>"],
        ),
        resume(
            "--resume of a missing directory",
            &root.join("gone"),
            &[],
            4,
            &["not a run directory"],
        ),
        resume(
            "--resume with another architecture",
            &run,
            &["--hidden", "128"],
            4,
            &["architecture 784 → 16 → 10", "784 → 128 → 10"],
        ),
        resume(
            "--resume with a truncated optimizer state",
            &run_bad_optim,
            &[],
            4,
            &["optimizer.bpk", "cannot load optimizer state"],
        ),
        resume(
            "--resume of a run with a damaged config",
            &run_bad_config,
            &[],
            2,
            &["run-bad-config/config.json", "EOF"],
        ),
        eval(
            "eval of a missing checkpoint",
            &root.join("nothing"),
            &["no such file"],
        ),
        eval(
            "eval of a directory that is no checkpoint",
            &empty_dir,
            &["neither a checkpoint", "nor a run directory"],
        ),
        eval(
            "truncated model.bpk",
            &truncated_model,
            &["model.bpk", "cannot load model weights", "corrupt"],
        ),
        eval(
            "garbage model.bpk",
            &garbage_model,
            &["model.bpk", "cannot load model weights"],
        ),
        eval(
            "empty model.bpk",
            &empty_model,
            &["model.bpk", "cannot load model weights"],
        ),
        eval(
            "weights of another architecture",
            &foreign_model,
            &["model.bpk", "cannot load model weights"],
        ),
        eval(
            "corrupt state.json",
            &bad_state,
            &["state.json", "corrupt checkpoint state"],
        ),
        eval(
            "checkpoint format from the future",
            &future_state,
            &["checkpoint format 99"],
        ),
        // Run directories that cannot be written: exit 1, naming the directory.
        t(
            "run dir below a regular file",
            &["--run-dir", &under_file, "--hidden", "16"],
            1,
            &[
                "cannot create run directory",
                "blocker/run",
                "Not a directory",
            ],
        ),
        t(
            "checkpoints/ is a file",
            &[
                "--run-dir",
                &s(&ckpt_is_file),
                "--hidden",
                "16",
                "--max-steps",
                "1",
            ],
            1,
            &["ckpt-is-file/checkpoints"],
        ),
    ];
    assert!(cases.len() >= 20);
    let failures: Vec<String> = cases.iter().flat_map(|c| check_case(root, c)).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases broke the promise:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // No case got as far as creating a run of its own.
    let runs: Vec<_> = fs::read_dir(root.join("runs"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(runs.is_empty(), "{runs:?}");
}

// ---------------------------------------------------------------------------------------------
// Signals and the run-directory lock, on real child processes.

/// 1,280 toy images at batch 32 = 40 steps per epoch; the run is long enough (seconds) to be
/// interrupted mid-way.
const LONG_RUN: [&str; 14] = [
    "--offline",
    "--quiet",
    "--init",
    "he",
    "--hidden",
    "128,64",
    "--batch-size",
    "32",
    "--epochs",
    "40",
    "--eval-every",
    "1",
    "--checkpoint-every",
    "7",
];

struct Trainer {
    child: Child,
    stderr: PathBuf,
}

fn spawn(cwd: &Path, args: &[&str]) -> Trainer {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let stderr = cwd.join(format!("stderr-{n}.txt"));
    let child = cmd(cwd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    Trainer { child, stderr }
}

impl Trainer {
    fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success(), "kill {sig} failed");
    }

    /// Waits at most `limit` for the exit; kills and fails on a hang.
    fn wait(&mut self, limit: Duration) -> (ExitStatus, String) {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (st, fs::read_to_string(&self.stderr).unwrap());
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "trainer still running after {limit:?}; stderr:\n{}",
                    fs::read_to_string(&self.stderr).unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Waits until the run has written at least `n` metrics lines (so it holds the lock and is
/// inside the training loop).
fn wait_for_steps(t: &mut Trainer, run: &Path, n: usize) {
    let start = Instant::now();
    loop {
        let lines = fs::read_to_string(run.join("metrics.jsonl"))
            .map(|s| s.lines().count())
            .unwrap_or(0);
        if lines >= n {
            return;
        }
        if let Some(st) = t.child.try_wait().unwrap() {
            panic!(
                "trainer exited ({st}) before step {n}: {}",
                fs::read_to_string(&t.stderr).unwrap()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no progress in 120 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn long_run_args<'a>(data: &'a str, run: &'a str) -> Vec<&'a str> {
    let mut v = LONG_RUN.to_vec();
    v.extend(["--data-dir", data, "--run-dir", run]);
    v
}

/// `times` signals back to back, as when a scheduler signals every process of a job and the
/// sweep above the trainer passes the signal on as well.
fn signal_stops_gracefully_and_resumes(sig: &str, name: &str, code: i32, times: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write_dataset(&root.join("data"), 1280, 100);
    let (data, run) = (root.join("data"), root.join("run"));
    let mut t = spawn(root, &long_run_args(&s(&data), &s(&run)));
    wait_for_steps(&mut t, &run, 3);
    for _ in 0..times {
        t.signal(sig);
    }
    let (st, stderr) = t.wait(Duration::from_secs(30));
    assert_eq!(st.code(), Some(code), "{stderr}");
    let resume = format!(
        "mnist-train --resume {} --data-dir {}",
        run.display(),
        data.display()
    );
    assert!(
        stderr.contains(&format!(
            "error: interrupted by {name}; checkpoint saved. Resume with: {resume}\n"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let done = metrics(&run);
    let last = done.last().unwrap()["global_step"].as_u64().unwrap() as usize;
    assert!(last < 40 * 40, "stopped before the end");
    let newest = checkpoint::list(&run.join("checkpoints")).pop().unwrap();
    assert_eq!(newest.0, last, "a checkpoint at the last completed step");
    let state = checkpoint::open(&run).unwrap().state;
    assert_eq!(state.global_step, last);
    // The run's page says how far it got and how to go on.
    let page = fs::read_to_string(run.join("report.html")).expect("a report of the stopped run");
    assert!(page.contains("not finished") && page.contains("mnist-train --resume"));

    // The printed command, run as printed (from the same directory), finishes the run.
    let args: Vec<&str> = resume.split(' ').skip(1).collect();
    let mut t = spawn(root, &[&args[..], &["--quiet"]].concat());
    let (st, stderr) = t.wait(Duration::from_secs(300));
    assert!(st.success(), "resume failed: {stderr}");
    let m = metrics(&run);
    assert_eq!(m.len(), 40 * 40);
    for (i, row) in m.iter().enumerate() {
        assert_eq!(row["global_step"].as_u64(), Some(i as u64 + 1));
    }
    assert_eq!(summary(&run)["steps"], 40 * 40);
}

#[test]
fn sigint_checkpoints_exits_130_and_resumes() {
    signal_stops_gracefully_and_resumes("-INT", "SIGINT", 130, 1);
}

#[test]
fn sigterm_checkpoints_exits_143_and_resumes() {
    signal_stops_gracefully_and_resumes("-TERM", "SIGTERM", 143, 1);
}

/// Regression: a second SIGTERM used to exit at once, so a trial of a sweep under Slurm (which
/// signals the whole job, and the sweep passes it on) lost its final checkpoint.
#[test]
fn repeated_sigterms_still_checkpoint() {
    signal_stops_gracefully_and_resumes("-TERM", "SIGTERM", 143, 3);
}

#[test]
fn second_sigint_exits_at_once_and_the_run_stays_resumable() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write_dataset(&root.join("data"), 1280, 100);
    let (data, run) = (root.join("data"), root.join("run"));
    let mut t = spawn(root, &long_run_args(&s(&data), &s(&run)));
    wait_for_steps(&mut t, &run, 3);
    // Back to back: either the second one finds the first pending and exits at once, or the
    // two merge into one and the first's graceful stop follows within a step. 130 either way.
    t.signal("-INT");
    t.signal("-INT");
    let start = Instant::now();
    let (st, stderr) = t.wait(Duration::from_secs(10));
    assert_eq!(st.code(), Some(130), "{stderr}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Whatever was on disk is consistent: the newest checkpoint (if any) loads, and resume
    // finishes the run.
    if !checkpoint::list(&run.join("checkpoints")).is_empty() {
        let out = cmd(root)
            .args(["eval", "--offline", "--data-dir", &s(&data)])
            .args(["--checkpoint", &s(&run)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut t = spawn(
        root,
        &["--resume", &s(&run), "--data-dir", &s(&data), "--quiet"],
    );
    let (st, stderr) = t.wait(Duration::from_secs(300));
    assert!(st.success(), "resume failed: {stderr}");
    assert_eq!(metrics(&run).len(), 40 * 40);
}

#[test]
fn a_second_trainer_is_refused_and_a_killed_one_releases_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write_dataset(&root.join("data"), 1280, 100);
    let (data, run) = (root.join("data"), root.join("run"));
    let (d, r) = (s(&data), s(&run));
    let mut first = spawn(root, &long_run_args(&d, &r));
    wait_for_steps(&mut first, &run, 3);
    let pid = first.child.id();

    // Continuing the run while it trains: refused by the lock, naming the holder.
    let out = cmd(root)
        .args(["--resume", &r, "--data-dir", &d, "--offline", "--quiet"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "run directory {r} is in use by another mnist-train process (pid {pid})"
        )),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // Starting a new run in it: refused too (it already holds a run).
    let out = cmd(root).args(long_run_args(&d, &r)).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("already holds a run"), "{stderr}");
    assert!(
        first.child.try_wait().unwrap().is_none(),
        "first still runs"
    );

    // SIGKILL: no handler runs, the OS drops the lock; a third trainer resumes and finishes.
    first.signal("-KILL");
    let (st, _) = first.wait(Duration::from_secs(10));
    assert_eq!(st.code(), None, "killed by a signal");
    // What a kill inside a checkpoint write leaves behind is cleared by the next save.
    let leftover = run.join("checkpoints").join(".tmp-step-00000001-4242");
    fs::create_dir_all(&leftover).unwrap();
    fs::write(leftover.join("model.bpk"), b"half").unwrap();
    let mut third = spawn(root, &["--resume", &r, "--data-dir", &d, "--quiet"]);
    let (st, stderr) = third.wait(Duration::from_secs(300));
    assert!(st.success(), "resume after SIGKILL failed: {stderr}");
    assert!(!leftover.exists());
    let m = metrics(&run);
    assert_eq!(m.len(), 40 * 40);
    assert_eq!(summary(&run)["steps"], 40 * 40);
}

/// Defect G: Ctrl-C during a download did nothing until training started (or the download
/// gave up, minutes later). A mirror on localhost that accepts and never answers holds the
/// download; the signal must end the process at once, with its code.
#[test]
fn ctrl_c_during_a_download_exits_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mirror = format!("http://{}/", listener.local_addr().unwrap());
    // Accept connections and hold them open, silent, until the test ends.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
            let _ = tx.send(());
        }
    });
    let stderr = root.join("stderr.txt");
    let child = cmd(root)
        .args(["--data-dir", &s(&root.join("empty")), "--quiet"])
        .env("MNIST_TRAIN_MIRROR", &mirror)
        .env("XDG_CACHE_HOME", root.join("cache"))
        .stdout(Stdio::null())
        .stderr(File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the trainer connects to the mirror");
    let mut t = Trainer { child, stderr };
    t.signal("-INT");
    let start = Instant::now();
    let (st, err) = t.wait(Duration::from_secs(10));
    assert_eq!(st.code(), Some(130), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(
        !root.join("runs").exists(),
        "no run directory for a run that never started"
    );
}

/// `mnist-train … | head -3`: when stdout's reader goes away the run checkpoints and stops
/// with 141 (a shell's code for SIGPIPE) instead of panicking on the broken pipe.
#[test]
fn a_closed_stdout_checkpoints_and_stops() {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write_dataset(&root.join("data"), 1280, 100);
    let (data, run) = (root.join("data"), root.join("run"));
    let (data_arg, run_arg) = (s(&data), s(&run));
    for json in [false, true] {
        let _ = fs::remove_dir_all(&run);
        let mut args = long_run_args(&data_arg, &run_arg);
        args.retain(|a| *a != "--quiet");
        if json {
            args.push("--json");
        }
        let stderr = root.join("stderr.txt");
        let mut child = cmd(root)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for _ in 0..3 {
            lines.next().unwrap().unwrap();
        }
        drop(lines);
        let mut t = Trainer { child, stderr };
        let (st, err) = t.wait(Duration::from_secs(60));
        assert_eq!(st.code(), Some(141), "{err}");
        assert!(err.contains("stdout was closed by its reader"), "{err}");
        assert!(!err.contains("internal error"), "{err}");
        let state = checkpoint::open(&run).unwrap().state;
        assert_eq!(state.global_step, metrics(&run).len());
    }
}

/// Mounts a tmpfs of `kib` KiB at `dir`, or says why it cannot (not root, no mount namespace):
/// then the disk-full test is skipped, since the injected-error unit tests of
/// `train::checkpoint` and `run::fs` cover the same code.
fn mount_small_tmpfs(dir: &Path, kib: usize) -> Result<(), String> {
    fs::create_dir_all(dir).unwrap();
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
        .arg(dir)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// A disk that fills up while a checkpoint is written: exit 1 with one line naming the
/// checkpoint, the older checkpoints still there and loadable, and no partial temporary left
/// holding the space.
#[test]
fn a_full_disk_during_a_checkpoint_keeps_the_older_ones_and_no_partial_file() {
    let tmp = tempfile::tempdir().unwrap();
    write_dataset(tmp.path(), 640, 200);
    let mount = tmp.path().join("small-disk");
    // One checkpoint of this net (64 hidden units) is about 0.65 MB: two fit, a third does
    // not.
    if let Err(why) = mount_small_tmpfs(&mount, 1700) {
        eprintln!("skipped: cannot mount a small tmpfs here ({why})");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&mount);
    let run = mount.join("run");
    let out = cmd(tmp.path())
        .args(["--data-dir", &s(tmp.path()), "--run-dir", &s(&run)])
        .args(["--hidden", "64", "--batch-size", "32", "--epochs", "3"])
        .args(["--checkpoint-every", "5", "--keep-checkpoints", "10"])
        .args([
            "--eval-every",
            "0",
            "--no-tensorboard",
            "--diagnostics-every",
            "0",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let error: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error.len(), 1, "{stderr}");
    assert!(error[0].contains("checkpoint"), "{}", error[0]);
    let names: Vec<String> = fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with('.')),
        "temporaries left behind: {names:?}"
    );
    let kept = checkpoint::list(&run.join("checkpoints"));
    assert!(
        !kept.is_empty(),
        "the older checkpoints are gone: {names:?}"
    );
    assert!(
        checkpoint::open(&run).is_ok(),
        "the newest kept checkpoint does not load"
    );
}

/// `predict` on a folder with a file that is not an image classifies the images and still
/// exits 3, as grep does when one of its files could not be read, so a script can tell.
#[test]
fn predict_exits_3_when_an_input_cannot_be_read_and_classifies_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    write_dataset(tmp.path(), 320, 100);
    let run = tmp.path().join("run");
    let trained = cmd(tmp.path())
        .args(["--data-dir", &s(tmp.path()), "--run-dir", &s(&run)])
        .args([
            "--hidden",
            "32",
            "--batch-size",
            "32",
            "--eval-every",
            "0",
            "--quiet",
        ])
        .status()
        .unwrap();
    assert!(trained.success());
    let images = tmp.path().join("digits");
    fs::create_dir_all(&images).unwrap();
    // A 28×28 grayscale PGM with a bar, and a "PNG" that is not one.
    let mut pgm = b"P5\n28 28\n255\n".to_vec();
    pgm.extend((0..784).map(|i| if (i / 28) % 10 < 3 { 20 } else { 230 }));
    fs::write(images.join("a-digit.pgm"), pgm).unwrap();
    fs::write(images.join("broken.png"), b"not an image").unwrap();

    let out = cmd(tmp.path())
        .args(["predict", "--checkpoint", &s(&run), &s(&images)])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stdout.contains("a-digit.pgm: "),
        "the readable image was not classified: {stdout}"
    );
    assert!(stderr.contains("broken.png"), "{stderr}");
    assert!(
        stderr.contains("1 of 2 input(s) could not be read"),
        "{stderr}"
    );

    // All readable: exit 0.
    fs::remove_file(images.join("broken.png")).unwrap();
    let ok = cmd(tmp.path())
        .args(["predict", "--checkpoint", &s(&run), &s(&images)])
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}
