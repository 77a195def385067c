//! `mnist-train`: the lecture's MNIST experiments (the MLP of lab 10, the CNN of lab 11) as a
//! command-line tool on Burn.
//!
//! Dependencies point one way: [`cli`] (clap types) → [`commands`] (one per subcommand) → the
//! library. The library never imports `cli` or `commands`. Its modules:
//!
//! - [`config`]: the experiment keys, their defaults and validation;
//! - [`data`]: the IDX files (finding, downloading, reading), batches and their augmentation,
//!   and other images put into MNIST's form;
//! - [`model`]: the networks (MLP and CNN) and what they share;
//! - [`kernel`]: the hand-written CPU computations that stand in for Burn's, and where they run;
//! - [`backend`]: the compute backend, its thread pool, the GPU's adapters;
//! - [`train`]: the training loop, optimizers, evaluation, checkpoints, resume;
//! - [`run`]: the run directory and its files;
//! - [`sweep`]: many runs from one spec, and their results table;
//! - [`output`]: the terminal's progress lines and tables, and the plots;
//! - [`report`]: the offline `report.html` of a run or a sweep;
//! - [`export`]: safetensors and ONNX files of a trained model;
//! - [`bench`]: what `mnist-train bench` measures;
//! - [`tensorboard`], [`protobuf`]: TensorBoard's event files, and the protobuf encoder they and
//!   ONNX use;
//! - [`signals`]: the graceful stop on Ctrl-C and SIGTERM, and child processes that end with
//!   their parent;
//! - [`error`]: the one error type and its exit codes.

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
