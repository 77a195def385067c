use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // SAFETY: first thing in `main`: no other thread exists yet.
    unsafe { mnist_train::backend::keep_burn_default_on_cpu() };
    // A panic is a bug in this tool or in Burn, never the user's fault: say so in one line,
    // without a backtrace, and exit with a code distinct from the documented ones.
    std::panic::set_hook(Box::new(|info| {
        eprintln!(
            "internal error: {info}\nthis is a bug in mnist-train; please report it with the \
             command you ran (RUST_BACKTRACE=1 shows where it happened)"
        );
    }));
    mnist_train::backend::keep_freed_memory();
    // The fast-path settings, read once, before any thread could decide without them.
    let _ = mnist_train::kernel::FastPaths::get();
    match mnist_train::commands::run(mnist_train::cli::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
