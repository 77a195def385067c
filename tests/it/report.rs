//! `report.html` (issue 21): the page of a run and of a sweep holds the numbers of
//! `summary.json` and of the sweep's table, loads nothing from anywhere, and is written for
//! old, interrupted, resumed and validation-split runs; bad paths are one-line errors.
//! The page in a real browser: scripts/check-report-browser.sh (CI).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::common::{bin, summary, write_dataset};
use predicates::prelude::*;

fn setup() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    write_dataset(tmp.path(), 640, 200);
    let data = tmp.path().to_path_buf();
    (tmp, data)
}

/// 640 toy images, batch 32: 20 steps per epoch, evaluated every 5.
fn train(tmp: &Path, data: &Path, run: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    bin(tmp, data)
        .args(["--init", "he", "--batch-size", "32", "--hidden", "32,16"])
        .args(["--eval-every", "5", "--quiet", "--run-dir"])
        .arg(run)
        .args(extra)
        .assert()
        .success()
}

fn page(dir: &Path) -> String {
    fs::read_to_string(dir.join("report.html")).unwrap()
}

/// The exact number the page carries for `key` (its `data-value`).
fn value(page: &str, key: &str) -> Option<String> {
    let marker = format!("data-key=\"{key}\" data-value=\"");
    let start = page.find(&marker)? + marker.len();
    Some(page[start..start + page[start..].find('"')?].to_string())
}

/// Fails when the page would load anything: a `src`/`href` to a URL, a CSS `url()` or
/// `@import` of one, or any `http(s)://` at all (the page needs none).
fn assert_offline(page: &str) {
    let lower = page.to_lowercase();
    for bad in ["http://", "https://", "@import", "src=\"//", "href=\"//"] {
        assert!(!lower.contains(bad), "the page holds {bad:?}");
    }
    for attr in ["src=", "url("] {
        for (i, _) in lower.match_indices(attr) {
            let rest = lower[i + attr.len()..].trim_start_matches(['"', '\'']);
            assert!(
                rest.starts_with("data:"),
                "{attr} loads something other than a data URI: {}",
                &lower[i..(i + 60).min(lower.len())]
            );
        }
    }
}

fn percent(v: &serde_json::Value) -> String {
    format!("{:.2}%", v.as_f64().unwrap() * 100.0)
}

#[test]
fn a_run_page_holds_the_summary_numbers_then_the_eval_and_loads_nothing() {
    let (tmp, data) = setup();
    let run = tmp.path().join("run");
    // A small learning rate: the toy set is not learnt perfectly, so there are mistakes.
    train(tmp.path(), &data, &run, &["--lr", "0.0001"])
        .stderr(predicate::str::contains("report: "));
    let s = summary(&run);
    let p = page(&run);
    for key in [
        "final_test_accuracy",
        "best_test_accuracy",
        "final_test_loss",
        "final_train_loss",
        "wall_time_s",
        "images_per_s",
    ] {
        assert_eq!(
            value(&p, key),
            Some(s[key].to_string()),
            "{key}: the page's number is summary.json's"
        );
    }
    assert!(p.contains(&percent(&s["final_test_accuracy"])));
    assert!(p.contains("finished"), "the run's status");
    // The command that repeats the run, and the machine it ran on.
    assert!(p.contains(&format!(
        "mnist-train --config {}",
        run.join("config.json").display()
    )));
    assert!(
        p.contains("<th>backend</th><td>flex</td>"),
        "backend recorded"
    );
    assert!(p.contains("<th>threads</th><td>1</td>"), "threads recorded");
    #[cfg(feature = "plots")]
    assert!(
        p.matches("<svg ").count() >= 3,
        "curves, diagnostics and learning rate are inline SVG"
    );
    assert!(p.contains("No evaluation yet"));
    assert_offline(&p);

    // `eval` keeps its numbers in eval.json and refreshes the page with them.
    bin(tmp.path(), &data)
        .args(["eval", "--checkpoint"])
        .arg(&run)
        .assert()
        .success();
    let eval: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("eval.json")).unwrap()).unwrap();
    assert_eq!(eval["images"], 200);
    let wrong = ((1.0 - eval["accuracy"].as_f64().unwrap()) * 200.0).round() as usize;
    assert!(wrong > 0, "the test needs a model that makes mistakes");
    assert_eq!(eval["mistakes"].as_array().unwrap().len(), wrong.min(25));
    let p = page(&run);
    assert_eq!(
        value(&p, "eval_accuracy"),
        Some(eval["accuracy"].to_string())
    );
    for c in 0..10 {
        let a = &eval["per_class_accuracy"][c];
        if !a.is_null() {
            assert_eq!(
                value(&p, &format!("class_accuracy_{c}")),
                Some(a.to_string())
            );
        }
    }
    assert!(p.contains("Confusion matrix") && !p.contains("No evaluation yet"));
    #[cfg(feature = "plots")]
    assert!(
        p.contains("src=\"data:image/png;base64,iVBOR"),
        "mistakes.png inlined"
    );
    assert_offline(&p);

    // `report` rewrites the same page and prints its path; --no-report writes none.
    fs::remove_file(run.join("report.html")).unwrap();
    bin(tmp.path(), &data)
        .arg("report")
        .arg(&run)
        .assert()
        .success()
        .stdout(format!("{}\n", run.join("report.html").display()));
    assert_eq!(
        value(&page(&run), "eval_accuracy"),
        Some(eval["accuracy"].to_string())
    );
    let quiet = tmp.path().join("quiet");
    train(tmp.path(), &data, &quiet, &["--no-report"]);
    assert!(!quiet.join("report.html").exists());
}

#[test]
fn a_validation_split_run_shows_the_model_chosen_on_validation() {
    let (tmp, data) = setup();
    let run = tmp.path().join("run");
    train(
        tmp.path(),
        &data,
        &run,
        &["--valid-split", "100", "--epochs", "2"],
    );
    let s = summary(&run);
    let p = page(&run);
    for key in [
        "valid_accuracy_best",
        "test_accuracy_at_best_valid",
        "final_test_accuracy",
    ] {
        assert_eq!(value(&p, key), Some(s[key].to_string()), "{key}");
    }
    assert!(p.contains("<th>validation</th>"));
    assert!(p.contains("Model chosen on validation"));
    assert!(p.contains("checkpoints/best"));
    assert_offline(&p);
}

#[test]
fn an_interrupted_run_says_so_and_its_resume_reports_the_finished_run() {
    let (tmp, data) = setup();
    let run = tmp.path().join("run");
    train(
        tmp.path(),
        &data,
        &run,
        &["--epochs", "2", "--max-steps", "13"],
    );
    let p = page(&run);
    assert!(p.contains("not finished"), "a paused run is not finished");
    assert!(p.contains("13 steps recorded"));
    assert!(p.contains(&format!("mnist-train --resume {}", run.display())));
    bin(tmp.path(), &data)
        .args(["--quiet", "--resume"])
        .arg(&run)
        .assert()
        .success();
    let s = summary(&run);
    let p = page(&run);
    assert!(!p.contains("not finished"));
    assert_eq!(s["steps"], 40);
    assert_eq!(
        value(&p, "final_test_accuracy"),
        Some(s["final_test_accuracy"].to_string())
    );
}

/// The run directory's files and their bytes, `report.html` aside.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap() != "report.html" {
                out.insert(p.clone(), fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn old_run_directories_report_what_they_have_and_change_nothing_else() {
    let (tmp, data) = setup();
    let run = tmp.path().join("run");
    train(tmp.path(), &data, &run, &["--no-report"]);
    // A run from before run.json, the plots and eval.json: the page says what is missing.
    for f in ["run.json", "curves.svg", "curves.png", "diagnostics.svg"] {
        fs::remove_file(run.join(f)).unwrap();
    }
    let before = snapshot(&run);
    bin(tmp.path(), &data)
        .arg("report")
        .arg(&run)
        .assert()
        .success();
    assert_eq!(
        snapshot(&run),
        before,
        "report changes nothing but report.html"
    );
    let p = page(&run);
    assert!(
        p.contains("<th>CPU</th><td>not recorded</td>"),
        "CPU not recorded"
    );
    assert!(p.contains("<th>threads</th><td>not recorded</td>"));
    // The backend still comes from summary.json.
    assert!(p.contains("<th>backend</th><td>flex</td>"));

    // A summary.json that cannot be read is said to be so, not to be missing.
    fs::write(run.join("summary.json"), "{ truncated").unwrap();
    bin(tmp.path(), &data)
        .arg("report")
        .arg(&run)
        .assert()
        .success();
    let p = page(&run);
    assert!(p.contains("summary unreadable") && p.contains("summary.json cannot be read"));
    assert!(!p.contains("No summary.json"));

    // Without summary.json, checkpoints and config.json: the metrics are still shown.
    fs::remove_file(run.join("summary.json")).unwrap();
    fs::remove_file(run.join("config.json")).unwrap();
    fs::remove_dir_all(run.join("checkpoints")).unwrap();
    bin(tmp.path(), &data)
        .arg("report")
        .arg(&run)
        .assert()
        .success();
    let p = page(&run);
    assert!(p.contains("not finished") && p.contains("No summary.json"));
    assert!(p.contains("No usable config.json"));
    assert!(p.contains("No checkpoints."));
    let last_test = crate::common::metrics(&run)
        .iter()
        .rev()
        .find_map(|m| m.get("test_accuracy").cloned())
        .unwrap();
    let shown: f64 = value(&p, "final_test_accuracy").unwrap().parse().unwrap();
    assert!((shown - last_test.as_f64().unwrap()).abs() < 1e-6);
    assert_offline(&p);
}

#[test]
fn a_path_that_is_not_a_run_or_sweep_is_one_line_exit_2_and_an_unwritable_one_exit_1() {
    let (tmp, data) = setup();
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    for path in [
        empty.clone(),
        tmp.path().join("missing"),
        tmp.path().join("mnist/t10k-labels-idx1-ubyte"),
    ] {
        let out = bin(tmp.path(), &data)
            .arg("report")
            .arg(&path)
            .assert()
            .code(2);
        let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("not a") || stderr.contains("neither"),
            "{stderr}"
        );
    }
    assert!(!empty.join("report.html").exists());

    // A directory in the page's place: the write fails and says where (running as root,
    // permissions would not stop it).
    let run = tmp.path().join("run");
    train(tmp.path(), &data, &run, &["--no-report"]);
    fs::create_dir_all(run.join("report.html/inner")).unwrap();
    bin(tmp.path(), &data)
        .arg("report")
        .arg(&run)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cannot write report.html into"));
    assert!(
        !fs::read_dir(&run).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".tmp-")),
        "no temporary left behind"
    );
    // Training that cannot write its page still succeeds, with a warning.
    bin(tmp.path(), &data)
        .args(["--quiet", "--epochs", "2", "--resume"])
        .arg(&run)
        .assert()
        .success()
        .stderr(predicate::str::contains("warning: no report"));
}

#[test]
fn a_sweep_page_holds_the_table_marks_the_best_links_the_runs_and_shows_failures() {
    let (tmp, data) = setup();
    let out_dir = tmp.path().join("sweep");
    // batch 1000 > 640 training images: that config's trials fail with exit 2.
    bin(tmp.path(), &data)
        .args([
            "sweep",
            "--set",
            "batch_size=1000,32",
            "--set",
            "init=he,xavier",
        ])
        .args([
            "--set",
            "hidden=[16]",
            "--set",
            "eval_every=5",
            "--threads",
            "1",
        ])
        .arg("--out")
        .arg(&out_dir)
        .assert()
        .code(1);
    let results: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out_dir.join("results.json")).unwrap()).unwrap();
    let p = page(&out_dir);
    assert_offline(&p);
    let rows = results["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    let mut best = (f64::MIN, String::new());
    for r in rows {
        let label = r["label"].as_str().unwrap();
        let i = p
            .find(&format!("<td>{label}"))
            .unwrap_or_else(|| panic!("row {label}"));
        let row = &p[i..i + p[i..].find("</tr>").unwrap()];
        match r["final_test_accuracy"]["mean"].as_f64() {
            Some(mean) => {
                assert_eq!(
                    value(row, "final_test_acc"),
                    Some(r["final_test_accuracy"]["mean"].to_string()),
                    "{label}"
                );
                assert_eq!(
                    value(row, "best_test_acc"),
                    Some(r["best_test_accuracy"]["mean"].to_string())
                );
                assert!(row.contains(&format!("{mean:.2}")));
                if mean > best.0 {
                    best = (mean, label.to_string());
                }
            }
            None => assert!(value(row, "final_test_acc").is_none(), "{label}: no number"),
        }
        // Each trial is linked: to its page when it has one.
        for t in r["trials"].as_array().unwrap() {
            let dir = t["dir"].as_str().unwrap();
            if t["status"] == "done" {
                assert!(
                    row.contains(&format!("href=\"{dir}/report.html\"")),
                    "{dir}"
                );
                assert!(out_dir.join(dir).join("report.html").is_file());
            } else {
                assert!(row.contains(&format!("href=\"{dir}/\"")), "{dir}");
            }
        }
    }
    let i = p.find("★ best").unwrap();
    let row_start = p[..i].rfind("<tr").unwrap();
    assert!(
        p[row_start..i].contains(&best.1),
        "the best row is {}",
        best.1
    );
    assert_eq!(p.matches("★ best").count(), 1);
    // The failures, with the error their run printed.
    assert!(p.contains("Failed trials (2)"));
    assert!(p.contains("batch_size"), "the failed trial's error");
    #[cfg(feature = "plots")]
    assert!(
        p.matches("<svg ").count() >= 2,
        "the comparison charts inline"
    );

    // `report` on the sweep directory rewrites it; `sweep report` does too.
    fs::remove_file(out_dir.join("report.html")).unwrap();
    bin(tmp.path(), &data)
        .arg("report")
        .arg(&out_dir)
        .assert()
        .success();
    assert_eq!(
        value(&page(&out_dir), "final_test_acc"),
        value(&p, "final_test_acc")
    );
}
