//! A run directory's page.

use std::fmt::Write as _;
use std::path::Path;

use super::chart;
use super::html::{self, Facts, esc, num_cell, percent};
use crate::run::eval::EvalRecord;
use crate::run::metrics::{self, StepMetrics};
use crate::run::summary::Summary;
use crate::run::{CONFIG_FILE, METRICS_FILE, SUMMARY_FILE};

/// Shown when `eval.json` has more mistakes than this: the page stays small.
const MISTAKES_LISTED: usize = 25;

pub fn build(run: &Path) -> String {
    let name = run
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| run.display().to_string());
    let config = crate::run::read_config(run);
    let summary = Summary::read(run);
    let summary_unreadable = summary.is_none() && run.join(SUMMARY_FILE).is_file();
    let steps = metrics::read(run);
    let info = crate::run::read_info(run);
    let eval = EvalRecord::read(run);

    let label = match &config {
        Ok(c) => format!("{} · {} · {}", c.label(), c.architecture(), c.dataset),
        Err(_) => "config.json missing or unreadable".into(),
    };
    let last_step = steps.last().map(|m| m.global_step);
    let status = match (&summary, last_step) {
        (Some(s), Some(last)) if last > s.steps => format!(
            "<span class=\"badge warn\">resumed, not finished</span> summary.json is from step \
             {}; metrics.jsonl continues to step {last}",
            s.steps
        ),
        (Some(s), _) => {
            let early = s
                .stopped_early
                .as_deref()
                .map(|why| format!(" — stopped early: {}", esc(why)))
                .unwrap_or_default();
            format!(
                "<span class=\"badge ok\">finished</span> {} steps, {} epoch{}{early}",
                s.steps,
                s.epochs,
                if s.epochs == 1 { "" } else { "s" }
            )
        }
        (None, Some(last)) if summary_unreadable => format!(
            "<span class=\"badge bad\">summary unreadable</span> {last} steps recorded; \
             {SUMMARY_FILE} exists but cannot be read (damaged or written by another version). \
             <code>mnist-train --resume {}</code> writes it again",
            esc(&run.display().to_string())
        ),
        (None, Some(last)) => format!(
            "<span class=\"badge warn\">not finished</span> {last} steps recorded, no \
             {SUMMARY_FILE} (interrupted, still running, or paused by --max-steps); continue \
             with <code>mnist-train --resume {}</code>",
            esc(&run.display().to_string())
        ),
        (None, None) => format!(
            "<span class=\"badge bad\">no results</span> neither {SUMMARY_FILE} nor \
             {METRICS_FILE} holds a step"
        ),
    };
    let subtitle = format!("{} <br>{status}", esc(&label));

    let mut body = String::new();
    body.push_str(&results_section(
        summary.as_ref(),
        &steps,
        summary_unreadable,
    ));
    if let Ok(config) = &config {
        body.push_str(&network_section(run, config));
    }
    body.push_str("<div class=\"grid\">");
    type Draw = fn(&Path) -> std::result::Result<Option<String>, String>;
    let charts: [(&str, Draw, &str); 3] = [
        (
            "Learning curves",
            crate::output::plot::run_curves_svg,
            "No learning curves: metrics.jsonl holds no step.",
        ),
        (
            "Learning rate",
            crate::output::plot::run_lr_svg,
            "No learning rate recorded: metrics.jsonl has no `lr` column (an older version \
             wrote it).",
        ),
        (
            "Per-layer diagnostics",
            crate::output::plot::run_diagnostics_svg,
            "No diagnostics: the run took none (diagnostics_every = 0, or an older version \
             wrote its metrics).",
        ),
    ];
    let [curves, lr, diagnostics] = charts.map(|(heading, draw, none)| {
        let svg = chart(draw(run), &heading.to_lowercase(), none);
        format!("<h2>{heading}</h2>{svg}")
    });
    let _ = write!(
        body,
        "<section>{curves}{lr}</section><section>{diagnostics}</section>"
    );
    body.push_str("</div>");
    body.push_str(&eval_section(run, eval.as_ref()));
    body.push_str(&config_section(run, &config, &info));
    body.push_str("<div class=\"grid\">");
    body.push_str(&machine_section(summary.as_ref(), &info, steps.last()));
    body.push_str(&files_section(run));
    body.push_str("</div>");
    html::page(&format!("Run {name}"), &subtitle, &body)
}

/// The final and best values of one evaluated quantity in the metrics: (final, best, best's
/// step). Best is the highest accuracy or the lowest loss.
fn final_and_best(
    steps: &[StepMetrics],
    pick: impl Fn(&StepMetrics) -> Option<f32>,
    higher_is_better: bool,
) -> Option<(f64, f64, usize)> {
    let points: Vec<(usize, f64)> = steps
        .iter()
        .filter_map(|m| pick(m).map(|v| (m.global_step, v as f64)))
        .collect();
    let last = points.last()?.1;
    let best = points.iter().copied().reduce(|a, b| {
        let better = if higher_is_better {
            b.1 > a.1
        } else {
            b.1 < a.1
        };
        if better { b } else { a }
    })?;
    Some((last, best.1, best.0))
}

fn results_section(summary: Option<&Summary>, steps: &[StepMetrics], unreadable: bool) -> String {
    let mut s = String::from("<section><h2>Results</h2>");
    if summary.is_none() && steps.is_empty() {
        s.push_str(&html::missing(
            "No results: the run has no summary.json and no metrics.jsonl.",
        ));
        s.push_str("</section>");
        return s;
    }
    s.push_str(
        "<table><thead><tr><th>set</th><th class=\"num\">final accuracy</th>\
         <th class=\"num\">best accuracy (step)</th><th class=\"num\">final loss</th>\
         <th class=\"num\">best loss (step)</th></tr></thead><tbody>",
    );
    type Pick = fn(&StepMetrics) -> Option<f32>;
    let sets: [(&str, &str, Pick, Pick); 2] = [
        ("test", "test", |m| m.test_accuracy, |m| m.test_loss),
        (
            "validation",
            "valid",
            |m| m.valid_accuracy,
            |m| m.valid_loss,
        ),
    ];
    for (name, key, acc, loss) in sets {
        let acc = final_and_best(steps, acc, true);
        let loss = final_and_best(steps, loss, false);
        if acc.is_none() && loss.is_none() {
            continue;
        }
        let _ = write!(s, "<tr><th>{name}</th>");
        // summary.json's numbers where it has them (the tests hold the page to them), the
        // metrics' otherwise.
        let from_summary = summary.filter(|_| key == "test");
        match (from_summary, acc) {
            (Some(sm), Some((_, _, step))) => {
                s.push_str(&num_cell(
                    "final_test_accuracy",
                    sm.final_test_accuracy,
                    &percent(sm.final_test_accuracy),
                ));
                s.push_str(&num_cell(
                    "best_test_accuracy",
                    sm.best_test_accuracy,
                    &format!("{} ({step})", percent(sm.best_test_accuracy)),
                ));
            }
            (_, Some((last, best, step))) => {
                s.push_str(&num_cell(
                    &format!("final_{key}_accuracy"),
                    last,
                    &percent(last),
                ));
                let best_key = format!("best_{key}_accuracy");
                match summary
                    .and_then(|sm| sm.valid_accuracy_best)
                    .filter(|_| key == "valid")
                {
                    Some(v) => s.push_str(&num_cell(
                        "valid_accuracy_best",
                        v,
                        &format!("{} ({step})", percent(v)),
                    )),
                    None => s.push_str(&num_cell(
                        &best_key,
                        best,
                        &format!("{} ({step})", percent(best)),
                    )),
                }
            }
            _ => s.push_str("<td>–</td><td>–</td>"),
        }
        match (from_summary, loss) {
            (Some(sm), Some((_, best, step))) => {
                s.push_str(&num_cell(
                    "final_test_loss",
                    sm.final_test_loss,
                    &format!("{:.4}", sm.final_test_loss),
                ));
                s.push_str(&num_cell(
                    "best_test_loss",
                    best,
                    &format!("{best:.4} ({step})"),
                ));
            }
            (_, Some((last, best, step))) => {
                s.push_str(&num_cell(
                    &format!("final_{key}_loss"),
                    last,
                    &format!("{last:.4}"),
                ));
                s.push_str(&num_cell(
                    &format!("best_{key}_loss"),
                    best,
                    &format!("{best:.4} ({step})"),
                ));
            }
            _ => s.push_str("<td>–</td><td>–</td>"),
        }
        s.push_str("</tr>");
    }
    if let Some(m) = steps.last() {
        let _ = write!(
            s,
            "<tr><th>train (last batch)</th>{}<td></td>",
            num_cell(
                "final_train_accuracy",
                m.train_accuracy as f64,
                &percent(m.train_accuracy as f64)
            )
        );
        let loss = summary.map_or(m.train_loss as f64, |sm| sm.final_train_loss);
        let _ = write!(
            s,
            "{}<td></td></tr>",
            num_cell("final_train_loss", loss, &format!("{loss:.4}"))
        );
    }
    s.push_str("</tbody></table>");
    if let Some(sm) = summary
        && let (Some(valid), Some(test), Some(step)) = (
            sm.valid_accuracy_best,
            sm.test_accuracy_at_best_valid,
            sm.best_valid_step,
        )
    {
        let _ = write!(
            s,
            "<p><b>Model chosen on validation</b> (checkpoints/best): step {step}, validation \
             accuracy {}, <b>test accuracy {}</b> — the honest estimate; the best test \
             accuracy above is the highest of many test evaluations, an optimistic number.</p>\
             <table><tr><th>test accuracy at best validation</th>{}</tr></table>",
            percent(valid),
            percent(test),
            num_cell("test_accuracy_at_best_valid", test, &percent(test))
        );
    }
    if summary.is_none() {
        s.push_str(&html::missing(if unreadable {
            "summary.json cannot be read: the numbers come from metrics.jsonl as far as it goes."
        } else {
            "No summary.json: the numbers come from metrics.jsonl as far as it goes."
        }));
    }
    s.push_str("</section>");
    s
}

/// White to the palette's blue by `share` (of a confusion row), as in confusion.png.
fn heat(share: f64) -> (String, &'static str) {
    let t = share.clamp(0.0, 1.0).sqrt();
    let mix = |c: f64| (255.0 + (c - 255.0) * t).round() as u8;
    let ink = if share > 0.4 { "#fff" } else { "#1d2330" };
    (
        format!("#{:02x}{:02x}{:02x}", mix(31.0), mix(119.0), mix(180.0)),
        ink,
    )
}

fn eval_section(run: &Path, eval: Option<&EvalRecord>) -> String {
    let mut s = String::from("<section><h2>Evaluation</h2>");
    let Some(e) = eval else {
        let _ = write!(
            s,
            "{}</section>",
            html::missing(&format!(
                "No evaluation yet: `mnist-train eval --checkpoint {}` writes eval.json, and the \
                 confusion matrix, per-class accuracy and most confident mistakes appear here.",
                run.display()
            ))
        );
        return s;
    };
    let _ = write!(
        s,
        "<p>Checkpoint <code>{}</code> at step {} on {} {} test images: accuracy {}, loss {:.4} \
         (eval.json).</p>",
        esc(&e.checkpoint),
        e.step,
        e.images,
        e.dataset,
        percent(e.accuracy),
        e.loss
    );
    let _ = write!(
        s,
        "<table><tr><th>eval accuracy</th>{}<th>eval loss</th>{}</tr></table>",
        num_cell("eval_accuracy", e.accuracy, &percent(e.accuracy)),
        num_cell("eval_loss", e.loss, &format!("{:.4}", e.loss))
    );
    let n = e.confusion_matrix.len().min(e.class_names.len());
    if n == 0 {
        s.push_str(&html::missing("eval.json holds no confusion matrix."));
    } else {
        s.push_str("<div class=\"grid\"><div class=\"scroll\"><h2>Confusion matrix</h2>");
        s.push_str("<table class=\"cm\"><thead><tr><th>true \\ predicted</th>");
        for c in 0..n {
            let _ = write!(s, "<th class=\"num\">{c}</th>");
        }
        s.push_str("</tr></thead><tbody>");
        for (t, row) in e.confusion_matrix.iter().take(n).enumerate() {
            let total = row.iter().sum::<u64>().max(1) as f64;
            let name = &e.class_names[t];
            let label = if *name == t.to_string() {
                name.clone()
            } else {
                format!("{t} {name}")
            };
            let _ = write!(s, "<tr><th>{}</th>", esc(&label));
            for &count in row.iter().take(n) {
                let (bg, ink) = heat(count as f64 / total);
                let _ = write!(
                    s,
                    "<td style=\"background:{bg};color:{ink}\">{}</td>",
                    if count > 0 {
                        count.to_string()
                    } else {
                        String::new()
                    }
                );
            }
            s.push_str("</tr>");
        }
        s.push_str("</tbody></table><p class=\"missing\">Rows: true class; colour: share of the row.</p></div>");
        s.push_str(
            "<div><h2>Per-class accuracy</h2><table><thead><tr><th>class</th>\
             <th class=\"num\">images</th><th class=\"num\">correct</th>\
             <th class=\"num\">accuracy</th></tr></thead><tbody>",
        );
        for t in 0..n {
            let row = &e.confusion_matrix[t];
            let images: u64 = row.iter().sum();
            let correct = row.get(t).copied().unwrap_or(0);
            let acc = e.per_class_accuracy.get(t).copied().flatten();
            let _ = write!(
                s,
                "<tr><td>{}</td><td class=\"num\">{images}</td><td class=\"num\">{correct}</td>{}</tr>",
                esc(&e.class_names[t]),
                match acc {
                    Some(a) => num_cell(&format!("class_accuracy_{t}"), a, &percent(a)),
                    None => "<td class=\"num\">–</td>".into(),
                }
            );
        }
        s.push_str("</tbody></table></div></div>");
    }

    s.push_str("<h2>Most confident mistakes</h2>");
    match std::fs::read(run.join("mistakes.png")) {
        Ok(png) if png.starts_with(b"\x89PNG") => {
            let _ = write!(
                s,
                "<figure><img alt=\"the most confident mistakes\" style=\"max-width:880px\" \
                 src=\"data:image/png;base64,{}\"><figcaption>true → predicted (the model's \
                 probability), from mistakes.png</figcaption></figure>",
                html::base64(&png)
            );
        }
        _ => s.push_str(&html::missing(
            "No mistakes.png (drawn by eval when built with the `plots` feature); the list:",
        )),
    }
    if e.mistakes.is_empty() {
        s.push_str(&html::missing("eval.json lists no mistakes."));
    } else {
        s.push_str(
            "<details><summary>The list</summary><table><thead><tr><th class=\"num\">test \
             image</th><th>true</th><th>predicted</th><th class=\"num\">probability</th></tr>\
             </thead><tbody>",
        );
        let name = |c: usize| e.class_names.get(c).map_or(c.to_string(), |n| n.clone());
        for m in e.mistakes.iter().take(MISTAKES_LISTED) {
            let _ = write!(
                s,
                "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{:.3}</td></tr>",
                m.index,
                esc(&name(m.label)),
                esc(&name(m.predicted)),
                m.probability
            );
        }
        s.push_str("</tbody></table></details>");
    }
    s.push_str("</section>");
    s
}

/// The network drawn layer by layer, and what the augmentation does to a digit when the run
/// augments (`augmented.png`, drawn when it started).
fn network_section(run: &Path, config: &crate::config::ExperimentConfig) -> String {
    let mut s = format!(
        "<section><h2>Network</h2><p>{} trainable parameters.</p>{}",
        thousands(config.parameter_count()),
        super::architecture::svg(config)
    );
    if let Some(augment) = config.augment {
        match std::fs::read(run.join("augmented.png")) {
            Ok(png) if png.starts_with(b"\x89PNG") => {
                let _ = write!(
                    s,
                    "<figure><img style=\"max-width:600px\" alt=\"training images, as they \
                     are and augmented\" \
                     src=\"data:image/png;base64,{}\"><figcaption>--augment {augment}: each \
                     training batch is drawn this way, anew at every step (augmented.png)\
                     </figcaption></figure>",
                    html::base64(&png)
                );
            }
            _ => s.push_str(&html::missing(&format!(
                "The run augments its batches ({augment}); no augmented.png to show them \
                 (drawn when a run starts, with the `plots` feature)."
            ))),
        }
    }
    s.push_str("</section>");
    s
}

/// `619786` as `619,786`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn config_section(
    run: &Path,
    config: &crate::error::Result<crate::config::ExperimentConfig>,
    info: &crate::run::RunInfo,
) -> String {
    let mut s = String::from("<section><h2>Config</h2>");
    match config {
        Ok(_) => {
            let mut cmd = format!("mnist-train --config {}", run.join(CONFIG_FILE).display());
            if let Some(dir) = &info.data_dir {
                let _ = write!(cmd, " --data-dir {}", dir.display());
            }
            let _ = write!(
                s,
                "<p>Repeat the run (into a new run directory):</p><pre>{}</pre>",
                esc(&cmd)
            );
            let text = std::fs::read_to_string(run.join(CONFIG_FILE)).unwrap_or_default();
            let _ = write!(
                s,
                "<details open><summary>config.json (the resolved config)</summary><pre>{}</pre>\
                 </details>",
                esc(text.trim_end())
            );
        }
        Err(e) => s.push_str(&html::missing(&format!("No usable config.json: {e}"))),
    }
    s.push_str("</section>");
    s
}

fn machine_section(
    summary: Option<&Summary>,
    info: &crate::run::RunInfo,
    last: Option<&StepMetrics>,
) -> String {
    let unrecorded = "not recorded";
    let mut f = Facts::default();
    f.text("CPU", info.cpu.as_deref().unwrap_or(unrecorded));
    f.text(
        "backend",
        info.backend
            .as_deref()
            .or(summary.map(|s| s.backend.as_str()))
            .unwrap_or(unrecorded),
    );
    f.text(
        "threads",
        &info
            .threads
            .map_or_else(|| unrecorded.to_string(), |t| t.to_string()),
    );
    if let Some(dir) = &info.data_dir {
        f.text("data", &dir.display().to_string());
    }
    if let Some(s) = summary {
        f.raw(
            "wall time",
            &format!(
                "<span data-key=\"wall_time_s\" data-value=\"{}\">{:.1} s</span> (training and \
                 evaluation, summed over resumed sessions)",
                html::json_number(s.wall_time_s),
                s.wall_time_s
            ),
        );
        f.raw(
            "throughput",
            &format!(
                "<span data-key=\"images_per_s\" data-value=\"{}\">{:.0}</span> training images/s",
                html::json_number(s.images_per_s),
                s.images_per_s
            ),
        );
        let mut images = format!("{} train, {} test", s.train_images, s.test_images);
        if s.valid_images > 0 {
            let _ = write!(images, ", {} validation", s.valid_images);
        }
        f.text("images", &images);
    } else if let Some(m) = last {
        f.text(
            "elapsed",
            &format!(
                "{:.1} s at step {} (metrics.jsonl)",
                m.elapsed_s, m.global_step
            ),
        );
    }
    format!(
        "<section><h2>Machine and timings</h2>{}</section>",
        f.html()
    )
}

fn size_text(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.0} KB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn files_section(run: &Path) -> String {
    let mut s = String::from("<section><h2>Checkpoints, exports and files</h2>");
    let mut checkpoints: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    checkpoints.sort();
    if checkpoints.is_empty() {
        s.push_str(&html::missing("No checkpoints."));
    } else {
        let mut f = Facts::default();
        for c in &checkpoints {
            let note = match c.as_str() {
                "best" => " — the model chosen on validation",
                n if n.starts_with("damaged-") => " — did not load; kept for inspection",
                _ => "",
            };
            f.text(
                &format!("checkpoints/{c}"),
                &format!(
                    "{}{note}",
                    size_text(dir_size(&run.join("checkpoints").join(c)))
                ),
            );
        }
        s.push_str(&f.html());
    }
    let mut files: Vec<(String, u64)> = std::fs::read_dir(run)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        e.metadata().map(|m| m.len()).unwrap_or(0),
                    )
                })
                .filter(|(n, _)| !n.starts_with('.') && n != super::REPORT_FILE)
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let exports: Vec<&(String, u64)> = files
        .iter()
        .filter(|(n, _)| n.ends_with(".safetensors") || n.ends_with(".onnx"))
        .collect();
    if exports.is_empty() {
        s.push_str(&html::missing(
            "No exports in the run directory (mnist-train export --format safetensors|onnx).",
        ));
    } else {
        s.push_str("<p>Exports:</p><ul>");
        for (n, b) in exports {
            let _ = write!(s, "<li><code>{}</code> ({})</li>", esc(n), size_text(*b));
        }
        s.push_str("</ul>");
    }
    s.push_str("<details><summary>Files in the run directory</summary><ul>");
    for (n, b) in &files {
        let _ = write!(s, "<li><code>{}</code> ({})</li>", esc(n), size_text(*b));
    }
    s.push_str("</ul></details></section>");
    s
}
