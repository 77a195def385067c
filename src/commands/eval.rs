//! `mnist-train eval`: test accuracy and loss of a saved checkpoint, on the whole test set
//! unless `--test-limit` says otherwise.

use burn::module::Module;

use crate::cli::EvalArgs;
use crate::data::batcher::ResidentSet;
use crate::error::Result;
use crate::model::Mlp;
use crate::train::checkpoint::{self, Damaged};
use crate::train::evaluate;

pub fn run(args: EvalArgs) -> Result<()> {
    // An unusable backend is the first thing to report: nothing else can help then.
    let (backend, device) = super::setup_runtime(&args.runtime)?;
    // A reader: damaged checkpoints are passed over but left where they are (a trainer may be
    // writing beside us; it moves them aside when it resumes).
    let loaded = checkpoint::load_newest(
        &args.checkpoint,
        None,
        Damaged::Skip,
        &|c| Mlp::new(c, &device),
        None,
    )?;
    for line in &loaded.skipped {
        eprintln!("warning: {line}");
    }
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
    let data = crate::data::load_limited(&config, &source)?;
    let test = ResidentSet::new(
        &data.test.images,
        &data.test.labels,
        &device,
        backend.eval_chunk(),
    );
    let result = evaluate(&loaded.model.valid(), &test);
    if args.json {
        let json = serde_json::json!({
            "checkpoint": ckpt.dir.display().to_string(),
            "dataset": config.dataset,
            "step": ckpt.state.global_step,
            "test_accuracy": result.accuracy,
            "test_loss": result.loss,
            "test_images": result.images,
        });
        crate::outln!("{json}");
    } else {
        crate::outln!(
            "test_accuracy: {:.4}, test_loss: {:.4} on {} {} test images (checkpoint {} at \
             step {})",
            result.accuracy,
            result.loss,
            result.images,
            config.dataset,
            ckpt.dir.display(),
            ckpt.state.global_step
        );
    }
    Ok(())
}
