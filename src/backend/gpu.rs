//! `--backend wgpu`: which GPU adapter to train on, where the kernel autotune cache goes, and
//! the one-line errors a user sees when there is no usable GPU.
//!
//! The adapter is chosen here, not left to wgpu's heuristics, so that the start-up line names
//! the adapter actually used and a machine with only a software rasterizer (lavapipe, llvmpipe)
//! never trains on it by accident: `--adapter auto` takes a discrete GPU, then an integrated
//! one, then a virtual one, and a software adapter only when asked with `--adapter cpu`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Environment variable naming the directory for cubecl's kernel autotune cache.
pub const CACHE_ENV: &str = "MNIST_TRAIN_GPU_CACHE";

/// Which adapter `--backend wgpu` trains on (`--adapter`, env `MNIST_TRAIN_ADAPTER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdapterChoice {
    /// A discrete GPU, else an integrated one, else a virtual one; never a software adapter.
    #[default]
    Auto,
    /// The Nth discrete GPU (from 0).
    Discrete(usize),
    /// The Nth integrated GPU (from 0).
    Integrated(usize),
    /// The Nth virtual GPU (from 0): a GPU passed through to a VM.
    Virtual(usize),
    /// A software adapter (lavapipe, llvmpipe, WARP): slow, but runs anywhere.
    Cpu,
}

impl FromStr for AdapterChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.trim().to_ascii_lowercase();
        let (kind, index) = match lower.split_once(':') {
            Some((kind, n)) => {
                let n = n.parse::<usize>().map_err(|_| {
                    format!("`{s}`: the adapter index after `:` must be a number (e.g. discrete:1)")
                })?;
                (kind, Some(n))
            }
            None => (lower.as_str(), None),
        };
        let i = index.unwrap_or(0);
        match (kind, index) {
            ("auto", None) => Ok(Self::Auto),
            ("discrete", _) => Ok(Self::Discrete(i)),
            ("integrated", _) => Ok(Self::Integrated(i)),
            ("virtual", _) => Ok(Self::Virtual(i)),
            ("cpu", None) => Ok(Self::Cpu),
            _ => Err(format!(
                "`{s}` is not an adapter; use auto, discrete[:N], integrated[:N], virtual[:N] \
                 or cpu"
            )),
        }
    }
}

impl fmt::Display for AdapterChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => write!(f, "auto"),
            Self::Discrete(i) => write!(f, "discrete:{i}"),
            Self::Integrated(i) => write!(f, "integrated:{i}"),
            Self::Virtual(i) => write!(f, "virtual:{i}"),
            Self::Cpu => write!(f, "cpu"),
        }
    }
}

/// Where cubecl keeps its kernel autotune cache: `$MNIST_TRAIN_GPU_CACHE`, else
/// `<user cache dir>/mnist-train/cubecl` (`~/.cache/mnist-train/cubecl` on Linux), else a
/// folder in the temporary directory. Never next to a `Cargo.toml` the user happens to run in.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("mnist-train")
        .join("cubecl")
}

/// Whether `--backend wgpu --adapter <choice>` would find an adapter, without starting it;
/// `false` in a binary built without the `wgpu` feature.
pub fn available(choice: AdapterChoice) -> bool {
    #[cfg(feature = "wgpu")]
    {
        imp::quiet_mesa_device_select();
        select(choice, &adapters()).is_ok()
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = choice;
        false
    }
}

#[cfg(feature = "wgpu")]
pub use imp::{AdapterSummary, adapters, device, select};

#[cfg(feature = "wgpu")]
mod imp {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use burn::tensor::wgpu::{WgpuBackend, wgpu};
    use burn::tensor::{Device, DeviceKind};

    use super::{AdapterChoice, cache_dir};
    use crate::error::{Error, Result};

    /// What the install hint says when no adapter fits.
    const INSTALL_HINT: &str = "install a Vulkan driver (Debian/Ubuntu: `apt-get install \
         mesa-vulkan-drivers libvulkan1`; NVIDIA: the proprietary driver, which brings its Vulkan \
         ICD), or train on a software adapter (lavapipe, from mesa-vulkan-drivers) with \
         `--adapter cpu`, or on the CPU with `--backend flex`";

    /// One adapter as the graphics API reports it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct AdapterSummary {
        pub name: String,
        pub device_type: wgpu::DeviceType,
        pub api: wgpu::Backend,
    }

    impl std::fmt::Display for AdapterSummary {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "{} ({:?}, {})",
                self.name,
                self.device_type,
                api_name(self.api)
            )
        }
    }

    fn api_name(api: wgpu::Backend) -> &'static str {
        match api {
            wgpu::Backend::Vulkan => "Vulkan",
            wgpu::Backend::Metal => "Metal",
            wgpu::Backend::Dx12 => "DX12",
            wgpu::Backend::Gl => "OpenGL",
            wgpu::Backend::BrowserWebGpu => "WebGPU",
            _ => "other",
        }
    }

    /// The graphics APIs tried, best first: those cubecl's automatic choice tries, less
    /// OpenGL (its compute support is poor, and probing it through EGL prints noise).
    fn api_chain() -> Vec<wgpu::Backend> {
        if cfg!(target_os = "macos") {
            vec![wgpu::Backend::Metal]
        } else {
            vec![wgpu::Backend::Vulkan, wgpu::Backend::Dx12]
        }
    }

    /// Drives a future that is ready at once (wgpu's native adapter enumeration is).
    fn block_on<F: Future>(future: F) -> F::Output {
        let mut future = pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::yield_now();
        }
    }

    /// Mesa's Vulkan device-select layer (installed with lavapipe and Mesa's GPU drivers) asks
    /// Wayland for the default GPU and, on a headless machine without `XDG_RUNTIME_DIR`, prints
    /// "error: XDG_RUNTIME_DIR is invalid or not set" for every Vulkan instance: noise that reads
    /// like our error. There it has nothing to ask, so it is switched off (`NODEVICE_SELECT`),
    /// unless the user steers it (`MESA_VK_DEVICE_SELECT`) or set the switch themselves.
    pub(super) fn quiet_mesa_device_select() {
        let unset = |k: &str| std::env::var_os(k).is_none();
        if unset("XDG_RUNTIME_DIR") && unset("MESA_VK_DEVICE_SELECT") && unset("NODEVICE_SELECT") {
            // SAFETY: called from the command's main thread while it starts the GPU backend,
            // before any other thread of ours or of the graphics driver reads the environment
            // (never from a library caller's threads: `adapters` and `select` do not call it).
            unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
        }
    }

    /// Every adapter of every graphics API compiled in, in [`api_chain`] order and, within an
    /// API, in the order wgpu enumerates them (the order cubecl's indices count in).
    pub fn adapters() -> Vec<AdapterSummary> {
        let enabled = wgpu::Instance::enabled_backend_features();
        let mut found = Vec::new();
        for api in api_chain() {
            let backends = wgpu::Backends::from(api);
            if !enabled.contains(backends) {
                continue;
            }
            let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
                backends,
                ..wgpu::InstanceDescriptor::new_without_display_handle()
            });
            for adapter in block_on(instance.enumerate_adapters(backends)) {
                let info = adapter.get_info();
                found.push(AdapterSummary {
                    name: info.name,
                    device_type: info.device_type,
                    api,
                });
            }
        }
        found
    }

    /// The adapter `choice` picks among `found`, as (API, burn's device kind, the adapter), or
    /// the one-line reason there is none.
    pub fn select(
        choice: AdapterChoice,
        found: &[AdapterSummary],
    ) -> std::result::Result<(wgpu::Backend, DeviceKind, AdapterSummary), String> {
        use wgpu::DeviceType as T;
        // The Nth adapter of `ty` on the first API that has that many; indices count per API
        // and per type, as cubecl's do.
        let nth = |ty: T, n: usize| {
            api_chain().into_iter().find_map(|api| {
                found
                    .iter()
                    .filter(|a| a.api == api && a.device_type == ty)
                    .nth(n)
                    .map(|a| (api, a.clone()))
            })
        };
        let picked = match choice {
            AdapterChoice::Auto => [
                (T::DiscreteGpu, DeviceKind::DiscreteGpu(0)),
                (T::IntegratedGpu, DeviceKind::IntegratedGpu(0)),
                (T::VirtualGpu, DeviceKind::VirtualGpu(0)),
            ]
            .into_iter()
            .find_map(|(ty, kind)| nth(ty, 0).map(|(api, a)| (api, kind, a))),
            AdapterChoice::Discrete(n) => {
                nth(T::DiscreteGpu, n).map(|(api, a)| (api, DeviceKind::DiscreteGpu(n), a))
            }
            AdapterChoice::Integrated(n) => {
                nth(T::IntegratedGpu, n).map(|(api, a)| (api, DeviceKind::IntegratedGpu(n), a))
            }
            AdapterChoice::Virtual(n) => {
                nth(T::VirtualGpu, n).map(|(api, a)| (api, DeviceKind::VirtualGpu(n), a))
            }
            AdapterChoice::Cpu => nth(T::Cpu, 0).map(|(api, a)| (api, DeviceKind::Cpu, a)),
        };
        picked.ok_or_else(|| {
            let wanted = match choice {
                AdapterChoice::Auto => "no GPU adapter (discrete, integrated or virtual)".into(),
                AdapterChoice::Cpu => "no software adapter (lavapipe/llvmpipe)".into(),
                other => format!("no adapter `{other}`"),
            };
            let listed = if found.is_empty() {
                "no adapters at all (no Vulkan loader or driver?)".to_string()
            } else {
                let names: Vec<String> = found.iter().map(|a| a.to_string()).collect();
                names.join(", ")
            };
            format!("--backend wgpu: {wanted} found; found: {listed}. To fix: {INSTALL_HINT}")
        })
    }

    /// Points cubecl's kernel autotune cache at [`cache_dir`], keeping the rest of any cubecl
    /// config the user has (`cubecl.toml`, `CUBECL_*` variables). Must run before the first
    /// wgpu device exists; later calls change nothing.
    fn configure_cache() {
        use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig, cache::CacheConfig};
        let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
        config.environment.path = CacheConfig::Directory(cache_dir());
        // `false`: the config was already loaded in this process (a second device); the first
        // call set the same path.
        let _ = CubeClRuntimeConfig::try_set(config);
    }

    fn graphics_api(api: wgpu::Backend) -> WgpuBackend {
        match api {
            wgpu::Backend::Vulkan => WgpuBackend::Vulkan,
            wgpu::Backend::Metal => WgpuBackend::Metal,
            wgpu::Backend::Dx12 => WgpuBackend::Dx12,
            wgpu::Backend::Gl => WgpuBackend::Gl,
            _ => WgpuBackend::Auto,
        }
    }

    /// Initializes the wgpu device `choice` picks and prints which adapter it runs on (stderr).
    /// No adapter, or one that refuses a device, is [`Error::DeviceUnavailable`], never a panic.
    pub fn device(choice: AdapterChoice) -> Result<Device> {
        quiet_mesa_device_select();
        let found = adapters();
        let (api, kind, adapter) = select(choice, &found).map_err(Error::DeviceUnavailable)?;
        configure_cache();
        let (device, setup) = Device::wgpu_options()
            .device_kind(kind)
            .graphics_api(graphics_api(api))
            .init_with_setup()
            .map_err(|e| {
                Error::DeviceUnavailable(format!(
                    "--backend wgpu: cannot start {adapter}: {e}. To fix: {INSTALL_HINT}"
                ))
            })?;
        let info = setup.adapter.get_info();
        let used = AdapterSummary {
            name: info.name,
            device_type: info.device_type,
            api: info.backend,
        };
        eprintln!("wgpu adapter: {used}");
        if used.device_type == wgpu::DeviceType::Cpu {
            eprintln!(
                "note: {} is a software rasterizer on the CPU; `--backend flex` is much faster",
                used.name
            );
        }
        Ok(device)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn a(name: &str, device_type: wgpu::DeviceType, api: wgpu::Backend) -> AdapterSummary {
            AdapterSummary {
                name: name.into(),
                device_type,
                api,
            }
        }

        #[test]
        fn auto_prefers_discrete_then_integrated_and_never_software() {
            use wgpu::{Backend::*, DeviceType::*};
            let found = vec![
                a("llvmpipe", Cpu, Vulkan),
                a("Intel UHD", IntegratedGpu, Vulkan),
                a("NVIDIA H100", DiscreteGpu, Vulkan),
            ];
            let (api, kind, ad) = select(AdapterChoice::Auto, &found).unwrap();
            assert_eq!(
                (api, kind, ad.name.as_str()),
                (Vulkan, DeviceKind::DiscreteGpu(0), "NVIDIA H100")
            );
            let (_, kind, ad) = select(AdapterChoice::Auto, &found[..2]).unwrap();
            assert_eq!(
                (kind, ad.name.as_str()),
                (DeviceKind::IntegratedGpu(0), "Intel UHD")
            );
            let err = select(AdapterChoice::Auto, &found[..1]).unwrap_err();
            assert!(
                err.contains("llvmpipe (Cpu, Vulkan)") && err.contains("--adapter cpu"),
                "{err}"
            );
            assert!(err.contains("mesa-vulkan-drivers"), "{err}");
            let (_, kind, ad) = select(AdapterChoice::Cpu, &found).unwrap();
            assert_eq!((kind, ad.name.as_str()), (DeviceKind::Cpu, "llvmpipe"));
        }

        #[test]
        fn indices_count_per_type_and_missing_ones_are_named() {
            use wgpu::{Backend::*, DeviceType::*};
            let found = vec![
                a("gpu0", DiscreteGpu, Vulkan),
                a("igpu", IntegratedGpu, Vulkan),
                a("gpu1", DiscreteGpu, Vulkan),
            ];
            let (_, kind, ad) = select(AdapterChoice::Discrete(1), &found).unwrap();
            assert_eq!(
                (kind, ad.name.as_str()),
                (DeviceKind::DiscreteGpu(1), "gpu1")
            );
            let err = select(AdapterChoice::Discrete(2), &found).unwrap_err();
            assert!(
                err.contains("no adapter `discrete:2`") && err.contains("gpu1"),
                "{err}"
            );
            let err = select(AdapterChoice::Auto, &[]).unwrap_err();
            assert!(err.contains("no adapters at all"), "{err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapter_choices_parse_and_print_back() {
        for (s, c) in [
            ("auto", AdapterChoice::Auto),
            ("discrete", AdapterChoice::Discrete(0)),
            ("Discrete:2", AdapterChoice::Discrete(2)),
            ("integrated:1", AdapterChoice::Integrated(1)),
            ("virtual", AdapterChoice::Virtual(0)),
            ("cpu", AdapterChoice::Cpu),
        ] {
            assert_eq!(s.parse::<AdapterChoice>(), Ok(c));
            assert_eq!(c.to_string().parse::<AdapterChoice>(), Ok(c));
        }
        for bad in ["gpu", "discrete:x", "cpu:1", "auto:0", ""] {
            let err = bad.parse::<AdapterChoice>().unwrap_err();
            assert!(
                err.contains("discrete[:N]") || err.contains("number"),
                "{err}"
            );
        }
    }

    #[test]
    fn cache_dir_is_under_the_user_cache_not_the_working_directory() {
        let dir = cache_dir();
        if std::env::var_os(CACHE_ENV).is_none() {
            assert!(dir.ends_with("mnist-train/cubecl"), "{}", dir.display());
            assert!(dir.is_absolute(), "{}", dir.display());
        }
    }
}
