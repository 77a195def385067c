//! `mnist-train export`: a checkpoint's model as safetensors or ONNX.

use crate::cli::{ExportArgs, ExportFormat};
use crate::error::Result;
use crate::model::Mlp;
use crate::train::checkpoint::{self, Damaged};

pub fn run(args: ExportArgs) -> Result<()> {
    let device = crate::backend::Backend::default_cpu().device()?;
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
    let config = &loaded.checkpoint.state.config;
    let weights = loaded.model.weights();
    match args.format {
        ExportFormat::Safetensors => crate::export::safetensors(&weights, config, &args.output)?,
        ExportFormat::Onnx => crate::export::onnx::write(&weights, config, &args.output)?,
    }
    eprintln!(
        "wrote {} ({}, checkpoint {} at step {})",
        args.output.display(),
        config.architecture(),
        loaded.checkpoint.dir.display(),
        loaded.checkpoint.state.global_step
    );
    Ok(())
}
