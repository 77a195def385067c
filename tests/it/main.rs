//! The integration tests, as one program: one link against Burn instead of one per file.
//! Each module holds the tests of one concern; `common` their helpers (toy IDX datasets, the
//! binary with a clean environment, a run's files).

#[path = "../common/mod.rs"]
mod common;

mod bench;
mod cli;
mod cnn;
mod diagnostics;
mod docs;
mod optimizers;
mod real_data;
mod reliability;
mod report;
mod resume;
mod sweep;
mod validation;
mod wgpu;
mod wgpu_errors;
