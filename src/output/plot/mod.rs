//! Charts and pictures, as SVG and PNG files beside a run or a sweep and as SVG documents for
//! the report: a run's learning curves, learning rate and per-layer diagnostics, its augmented
//! samples, `eval`'s confusion heatmap and most confident mistakes, and a sweep's test accuracy
//! vs step (mean line, ± sd band over seeds), final accuracy (bars with error bars) and
//! first-layer / output-layer gradient ratio. One file per kind of chart under `draw`.
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

    /// `accuracy-vs-step.{svg,png}` and `final-accuracy.{svg,png}` of a sweep, and
    /// `gradient-ratio.{svg,png}` when its trials took diagnostics.
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

    /// `augmented.png`: the first training images as they are and as `augment` draws them
    /// (the draws of the run's first steps' stream), for the report.
    pub fn augmented(
        dir: &Path,
        images: &[u8],
        augment: crate::config::Augment,
        seed: u64
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
mod draw;

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
        assert_eq!((png.0, png.1), (800, 720));
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
