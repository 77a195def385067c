//! A run's learning curves and learning rate.

use super::*;

/// One step of a run, accuracies in percent.
pub(super) struct Point {
    pub(super) step: f64,
    pub(super) train_loss: f64,
    pub(super) train_acc: f64,
    pub(super) test_acc: Option<f64>,
    pub(super) test_loss: Option<f64>,
    pub(super) valid_acc: Option<f64>,
    pub(super) valid_loss: Option<f64>,
    pub(super) lr: Option<f64>,
}

pub(super) struct RunData {
    pub(super) title: String,
    pub(super) steps: Vec<Point>,
}

pub(super) const CURVES_SIZE: (u32, u32) = (800, 720);
pub(super) const LR_SIZE: (u32, u32) = (800, 280);

pub(super) fn run_data(run: &Path) -> RunData {
    let pct = |a: Option<f32>| a.map(|a| a as f64 * 100.0);
    let steps = metrics::read(run)
        .into_iter()
        .map(|m| Point {
            step: m.global_step as f64,
            train_loss: m.train_loss as f64,
            train_acc: m.train_accuracy as f64 * 100.0,
            test_acc: pct(m.test_accuracy),
            test_loss: m.test_loss.map(f64::from),
            valid_acc: pct(m.valid_accuracy),
            valid_loss: m.valid_loss.map(f64::from),
            lr: m.lr,
        })
        .collect();
    RunData {
        title: format!("Learning curves: {}", run_label(run)),
        steps,
    }
}

pub fn run_curves(run: &Path) -> Result<Vec<PathBuf>, String> {
    let data = run_data(run);
    if data.steps.is_empty() {
        return Err("no metrics to plot".into());
    }
    render!(&run.join("curves"), CURVES_SIZE, draw_run, &data)
}

pub fn run_curves_svg(run: &Path) -> Result<Option<String>, String> {
    let data = run_data(run);
    if data.steps.is_empty() {
        return Ok(None);
    }
    svg_string!(CURVES_SIZE, draw_run, &data).map(Some)
}

pub fn run_lr_svg(run: &Path) -> Result<Option<String>, String> {
    let mut data = run_data(run);
    data.steps.retain(|p| p.lr.is_some());
    if data.steps.is_empty() {
        return Ok(None);
    }
    data.title = format!("Learning rate: {}", run_label(run));
    svg_string!(LR_SIZE, draw_lr, &data).map(Some)
}

pub(super) fn draw_lr<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &RunData,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(&data.title, (SANS, 20)).map_err(err)?;
    let x_max = data.steps.last().map_or(1.0, |s| s.step).max(1.0);
    let hi = data
        .steps
        .iter()
        .filter_map(|p| p.lr)
        .fold(0.0, f64::max)
        .max(1e-12);
    let mut chart = ChartBuilder::on(&root)
        .margin(12)
        .x_label_area_size(58)
        .y_label_area_size(100)
        .build_cartesian_2d(0f64..x_max, 0f64..hi * 1.1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("training step")
        .y_desc("learning rate")
        .x_label_formatter(&int_label)
        .y_label_formatter(&|v: &f64| format!("{v:.1e}"))
        .y_labels(6)
        .label_style((SANS, 21))
        .axis_desc_style((SANS, 22))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            data.steps.iter().filter_map(|p| p.lr.map(|l| (p.step, l))),
            color(8).stroke_width(2),
        ))
        .map_err(err)?;
    Ok(())
}

/// Moving average over `window` points (shorter at the start).
pub(super) fn smooth(values: &[f64], window: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(values.len());
    let mut sum = 0.0;
    for i in 0..values.len() {
        sum += values[i];
        if i >= window {
            sum -= values[i - window];
        }
        out.push(sum / (i + 1).min(window) as f64);
    }
    out
}

pub(super) fn draw_run<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &RunData,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(&data.title, (SANS, 24)).map_err(err)?;
    let (top, bottom) = root.split_vertically(root.dim_in_pixel().1 / 2);
    let x_max = data.steps.last().map_or(1.0, |s| s.step).max(1.0);
    let window = (data.steps.len() / 25).clamp(1, 50);
    let line = |c: RGBColor| {
        move |(x, y): (i32, i32)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(2))
    };

    let mut acc = ChartBuilder::on(&top)
        .margin(12)
        .x_label_area_size(58)
        .y_label_area_size(90)
        .build_cartesian_2d(0f64..x_max, 0f64..100f64)
        .map_err(err)?;
    percent_vs_step_mesh(&mut acc, "accuracy (%)")?;
    let train_acc: Vec<f64> = data.steps.iter().map(|s| s.train_acc).collect();
    let blue = color(0);
    acc.draw_series(LineSeries::new(
        data.steps.iter().map(|s| (s.step, s.train_acc)),
        blue.mix(0.25).stroke_width(1),
    ))
    .map_err(err)?;
    acc.draw_series(LineSeries::new(
        data.steps
            .iter()
            .zip(smooth(&train_acc, window))
            .map(|(s, a)| (s.step, a)),
        blue.stroke_width(2),
    ))
    .map_err(err)?
    .label(format!(
        "train accuracy (batch; light: per step, dark: mean of {window})"
    ))
    .legend(line(blue));
    // Test, then validation (when the run held some out): evaluated steps only.
    type Pick = fn(&Point) -> Option<f64>;
    let evaluated: [(Pick, &str, RGBColor); 2] = [
        (|p| p.test_acc, "test accuracy (test set", color(3)),
        (|p| p.valid_acc, "validation accuracy (held-out", color(4)),
    ];
    for (pick, name, col) in evaluated {
        let points: Vec<(f64, f64)> = data
            .steps
            .iter()
            .filter_map(|s| pick(s).map(|a| (s.step, a)))
            .collect();
        if points.is_empty() {
            continue;
        }
        let final_acc = points
            .last()
            .map(|&(_, a)| format!(", final {a:.2}%"))
            .unwrap_or_default();
        acc.draw_series(LineSeries::new(points.clone(), col.stroke_width(2)))
            .map_err(err)?
            .label(format!("{name}{final_acc})"))
            .legend(line(col));
        acc.draw_series(points.iter().map(|&p| Circle::new(p, 3, col.filled())))
            .map_err(err)?;
    }
    acc.configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((SANS, 21))
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(180, 180, 180))
        .draw()
        .map_err(err)?;

    let losses: Vec<f64> = data.steps.iter().map(|s| s.train_loss).collect();
    let eval_losses = data
        .steps
        .iter()
        .flat_map(|s| [s.test_loss, s.valid_loss])
        .flatten();
    let all = || losses.iter().cloned().chain(eval_losses.clone());
    let lo = all()
        .filter(|l| *l > 0.0)
        .fold(f64::INFINITY, f64::min)
        .max(1e-4);
    let hi = all()
        .filter(|l| l.is_finite())
        .fold(0.0, f64::max)
        .max(lo * 10.0);
    let mut loss = ChartBuilder::on(&bottom)
        .margin(12)
        .x_label_area_size(58)
        .y_label_area_size(90)
        .build_cartesian_2d(0f64..x_max, log_axis(lo * 0.8, hi * 1.25))
        .map_err(err)?;
    loss.configure_mesh()
        .x_desc("training step")
        .y_desc("loss (cross-entropy, log scale)")
        .x_label_formatter(&int_label)
        .y_label_formatter(&loss_label)
        .y_labels(10)
        .label_style((SANS, 21))
        .axis_desc_style((SANS, 22))
        .light_line_style(WHITE)
        .draw()
        .map_err(err)?;
    let green = color(2);
    loss.draw_series(LineSeries::new(
        data.steps.iter().map(|s| (s.step, s.train_loss.max(lo))),
        green.mix(0.25).stroke_width(1),
    ))
    .map_err(err)?;
    loss.draw_series(LineSeries::new(
        data.steps
            .iter()
            .zip(smooth(&losses, window))
            .map(|(s, l)| (s.step, l.max(lo))),
        green.stroke_width(2),
    ))
    .map_err(err)?
    .label(format!(
        "train loss (batch; light: per step, dark: mean of {window})"
    ))
    .legend(line(green));
    let evaluated: [(Pick, &str, RGBColor); 2] = [
        (|p| p.test_loss, "test loss", color(3)),
        (|p| p.valid_loss, "validation loss", color(4)),
    ];
    for (pick, name, col) in evaluated {
        let points: Vec<(f64, f64)> = data
            .steps
            .iter()
            .filter_map(|s| pick(s).map(|l| (s.step, l.max(lo))))
            .collect();
        if points.is_empty() {
            continue;
        }
        loss.draw_series(LineSeries::new(points, col.stroke_width(2)))
            .map_err(err)?
            .label(name)
            .legend(line(col));
    }
    loss.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((SANS, 21))
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(180, 180, 180))
        .draw()
        .map_err(err)?;
    Ok(())
}
