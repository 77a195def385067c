//! `mnist-train`: the lecture's MNIST MLP experiments as a command-line tool on Burn.
//!
//! Dependencies point one way: [`cli`] (clap types) → [`commands`] (one per subcommand) → the
//! library: [`config`], [`data`], [`model`], [`train`], [`run`], [`sweep`], [`bench`],
//! [`output`]. The library never imports `cli` or `commands`.

pub mod backend;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod config;
pub mod data;
pub mod error;
pub mod export;
pub mod kernel;
pub mod model;
pub mod output;
pub mod protobuf;
pub mod report;
pub mod run;
pub mod signals;
pub mod sweep;
pub mod tensorboard;
pub mod train;
