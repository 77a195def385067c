//! What a user sees when asking for the GPU backend wrongly: from a binary built without the
//! `wgpu` feature, or with a malformed `--adapter`. The no-adapter case needs the feature and
//! lives in tests/wgpu.rs.

use crate::common::bin;
use predicates::prelude::*;

/// The default build has no wgpu: asking for it names the feature to rebuild with (exit 2),
/// before any data is looked for.
#[cfg(not(feature = "wgpu"))]
#[test]
fn wgpu_from_a_build_without_the_feature_names_the_feature() {
    let tmp = tempfile::tempdir().unwrap();
    let missing_data = tmp.path().join("no-data-here");
    for args in [
        &["--backend", "wgpu"][..],
        &["eval", "--checkpoint", "nowhere", "--backend", "wgpu"][..],
    ] {
        let out = bin(tmp.path(), &missing_data)
            .args(args)
            .arg("--offline")
            .assert()
            .code(2)
            .stderr(predicate::str::contains("--features wgpu"))
            .stderr(predicate::str::contains("panicked").not());
        let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
        // Train: the backend is refused before the data is looked for.
        if args[0] == "--backend" {
            assert!(
                stderr.contains("--backend wgpu is not compiled"),
                "{stderr}"
            );
        }
    }
    // The environment variable is refused the same way.
    bin(tmp.path(), &missing_data)
        .env("MNIST_TRAIN_BACKEND", "wgpu")
        .arg("--offline")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--features wgpu"));
}

#[test]
fn a_malformed_adapter_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    for bad in ["gpu", "discrete:first", "cpu:1"] {
        bin(tmp.path(), tmp.path())
            .args(["--backend", "wgpu", "--adapter", bad])
            .assert()
            .code(2)
            .stderr(
                predicate::str::contains("discrete[:N]").or(predicate::str::contains("number")),
            );
    }
    bin(tmp.path(), tmp.path())
        .env("MNIST_TRAIN_ADAPTER", "fastest")
        .args(["--backend", "wgpu"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("MNIST_TRAIN_ADAPTER").or(predicate::str::contains("fastest")),
        );
}

#[test]
fn help_documents_the_adapter_flag_and_exit_code_6() {
    let tmp = tempfile::tempdir().unwrap();
    bin(tmp.path(), tmp.path())
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("--adapter <KIND[:N]>"))
        .stdout(predicate::str::contains("MNIST_TRAIN_ADAPTER"))
        .stdout(predicate::str::is_match(r"\n  6 +requested compute device unavailable").unwrap());
}
