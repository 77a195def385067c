//! Graceful stop: the first SIGINT or SIGTERM asks the loop to finish its step and checkpoint;
//! a second one exits at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;

use crate::error::exit;

#[derive(Debug, Clone, Default)]
pub struct StopFlag {
    any: Arc<AtomicBool>,
    term: Arc<AtomicBool>,
}

impl StopFlag {
    /// Installs the handlers. Without them (tests, library use) the flag just never fires.
    pub fn install() -> std::io::Result<Self> {
        let stop = Self::default();
        for (signal, code) in [(SIGINT, exit::SIGINT), (SIGTERM, exit::SIGTERM)] {
            // Registered before the flag itself: on the second signal `any` is already set,
            // so this exits immediately with the signal's conventional code.
            flag::register_conditional_shutdown(signal, code, Arc::clone(&stop.any))?;
            flag::register(signal, Arc::clone(&stop.any))?;
        }
        flag::register(SIGTERM, Arc::clone(&stop.term))?;
        Ok(stop)
    }

    /// The signal that asked us to stop, if any: (name, exit code).
    pub fn requested(&self) -> Option<(&'static str, i32)> {
        if !self.any.load(Ordering::Relaxed) {
            None
        } else if self.term.load(Ordering::Relaxed) {
            Some(("SIGTERM", exit::SIGTERM))
        } else {
            Some(("SIGINT", exit::SIGINT))
        }
    }
}
