//! The drawing, with plotters: the shared look (fonts, colours, axes) and the SVG/PNG
//! writers here, one file per kind of chart.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::data::{IMAGE_PIXELS, IMAGE_SIDE};
use crate::run::{metrics, write_atomic};
use crate::sweep::results::SweepReport;

const FONT: &[u8] = include_bytes!("../../../../assets/DejaVuSans.ttf");
const SANS: &str = "sans-serif";

/// Tableau's 10 colors, then black and navy: 12 distinguishable lines.
const PALETTE: [u32; 12] = [
    0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd, 0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22,
    0x17becf, 0x000000, 0x000080,
];

fn color(i: usize) -> RGBColor {
    let rgb = PALETTE[i % PALETTE.len()];
    RGBColor((rgb >> 16) as u8, (rgb >> 8) as u8, rgb as u8)
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

/// Grid and labels of a chart against the training step: percentages (light grey minor
/// lines), or a log scale (`sci_label`, no minor lines).
fn step_mesh<DB, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, Y>>,
    y_desc: &str,
    y_label: fn(&f64) -> String,
    minor: RGBColor,
) -> Result<(), String>
where
    DB: DrawingBackend,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc("training step")
        .y_desc(y_desc)
        .x_label_formatter(&int_label)
        .y_label_formatter(&y_label)
        .label_style((SANS, 21))
        .axis_desc_style((SANS, 22))
        .light_line_style(minor)
        .draw()
        .map_err(err)
}

/// Grid and labels of a percentage-vs-training-step chart.
fn percent_vs_step_mesh<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    y_desc: &str,
) -> Result<(), String> {
    step_mesh(chart, y_desc, int_label, RGBColor(238, 238, 238))
}

/// A log axis with its ticks where a reader looks for them.
type LogAxis = plotters::coord::combinators::WithKeyPoints<LogCoord<f64>>;

/// A log axis over `lo..hi` with a tick at every 1, 2 and 5 × 10^k inside it, so that a value
/// between two decades (a final loss of 0.16) can be read off; every decade alone when those
/// would crowd the axis (more than 12).
fn log_axis(lo: f64, hi: f64) -> LogAxis {
    let ticks = log_ticks(lo, hi);
    (lo..hi).log_scale().with_key_points(ticks)
}

fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let decades = lo.log10().floor() as i32..=hi.log10().ceil() as i32;
    let at = |steps: &[f64]| -> Vec<f64> {
        decades
            .clone()
            .flat_map(|k| steps.iter().map(move |m| m * 10f64.powi(k)))
            .filter(|v| (lo..=hi).contains(v))
            .collect()
    };
    let fine = at(&[1.0, 2.0, 5.0]);
    if fine.len() <= 12 { fine } else { at(&[1.0]) }
}

/// Grid and labels of a log-scale chart against the training step.
fn log_vs_step_mesh<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, LogAxis>>,
    y_desc: &str,
) -> Result<(), String> {
    step_mesh(chart, y_desc, sci_label, WHITE)
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

fn run_label(run: &Path) -> String {
    crate::run::read_config(run)
        .map(|c| format!("{} ({})", c.label(), c.architecture()))
        .unwrap_or_else(|_| run.display().to_string())
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
        .label_font((SANS, 21))
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

mod diagnostics;
mod eval;
mod run;
mod sweep;

pub use diagnostics::{run_diagnostics, run_diagnostics_svg};
pub use eval::{augmented, confusion, mistakes};
pub use run::{run_curves, run_curves_svg, run_lr_svg};
pub use sweep::{sweep_plots, sweep_svgs};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_axis_has_ticks_at_one_two_and_five_of_each_decade() {
        // A loss from 2.3 down to 0.16: every value in between can be read off.
        assert_eq!(log_ticks(0.13, 2.9), [0.2, 0.5, 1.0, 2.0]);
        let ticks = log_ticks(0.01, 20.0);
        assert_eq!(ticks.len(), 11);
        assert!(ticks.contains(&0.05) && ticks.contains(&20.0));
        // Many decades: the decades alone.
        assert_eq!(
            log_ticks(1e-8, 1e2),
            [
                1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0
            ]
        );
    }
}
