//! What people see: per-step progress on the terminal and the plots of runs and sweeps.

pub mod plot;
pub mod progress;
