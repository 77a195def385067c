//! `mnist-train export`: a checkpoint's model as safetensors or ONNX.

use crate::cli::{ExportArgs, ExportFormat};
use crate::error::Result;

pub fn run(args: ExportArgs) -> Result<()> {
    let device = crate::backend::Backend::default_cpu().device()?;
    let loaded = super::load_model(&args.checkpoint, &device)?;
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
