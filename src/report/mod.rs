//! `report.html`: one self-contained page per run or sweep directory — the config, the
//! network drawn, the numbers, the curves, the diagnostics and (after `eval`) the confusion matrix and the
//! mistakes; for a sweep the results table, the comparison charts and links to each trial's
//! page. Built only from the files already in the directory: it never trains or evaluates.
//!
//! The page loads nothing: charts are inline SVG, images data URIs, the style inline, and its
//! one small script (counting the images that loaded, for the browser check) is optional: the
//! page reads the same without JavaScript. A Content-Security-Policy in the page forbids any
//! load but `data:` images, so a mistake here shows as a missing image, not as a request.

mod architecture;
pub mod html;
mod run_page;
mod sweep_page;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::run::{CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, write_atomic};
use crate::sweep::results::{MANIFEST_FILE, SweepReport};

pub const REPORT_FILE: &str = "report.html";

/// What a directory holds, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Run,
    Sweep,
}

/// A sweep directory holds `sweep.json`; a run directory any of `config.json`, `summary.json`
/// or `metrics.jsonl` (old or damaged runs may lack some: the page says which).
pub fn detect(path: &Path) -> Result<Kind> {
    if !path.is_dir() {
        return Err(Error::Usage(format!(
            "{} is not a directory; report takes a run directory (runs/<name>) or a sweep \
             directory (runs/sweep-<name>)",
            path.display()
        )));
    }
    if path.join(MANIFEST_FILE).is_file() {
        return Ok(Kind::Sweep);
    }
    if [CONFIG_FILE, SUMMARY_FILE, METRICS_FILE]
        .iter()
        .any(|f| path.join(f).is_file())
    {
        return Ok(Kind::Run);
    }
    Err(Error::Usage(format!(
        "{} is neither a run directory (no {CONFIG_FILE}, {SUMMARY_FILE} or {METRICS_FILE}) \
         nor a sweep directory (no {MANIFEST_FILE})",
        path.display()
    )))
}

/// Writes `report.html` into the run or sweep directory `path`; returns its path.
pub fn write(path: &Path) -> Result<PathBuf> {
    match detect(path)? {
        Kind::Run => write_run(path),
        Kind::Sweep => write_sweep(path, None),
    }
}

/// Writes a run directory's `report.html`.
pub fn write_run(run: &Path) -> Result<PathBuf> {
    save(run, &run_page::build(run))
}

/// Writes a sweep directory's `report.html`; `report` when the caller has just built it.
pub fn write_sweep(dir: &Path, report: Option<&SweepReport>) -> Result<PathBuf> {
    let built;
    let report = match report {
        Some(r) => r,
        None => {
            built = crate::sweep::results::build(dir)?;
            &built
        }
    };
    save(dir, &sweep_page::build(dir, report))
}

/// Atomically, so a reader (or a browser reloading) never sees half a page, and nothing but
/// `report.html` changes.
fn save(dir: &Path, page: &str) -> Result<PathBuf> {
    let path = dir.join(REPORT_FILE);
    write_atomic(&path, page.as_bytes()).map_err(|e| match e {
        Error::Io { source, .. } => Error::Io {
            context: format!("cannot write {REPORT_FILE} into {}", dir.display()),
            source,
        },
        other => other,
    })?;
    Ok(path)
}

/// A chart for the page: the inline SVG, or a note why there is none.
fn chart(result: std::result::Result<Option<String>, String>, title: &str, none: &str) -> String {
    match result {
        Ok(Some(svg)) => format!("<figure>{}</figure>", html::inline_svg(&svg, title)),
        Ok(None) if !crate::output::plot::ENABLED => html::missing(
            "No charts: this mnist-train was built without the `plots` feature; the tables \
             hold the numbers.",
        ),
        Ok(None) => html::missing(none),
        Err(e) => html::missing(&format!("{title}: could not be drawn ({e})")),
    }
}
