//! Signals: the graceful stop, and child processes that end with their parent.
//!
//! The first SIGINT or SIGTERM asks the loop to finish its step and checkpoint;
//! a second SIGINT (a user pressing Ctrl-C again) exits at once. Repeated SIGTERMs count as one:
//! schedulers signal every process of a job, and a sweep passes the signal on to its trials as
//! well, so a trial sees two; a scheduler that wants it gone sends SIGKILL. Before training
//! starts (finding, downloading and loading the data) there is nothing to save, so a signal
//! then exits at once too. A sweep's trials and a benchmark's measurements end with the
//! process that started them ([`terminate_with_parent`]).

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

/// Makes the child `cmd` starts receive SIGTERM when the thread that starts it ends, its
/// parent process killed included (even by `kill -9`): a sweep's trial then checkpoints
/// instead of living on as an orphan holding its run, a benchmark's child stops. Linux only;
/// elsewhere a no-op.
pub fn terminate_with_parent(cmd: &mut std::process::Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe and touches only the child being started.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}
