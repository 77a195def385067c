//! One error type for the whole tool, and the exit code each kind of failure maps to.
//!
//! Exit codes are part of the interface scripts rely on; they are documented in the README
//! and in `--help`.

use std::path::PathBuf;

use crate::data::DataError;

/// Exit codes, stable across releases.
pub mod exit {
    /// Training or evaluation finished.
    pub const OK: i32 = 0;
    /// Anything not covered below: I/O errors writing the run directory, a busy run directory.
    pub const FAILURE: i32 = 1;
    /// Bad command line or config: malformed JSON, unknown keys, out-of-range values.
    pub const USAGE: i32 = 2;
    /// Dataset missing, corrupt or not downloadable; `predict`: an input image could not be
    /// read (the others are still classified).
    pub const DATA: i32 = 3;
    /// Checkpoint missing, corrupt, or from another architecture; `--resume` of a non-run.
    pub const CHECKPOINT: i32 = 4;
    /// The loss became NaN or infinite.
    pub const DIVERGED: i32 = 5;
    /// The requested compute device is unavailable: `--backend wgpu` found no adapter that
    /// fits `--adapter`, or the adapter refused to start.
    pub const DEVICE: i32 = 6;
    /// Stopped by SIGINT (128 + 2), after writing a checkpoint.
    pub const SIGINT: i32 = 130;
    /// Stopped by SIGTERM (128 + 15), after writing a checkpoint.
    pub const SIGTERM: i32 = 143;
    /// Stopped because stdout's reader went away (`| head`), after writing a checkpoint: the
    /// code a shell shows for SIGPIPE (128 + 13).
    pub const OUTPUT_CLOSED: i32 = 141;

    /// `--help`'s list of the codes above, each with what it means (the README's table says
    /// the same at more length; `tests/it/docs.rs` holds the two to the same codes).
    pub const HELP: &str = "\
Exit codes:
  0    success
  1    other failure (cannot write the run directory, run directory in use)
  2    bad command line or config (malformed JSON, unknown key, out-of-range value,
       a --run-dir that already holds a run)
  3    dataset missing, corrupt or not downloadable; predict: an input image unreadable
       (the others are still classified)
  4    checkpoint missing, corrupt or from another architecture
  5    training diverged (NaN or infinite loss)
  6    requested compute device unavailable (--backend wgpu: no GPU adapter fits --adapter)
  130  stopped by SIGINT (Ctrl-C) after writing a checkpoint
  141  stopped because stdout was closed (e.g. `| head`) after writing a checkpoint
  143  stopped by SIGTERM after writing a checkpoint";
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),

    #[error("config {}: {message}", path.display())]
    ConfigFile { path: PathBuf, message: String },

    #[error("invalid value for `{key}`: {value} ({allowed})")]
    OutOfRange {
        key: &'static str,
        value: String,
        allowed: String,
    },

    #[error(transparent)]
    Data(#[from] DataError),

    /// The dataset is missing and could not be downloaded.
    #[error("{0}")]
    DataUnavailable(String),

    #[error("{0}")]
    Checkpoint(String),

    /// No usable GPU adapter (or the chosen one failed to start).
    #[error("{0}")]
    DeviceUnavailable(String),

    #[error(
        "the loss became {value} at epoch {epoch}, step {step} (global step {global_step}); \
         training stopped and {kept}. \
         Try a smaller --lr, a smaller --init-std, or --batchnorm"
    )]
    Diverged {
        value: f32,
        epoch: usize,
        step: usize,
        global_step: usize,
        /// What is left to go back to: the last good checkpoint, or none.
        kept: String,
    },

    #[error("interrupted by {signal}; checkpoint saved. Resume with: {resume_command}")]
    Interrupted {
        signal: &'static str,
        code: i32,
        resume_command: String,
    },

    #[error("stdout was closed by its reader; checkpoint saved. Resume with: {resume_command}")]
    OutputClosed { resume_command: String },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::ConfigFile { .. } | Error::OutOfRange { .. } => exit::USAGE,
            // A validation split larger than the data is the config's fault, not the data's.
            Error::Data(DataError::ValidSplitTooLarge { .. }) => exit::USAGE,
            Error::Data(_) | Error::DataUnavailable(_) => exit::DATA,
            Error::Checkpoint(_) => exit::CHECKPOINT,
            Error::Diverged { .. } => exit::DIVERGED,
            Error::DeviceUnavailable(_) => exit::DEVICE,
            Error::Interrupted { code, .. } => *code,
            Error::OutputClosed { .. } => exit::OUTPUT_CLOSED,
            Error::Io { .. } | Error::Other(_) => exit::FAILURE,
        }
    }

    /// Wraps an I/O error with what we were doing, so the message names the file.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    /// `--help` lists every code `exit` defines, and no other.
    #[test]
    fn the_help_lists_exactly_the_defined_exit_codes() {
        let source = include_str!("error.rs");
        let mut defined: Vec<i32> = source
            .lines()
            .filter_map(|l| l.trim().strip_prefix("pub const "))
            .filter_map(|l| l.split_once(": i32 = "))
            .map(|(_, v)| v.trim_end_matches(';').parse().unwrap())
            .collect();
        let mut listed: Vec<i32> = super::exit::HELP
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        defined.sort();
        listed.sort();
        assert_eq!(defined.len(), 10, "the constants were not found");
        assert_eq!(listed, defined);
    }
}
