//! `mnist-train bench`: one child process per backend (so each has its own thread pool and
//! peak memory), then the table.

use std::process::Command as Process;

use crate::backend::Backend;
use crate::bench::{BackendReport, BenchOptions, measure, table};
use crate::cli::BenchArgs;
use crate::config::{ExperimentConfig, ModelKind};
use crate::error::{Error, Result};

/// The experiment `bench` measures: unless a config file says otherwise, the one the peers of
/// `../shared/peers` run, as shipped in `configs/` (the MLP of `he.json`, or with `--model cnn`
/// lab 11-1's `lab11-cnn.json`); then the flags.
fn resolve(args: &BenchArgs) -> Result<ExperimentConfig> {
    let mut config = match &args.config {
        Some(path) => ExperimentConfig::from_file(path)?,
        None => {
            let shipped = match args.overrides.model.unwrap_or(ModelKind::Mlp) {
                ModelKind::Mlp => include_str!("../../configs/he.json"),
                ModelKind::Cnn => include_str!("../../configs/lab11-cnn.json"),
            };
            let config = ExperimentConfig::from_json(shipped);
            // Named by its keys, which the flags may change, not by the file's name.
            ExperimentConfig {
                name: None,
                ..config.expect("the shipped configs parse (tested)")
            }
        }
    };
    args.overrides.apply_to(&mut config);
    config.validate()?;
    Ok(config)
}

pub fn run(args: BenchArgs) -> Result<()> {
    if let Some(t) = args.device.threads {
        crate::backend::check_threads(t)?;
    }
    if args.reps == 0 {
        return Err(Error::OutOfRange {
            key: "reps",
            value: "0".into(),
            allowed: "must be >= 1".into(),
        });
    }
    if args.child {
        let config = match &args.experiment {
            Some(json) => ExperimentConfig::from_json(json).map_err(Error::Other)?,
            None => resolve(&args)?,
        };
        let report = measure(&BenchOptions {
            backend: args.backends[0],
            adapter: args.device.adapter,
            reps: args.reps,
            protocol_reps: args.protocol_reps,
            threads: args.device.threads.unwrap_or_else(crate::backend::cores),
            config,
            data: args.data.source(),
        })?;
        crate::outln!(
            "{}",
            serde_json::to_string(&report).expect("report serializes")
        );
        return Ok(());
    }
    let config = resolve(&args)?;
    let backends = if args.backends.is_empty() {
        // wgpu when compiled in and an adapter fits `--adapter` (found without starting it).
        [Backend::Flex, Backend::Ndarray, Backend::Wgpu]
            .into_iter()
            .filter(|&b| match b {
                Backend::Wgpu => crate::backend::gpu::available(args.device.adapter),
                _ => b.compiled_in() && b.device().is_ok(),
            })
            .collect()
    } else {
        args.backends.clone()
    };
    let mut reports = Vec::new();
    for backend in backends {
        eprintln!("measuring {} ...", backend.name());
        reports.push(run_child(&args, &config, backend)?);
    }
    if args.json {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&reports).expect("serializes")
        );
    } else {
        crate::outln!("{}", table(&reports).trim_end());
    }
    Ok(())
}

fn run_child(
    args: &BenchArgs,
    config: &ExperimentConfig,
    backend: Backend,
) -> Result<BackendReport> {
    let exe = std::env::current_exe().map_err(Error::io("locating the mnist-train binary"))?;
    let mut cmd = Process::new(exe);
    cmd.args(["bench", "--child", "--backends", backend.name()])
        .args(["--reps", &args.reps.to_string()])
        .args(["--protocol-reps", &args.protocol_reps.to_string()])
        .args(["--adapter", &args.device.adapter.to_string()]);
    if let Some(t) = args.device.threads {
        cmd.args(["--threads", &t.to_string()]);
    }
    cmd.args([
        "--experiment",
        &serde_json::to_string(config).expect("serializes"),
    ]);
    // A benchmark stopped or killed takes its measuring child with it.
    crate::signals::terminate_with_parent(&mut cmd);
    if let Some(d) = &args.data.data_dir {
        cmd.arg("--data-dir").arg(d);
    }
    if args.data.offline {
        cmd.arg("--offline");
    }
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(Error::io("running the benchmark child process"))?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "benchmark of {} failed ({})",
            backend.name(),
            out.status
        )));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::Other(format!("benchmark of {}: bad report ({e})", backend.name())))
}
