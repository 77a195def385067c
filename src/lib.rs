//! `mnist-train`: the lecture's MNIST MLP experiments as a command-line tool on Burn.
//!
//! Data flows one way: [`cli`] → [`config`] → [`data`] → [`model`] → [`train`] →
//! [`report`] / checkpoints.

pub mod app;
pub mod backend;
pub mod batcher;
pub mod bench;
pub mod cli;
pub mod config;
pub mod data;
pub mod error;
pub mod gpu;
pub mod model;
pub mod plot;
pub mod report;
pub mod run_dir;
pub mod signals;
pub mod sweep;
pub mod train;
