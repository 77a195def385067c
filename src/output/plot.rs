//! Plots, as SVG and PNG: a run's learning curves, and a sweep's test accuracy vs step (mean
//! line, ± sd band over seeds) and final accuracy (bars with error bars).
//!
//! Built with the `plots` cargo feature (default). Text is drawn with the bundled DejaVu Sans
//! (`assets/`), so no system fonts are needed. Without the feature these functions draw
//! nothing and return no paths.

use std::path::{Path, PathBuf};

use crate::sweep::results::SweepReport;

/// Draws `curves.svg/.png`, and `diagnostics.svg/.png` when the run took diagnostics, into a
/// finished run's directory; a failure is a warning, never a failed run.
pub fn after_run(run: &Path) {
    if let Err(e) = run_curves(run) {
        eprintln!(
            "warning: could not draw the learning curves of {}: {e}",
            run.display()
        );
    }
    if let Err(e) = run_diagnostics(run) {
        eprintln!(
            "warning: could not draw the diagnostics of {}: {e}",
            run.display()
        );
    }
}

/// Whether this build draws charts (the `plots` feature): the report says so when it does not.
pub const ENABLED: bool = cfg!(feature = "plots");

/// Each public chart function forwards to `draw` when built with `plots`, and otherwise draws
/// nothing and returns `$empty`: one pattern instead of a pair of cfg blocks per function.
macro_rules! charts {
    ($($(#[$doc:meta])* pub fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $empty:expr;)*) => {$(
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) -> $ret {
            #[cfg(feature = "plots")]
            {
                draw::$name($($arg),*)
            }
            #[cfg(not(feature = "plots"))]
            {
                let _ = ($($arg,)*);
                $empty
            }
        }
    )*};
}

charts! {
    /// Per-layer diagnostics of one run (gradient norm per layer on a log scale, the hidden
    /// layers' output spread and their dead or saturated share), read from its `metrics.jsonl`.
    /// No paths when the run took no diagnostics.
    pub fn run_diagnostics(run: &Path) -> Result<Vec<PathBuf>, String> = Ok(Vec::new());

    /// Learning curves of one run (train loss, train accuracy, test and validation accuracy
    /// and loss vs step), read from its `metrics.jsonl`.
    pub fn run_curves(run: &Path) -> Result<Vec<PathBuf>, String> = Ok(Vec::new());

    /// `accuracy-vs-step.{svg,png}` and `final-accuracy.{svg,png}` of a sweep.
    pub fn sweep_plots(dir: &Path, report: &SweepReport) -> Result<Vec<PathBuf>, String> =
        Ok(Vec::new());

    /// `confusion.svg` and `confusion.png`: the confusion matrix as a labelled heatmap (rows =
    /// true class, colour = share of the row).
    pub fn confusion(
        dir: &Path,
        title: &str,
        confusion: &[[u64; 10]; 10],
        names: &[&str; 10]
    ) -> Result<Vec<PathBuf>, String> = Ok(Vec::new());

    /// `mistakes.png`: a grid of the given test images, each captioned true → predicted (its
    /// probability).
    pub fn mistakes(
        dir: &Path,
        mistakes: &[crate::train::evaluate::Mistake],
        images: &[u8],
        names: &[&str; 10]
    ) -> Result<Vec<PathBuf>, String> = Ok(Vec::new());

    /// The learning curves of [`run_curves`] as an SVG document in memory, for the report;
    /// `None` when there are no metrics or no `plots` feature.
    pub fn run_curves_svg(run: &Path) -> Result<Option<String>, String> = Ok(None);

    /// The learning rate vs step as an SVG document; `None` when the run recorded none.
    pub fn run_lr_svg(run: &Path) -> Result<Option<String>, String> = Ok(None);

    /// The diagnostics of [`run_diagnostics`] as an SVG document; `None` without diagnostics.
    pub fn run_diagnostics_svg(run: &Path) -> Result<Option<String>, String> = Ok(None);

    /// The charts of [`sweep_plots`] as SVG documents, each with its file stem.
    pub fn sweep_svgs(report: &SweepReport) -> Result<Vec<(&'static str, String)>, String> =
        Ok(Vec::new());
}

#[cfg(feature = "plots")]
mod draw {
    use std::path::{Path, PathBuf};

    use plotters::coord::Shift;
    use plotters::coord::types::RangedCoordf64;
    use plotters::prelude::*;
    use plotters::style::FontStyle;

    use crate::data::{IMAGE_PIXELS, IMAGE_SIDE};
    use crate::run::{metrics, write_atomic};
    use crate::sweep::results::SweepReport;

    const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
    const SANS: &str = "sans-serif";

    /// Tableau's 10 colors, then black and navy: 12 distinguishable lines.
    const PALETTE: [RGBColor; 12] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
        RGBColor(0, 0, 0),
        RGBColor(0, 0, 128),
    ];

    fn color(i: usize) -> RGBColor {
        PALETTE[i % PALETTE.len()]
    }

    fn fonts() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            for style in [FontStyle::Normal, FontStyle::Bold] {
                let _ = plotters::style::register_font(SANS, style, FONT).is_ok();
            }
        });
    }

    /// Axis labels without decimals (steps, percent).
    fn int_label(v: &f64) -> String {
        format!("{v:.0}")
    }

    /// Loss labels on a log axis: two significant digits, no float noise.
    fn loss_label(v: &f64) -> String {
        let digits = (-v.abs().log10().floor() + 1.0).clamp(0.0, 6.0) as usize;
        format!("{v:.digits$}")
    }

    fn err<E: std::fmt::Display>(e: E) -> String {
        e.to_string()
    }

    /// Grid and labels of a percentage-vs-training-step chart.
    fn percent_vs_step_mesh<DB: DrawingBackend>(
        chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
        y_desc: &str,
    ) -> Result<(), String> {
        chart
            .configure_mesh()
            .x_desc("training step")
            .y_desc(y_desc)
            .x_label_formatter(&int_label)
            .y_label_formatter(&int_label)
            .label_style((SANS, 15))
            .axis_desc_style((SANS, 17))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()
            .map_err(err)
    }

    fn encode_png(buf: &[u8], (w, h): (u32, u32)) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, w, h);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut writer = enc.write_header().map_err(err)?;
            writer.write_image_data(buf).map_err(err)?;
        }
        Ok(out)
    }

    /// Draws with `$draw(&root, args..)` into an SVG document in memory.
    macro_rules! svg_string {
        ($size:expr, $draw:ident $(, $arg:expr)*) => {{
            fonts();
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, $size).into_drawing_area();
                $draw(&root $(, $arg)*)?;
                root.present().map_err(err)?;
            }
            Ok::<String, String>(svg)
        }};
    }

    /// Draws with `$draw(&root, args..)` into `<stem>.svg` and `<stem>.png`.
    macro_rules! render {
        ($stem:expr, $size:expr, $draw:ident $(, $arg:expr)*) => {{
            let stem: &Path = $stem;
            let size: (u32, u32) = $size;
            let svg_path = stem.with_extension("svg");
            let svg = svg_string!(size, $draw $(, $arg)*)?;
            write_atomic(&svg_path, svg.as_bytes()).map_err(err)?;
            let png_path = stem.with_extension("png");
            let mut buf = vec![0u8; (size.0 * size.1 * 3) as usize];
            {
                let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
                $draw(&root $(, $arg)*)?;
                root.present().map_err(err)?;
            }
            write_atomic(&png_path, &encode_png(&buf, size)?).map_err(err)?;
            Ok::<Vec<PathBuf>, String>(vec![svg_path, png_path])
        }};
    }

    // ---- one run -------------------------------------------------------------------------

    /// One step of a run, accuracies in percent.
    struct Point {
        step: f64,
        train_loss: f64,
        train_acc: f64,
        test_acc: Option<f64>,
        test_loss: Option<f64>,
        valid_acc: Option<f64>,
        valid_loss: Option<f64>,
        lr: Option<f64>,
    }

    struct RunData {
        title: String,
        steps: Vec<Point>,
    }

    const CURVES_SIZE: (u32, u32) = (1100, 850);
    const LR_SIZE: (u32, u32) = (1100, 330);

    fn run_label(run: &Path) -> String {
        crate::run::read_config(run)
            .map(|c| format!("{} ({})", c.label(), c.architecture()))
            .unwrap_or_else(|_| run.display().to_string())
    }

    fn run_data(run: &Path) -> RunData {
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

    fn draw_lr<DB: DrawingBackend>(
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
            .x_label_area_size(45)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..x_max, 0f64..hi * 1.1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("training step")
            .y_desc("learning rate")
            .x_label_formatter(&int_label)
            .y_label_formatter(&|v: &f64| format!("{v:.1e}"))
            .y_labels(6)
            .label_style((SANS, 15))
            .axis_desc_style((SANS, 17))
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
    fn smooth(values: &[f64], window: usize) -> Vec<f64> {
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

    fn draw_run<DB: DrawingBackend>(
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
            .x_label_area_size(45)
            .y_label_area_size(65)
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
            .label_font((SANS, 15))
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
            .x_label_area_size(45)
            .y_label_area_size(65)
            .build_cartesian_2d(0f64..x_max, (lo * 0.8..hi * 1.25).log_scale())
            .map_err(err)?;
        loss.configure_mesh()
            .x_desc("training step")
            .y_desc("loss (cross-entropy, log scale)")
            .x_label_formatter(&int_label)
            .y_label_formatter(&loss_label)
            .y_labels(10)
            .label_style((SANS, 15))
            .axis_desc_style((SANS, 17))
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
            .label_font((SANS, 15))
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(180, 180, 180))
            .draw()
            .map_err(err)?;
        Ok(())
    }

    // ---- one run's diagnostics -----------------------------------------------------------

    struct DiagnosticsData {
        title: String,
        /// Layer names, input to output.
        layers: Vec<String>,
        /// (step, per layer: the layer's diagnostics).
        steps: Vec<(f64, Vec<metrics::LayerDiagnostics>)>,
        /// "dead" (relu family) or "saturated" (sigmoid, tanh).
        share_name: &'static str,
    }

    const DIAGNOSTICS_SIZE: (u32, u32) = (1100, 1150);

    fn diagnostics_data(run: &Path) -> Option<DiagnosticsData> {
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

    /// Lower and upper bounds of positive values for a log axis, a decade at least apart.
    fn log_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
        let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
        for v in values.filter(|v| *v > 0.0 && v.is_finite()) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if !lo.is_finite() {
            return (1e-3, 1.0);
        }
        (lo * 0.7, hi.max(lo * 10.0) * 1.4)
    }

    /// The series' labels in a box in the upper right corner.
    fn series_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
        chart: &mut ChartContext<'a, DB, CT>,
    ) -> Result<(), String> {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((SANS, 15))
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(180, 180, 180))
            .draw()
            .map_err(err)
    }

    fn sci_label(v: &f64) -> String {
        if *v >= 0.01 && *v < 1000.0 {
            loss_label(v)
        } else {
            format!("{v:.0e}")
        }
    }

    fn draw_diagnostics<DB: DrawingBackend>(
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
            .caption("gradient norm ‖∂loss/∂W‖ per layer (log scale)", (SANS, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, (lo..hi).log_scale())
            .map_err(err)?;
        grads
            .configure_mesh()
            .x_desc("training step")
            .y_desc("gradient norm")
            .x_label_formatter(&int_label)
            .y_label_formatter(&sci_label)
            .label_style((SANS, 15))
            .axis_desc_style((SANS, 17))
            .light_line_style(WHITE)
            .draw()
            .map_err(err)?;
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
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], col.stroke_width(2))
                });
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
                (SANS, 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, 0f64..std_hi)
            .map_err(err)?;
        spread
            .configure_mesh()
            .x_desc("training step")
            .y_desc("output std")
            .x_label_formatter(&int_label)
            .y_label_formatter(&|v: &f64| format!("{v:.2}"))
            .label_style((SANS, 15))
            .axis_desc_style((SANS, 17))
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
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], col.stroke_width(2))
                });
        }
        series_legend(&mut spread)?;

        let mut share = ChartBuilder::on(&share_area)
            .caption(
                match data.share_name {
                    "saturated" => "saturated outputs: within 2% of the activation's bounds (%)",
                    _ => "dead units: output ≤ 0 on the whole batch (%)",
                },
                (SANS, 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
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
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], col.stroke_width(2))
                });
        }
        series_legend(&mut share)?;
        Ok(())
    }

    // ---- a sweep -------------------------------------------------------------------------

    /// The sweep's configs with a finished seed, and those of them that took diagnostics.
    fn sweep_rows(report: &SweepReport) -> (Vec<usize>, Vec<usize>) {
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

    const SWEEP_CURVES_SIZE: (u32, u32) = (1500, 1000);
    const GRADIENT_RATIO_SIZE: (u32, u32) = (1500, 800);

    fn bars_size(rows: &[usize]) -> (u32, u32) {
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
    fn draw_gradient_ratio<DB: DrawingBackend>(
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
            .build_cartesian_2d(0f64..x_max, (lo..hi).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("training step")
            .y_desc("‖∇W first‖ / ‖∇W output‖ (log scale)")
            .x_label_formatter(&int_label)
            .y_label_formatter(&sci_label)
            .label_style((SANS, 15))
            .axis_desc_style((SANS, 17))
            .light_line_style(WHITE)
            .draw()
            .map_err(err)?;
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
    fn side_legend<DB: DrawingBackend>(
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

    fn seeds_text(report: &SweepReport, rows: &[usize]) -> String {
        let mut ns: Vec<usize> = rows.iter().map(|&i| report.rows[i].done).collect();
        ns.dedup();
        match ns.as_slice() {
            [n] => format!("{n} seed{}", if *n == 1 { "" } else { "s" }),
            _ => "each config's finished seeds".into(),
        }
    }

    fn draw_sweep_curves<DB: DrawingBackend>(
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

    fn draw_sweep_bars<DB: DrawingBackend>(
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

    // ---- eval ----------------------------------------------------------------------------

    const CELL: i32 = 62;
    const GRID_LEFT: i32 = 190;
    const GRID_TOP: i32 = 110;

    pub fn confusion(
        dir: &Path,
        title: &str,
        confusion: &[[u64; 10]; 10],
        names: &[&str; 10],
    ) -> Result<Vec<PathBuf>, String> {
        let size = (
            (GRID_LEFT + 10 * CELL + 40) as u32,
            (GRID_TOP + 10 * CELL + 40) as u32,
        );
        render!(
            &dir.join("confusion"),
            size,
            draw_confusion,
            title,
            confusion,
            names
        )
    }

    fn draw_confusion<DB: DrawingBackend>(
        root: &DrawingArea<DB, Shift>,
        title: &str,
        confusion: &[[u64; 10]; 10],
        names: &[&str; 10],
    ) -> Result<(), String> {
        root.fill(&WHITE).map_err(err)?;
        let text = |s: &str, (x, y): (i32, i32), size: u32, color: &RGBColor| {
            root.draw(&Text::new(
                s.to_string(),
                (x, y),
                (SANS, size).into_font().color(color),
            ))
            .map_err(err)
        };
        text(title, (20, 16), 22, &BLACK)?;
        text(
            "predicted class",
            (GRID_LEFT + 4 * CELL, GRID_TOP - 58),
            17,
            &BLACK,
        )?;
        text("true class", (20, GRID_TOP - 30), 17, &BLACK)?;
        for (c, name) in names.iter().enumerate() {
            let c = c as i32;
            text(
                &c.to_string(),
                (GRID_LEFT + c * CELL + CELL / 2 - 5, GRID_TOP - 26),
                16,
                &BLACK,
            )?;
            let row_label = if *name == c.to_string() {
                name.to_string()
            } else {
                format!("{c} {name}")
            };
            text(
                &row_label,
                (20, GRID_TOP + c * CELL + CELL / 2 - 8),
                16,
                &BLACK,
            )?;
        }
        for (t, row) in confusion.iter().enumerate() {
            let total = row.iter().sum::<u64>().max(1) as f64;
            for (p, &n) in row.iter().enumerate() {
                let share = n as f64 / total;
                // White to the palette's blue, by the share of the true class's images.
                let mix = |w: u8, c: u8| (w as f64 + (c as f64 - w as f64) * share.sqrt()) as u8;
                let fill = RGBColor(mix(255, 31), mix(255, 119), mix(255, 180));
                let (x, y) = (GRID_LEFT + p as i32 * CELL, GRID_TOP + t as i32 * CELL);
                root.draw(&Rectangle::new(
                    [(x, y), (x + CELL, y + CELL)],
                    fill.filled(),
                ))
                .map_err(err)?;
                root.draw(&Rectangle::new(
                    [(x, y), (x + CELL, y + CELL)],
                    RGBColor(220, 220, 220).stroke_width(1),
                ))
                .map_err(err)?;
                if n > 0 {
                    let ink = if share > 0.4 { WHITE } else { BLACK };
                    let label = n.to_string();
                    let dx = 4 * label.len() as i32;
                    text(&label, (x + CELL / 2 - dx, y + CELL / 2 - 8), 15, &ink)?;
                }
            }
        }
        Ok(())
    }

    const TILE_SCALE: i32 = 4;
    const TILE_W: i32 = 170;
    const SIDE: i32 = IMAGE_SIDE as i32;
    const TILE_H: i32 = SIDE * TILE_SCALE + 34;
    const TILES_PER_ROW: usize = 5;

    pub fn mistakes(
        dir: &Path,
        mistakes: &[crate::train::evaluate::Mistake],
        images: &[u8],
        names: &[&str; 10],
    ) -> Result<Vec<PathBuf>, String> {
        fonts();
        let rows = mistakes.len().div_ceil(TILES_PER_ROW).max(1) as i32;
        let size = (
            (TILE_W * TILES_PER_ROW as i32 + 20) as u32,
            (60 + rows * TILE_H) as u32,
        );
        let path = dir.join("mistakes.png");
        let mut buf = vec![0u8; (size.0 * size.1 * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
            root.fill(&WHITE).map_err(err)?;
            let font = |s: u32| (SANS, s).into_font().color(&BLACK);
            let title = format!(
                "The {} most confident mistakes: true → predicted (probability)",
                mistakes.len()
            );
            root.draw(&Text::new(title, (12, 14), font(18)))
                .map_err(err)?;
            for (k, m) in mistakes.iter().enumerate() {
                let x0 = 10 + (k % TILES_PER_ROW) as i32 * TILE_W;
                let y0 = 50 + (k / TILES_PER_ROW) as i32 * TILE_H;
                let left = x0 + (TILE_W - SIDE * TILE_SCALE) / 2;
                let pixels = &images[m.index * IMAGE_PIXELS..(m.index + 1) * IMAGE_PIXELS];
                for (i, &v) in pixels.iter().enumerate() {
                    // Dark ink on white paper, as a digit is drawn.
                    let ink = 255 - v;
                    let (px, py) = (
                        left + (i % IMAGE_SIDE) as i32 * TILE_SCALE,
                        y0 + (i / IMAGE_SIDE) as i32 * TILE_SCALE,
                    );
                    root.draw(&Rectangle::new(
                        [(px, py), (px + TILE_SCALE, py + TILE_SCALE)],
                        RGBColor(ink, ink, ink).filled(),
                    ))
                    .map_err(err)?;
                }
                let caption = format!(
                    "{} → {} ({:.2})",
                    names[m.label], names[m.predicted], m.probability
                );
                root.draw(&Text::new(
                    caption,
                    (x0 + 4, y0 + SIDE * TILE_SCALE + 6),
                    font(14),
                ))
                .map_err(err)?;
            }
            root.present().map_err(err)?;
        }
        write_atomic(&path, &encode_png(&buf, size)?).map_err(err)?;
        Ok(vec![path])
    }
}

#[cfg(all(test, feature = "plots"))]
mod tests {
    use super::*;
    use crate::config::ExperimentConfig;
    use crate::run::metrics::StepMetrics;
    use crate::sweep::results::{Curve, Row, SweepReport};

    /// Width, height and RGB pixels of a PNG.
    fn decode(path: &Path) -> (u32, u32, Vec<u8>) {
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        assert_eq!(info.color_type, png::ColorType::Rgb);
        (info.width, info.height, buf)
    }

    fn pixel(png: &(u32, u32, Vec<u8>), x: u32, y: u32) -> [u8; 3] {
        let i = ((y * png.0 + x) * 3) as usize;
        [png.2[i], png.2[i + 1], png.2[i + 2]]
    }

    /// Pixels within 2 levels of `rgb`: a drawn line or bar of that colour.
    fn count(png: &(u32, u32, Vec<u8>), rgb: [u8; 3]) -> usize {
        png.2
            .chunks_exact(3)
            .filter(|p| p.iter().zip(rgb).all(|(&a, b)| a.abs_diff(b) <= 2))
            .count()
    }

    const BLUE: [u8; 3] = [31, 119, 180];

    #[test]
    fn run_curves_draw_svg_and_png_with_the_title_and_the_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path();
        std::fs::write(
            run.join(crate::run::CONFIG_FILE),
            ExperimentConfig::default().to_json_pretty(),
        )
        .unwrap();
        let mut lines = String::new();
        for s in 1..=60usize {
            let m = StepMetrics {
                epoch: 0,
                step: s - 1,
                steps_per_epoch: 60,
                global_step: s,
                train_loss: 2.0 / s as f32,
                train_accuracy: 1.0 - 0.9 / s as f32,
                test_accuracy: (s % 10 == 0).then(|| 1.0 - 0.8 / s as f32),
                elapsed_s: s as f64,
                ..Default::default()
            };
            lines.push_str(&serde_json::to_string(&m).unwrap());
            lines.push('\n');
        }
        std::fs::write(run.join(crate::run::METRICS_FILE), lines).unwrap();

        let paths = run_curves(run).unwrap();
        assert_eq!(paths, vec![run.join("curves.svg"), run.join("curves.png")]);
        let svg = std::fs::read_to_string(&paths[0]).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert!(svg.contains("Learning curves: relu-random-normal0.05"));
        let png = decode(&paths[1]);
        assert_eq!((png.0, png.1), (1100, 850));
        assert_eq!(pixel(&png, 2, 2), [255, 255, 255], "white background");
        assert!(count(&png, BLUE) > 200, "the first curve is drawn in blue");

        // No metrics, no plot (and a message saying so).
        let empty = tempfile::tempdir().unwrap();
        assert!(run_curves(empty.path()).unwrap_err().contains("no metrics"));
    }

    #[test]
    fn sweep_plots_draw_one_line_and_one_bar_per_finished_config() {
        let tmp = tempfile::tempdir().unwrap();
        let row = |label: &str, mean: f64, done: usize| Row {
            label: label.into(),
            group: label.into(),
            seeds: 2,
            done,
            final_test_accuracy: crate::sweep::results::stat(&[mean - 0.1, mean + 0.1]),
            best_test_accuracy: crate::sweep::results::stat(&[mean, mean + 0.2]),
            final_train_loss: crate::sweep::results::stat(&[0.2, 0.3]),
            wall_time_s: crate::sweep::results::stat(&[3.0, 4.0]),
            eval_every: 10,
            epochs: 1,
            config: ExperimentConfig::default(),
            trials: Vec::new(),
            curve: Curve {
                steps: vec![10.0, 20.0, 30.0],
                mean: vec![mean - 5.0, mean - 1.0, mean],
                sd: vec![0.5, 0.3, 0.2],
            },
            gradient_ratio: Curve::default(),
        };
        let report = SweepReport {
            name: "test".into(),
            caption: "a caption".into(),
            trials: 6,
            done: 4,
            failed: 0,
            rows: vec![
                row("relu-he", 96.0, 2),
                row("sigmoid", 92.0, 2),
                row("none", 0.0, 0),
            ],
        };
        let paths = sweep_plots(tmp.path(), &report).unwrap();
        let names: Vec<_> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "accuracy-vs-step.svg",
                "accuracy-vs-step.png",
                "final-accuracy.svg",
                "final-accuracy.png"
            ]
        );
        let svg = std::fs::read_to_string(&paths[0]).unwrap();
        assert!(svg.contains("relu-he") && svg.contains("sigmoid"));
        assert!(
            !svg.contains(">none<"),
            "a config with no finished seed is left out"
        );
        let curves = decode(&paths[1]);
        assert_eq!((curves.0, curves.1), (1500, 1000));
        assert!(count(&curves, BLUE) > 100, "first config's line");
        assert!(count(&curves, [255, 127, 14]) > 100, "second config's line");
        // Bars: 150 px of frame plus 46 per finished config.
        let bars = decode(&paths[3]);
        assert_eq!((bars.0, bars.1), (1200, 150 + 46 * 2));
        // Bars are filled with the config's colour at 45% over white.
        assert!(count(&bars, [154, 194, 221]) > 500, "a filled bar");
    }

    #[test]
    fn confusion_heatmap_and_mistakes_grid() {
        use crate::data::DatasetName;
        use crate::train::evaluate::Mistake;
        let tmp = tempfile::tempdir().unwrap();
        let mut m = [[0u64; 10]; 10];
        for (c, row) in m.iter_mut().enumerate() {
            row[c] = 95;
            row[(c + 3) % 10] = 5;
        }
        let names = DatasetName::FashionMnist.class_names();
        let paths = confusion(tmp.path(), "Confusion of a test", &m, &names).unwrap();
        assert_eq!(
            paths,
            [
                tmp.path().join("confusion.svg"),
                tmp.path().join("confusion.png")
            ]
        );
        let svg = std::fs::read_to_string(&paths[0]).unwrap();
        assert!(svg.contains("Confusion of a test") && svg.contains("9 Ankle boot"));
        let png = decode(&paths[1]);
        assert_eq!((png.0, png.1), (190 + 620 + 40, 110 + 620 + 40));
        // Cell (true 0, predicted 0) holds 95% of its row: deep blue; (0, 1) is empty: white.
        let diag = pixel(&png, 190 + 4, 110 + 4);
        assert!(diag[0] < 60 && diag[2] > 150, "{diag:?}");
        assert_eq!(pixel(&png, 190 + 62 + 4, 110 + 4), [255, 255, 255]);

        // Three images with a bright vertical bar in column 14.
        let mut images = vec![0u8; 3 * 784];
        for (i, p) in images.iter_mut().enumerate() {
            if i % 28 == 14 {
                *p = 255;
            }
        }
        let wrong = |index| Mistake {
            index,
            label: 1,
            predicted: 7,
            probability: 0.9,
        };
        let paths = mistakes(tmp.path(), &[wrong(0), wrong(2)], &images, &names).unwrap();
        let png = decode(&paths[0]);
        assert_eq!((png.0, png.1), (5 * 170 + 20, 60 + 28 * 4 + 34));
        // The first tile's image starts at x = 10 + (170 - 112) / 2, y = 50: its bar is ink.
        assert_eq!(pixel(&png, 39 + 14 * 4 + 1, 50 + 10 * 4 + 1), [0, 0, 0]);
        assert_eq!(
            pixel(&png, 39 + 2 * 4 + 1, 50 + 10 * 4 + 1),
            [255, 255, 255]
        );
    }
}
