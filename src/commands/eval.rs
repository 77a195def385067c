//! `mnist-train eval`: accuracy, loss, per-class accuracy and the confusion matrix of a saved
//! checkpoint on the whole test set (unless `--test-limit`), with a confusion heatmap and the
//! most confident mistakes drawn beside the run, and the numbers kept there as `eval.json`
//! for the run's report.

use burn::module::Module;

use crate::cli::EvalArgs;
use crate::data::batcher::ResidentSet;
use crate::error::Result;
use crate::output::{plot, tables};
use crate::run::eval::{EVAL_FILE, EvalRecord};
use crate::train::evaluate::evaluate_report;

/// Mistakes drawn in `mistakes.png`: a 5 × 5 grid.
const MISTAKES_SHOWN: usize = 25;

pub fn run(args: EvalArgs) -> Result<()> {
    // An unusable backend is the first thing to report: nothing else can help then.
    let (backend, device) = super::setup_runtime(&args.runtime)?;
    let loaded = super::load_model(&args.checkpoint, &device)?;
    let ckpt = &loaded.checkpoint;
    let mut config = ckpt.state.config.clone();
    if let Some(d) = args.dataset {
        config.dataset = d;
    }
    // The whole test set unless asked: the run's own test_limit was a training-time economy.
    config.test_limit = args.test_limit;
    config.train_limit = None;
    let source =
        super::data_source_for_run(&args.data, &super::run_of(&args.checkpoint), config.dataset);
    let data = crate::data::load_limited(&config.subset(), &source)?;
    let test = ResidentSet::new(
        &data.test.images,
        &data.test.labels,
        &device,
        backend.eval_chunk(),
    );
    let report = evaluate_report(&loaded.model.valid(), &test, MISTAKES_SHOWN);
    let result = &report.evaluation;
    let names = config.dataset.class_names();

    // Plots go beside the run (or to --out); failing to draw them is a warning, not a failed
    // evaluation.
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| super::run_of(&args.checkpoint));
    let mut written = Vec::new();
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("warning: cannot create {}: {e}; no plots", out.display());
    } else {
        let title = format!(
            "Confusion matrix: {} on {} {} test images ({:.2}% correct)",
            config.label(),
            result.images,
            config.dataset,
            result.accuracy * 100.0
        );
        for drawn in [
            plot::confusion(&out, &title, &report.confusion, &names),
            plot::mistakes(&out, &report.mistakes, &data.test.images, &names),
        ] {
            match drawn {
                Ok(paths) => written.extend(paths),
                Err(e) => eprintln!("warning: could not draw the eval plots: {e}"),
            }
        }
    }

    let record = EvalRecord {
        checkpoint: ckpt.dir.display().to_string(),
        dataset: config.dataset,
        step: ckpt.state.global_step,
        accuracy: result.accuracy,
        loss: result.loss,
        images: result.images,
        per_class_accuracy: report
            .per_class_accuracy()
            .into_iter()
            .map(|a| a.is_finite().then_some(a))
            .collect(),
        confusion_matrix: report.confusion.iter().map(|r| r.to_vec()).collect(),
        class_names: names.iter().map(|n| n.to_string()).collect(),
        test_accuracy: result.accuracy,
        test_loss: result.loss,
        test_images: result.images,
        mistakes: report.mistakes.clone(),
    };
    // Beside the plots, so that the run's report shows this evaluation without running it
    // again; like the plots, a failure is a warning.
    if out.is_dir() {
        match record.write(&out) {
            Ok(()) => written.push(out.join(EVAL_FILE)),
            Err(e) => eprintln!("warning: {e}"),
        }
    }

    if args.json {
        let mut json = serde_json::to_value(record).expect("an eval record serializes");
        // eval.json's list, not part of what `eval --json` has always printed.
        json.as_object_mut().map(|o| o.remove("mistakes"));
        crate::outln!("{json}");
    } else {
        crate::outln!(
            "test_accuracy: {:.4}, test_loss: {:.4} on {} {} test images (checkpoint {} at \
             step {})\n\n{}\n{}",
            result.accuracy,
            result.loss,
            result.images,
            config.dataset,
            ckpt.dir.display(),
            ckpt.state.global_step,
            tables::per_class(&report, &names),
            tables::confusion(&report, &names).trim_end()
        );
    }
    if !written.is_empty() {
        let files: Vec<String> = written
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        eprintln!("wrote {} in {}", files.join(", "), out.display());
    }
    if !args.no_report {
        super::report::after_command(&super::run_of(&args.checkpoint));
    }
    Ok(())
}
