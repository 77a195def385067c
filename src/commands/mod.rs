//! One module per subcommand: each turns its `cli` arguments into library calls and prints the
//! result. The only users of `cli`.

pub mod bench;
pub mod completions;
pub mod download;
pub mod eval;
pub mod export;
pub mod predict;
pub mod report;
pub mod sweep;
pub mod train;

use std::path::{Path, PathBuf};

use crate::backend::{self, Backend};
use crate::cli::{Cli, Command, DataArgs, RuntimeArgs};
use crate::data::{DataSource, DatasetName, locate};
use crate::error::Result;
use crate::model::Model;
use crate::train::checkpoint::{self, Damaged};

/// Runs the subcommand the command line names (training when it names none).
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        None => train::run(cli.train),
        Some(Command::Train(args)) => train::run(*args),
        Some(Command::Eval(args)) => eval::run(*args),
        Some(Command::Download(args)) => download::run(args),
        Some(Command::Bench(args)) => bench::run(*args),
        Some(Command::Sweep(args)) => sweep::run(*args),
        Some(Command::Predict(args)) => predict::run(*args),
        Some(Command::Export(args)) => export::run(*args),
        Some(Command::Report(args)) => report::run(args),
        Some(Command::Completions(args)) => completions::completions(args.shell),
        Some(Command::Man) => completions::man(),
    }
}

/// Picks the backend and sizes the thread pool; returns the device.
fn setup_runtime(runtime: &RuntimeArgs) -> Result<(Backend, burn::tensor::Device)> {
    if let Some(threads) = runtime.device.threads {
        backend::set_threads(threads)?;
    }
    let backend = runtime.backend.unwrap_or_else(Backend::default_cpu);
    Ok((backend, backend.device_on(runtime.device.adapter)?))
}

/// Where to read `dataset` from for a command on the run directory `run`: `--data-dir` or
/// `MNIST_DATA_DIR` when given, else the directory the run recorded when it still holds the
/// files (so a run trained with `--data-dir` resumes and evaluates without it), else the
/// defaults.
fn data_source_for_run(args: &DataArgs, run: &Path, dataset: DatasetName) -> DataSource {
    let mut source = args.source();
    if source.dir.is_none()
        && let Some(dir) = crate::run::read_info(run).data_dir
        && locate::find(dataset, Some(&dir)).is_ok()
    {
        eprintln!("data: {} (recorded in {})", dir.display(), run.display());
        source.dir = Some(dir);
    }
    source
}

/// The model of the newest checkpoint of `path` that loads, for commands that only read it
/// (`eval`, `predict`, `export`): damaged checkpoints are passed over with a warning and left
/// where they are (a trainer may be writing beside us; it moves them aside when it resumes).
fn load_model(path: &Path, device: &burn::tensor::Device) -> Result<checkpoint::Loaded> {
    let loaded =
        checkpoint::load_newest(path, None, Damaged::Skip, &|c| Model::new(c, device), None)?;
    for line in &loaded.skipped {
        eprintln!("warning: {line}");
    }
    Ok(loaded)
}

/// The models of `paths`, each its newest checkpoint that loads ([`load_model`]): one model,
/// or the members of an ensemble, which must share a dataset (their classes).
fn load_models(
    paths: &[PathBuf],
    device: &burn::tensor::Device,
) -> Result<Vec<checkpoint::Loaded>> {
    let loaded = paths
        .iter()
        .map(|p| load_model(p, device))
        .collect::<Result<Vec<_>>>()?;
    if let Some((first, rest)) = loaded.split_first() {
        let dataset = first.checkpoint.state.config.dataset;
        if let Some(other) = rest
            .iter()
            .find(|l| l.checkpoint.state.config.dataset != dataset)
        {
            return Err(crate::error::Error::Usage(format!(
                "an ensemble's models must share their classes: {} was trained on {dataset}, \
                 {} on {}",
                first.checkpoint.dir.display(),
                other.checkpoint.dir.display(),
                other.checkpoint.state.config.dataset
            )));
        }
    }
    Ok(loaded)
}

/// The run directory a checkpoint path belongs to: the path itself when it is a run
/// directory, `RUN` for `RUN/checkpoints/step-N`.
fn run_of(path: &Path) -> PathBuf {
    if path.join(crate::run::CONFIG_FILE).is_file() {
        return path.to_path_buf();
    }
    match path.parent() {
        Some(parent) if parent.file_name().is_some_and(|n| n == "checkpoints") => parent
            .parent()
            .map_or_else(|| path.to_path_buf(), Path::to_path_buf),
        _ => path.to_path_buf(),
    }
}
