//! Which compiled version of the loops this CPU runs.

/// Which compiled version of the loop this CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelPath {
    Avx512,
    Avx2,
    /// ARM's vector unit, which every 64-bit ARM CPU (Apple M-series included) has: the
    /// portable loop with fused multiply-adds, vectorized by the compiler.
    Neon,
    Portable,
}

impl KernelPath {
    /// The best version this CPU can run, unless `MNIST_TRAIN_KERNEL` (`avx512`, `avx2`,
    /// `portable`) asks for a lesser one it can also run, to compare them on one machine; a
    /// value it cannot run is ignored (`bench` names the path taken).
    pub fn detect() -> Self {
        static PATH: std::sync::OnceLock<KernelPath> = std::sync::OnceLock::new();
        *PATH.get_or_init(|| {
            let supported = Self::supported();
            std::env::var("MNIST_TRAIN_KERNEL")
                .ok()
                .and_then(|want| supported.iter().copied().find(|p| p.key() == want))
                .unwrap_or(supported[0])
        })
    }

    /// Every version this CPU can run, the best first.
    pub fn supported() -> Vec<KernelPath> {
        let mut paths = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                paths.push(KernelPath::Avx512);
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                paths.push(KernelPath::Avx2);
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("neon") {
                paths.push(KernelPath::Neon);
            }
        }
        paths.push(KernelPath::Portable);
        paths
    }

    /// Whether this version multiplies and adds in one rounding.
    pub fn fused(self) -> bool {
        self != KernelPath::Portable
    }

    pub(super) fn key(self) -> &'static str {
        match self {
            KernelPath::Avx512 => "avx512",
            KernelPath::Avx2 => "avx2",
            KernelPath::Neon => "neon",
            KernelPath::Portable => "portable",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KernelPath::Avx512 => "avx512",
            KernelPath::Avx2 => "avx2+fma",
            KernelPath::Neon => "neon",
            KernelPath::Portable => "portable",
        }
    }
}
