//! A sweep's comparison charts: test accuracy vs step, final accuracy, gradient ratio.

use super::*;

/// The sweep's configs with a finished seed, and those of them that took diagnostics.
pub(super) fn sweep_rows(report: &SweepReport) -> (Vec<usize>, Vec<usize>) {
    let rows: Vec<usize> = (0..report.rows.len())
        .filter(|&i| report.rows[i].done > 0)
        .collect();
    let with_ratio = rows
        .iter()
        .copied()
        .filter(|&i| !report.rows[i].gradient_ratio.steps.is_empty())
        .collect();
    (rows, with_ratio)
}

pub(super) const SWEEP_CURVES_SIZE: (u32, u32) = (1500, 1000);
pub(super) const GRADIENT_RATIO_SIZE: (u32, u32) = (1500, 800);

pub(super) fn bars_size(rows: &[usize]) -> (u32, u32) {
    (1200, 150 + 46 * rows.len() as u32)
}

pub fn sweep_plots(dir: &Path, report: &SweepReport) -> Result<Vec<PathBuf>, String> {
    let (rows, with_ratio) = sweep_rows(report);
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut paths = render!(
        &dir.join("accuracy-vs-step"),
        SWEEP_CURVES_SIZE,
        draw_sweep_curves,
        report,
        &rows
    )?;
    paths.extend(render!(
        &dir.join("final-accuracy"),
        bars_size(&rows),
        draw_sweep_bars,
        report,
        &rows
    )?);
    if !with_ratio.is_empty() {
        paths.extend(render!(
            &dir.join("gradient-ratio"),
            GRADIENT_RATIO_SIZE,
            draw_gradient_ratio,
            report,
            &with_ratio
        )?);
    }
    Ok(paths)
}

pub fn sweep_svgs(report: &SweepReport) -> Result<Vec<(&'static str, String)>, String> {
    let (rows, with_ratio) = sweep_rows(report);
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut svgs = vec![
        (
            "final-accuracy",
            svg_string!(bars_size(&rows), draw_sweep_bars, report, &rows)?,
        ),
        (
            "accuracy-vs-step",
            svg_string!(SWEEP_CURVES_SIZE, draw_sweep_curves, report, &rows)?,
        ),
    ];
    if !with_ratio.is_empty() {
        svgs.push((
            "gradient-ratio",
            svg_string!(
                GRADIENT_RATIO_SIZE,
                draw_gradient_ratio,
                report,
                &with_ratio
            )?,
        ));
    }
    Ok(svgs)
}

/// First-layer / output-layer gradient norm per config vs step, log scale.
pub(super) fn draw_gradient_ratio<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    report: &SweepReport,
    rows: &[usize],
) -> Result<(), String> {
    root.fill(&WHITE).map_err(err)?;
    let title = format!(
        "Sweep {}: first-layer / output-layer gradient norm (mean over {}; below 1 the \
         first layer learns slower)",
        report.name,
        seeds_text(report, rows)
    );
    let root = root.titled(&title, (SANS, 22)).map_err(err)?;
    let w = root.dim_in_pixel().0;
    let (chart_area, legend) = root.split_horizontally(w - 340);
    let x_max = rows
        .iter()
        .flat_map(|&i| report.rows[i].gradient_ratio.steps.last().copied())
        .fold(1.0, f64::max);
    let (lo, hi) = log_range(
        rows.iter()
            .flat_map(|&i| report.rows[i].gradient_ratio.mean.iter().copied())
            .chain([1.0]),
    );
    let mut chart = ChartBuilder::on(&chart_area)
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, log_axis(lo, hi))
        .map_err(err)?;
    log_vs_step_mesh(&mut chart, "‖∇W first‖ / ‖∇W output‖ (log scale)")?;
    // The line where both layers get gradients of the same size.
    chart
        .draw_series(LineSeries::new(
            [(0.0, 1.0), (x_max, 1.0)],
            RGBColor(150, 150, 150).stroke_width(1),
        ))
        .map_err(err)?;
    for (k, &i) in rows.iter().enumerate() {
        let c = &report.rows[i].gradient_ratio;
        chart
            .draw_series(LineSeries::new(
                c.steps.iter().zip(&c.mean).map(|(&x, &m)| (x, m.max(lo))),
                color(k).stroke_width(2),
            ))
            .map_err(err)?;
    }
    let entries = rows.iter().map(|&i| {
        let r = &report.rows[i];
        let mean = &r.gradient_ratio.mean;
        let avg = mean.iter().sum::<f64>() / mean.len().max(1) as f64;
        format!("{} ({})", r.label, sci_label(&avg))
    });
    side_legend(&legend, "config (mean ratio)", entries)
}

/// A legend in its own area beside the charts, never over the curves: a title, then one
/// line per config in the palette's order.
pub(super) fn side_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    entries: impl Iterator<Item = String>,
) -> Result<(), String> {
    let area = area.margin(60, 10, 10, 10);
    area.draw(&Text::new(title, (0, 0), (SANS, 17)))
        .map_err(err)?;
    for (k, text) in entries.enumerate() {
        let y = 34 + 30 * k as i32;
        area.draw(&PathElement::new(
            vec![(0, y + 8), (30, y + 8)],
            color(k).stroke_width(4),
        ))
        .map_err(err)?;
        area.draw(&Text::new(text, (38, y), (SANS, 15)))
            .map_err(err)?;
    }
    Ok(())
}

pub(super) fn seeds_text(report: &SweepReport, rows: &[usize]) -> String {
    let mut ns: Vec<usize> = rows.iter().map(|&i| report.rows[i].done).collect();
    ns.dedup();
    match ns.as_slice() {
        [n] => format!("{n} seed{}", if *n == 1 { "" } else { "s" }),
        _ => "each config's finished seeds".into(),
    }
}

pub(super) fn draw_sweep_curves<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    report: &SweepReport,
    rows: &[usize],
) -> Result<(), String> {
    root.fill(&WHITE).map_err(err)?;
    let title = format!(
        "Sweep {}: test accuracy vs step (line: mean, band: ± 1 sd over {})",
        report.name,
        seeds_text(report, rows)
    );
    let root = root.titled(&title, (SANS, 24)).map_err(err)?;
    let (w, h) = root.dim_in_pixel();
    let (charts, legend) = root.split_horizontally(w - 340);
    let (full, zoom) = charts.split_vertically(h / 2);
    let x_max = rows
        .iter()
        .flat_map(|&i| report.rows[i].curve.steps.last().copied())
        .fold(1.0, f64::max);
    // Zoom on the range the final accuracies fall in.
    let finals: Vec<f64> = rows
        .iter()
        .filter_map(|&i| report.rows[i].final_test_accuracy.map(|s| s.mean))
        .collect();
    let lo = finals.iter().cloned().fold(100.0, f64::min);
    let zoom_lo = ((lo - 3.0) / 5.0)
        .floor()
        .mul_add(5.0, 0.0)
        .clamp(0.0, 95.0);
    let zoom_hi = 100.0;

    for (area, (y_lo, y_hi), caption) in [
        (&full, (0.0, 100.0), "all steps".to_string()),
        (
            &zoom,
            (zoom_lo, zoom_hi),
            format!("zoom: {zoom_lo:.0}–{zoom_hi:.0}% (curves below are drawn at the floor)"),
        ),
    ] {
        let mut chart = ChartBuilder::on(area)
            .caption(caption, (SANS, 18))
            .margin(10)
            .x_label_area_size(45)
            .y_label_area_size(65)
            .build_cartesian_2d(0f64..x_max, y_lo..y_hi)
            .map_err(err)?;
        percent_vs_step_mesh(&mut chart, "test accuracy (%)")?;
        let clamp = |v: f64| v.clamp(y_lo, y_hi);
        for (k, &i) in rows.iter().enumerate() {
            let c = &report.rows[i].curve;
            let col = color(k);
            if c.steps.len() >= 2 {
                let mut band: Vec<(f64, f64)> = c
                    .steps
                    .iter()
                    .zip(c.mean.iter().zip(&c.sd))
                    .map(|(&x, (&m, &s))| (x, clamp(m + s)))
                    .collect();
                band.extend(
                    c.steps
                        .iter()
                        .zip(c.mean.iter().zip(&c.sd))
                        .rev()
                        .map(|(&x, (&m, &s))| (x, clamp(m - s))),
                );
                chart
                    .draw_series(std::iter::once(Polygon::new(band, col.mix(0.18).filled())))
                    .map_err(err)?;
                chart
                    .draw_series(LineSeries::new(
                        c.steps.iter().zip(&c.mean).map(|(&x, &m)| (x, clamp(m))),
                        col.stroke_width(2),
                    ))
                    .map_err(err)?;
            } else {
                chart
                    .draw_series(
                        c.steps
                            .iter()
                            .zip(&c.mean)
                            .map(|(&x, &m)| Circle::new((x, clamp(m)), 5, col.filled())),
                    )
                    .map_err(err)?;
            }
        }
    }

    let entries = rows.iter().map(|&i| {
        let r = &report.rows[i];
        let acc = r
            .final_test_accuracy
            .map(|s| format!(" ({:.2})", s.mean))
            .unwrap_or_default();
        format!("{}{acc}", r.label)
    });
    side_legend(&legend, "config (final test acc. %)", entries)
}

pub(super) fn draw_sweep_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    report: &SweepReport,
    rows: &[usize],
) -> Result<(), String> {
    root.fill(&WHITE).map_err(err)?;
    let n = rows.len();
    let stats: Vec<(String, f64, f64)> = rows
        .iter()
        .map(|&i| {
            let r = &report.rows[i];
            let s = r.final_test_accuracy.expect("done > 0");
            (r.label.clone(), s.mean, s.sd)
        })
        .collect();
    let lo = stats.iter().map(|s| s.1 - s.2).fold(100.0, f64::min);
    let x_lo = ((lo - 2.0) / 5.0)
        .floor()
        .mul_add(5.0, 0.0)
        .clamp(0.0, 95.0);
    let title = format!(
        "Sweep {}: final test accuracy, mean ± sd over {} (axis starts at {x_lo:.0}%)",
        report.name,
        seeds_text(report, rows)
    );
    let mut chart = ChartBuilder::on(root)
        .caption(title, (SANS, 21))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(250)
        .build_cartesian_2d(x_lo..100f64, (0..n - 1).into_segmented())
        .map_err(err)?;
    let labels: Vec<String> = stats.iter().map(|s| s.0.clone()).collect();
    let formatter = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) if *i < n => labels[n - 1 - *i].clone(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&formatter)
        .x_desc("final test accuracy (%)")
        .x_label_formatter(&int_label)
        .label_style((SANS, 15))
        .axis_desc_style((SANS, 17))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()
        .map_err(err)?;
    for (k, (_, mean, sd)) in stats.iter().enumerate() {
        let y = n - 1 - k;
        let mut bar = Rectangle::new(
            [
                (x_lo, SegmentValue::Exact(y)),
                (*mean, SegmentValue::Exact(y + 1)),
            ],
            color(k).mix(0.45).filled(),
        );
        bar.set_margin(7, 7, 0, 0);
        chart.draw_series(std::iter::once(bar)).map_err(err)?;
        let (a, b) = ((mean - sd).max(x_lo), (mean + sd).min(100.0));
        let mid = SegmentValue::CenterOf(y);
        let black = BLACK.stroke_width(2);
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(a, mid.clone()), (b, mid.clone())],
                black,
            )))
            .map_err(err)?;
        for x in [a, b] {
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((x, mid.clone()))
                        + PathElement::new(vec![(0, -7), (0, 7)], black),
                ))
                .map_err(err)?;
        }
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((x_lo, mid.clone()))
                    + Text::new(format!("{mean:.2} ± {sd:.2}"), (8, -8), (SANS, 15)),
            ))
            .map_err(err)?;
    }
    Ok(())
}
