//! The documentation cannot drift from the code: every relative link in README.md and docs/
//! points at a file that exists, and every `--flag` they name is a flag of `mnist-train` (of
//! the top level or of a subcommand) or of another tool the docs show being run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

/// Flags of other programs the docs run: cargo, pip, Slurm, kubectl, TensorBoard, Optuna's
/// example script, Chromium and the scripts in scripts/. Each is named with its tool.
const OTHER_TOOLS: &[&str] = &[
    // cargo
    "release",
    "features",
    "locked",
    "path",
    "profile",
    "all-targets",
    "lib",
    "test",
    "bin",
    "no-run",
    "check",
    "no-default-features",
    "target",
    // the test harness (`cargo test ... -- --ignored --nocapture`)
    "ignored",
    "nocapture",
    // tensorboard
    "logdir",
    // pip
    "disable-pip-version-check",
    // sbatch, scancel
    "array",
    "partition",
    "cpus-per-task",
    "time",
    "signal",
    "batch",
    // optuna's CLI, and examples/optuna-search.sh
    "storage",
    "study-name",
    "trials",
    // chromium (the report's browser check)
    "headless",
    "screenshot",
    "window-size",
    "no-sandbox",
    "disable-gpu",
    "dump-dom",
    // scripts/gpu-check.sh and scripts/check-*.sh
    "smoke",
];

fn docs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    files.extend(pages);
    files
}

/// Every long flag and alias of the command line, subcommands included.
fn cli_flags() -> BTreeSet<String> {
    fn walk(cmd: &clap::Command, out: &mut BTreeSet<String>) {
        for arg in cmd.get_arguments() {
            if let Some(long) = arg.get_long() {
                out.insert(long.to_string());
            }
            for alias in arg.get_all_aliases().unwrap_or_default() {
                out.insert(alias.to_string());
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut out = BTreeSet::from(["help".to_string(), "version".to_string()]);
    walk(&mnist_train::cli::Cli::command(), &mut out);
    out
}

/// `--name` tokens of a text, outside URLs.
fn named_flags(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(at) = text[i..].find("--") {
        let start = i + at;
        i = start + 2;
        let before = start.checked_sub(1).map(|b| bytes[b]);
        if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'/') {
            continue;
        }
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
            .collect();
        let name = name.trim_end_matches('-');
        if name.starts_with(|c: char| c.is_ascii_lowercase()) {
            found.push(name.to_string());
        }
    }
    found
}

/// Targets of Markdown links and images, `[text](target)`, and of HTML `src=`/`href=`.
fn link_targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (open, close) in [("](", ')'), ("src=\"", '"'), ("href=\"", '"')] {
        let mut rest = text;
        while let Some(at) = rest.find(open) {
            rest = &rest[at + open.len()..];
            if let Some(end) = rest.find(close) {
                let target = rest[..end].split_whitespace().next().unwrap_or("");
                out.push(target.to_string());
            }
        }
    }
    out
}

#[test]
fn every_relative_link_in_the_docs_points_at_a_file() {
    let mut broken = Vec::new();
    for file in docs() {
        let text = std::fs::read_to_string(&file).unwrap();
        for target in link_targets(&text) {
            let is_external = target.contains("://") || target.starts_with("mailto:");
            let path = target.split('#').next().unwrap_or("");
            if is_external || path.is_empty() {
                continue;
            }
            if !file.parent().unwrap().join(path).exists() {
                broken.push(format!("{}: {target}", file.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links to files that do not exist:\n{}",
        broken.join("\n")
    );
}

#[test]
fn every_flag_the_docs_name_exists() {
    let known = cli_flags();
    let mut unknown = BTreeSet::new();
    for file in docs() {
        let text = std::fs::read_to_string(&file).unwrap();
        for flag in named_flags(&text) {
            if !known.contains(&flag) && !OTHER_TOOLS.contains(&flag.as_str()) {
                unknown.insert(format!("{}: --{flag}", file.file_name().unwrap().display()));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "flags that neither mnist-train nor a tool the docs run has:\n{}",
        unknown.into_iter().collect::<Vec<_>>().join("\n")
    );
}

/// The checker finds what it is meant to: a made-up flag and a link to a missing file.
#[test]
fn the_checks_catch_a_wrong_flag_and_a_broken_link() {
    let text = "Run `mnist-train --init he --no-such-flag` and see [a page](docs/missing.md).";
    let flags = named_flags(text);
    assert_eq!(flags, ["init", "no-such-flag"]);
    assert!(!cli_flags().contains("no-such-flag") && cli_flags().contains("init"));
    assert_eq!(link_targets(text), ["docs/missing.md"]);
    assert!(named_flags("see https://x.org/a--b and a—-dash").is_empty());
}

/// The README's table of exit codes has a row for each code `--help` lists, and no other.
#[test]
fn the_readme_lists_the_exit_codes_of_the_help() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let table = readme
        .split("## Exit codes")
        .nth(1)
        .expect("README has an exit codes section");
    let mut in_readme: Vec<i32> = table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|row| row.split('|').nth(1))
        .flat_map(|cell| cell.split('/').filter_map(|c| c.trim().parse().ok()))
        .collect();
    let mut in_help: Vec<i32> = mnist_train::error::exit::HELP
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    in_readme.sort();
    in_help.sort();
    assert_eq!(in_readme, in_help);
}

/// docs/runs.md's list of a run directory's files names every file a run writes: a run that
/// augments, takes diagnostics and is evaluated, listed after the fact.
#[test]
fn the_run_directory_list_names_every_file_a_run_writes() {
    let runs_md =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/runs.md"))
            .unwrap();
    let start = runs_md
        .find("## Where runs go")
        .expect("runs.md lists a run's files");
    let end = runs_md[start..]
        .find("\n## ")
        .map_or(runs_md.len(), |e| start + e);
    let list = &runs_md[start..end];
    let (tmp, data) = crate::common::setup();
    let run = tmp.path().join("run");
    crate::common::bin(tmp.path(), &data)
        .args(["--hidden", "16", "--batch-size", "32", "--eval-every", "10"])
        .args([
            "--augment",
            "rotate=5",
            "--diagnostics-every",
            "5",
            "--quiet",
        ])
        .args(["--run-dir", run.to_str().unwrap()])
        .assert()
        .success();
    crate::common::bin(tmp.path(), &data)
        .args(["eval", "--checkpoint", run.to_str().unwrap()])
        .assert()
        .success();
    let mut names: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 14, "a full run directory: {names:?}");
    for name in &names {
        // `curves.svg` and `curves.png` are listed as `curves.svg/.png`.
        let listed = match name.rsplit_once('.') {
            Some((stem, "png")) if !list.contains(&format!("`{name}`")) => {
                list.contains(&format!("`{stem}.svg/.png`"))
            }
            Some((stem, "svg")) => list.contains(&format!("`{stem}.svg/.png`")),
            _ => list.contains(&format!("`{name}`")) || list.contains(&format!("`{name}/`")),
        };
        assert!(
            listed,
            "docs/runs.md does not list `{name}`, which a run writes"
        );
    }
}

/// Every file a doc comment in src/ names (`tests/it/docs.rs`, `kernel/dense.rs`,
/// `docs/speed.md`, …) exists, from the repository's root or from src/.
#[test]
fn files_named_in_doc_comments_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = Vec::new();
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                sources.push(path);
            }
        }
    }
    let mut missing = BTreeSet::new();
    for file in &sources {
        let text = std::fs::read_to_string(file).unwrap();
        for line in text.lines().map(str::trim_start) {
            if !(line.starts_with("//!") || line.starts_with("///")) {
                continue;
            }
            for word in line.split(|c: char| c.is_whitespace() || "`()[],;:".contains(c)) {
                let word = word.trim_end_matches('.');
                // This repository's paths: from its root, or a module path under src/ (another
                // project's files, such as torchvision's, are not checked).
                let ours = word.split('/').next().is_some_and(|first| {
                    [
                        "src", "tests", "docs", "scripts", "configs", "assets", "examples", "fuzz",
                    ]
                    .contains(&first)
                        || root.join("src").join(first).is_dir()
                });
                let named = ours
                    && !word.contains("/.")
                    && [".rs", ".md", ".sh", ".py", ".json"]
                        .iter()
                        .any(|ext| word.ends_with(ext))
                    && !word.contains("://")
                    && !word.starts_with('<')
                    && !word.contains('*');
                if named && !root.join(word).exists() && !root.join("src").join(word).exists() {
                    missing.insert(format!("{}: {word}", file.display()));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "doc comments name files that do not exist: {missing:#?}"
    );
}
