//! `mnist-train completions SHELL` and `mnist-train man`: generated from the clap definitions,
//! so they list exactly the flags `--help` does.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::{Error, Result};

/// Writes `bytes` to stdout; a reader that went away (`| head`) is not an error.
fn emit(bytes: &[u8]) -> Result<()> {
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io("writing to stdout")(e))
        }
        _ => Ok(()),
    }
}

pub fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "mnist-train", &mut script);
    emit(&script)
}

pub fn man() -> Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(Error::io("rendering the man page"))?;
    emit(&page)
}
