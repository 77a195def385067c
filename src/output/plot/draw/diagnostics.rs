//! A run's per-layer diagnostics.

use super::*;

pub(super) struct DiagnosticsData {
    pub(super) title: String,
    /// Layer names, input to output.
    pub(super) layers: Vec<String>,
    /// (step, per layer: the layer's diagnostics).
    pub(super) steps: Vec<(f64, Vec<metrics::LayerDiagnostics>)>,
    /// "dead" (relu family) or "saturated" (sigmoid, tanh).
    pub(super) share_name: &'static str,
}

pub(super) const DIAGNOSTICS_SIZE: (u32, u32) = (800, 1000);

pub(super) fn diagnostics_data(run: &Path) -> Option<DiagnosticsData> {
    let steps: Vec<_> = metrics::read(run)
        .into_iter()
        .filter_map(|m| m.layers.map(|l| (m.global_step as f64, l)))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    let (_, first) = steps.first()?;
    let layers: Vec<String> = first.iter().map(|l| l.name.clone()).collect();
    let share_name = if first.iter().any(|l| l.saturated_fraction.is_some()) {
        "saturated"
    } else {
        "dead"
    };
    Some(DiagnosticsData {
        title: format!("Per-layer diagnostics: {}", run_label(run)),
        layers,
        steps,
        share_name,
    })
}

pub fn run_diagnostics(run: &Path) -> Result<Vec<PathBuf>, String> {
    let Some(data) = diagnostics_data(run) else {
        return Ok(Vec::new());
    };
    render!(
        &run.join("diagnostics"),
        DIAGNOSTICS_SIZE,
        draw_diagnostics,
        &data
    )
}

pub fn run_diagnostics_svg(run: &Path) -> Result<Option<String>, String> {
    let Some(data) = diagnostics_data(run) else {
        return Ok(None);
    };
    svg_string!(DIAGNOSTICS_SIZE, draw_diagnostics, &data).map(Some)
}

pub(super) fn draw_diagnostics<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &DiagnosticsData,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(&data.title, (SANS, 24)).map_err(err)?;
    let h = root.dim_in_pixel().1;
    let (grad_area, rest) = root.split_vertically(h * 45 / 100);
    let (std_area, share_area) = rest.split_vertically(h * 28 / 100);
    let x_max = data.steps.last().map_or(1.0, |s| s.0).max(1.0);

    let (lo, hi) = log_range(
        data.steps
            .iter()
            .flat_map(|s| s.1.iter())
            .map(|l| l.grad_norm as f64),
    );
    let mut grads = ChartBuilder::on(&grad_area)
        .caption("gradient norm ‖∂loss/∂W‖ per layer (log scale)", (SANS, 22))
        .margin(12)
        .x_label_area_size(55)
        .y_label_area_size(95)
        .build_cartesian_2d(0f64..x_max, log_axis(lo, hi))
        .map_err(err)?;
    log_vs_step_mesh(&mut grads, "gradient norm")?;
    for (k, name) in data.layers.iter().enumerate() {
        let col = color(k);
        let points: Vec<(f64, f64)> = data
            .steps
            .iter()
            .filter_map(|(x, l)| l.get(k).map(|l| (*x, (l.grad_norm as f64).max(lo))))
            .collect();
        let last = points.last().map(|p| p.1).unwrap_or(0.0);
        grads
            .draw_series(LineSeries::new(points, col.stroke_width(2)))
            .map_err(err)?
            .label(format!("{name} (last {})", sci_label(&last)))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], col.stroke_width(2)));
    }
    series_legend(&mut grads)?;

    let hidden = data.layers.len().saturating_sub(1);
    let std_hi = data
        .steps
        .iter()
        .flat_map(|s| s.1.iter())
        .filter_map(|l| l.act_std)
        .fold(0.0f64, |a, b| a.max(b as f64))
        .max(1e-3)
        * 1.15;
    let mut spread = ChartBuilder::on(&std_area)
        .caption(
            "spread of each hidden layer's outputs (std over batch and units)",
            (SANS, 22),
        )
        .margin(12)
        .x_label_area_size(55)
        .y_label_area_size(95)
        .build_cartesian_2d(0f64..x_max, 0f64..std_hi)
        .map_err(err)?;
    spread
        .configure_mesh()
        .x_desc("training step")
        .y_desc("output std")
        .x_label_formatter(&int_label)
        .y_label_formatter(&|v: &f64| format!("{v:.2}"))
        .label_style((SANS, 21))
        .axis_desc_style((SANS, 22))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()
        .map_err(err)?;
    for (k, name) in data.layers.iter().enumerate().take(hidden) {
        let col = color(k);
        spread
            .draw_series(LineSeries::new(
                data.steps
                    .iter()
                    .filter_map(|(x, l)| l.get(k)?.act_std.map(|s| (*x, s as f64))),
                col.stroke_width(2),
            ))
            .map_err(err)?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], col.stroke_width(2)));
    }
    series_legend(&mut spread)?;

    let mut share = ChartBuilder::on(&share_area)
        .caption(
            match data.share_name {
                "saturated" => "saturated outputs: within 2% of the activation's bounds (%)",
                _ => "dead units: output ≤ 0 on the whole batch (%)",
            },
            (SANS, 22),
        )
        .margin(12)
        .x_label_area_size(55)
        .y_label_area_size(95)
        .build_cartesian_2d(0f64..x_max, 0f64..100f64)
        .map_err(err)?;
    percent_vs_step_mesh(&mut share, &format!("{} (%)", data.share_name))?;
    for (k, name) in data.layers.iter().enumerate().take(hidden) {
        let col = color(k);
        share
            .draw_series(LineSeries::new(
                data.steps.iter().filter_map(|(x, l)| {
                    let l = l.get(k)?;
                    l.dead_fraction
                        .or(l.saturated_fraction)
                        .map(|f| (*x, f as f64 * 100.0))
                }),
                col.stroke_width(2),
            ))
            .map_err(err)?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], col.stroke_width(2)));
    }
    series_legend(&mut share)?;
    Ok(())
}
