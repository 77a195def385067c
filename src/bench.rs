//! What `mnist-train bench` measures for a backend — what decides how long a user waits: a
//! training epoch, a step with and without the full test pass, one test pass, and peak
//! memory. Each figure is the median of several repetitions after a warm-up.

use std::time::Instant;

use burn::module::Module;
use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::backend::gpu::AdapterChoice;
use crate::config::{ExperimentConfig, TrainMetrics};
use crate::data::DataSource;
use crate::data::batcher::{ResidentSet, epoch_order};
use crate::error::Result;
use crate::model::Model;
use crate::train::{Step, evaluate, evaluate_with, optimizer, run_step, steps_per_epoch};

/// What to measure, for one backend.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub backend: Backend,
    pub adapter: AdapterChoice,
    /// Repetitions of each measurement after the warm-up.
    pub reps: usize,
    /// Repetitions of the lecture-protocol epoch; 0 skips it.
    pub protocol_reps: usize,
    pub threads: usize,
    /// The experiment: its network, batch size, optimizer and subset.
    pub config: ExperimentConfig,
    pub data: DataSource,
}

/// Median and range of one measurement, in the unit its name says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub samples: usize,
}

impl Stat {
    fn of(mut v: Vec<f64>) -> Stat {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Stat {
            median,
            min: v[0],
            max: v[n - 1],
            samples: n,
        }
    }

    fn show(&self, scale: f64, digits: usize) -> String {
        format!(
            "{:.d$} ({:.d$}–{:.d$})",
            self.median * scale,
            self.min * scale,
            self.max * scale,
            d = digits
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackendReport {
    pub backend: String,
    pub threads: usize,
    /// The network measured, as `run.json` names it.
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub batch_size: usize,
    pub train_images: usize,
    pub test_images: usize,
    pub steps_per_epoch: usize,
    /// Seconds per training epoch, no evaluation, with each step's train loss and accuracy
    /// taken from its training forward pass (`train_metrics: batch`), as the Keras, PyTorch
    /// and JAX loops of `../shared/peers` take theirs: the figure to compare with them.
    pub train_epoch_s: Stat,
    /// Seconds per training step, likewise.
    pub step_s: Stat,
    /// Seconds per step followed by a full test pass (lecture protocol), likewise.
    pub step_with_eval_s: Option<Stat>,
    /// Seconds per lecture-protocol epoch (test pass after every step), likewise.
    pub protocol_epoch_s: Option<Stat>,
    /// Seconds per training epoch with the lecture's train columns (the default,
    /// `train_metrics: lecture`): one more forward pass of the batch per step.
    #[serde(default)]
    pub train_epoch_lecture_s: Option<Stat>,
    /// Seconds per lecture-protocol epoch with the lecture's train columns.
    #[serde(default)]
    pub protocol_epoch_lecture_s: Option<Stat>,
    /// Seconds per test pass over the test set.
    pub test_pass_s: Stat,
    /// Test images evaluated per second (median).
    pub test_images_per_s: f64,
    /// Training images per second (median epoch).
    pub train_images_per_s: f64,
    /// Peak resident memory of the process, MB.
    pub peak_rss_mb: Option<f64>,
    /// How the test pass computes its first layer: `sparse (avx512)` and the like, or `dense`.
    #[serde(default)]
    pub eval_first_layer: String,
    /// How a training step computes its first layer's product and weight gradient, likewise.
    #[serde(default)]
    pub train_first_layer: String,
    /// How the CNN's convolutions and pooling run: `kernel`, `burn`, or `none` for an MLP.
    #[serde(default)]
    pub convolutions: String,
    /// How the kernels' forward passes of convolutions from 8 input channels multiply:
    /// `winograd` or `unfolded` (`run.json`'s `convolution_products`); `burn`, or `none` for an
    /// MLP.
    #[serde(default)]
    pub convolution_products: String,
    /// Which of `gemm`'s compiled products run (Burn's and the kernels' matrix products).
    #[serde(default)]
    pub products: String,
}

/// The version of `gemm`'s products this build runs on this CPU: AVX-512 when built with the
/// `x86-v4` feature on a CPU with AVX-512 (F, BW, CD, DQ, VL, as `gemm` asks), else AVX2 + FMA
/// where the CPU has them.
pub fn gemm_products() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if cfg!(feature = "x86-v4")
            && has!("avx512f")
            && has!("avx512bw")
            && has!("avx512cd")
            && has!("avx512dq")
            && has!("avx512vl")
        {
            return "avx512";
        }
        if has!("avx2") && has!("fma") {
            return "avx2+fma";
        }
    }
    #[cfg(target_arch = "aarch64")]
    return "neon";
    #[allow(unreachable_code)]
    "portable"
}

/// The CPU's model name (Linux), and the vector features the kernels choose between.
pub fn cpu_description() -> String {
    let model = crate::backend::cpu_model().unwrap_or_else(|| std::env::consts::ARCH.to_string());
    #[cfg(target_arch = "x86_64")]
    let features: Vec<&str> = [
        ("avx512f", std::arch::is_x86_feature_detected!("avx512f")),
        ("avx2", std::arch::is_x86_feature_detected!("avx2")),
        ("fma", std::arch::is_x86_feature_detected!("fma")),
    ]
    .into_iter()
    .filter_map(|(name, found)| found.then_some(name))
    .collect();
    #[cfg(target_arch = "aarch64")]
    let features: Vec<&str> = vec!["neon"];
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let features: Vec<&str> = Vec::new();
    let cores = crate::backend::cores();
    format!(
        "{model}, {cores} core{}, features: {}",
        if cores == 1 { "" } else { "s" },
        if features.is_empty() {
            "none of avx512f/avx2/fma".to_string()
        } else {
            features.join(" ")
        }
    )
}

/// Peak resident set size of this process (Linux), MB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The measurements, in this process, for one backend. Sizes the global thread pool, so run
/// it in a process of its own (`mnist-train bench` starts one per backend).
pub fn measure(args: &BenchOptions) -> Result<BackendReport> {
    let backend = args.backend;
    let threads = args.threads;
    crate::backend::set_threads(threads)?;
    backend.run_on_pool(|| measure_on_pool(args))
}

/// [`measure`] once the pool is set up, on the pool, as the trainer runs.
fn measure_on_pool(args: &BenchOptions) -> Result<BackendReport> {
    let (backend, threads) = (args.backend, args.threads);
    let device = backend.device_on(args.adapter)?;
    let config = args.config.clone();
    let data = crate::data::load_limited(&config.subset(), &args.data)?;
    let steps = steps_per_epoch(&config, data.train.len())?;
    let batch = config.batch_size;

    let ad = device.clone().autodiff();
    ad.seed(0);
    let mut model = Some(Model::new(&config, &ad));
    let mut optim = optimizer(&config);
    let test = ResidentSet::new(
        &data.test.images,
        &data.test.labels,
        &device,
        backend.eval_chunk(config.model),
    );

    let as_peers = ExperimentConfig {
        train_metrics: TrainMetrics::Batch,
        ..config.clone()
    };
    // One epoch of training; with `eval`, a full test pass after every step.
    // The model moves through the steps as in the trainer: a second reference to its
    // weights would make the optimizer copy them.
    let mut epoch = |model: &mut Option<Model>, config: &ExperimentConfig, eval: bool, n: usize| {
        let order = epoch_order(data.train.len(), 0, n);
        let start = Instant::now();
        let mut host = None;
        for step in 0..steps {
            let idx = &order[step * batch..(step + 1) * batch];
            // The trainer's own step, train columns read back included.
            let this_step = Step {
                config,
                train: &data.train,
                idx,
                lr: config.lr,
                global_step: n * steps + step,
                diagnose: false,
            };
            let taken = model.take().expect("the model is back after each step");
            let out = run_step(taken, &mut host, &mut optim, &ad, &this_step);
            if eval {
                let _ = evaluate_with(&out.model.valid(), &test, &mut host);
            }
            *model = Some(out.model);
        }
        start.elapsed().as_secs_f64()
    };

    epoch(&mut model, &config, false, 0); // warm-up: allocator pools, caches, thread pool
    // The two kinds of train columns in turn, so that a slow spell of the machine does not
    // fall on one of them only.
    let (mut train, mut train_lecture) = (Vec::new(), Vec::new());
    // An experiment that takes its train columns from the training pass (the CNN's) has no
    // lecture's columns to time.
    let lecture = config.train_metrics == TrainMetrics::Lecture;
    for r in 0..args.reps {
        train.push(epoch(&mut model, &as_peers, false, 2 * r + 1));
        if lecture {
            train_lecture.push(epoch(&mut model, &config, false, 2 * r + 2));
        }
    }
    let (mut protocol, mut protocol_lecture) = (Vec::new(), Vec::new());
    for r in 0..args.protocol_reps {
        protocol.push(epoch(&mut model, &as_peers, true, 2 * r + 100));
        if lecture {
            protocol_lecture.push(epoch(&mut model, &config, true, 2 * r + 101));
        }
    }

    let mlp = config.model == crate::config::ModelKind::Mlp;
    let valid = model.expect("the model is back after each step").valid();
    let _ = evaluate(&valid, &test);
    let passes: Vec<f64> = (0..args.reps.max(10))
        .map(|_| {
            let start = Instant::now();
            let _ = evaluate(&valid, &test);
            start.elapsed().as_secs_f64()
        })
        .collect();

    let train_epoch_s = Stat::of(train.clone());
    let test_pass_s = Stat::of(passes);
    let per_step = |v: &[f64]| Stat::of(v.iter().map(|t| t / steps as f64).collect());
    Ok(BackendReport {
        backend: backend.name().to_string(),
        threads,
        architecture: format!("{}, {}", config.architecture(), config.label()),
        batch_size: batch,
        train_images: data.train.len(),
        test_images: test.len,
        steps_per_epoch: steps,
        step_s: per_step(&train),
        step_with_eval_s: (!protocol.is_empty()).then(|| per_step(&protocol)),
        protocol_epoch_s: (!protocol.is_empty()).then(|| Stat::of(protocol)),
        train_epoch_lecture_s: (!train_lecture.is_empty()).then(|| Stat::of(train_lecture)),
        protocol_epoch_lecture_s: (!protocol_lecture.is_empty())
            .then(|| Stat::of(protocol_lecture)),
        test_images_per_s: test.len as f64 / test_pass_s.median,
        train_images_per_s: (steps * batch) as f64 / train_epoch_s.median,
        train_epoch_s,
        test_pass_s,
        peak_rss_mb: peak_rss_mb(),
        // The lit-pixel paths serve the MLP's first layer only.
        eval_first_layer: first_layer_path(test.sparse.is_some() && mlp),
        train_first_layer: first_layer_path(crate::kernel::trains_on(&ad) && mlp),
        convolutions: match config.model {
            crate::config::ModelKind::Mlp => "none",
            #[cfg(feature = "flex")]
            crate::config::ModelKind::Cnn if crate::kernel::conv::convolves_on(&ad) => "kernel",
            crate::config::ModelKind::Cnn => "burn",
        }
        .into(),
        convolution_products: match config.model {
            crate::config::ModelKind::Mlp => "none",
            #[cfg(feature = "flex")]
            crate::config::ModelKind::Cnn if crate::kernel::conv::convolves_on(&ad) => {
                if crate::kernel::FastPaths::get().winograd {
                    "winograd"
                } else {
                    "unfolded"
                }
            }
            crate::config::ModelKind::Cnn => "burn",
        }
        .into(),
        products: gemm_products().into(),
    })
}

fn first_layer_path(sparse: bool) -> String {
    match sparse {
        true => format!("sparse ({})", crate::kernel::KernelPath::detect().name()),
        false => "dense".into(),
    }
}

/// Markdown table: one column per backend, "median (min–max)".
pub fn table(reports: &[BackendReport]) -> String {
    let mut out = String::new();
    let header: Vec<String> = reports
        .iter()
        .map(|r| format!("{} ({} threads)", r.backend, r.threads))
        .collect();
    out.push_str(&format!("| median (min–max) | {} |\n", header.join(" | ")));
    out.push_str(&format!("|---|{}\n", "---|".repeat(reports.len())));
    let row = |name: &str, f: &dyn Fn(&BackendReport) -> String| {
        let cells: Vec<String> = reports.iter().map(f).collect();
        format!("| {name} | {} |\n", cells.join(" | "))
    };
    let opt = |s: &Option<Stat>, scale: f64, d: usize| {
        s.as_ref().map_or("—".to_string(), |s| s.show(scale, d))
    };
    out.push_str(&row("training epoch, no eval (s)", &|r| {
        r.train_epoch_s.show(1.0, 3)
    }));
    out.push_str(&row("epoch, test pass every step (s)", &|r| {
        opt(&r.protocol_epoch_s, 1.0, 2)
    }));
    out.push_str(&row("training epoch, lecture's train columns (s)", &|r| {
        opt(&r.train_epoch_lecture_s, 1.0, 3)
    }));
    out.push_str(&row(
        "epoch, test pass every step, lecture's columns (s)",
        &|r| opt(&r.protocol_epoch_lecture_s, 1.0, 2),
    ));
    out.push_str(&row("step, no eval (ms)", &|r| r.step_s.show(1e3, 2)));
    out.push_str(&row("step + test pass (ms)", &|r| {
        opt(&r.step_with_eval_s, 1e3, 1)
    }));
    out.push_str(&row("test pass (ms)", &|r| r.test_pass_s.show(1e3, 1)));
    out.push_str(&row("test images/s", &|r| {
        format!("{:.0}", r.test_images_per_s)
    }));
    out.push_str(&row("training images/s", &|r| {
        format!("{:.0}", r.train_images_per_s)
    }));
    out.push_str(&row("peak memory (MB)", &|r| {
        r.peak_rss_mb.map_or("—".into(), |m| format!("{m:.0}"))
    }));
    out.push_str(&row("training step, first layer", &|r| {
        r.train_first_layer.clone()
    }));
    out.push_str(&row("test pass, first layer", &|r| {
        r.eval_first_layer.clone()
    }));
    out.push_str(&row("convolutions and pooling", &|r| {
        r.convolutions.clone()
    }));
    out.push_str(&row("convolution products", &|r| {
        r.convolution_products.clone()
    }));
    out.push_str(&row("matrix products (gemm)", &|r| r.products.clone()));
    if let Some(r) = reports.first() {
        out.push_str(&format!(
            "\n{} training images ({} steps of {}), {} test images per pass; {}. Train loss and \
             accuracy from each step's forward pass, as the peers take theirs, except in the \
             lecture's rows (one more forward pass after the update). CPU: {}.\n",
            r.train_images,
            r.steps_per_epoch,
            r.batch_size,
            r.test_images,
            r.architecture,
            cpu_description()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_median_and_range() {
        let s = Stat::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max, s.samples), (2.0, 1.0, 3.0, 3));
        assert_eq!(Stat::of(vec![4.0, 1.0, 2.0, 3.0]).median, 2.5);
    }
}
