//! A sweep directory's page: one table row per config (the seeds aggregated, so the page
//! grows by a row per config and a link per trial, not by a chart per trial).

use std::fmt::Write as _;
use std::path::Path;

use super::html::{self, esc};
use super::{REPORT_FILE, chart};
use crate::sweep::results::{FailureRecord, STATUS_FILE, Stat, SweepReport, TrialStatus};

/// Characters of a failed trial's message shown (its stderr tail can be long).
const MESSAGE_CHARS: usize = 600;

fn stat_cell(key: &str, s: Option<Stat>, digits: usize) -> String {
    match s {
        Some(s) => {
            let shown = if s.n > 1 {
                format!("{:.*} ± {:.*}", digits, s.mean, digits, s.sd)
            } else {
                format!("{:.*}", digits, s.mean)
            };
            format!(
                "<td class=\"num\" data-key=\"{key}\" data-value=\"{}\" data-sd=\"{}\">{shown}</td>",
                html::json_number(s.mean),
                html::json_number(s.sd)
            )
        }
        None => "<td class=\"num\">–</td>".into(),
    }
}

pub fn build(dir: &Path, report: &SweepReport) -> String {
    let mut body = String::new();
    let best = report
        .rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.final_test_accuracy.map(|s| (i, s.mean)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i);

    body.push_str("<section><h2>Results</h2>");
    let _ = write!(body, "<p>{}</p>", esc(&report.caption).replace('`', ""));
    body.push_str(
        "<div class=\"scroll\"><table id=\"results\"><thead><tr><th>config</th>\
         <th class=\"num\">seeds</th><th class=\"num\">final test acc (%)</th>\
         <th class=\"num\">best test acc (%)</th><th class=\"num\">final train loss</th>\
         <th class=\"num\">wall time / trial (s)</th><th>runs (seed: page)</th></tr></thead><tbody>",
    );
    for (i, r) in report.rows.iter().enumerate() {
        let is_best = best == Some(i);
        let seeds = if r.done == r.seeds {
            r.seeds.to_string()
        } else {
            format!("{}/{}", r.done, r.seeds)
        };
        let mut runs = String::new();
        for t in &r.trials {
            let (mark, class) = match t.status {
                TrialStatus::Done => ("", ""),
                TrialStatus::Failed { .. } => (" ✗", " class=\"bad\""),
                TrialStatus::Incomplete => (" …", ""),
                TrialStatus::Pending => (" ·", ""),
            };
            // A trial's own page when it has one, else its directory.
            let href = if dir.join(&t.dir).join(REPORT_FILE).is_file() {
                format!("{}/{REPORT_FILE}", t.dir)
            } else {
                format!("{}/", t.dir)
            };
            let _ = write!(
                runs,
                "<a href=\"{}\" title=\"{}\"{class}>s{}{mark}</a>",
                esc(&href),
                esc(&t.dir),
                t.seed
            );
        }
        let _ = write!(
            body,
            "<tr{}><td>{}{}</td><td class=\"num\">{seeds}</td>{}{}{}{}<td class=\"runs\">{runs}</td></tr>",
            if is_best { " class=\"best\"" } else { "" },
            esc(&r.label),
            if is_best {
                " <span class=\"badge ok\">★ best</span>"
            } else {
                ""
            },
            stat_cell("final_test_acc", r.final_test_accuracy, 2),
            stat_cell("best_test_acc", r.best_test_accuracy, 2),
            stat_cell("final_train_loss", r.final_train_loss, 3),
            stat_cell("wall_time_s", r.wall_time_s, 1),
        );
    }
    body.push_str("</tbody></table></div>");
    let _ = write!(
        body,
        "<p class=\"missing\">{} trials: {} finished, {} failed, {} not finished. ★: the \
         highest mean final test accuracy. Links: s&lt;seed&gt; opens that trial's page (✗ \
         failed, … started but not finished, · not started).</p></section>",
        report.trials,
        report.done,
        report.failed,
        report.trials - report.done - report.failed
    );

    body.push_str(&failures(dir, report));

    match crate::output::plot::sweep_svgs(report) {
        Ok(mut svgs) if !svgs.is_empty() => {
            // Every chart takes the page's width: drawn 1,500 px wide, two side by side would
            // shrink their text below reading size.
            if let Some(i) = svgs
                .iter()
                .position(|(stem, _)| *stem == "accuracy-vs-step")
            {
                let (_, svg) = svgs.remove(i);
                let title = "Test accuracy vs step";
                let _ = write!(
                    body,
                    "<section><h2>{title}</h2>{}</section>",
                    chart(Ok(Some(svg)), title, "")
                );
            }
            for (stem, svg) in svgs {
                let title = match stem {
                    "final-accuracy" => "Final test accuracy",
                    "accuracy-vs-step" => "Test accuracy vs step",
                    _ => "Gradient ratio, first / output layer",
                };
                let _ = write!(
                    body,
                    "<section><h2>{title}</h2>{}</section>",
                    chart(Ok(Some(svg)), title, "")
                );
            }
        }
        other => {
            let _ = write!(
                body,
                "<section><h2>Charts</h2>{}</section>",
                chart(
                    other.map(|_| None),
                    "sweep charts",
                    "No charts yet: no trial has finished."
                )
            );
        }
    }
    let subtitle = format!(
        "{} trials, {} configs · {}",
        report.trials,
        report.rows.len(),
        esc(&dir.display().to_string())
    );
    html::page(&format!("Sweep {}", report.name), &subtitle, &body)
}

/// Each failed trial with the error its child printed (from its sweep-status.json).
fn failures(dir: &Path, report: &SweepReport) -> String {
    let failed: Vec<_> = report
        .rows
        .iter()
        .flat_map(|r| r.trials.iter().map(move |t| (r, t)))
        .filter_map(|(r, t)| match t.status {
            TrialStatus::Failed { exit_code } => Some((r, t, exit_code)),
            _ => None,
        })
        .collect();
    if failed.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "<section><h2>Failed trials ({})</h2><table><thead><tr><th>trial</th><th>config</th>\
         <th class=\"num\">seed</th><th class=\"num\">exit</th><th>error</th></tr></thead><tbody>",
        failed.len()
    );
    for (r, t, code) in failed {
        let message = std::fs::read_to_string(dir.join(&t.dir).join(STATUS_FILE))
            .ok()
            .and_then(|text| serde_json::from_str::<FailureRecord>(&text).ok())
            .map(|f| f.message)
            .unwrap_or_else(|| format!("(no {STATUS_FILE})"));
        let message: String = match message.char_indices().nth(MESSAGE_CHARS) {
            Some((cut, _)) => format!("{}…", &message[..cut]),
            None => message,
        };
        let _ = write!(
            s,
            "<tr><td><code>{}</code></td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{code}</td><td><pre>{}</pre></td></tr>",
            esc(&t.dir),
            esc(&r.label),
            t.seed,
            esc(message.trim())
        );
    }
    s.push_str("</tbody></table></section>");
    s
}
