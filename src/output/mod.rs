//! What people see: the training progress on the terminal ([`progress`]), `eval`'s text tables
//! ([`tables`]), the charts and pictures of runs, evaluations and sweeps ([`plot`]), and the
//! commands' printing to stdout, which a closed reader does not turn into a panic
//! ([`stdout_line`], [`outln!`](crate::outln)).

pub mod plot;
pub mod progress;
pub mod tables;

use std::io::Write;

/// Writes `text` and a newline to stdout. False when it cannot, typically because the reader
/// went away (`mnist-train … | head`): `println!` would panic there.
pub fn stdout_line(text: &str) -> bool {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush()).is_ok()
}

/// `println!` for the commands' results: a closed stdout ends nothing but the printing.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        let _ = $crate::output::stdout_line(&format!($($arg)*));
    }};
}
