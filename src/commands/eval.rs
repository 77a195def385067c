//! `mnist-train eval`: accuracy, loss, per-class accuracy and the confusion matrix of a saved
//! checkpoint on the whole test set (unless `--test-limit`), with a confusion heatmap and the
//! most confident mistakes drawn beside the run, and the numbers kept there as `eval.json`
//! for the run's report. Several checkpoints are scored as an ensemble (the sum of their
//! logits), each model's own accuracy beside the ensemble's.

use burn::module::Module;

use crate::cli::EvalArgs;
use crate::data::batcher::ResidentSet;
use crate::error::Result;
use crate::output::{plot, tables};
use crate::run::eval::{EVAL_FILE, EvalRecord};
use crate::train::checkpoint::Loaded;
use crate::train::evaluate::{Report, evaluate_report};

/// Mistakes drawn in `mistakes.png`: a 5 × 5 grid.
const MISTAKES_SHOWN: usize = 25;

pub fn run(args: EvalArgs) -> Result<()> {
    // An unusable backend is the first thing to report: nothing else can help then.
    let (backend, device) = super::setup_runtime(&args.runtime)?;
    let loaded = super::load_models(&args.checkpoint, &device)?;
    let ensemble = loaded.len() > 1;
    let ckpt = &loaded[0].checkpoint;
    let mut config = ckpt.state.config.clone();
    if let Some(d) = args.dataset {
        config.dataset = d;
    }
    // The whole test set unless asked: the run's own test_limit was a training-time economy.
    config.test_limit = args.test_limit;
    config.train_limit = None;
    let first_run = super::run_of(&args.checkpoint[0]);
    let source = super::data_source_for_run(&args.data, &first_run, config.dataset);
    let data = crate::data::load_limited(&config.subset(), &source)?;
    let test = ResidentSet::new(
        &data.test.images,
        &data.test.labels,
        &device,
        // The smallest chunk any member asks for.
        loaded
            .iter()
            .map(|l| backend.eval_chunk(l.checkpoint.state.config.model))
            .min()
            .unwrap_or(usize::MAX),
    );
    let models: Vec<_> = loaded.iter().map(|l| l.model.valid()).collect();
    let report = evaluate_report(&models.iter().collect::<Vec<_>>(), &test, MISTAKES_SHOWN);
    let result = &report.evaluation;
    let names = config.dataset.class_names();

    // Plots go beside the run (or to --out); failing to draw them is a warning, not a failed
    // evaluation. An ensemble belongs to no one run: its files go where --out says, if it does.
    let out = match (&args.out, ensemble) {
        (Some(out), _) => Some(out.clone()),
        (None, false) => Some(first_run.clone()),
        (None, true) => None,
    };
    let mut written = Vec::new();
    let Some(out) = out else {
        eprintln!("pass --out DIR to keep the ensemble's plots and eval.json");
        print_result(&args, &config, &loaded, &report, None)?;
        return Ok(());
    };
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("warning: cannot create {}: {e}; no plots", out.display());
    } else {
        let title = format!(
            "Confusion matrix: {} on {} {} test images ({:.2}% correct)",
            if ensemble {
                format!("ensemble of {}", loaded.len())
            } else {
                config.label()
            },
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

    let record = eval_record(&config, &loaded, &report);
    // Beside the plots, so that the run's report shows this evaluation without running it
    // again; like the plots, a failure is a warning.
    if out.is_dir() {
        match record.write(&out) {
            Ok(()) => written.push(out.join(EVAL_FILE)),
            Err(e) => eprintln!("warning: {e}"),
        }
    }
    print_result(&args, &config, &loaded, &report, Some(record))?;
    if !written.is_empty() {
        let files: Vec<String> = written
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        eprintln!("wrote {} in {}", files.join(", "), out.display());
    }
    if !args.no_report && !ensemble {
        super::report::after_command(&first_run);
    }
    Ok(())
}

/// What `eval.json` keeps of an evaluation; for an ensemble, its checkpoints joined.
fn eval_record(
    config: &crate::config::ExperimentConfig,
    loaded: &[Loaded],
    report: &Report,
) -> EvalRecord {
    let result = &report.evaluation;
    let ckpt = &loaded[0].checkpoint;
    let names = config.dataset.class_names();
    EvalRecord {
        checkpoint: loaded
            .iter()
            .map(|l| l.checkpoint.dir.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
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
    }
}

/// The result on stdout: eval's lines (each model's accuracy first for an ensemble), or one
/// JSON object with `--json` (an `ensemble` entry with each model's numbers for an ensemble).
fn print_result(
    args: &EvalArgs,
    config: &crate::config::ExperimentConfig,
    loaded: &[Loaded],
    report: &Report,
    record: Option<EvalRecord>,
) -> Result<()> {
    let result = &report.evaluation;
    let names = config.dataset.class_names();
    let record = record.unwrap_or_else(|| eval_record(config, loaded, report));
    let members: Vec<serde_json::Value> = loaded
        .iter()
        .zip(&report.members)
        .map(|(l, e)| {
            serde_json::json!({
                "checkpoint": l.checkpoint.dir.display().to_string(),
                "model": crate::config::enum_name(&l.checkpoint.state.config.model),
                "step": l.checkpoint.state.global_step,
                "accuracy": e.accuracy,
                "loss": e.loss,
            })
        })
        .collect();
    if args.json {
        let mut json = serde_json::to_value(record).expect("an eval record serializes");
        if let Some(o) = json.as_object_mut() {
            // eval.json's list, not part of what `eval --json` has always printed.
            o.remove("mistakes");
            if loaded.len() > 1 {
                o.insert(
                    "ensemble".into(),
                    serde_json::json!({ "models": loaded.len(), "members": members }),
                );
            }
        }
        crate::outln!("{json}");
        return Ok(());
    }
    let ckpt = &loaded[0].checkpoint;
    let what = if loaded.len() > 1 {
        for (m, member) in members.iter().enumerate() {
            crate::outln!(
                "model {}: test_accuracy: {:.4}, test_loss: {:.4} ({}, checkpoint {} at step {})",
                m + 1,
                member["accuracy"].as_f64().unwrap_or(f64::NAN),
                member["loss"].as_f64().unwrap_or(f64::NAN),
                member["model"].as_str().unwrap_or_default(),
                member["checkpoint"].as_str().unwrap_or_default(),
                member["step"]
            );
        }
        format!("ensemble of {} models (sum of logits)", loaded.len())
    } else {
        format!(
            "checkpoint {} at step {}",
            ckpt.dir.display(),
            ckpt.state.global_step
        )
    };
    crate::outln!(
        "{}test_accuracy: {:.4}, test_loss: {:.4} on {} {} test images ({what})\n\n{}\n{}",
        if loaded.len() > 1 { "ensemble " } else { "" },
        result.accuracy,
        result.loss,
        result.images,
        config.dataset,
        tables::per_class(report, &names),
        tables::confusion(report, &names).trim_end()
    );
    Ok(())
}
