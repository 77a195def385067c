//! Which Burn backend runs the model, chosen at run time, and the CPU thread pool it runs on;
//! the GPU's adapters in [`gpu`].

pub mod gpu;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use gpu::AdapterChoice;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// Burn's pure-Rust CPU backend (fastest on CPU here; the default).
    Flex,
    /// The classic ndarray CPU backend.
    Ndarray,
    /// Any GPU through wgpu (Vulkan, Metal, DX12); needs the `wgpu` cargo feature.
    Wgpu,
}

impl Backend {
    /// The fastest CPU backend compiled into this binary.
    pub fn default_cpu() -> Self {
        if cfg!(feature = "flex") {
            Backend::Flex
        } else {
            Backend::Ndarray
        }
    }

    /// Rows per chunk when evaluating the resident test set with `model`: cache-sized on the
    /// CPU for an MLP; on a GPU (where each chunk is a round of kernel launches) one launch
    /// for an MLP's whole set. A CNN's in chunks of 1,000 images, which keep its memory
    /// bounded whatever the set's size (about 45 MB more than chunks of 200 on the CPU, where
    /// the convolutions' groups then share the threads more evenly: docs/speed.md).
    pub fn eval_chunk(self, model: crate::config::ModelKind) -> usize {
        use crate::config::ModelKind;
        match (self, model) {
            (Backend::Flex | Backend::Ndarray, ModelKind::Mlp) => crate::data::batcher::EVAL_CHUNK,
            (_, ModelKind::Cnn) => 1000,
            (Backend::Wgpu, ModelKind::Mlp) => usize::MAX,
        }
    }

    /// Runs `work` for this backend and returns what it returns: on a thread of the CPU thread
    /// pool for the CPU backends, here otherwise.
    ///
    /// A training step forks work onto the pool a dozen times (Burn's products, the first
    /// layer's kernels, Adam). Forked from a pool thread, a fork is a push onto that thread's
    /// own queue, which the other thread steals; forked from any other thread, each one is
    /// handed over and its caller put to sleep until it is done, two trips through the
    /// scheduler. A training epoch is faster on the pool than from the main thread (`bench`,
    /// alternating runs; docs/speed.md).
    pub fn run_on_pool<R: Send>(self, work: impl FnOnce() -> R + Send) -> R {
        match self {
            Backend::Flex | Backend::Ndarray => rayon::scope(|_| work()),
            // The GPU backends wait on the device; their host threads are their own.
            Backend::Wgpu => work(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Ndarray => "ndarray",
            Backend::Wgpu => "wgpu",
        }
    }

    /// Whether this binary has the backend compiled in (its cargo feature).
    pub fn compiled_in(self) -> bool {
        match self {
            Backend::Flex => cfg!(feature = "flex"),
            Backend::Ndarray => cfg!(feature = "ndarray"),
            Backend::Wgpu => cfg!(feature = "wgpu"),
        }
    }

    /// The device to train on (without autodiff); for wgpu, the adapter `--adapter auto` picks.
    pub fn device(self) -> Result<Device> {
        self.device_on(AdapterChoice::Auto)
    }

    /// The device to train on (without autodiff); `adapter` picks the GPU for wgpu and is
    /// ignored by the CPU backends.
    pub fn device_on(self, adapter: AdapterChoice) -> Result<Device> {
        // Unused only when every backend is compiled in.
        #[cfg_attr(
            all(feature = "flex", feature = "ndarray", feature = "wgpu"),
            allow(unused_variables)
        )]
        let missing = |feature: &str| {
            Error::Usage(format!(
                "--backend {} is not compiled into this binary; rebuild with \
                 `cargo build --release --features {feature}`",
                self.name()
            ))
        };
        match self {
            #[cfg(feature = "flex")]
            Backend::Flex => Ok(Device::flex()),
            #[cfg(not(feature = "flex"))]
            Backend::Flex => Err(missing("flex")),
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            // upstream deprecates ndarray; our users still ask for it
            Backend::Ndarray => Ok(Device::ndarray()),
            #[cfg(not(feature = "ndarray"))]
            Backend::Ndarray => Err(missing("ndarray")),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => gpu::device(adapter),
            #[cfg(not(feature = "wgpu"))]
            Backend::Wgpu => {
                let _ = adapter;
                Err(missing("wgpu"))
            }
        }
    }
}

/// CPU threads the machine offers (1 when unknown).
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Refuses thread counts of 0 or far beyond the machine's cores: past a few per core, threads
/// only add scheduling and synchronization (1,000 threads on 2 cores made training crawl;
/// docs/speed.md).
pub fn check_threads(threads: usize) -> Result<()> {
    let max = MAX_THREADS_PER_CORE * cores();
    if threads == 0 || threads > max {
        return Err(Error::OutOfRange {
            key: "threads",
            value: threads.to_string(),
            allowed: format!(
                "must be in 1..={max} ({MAX_THREADS_PER_CORE} × the {} CPU threads here); \
                 one per core is fastest",
                cores()
            ),
        });
    }
    Ok(())
}

const MAX_THREADS_PER_CORE: usize = 8;

/// Makes the C allocator keep the memory of freed large buffers for the next ones instead of
/// returning it to the system. Burn allocates and frees a buffer per tensor operation; by
/// default glibc hands out blocks of 128 KB and more as fresh pages, and faulting an 800 KB
/// weight matrix's pages in again costs more than the operation (reading the first layer's
/// weights back takes 20× as long; docs/speed.md). Memory the process has used stays its own,
/// up to its peak. Made at start-up whatever the fast-path settings (`MNIST_TRAIN_DENSE`) say.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets allocator parameters; called before the threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

/// Makes Burn's default device the CPU (flex) unless `BURN_DEVICE` names another.
///
/// Burn loads a saved optimizer state onto its default device, GPUs first when the `wgpu`
/// feature is compiled in, and moves it to each parameter's device on the next step; our code
/// names its devices everywhere else. With a GPU as the default, resuming a CPU run would start
/// a Vulkan instance just to load the state, which takes GPU memory and, on a headless machine,
/// prints the driver's warnings. With flex as the default the state of a CPU run loads where it
/// is used, and a GPU run's moves to the GPU with its first step.
///
/// # Safety
///
/// Sets an environment variable: call it before any other thread starts (first in `main`).
pub unsafe fn keep_burn_default_on_cpu() {
    #[cfg(feature = "flex")]
    if std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: the caller runs this before any other thread exists.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    }
}

/// Sizes the CPU thread pool (rayon) shared by the CPU backends. Must run before any tensor
/// work.
pub fn set_threads(threads: usize) -> Result<()> {
    check_threads(threads)?;
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| Error::Other(format!("cannot set up {threads} threads: {e}")))
}

/// The CPU's model name as the OS reports it (Linux: `/proc/cpuinfo`); `None` elsewhere.
pub fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let name = text.lines().find_map(|l| {
        let (key, value) = l.split_once(':')?;
        matches!(
            key.trim(),
            "model name" | "Model" | "Hardware" | "cpu model"
        )
        .then(|| value.trim().to_string())
    })?;
    (!name.is_empty()).then_some(name)
}
