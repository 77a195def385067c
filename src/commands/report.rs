//! `mnist-train report PATH`: write a run's or a sweep's `report.html` and print its path.

use std::path::Path;

use crate::cli::ReportArgs;
use crate::error::Result;

pub fn run(args: ReportArgs) -> Result<()> {
    let path = crate::report::write(&args.path)?;
    crate::outln!("{}", path.display());
    Ok(())
}

/// The report refresh at the end of `train` and `eval`: a page that cannot be written is a
/// warning, never a failed command. A checkpoint evaluated outside any run directory gets no
/// page (there is no run to report on).
pub(super) fn after_command(run: &Path) {
    if !matches!(crate::report::detect(run), Ok(crate::report::Kind::Run)) {
        return;
    }
    match crate::report::write_run(run) {
        Ok(path) => eprintln!("report: {}", path.display()),
        Err(e) => eprintln!("warning: no report: {e}"),
    }
}
