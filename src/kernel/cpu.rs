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

/// `fn name(args) { body }`, with the body compiled once for each vector unit of
/// [`KernelPath`] and the version this CPU runs chosen at each call: the loops it holds, and
/// the `#[inline(always)]` functions it calls, vectorize at that width. Meant for one loop
/// nest each: in a larger function the compiler left the same loops scalar (the crate itself is
/// compiled for every x86-64, with 128-bit vectors). The versions compute the same floats:
/// the compiler neither reorders sums nor fuses multiplications and additions.
#[cfg(feature = "flex")]
macro_rules! vectorized {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx512($($arg: $ty),*) {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx2($($arg: $ty),*) {
                body($($arg),*)
            }
            match $crate::kernel::KernelPath::detect() {
                // SAFETY: `detect` chose a path whose features this CPU has.
                #[cfg(target_arch = "x86_64")]
                $crate::kernel::KernelPath::Avx512 => unsafe { avx512($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                $crate::kernel::KernelPath::Avx2 => unsafe { avx2($($arg),*) },
                _ => body($($arg),*),
            }
        }
    };
}
#[cfg(feature = "flex")]
pub(super) use vectorized;
