//! Graceful stop: the first SIGINT or SIGTERM asks the loop to finish its step and checkpoint;
//! a second SIGINT (a user pressing Ctrl-C again) exits at once. Repeated SIGTERMs count as one:
//! schedulers signal every process of a job, and a sweep passes the signal on to its trials as
//! well, so a trial sees two; a scheduler that wants it gone sends SIGKILL. Before training
//! starts (finding, downloading and loading the data) there is nothing to save, so a signal
//! then exits at once too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;

use crate::error::exit;

#[derive(Debug, Clone, Default)]
pub struct StopFlag {
    any: Arc<AtomicBool>,
    term: Arc<AtomicBool>,
    /// Set while nothing would be lost by exiting at once (see [`StopFlag::exit_at_once`]).
    setup: Arc<AtomicBool>,
}

/// While alive, a signal exits the process at once with its code; dropped, signals go back to
/// asking for a graceful stop.
pub struct ExitAtOnce(Arc<AtomicBool>);

impl Drop for ExitAtOnce {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl StopFlag {
    /// Installs the handlers. Without them (tests, library use) the flag just never fires.
    pub fn install() -> std::io::Result<Self> {
        let stop = Self::default();
        for (signal, code) in [(SIGINT, exit::SIGINT), (SIGTERM, exit::SIGTERM)] {
            // Actions run in registration order. During setup the first one exits; later, on
            // a second SIGINT `any` is already set, so it exits.
            flag::register_conditional_shutdown(signal, code, Arc::clone(&stop.setup))?;
            if signal == SIGINT {
                flag::register_conditional_shutdown(signal, code, Arc::clone(&stop.any))?;
            }
            flag::register(signal, Arc::clone(&stop.any))?;
        }
        flag::register(SIGTERM, Arc::clone(&stop.term))?;
        Ok(stop)
    }

    /// Makes signals exit at once until the guard is dropped: for work that has nothing to
    /// checkpoint (a download, loading the data), which would otherwise ignore Ctrl-C until
    /// the first training step ends.
    pub fn exit_at_once(&self) -> ExitAtOnce {
        self.setup.store(true, Ordering::SeqCst);
        ExitAtOnce(Arc::clone(&self.setup))
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
