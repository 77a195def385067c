//! Hand-written CPU computations that stand in for Burn's operations, and the switch that says
//! where each runs ([`FastPaths`], [`runs_on`], [`trains_on`], [`evaluates_on`]): the hidden
//! layers' activations ([`activation`]), the later dense layers' products ([`dense`], on flex),
//! the CNN's convolutions and pooling ([`conv`], on flex, some products through Winograd's
//! transforms in `winograd` and `winograd4`, the first one over the windows that see a lit
//! pixel in `first_conv`), the first dense layer computed from
//! the images' lit pixels and its weight gradient, and the choice of the compiled loops this
//! CPU runs ([`KernelPath`]).
//!
//! MNIST images are about 81% zero pixels (151 of 784 lit per test image on average), and the
//! first layer holds three quarters of a forward pass's arithmetic. Here it costs 5× less:
//! - evaluation: an evaluation set is fixed and resident, so its sparse form is built once;
//!   each evaluation then computes, per image, `bias + Σ value · W1[pixel, :]` over the lit
//!   pixels only ([`first_layer`]);
//! - training: each step builds its batch's sparse form, computes the product `x · W1` from it
//!   ([`first_product`]), and the weight gradient `xᵀ · grad` from the same pixels
//!   ([`weight_gradient`]). Burn's autodiff drives the rest of the backward pass, the bias
//!   included; the later dense layers ([`dense`]), the activations and Adam's update
//!   (`train::fused_adam`) run code of their own.
//!
//! The first product's sums run in another order than Burn's dense product; the weight
//! gradient's in the same. Neither depends on the thread count, so a seed gives bit-identical
//! training on one machine.
//!
//! Hand-written because no crate has this shape: generic CSR × dense products (`sprs`, or
//! PyTorch's) walk one output column at a time or do not vectorize for the CPU they run on,
//! and were no faster than the dense product. Here the accumulators of a block of 32 outputs
//! (`BLOCK`) stay in registers across an image's lit pixels, and those of 64 (`GRAD_BLOCK`)
//! across the images that lit a pixel for the weight gradient. The loops are compiled three
//! times — AVX-512, AVX2 + FMA, and portable — with the one to run chosen when the program
//! starts from what the CPU reports (no build flag for the user's CPU). On 64-bit ARM (Apple
//! M-series included) the portable version runs with fused multiply-adds, which every such CPU
//! has; the compiler vectorizes it for NEON's 128-bit registers.

pub mod activation;
#[cfg(feature = "flex")]
pub mod conv;
mod cpu;
#[cfg(feature = "flex")]
pub mod dense;
#[cfg(feature = "flex")]
mod first_conv;
mod first_layer;
#[cfg(feature = "flex")]
mod flex;
mod gradient;
mod policy;
mod sparse;
#[cfg(test)]
mod tests;
mod weights;
#[cfg(feature = "flex")]
mod winograd;
#[cfg(feature = "flex")]
mod winograd4;

use burn::tensor::Device;
use rayon::prelude::*;

pub use cpu::KernelPath;
pub use first_layer::{Then, first_layer, first_product};
pub use gradient::weight_gradient;
pub use policy::{FastPaths, evaluates_on, runs_on, trains_on};
pub use sparse::SparseImages;
pub use weights::{HostWeights, host_f32};

// The loops of one file read the layouts and helpers of the others.
#[allow(unused_imports)]
use {cpu::*, first_layer::*, gradient::*, sparse::*, weights::*};

/// Outputs of the first layer accumulated at once: 32 floats are 2 AVX-512 or 4 AVX2
/// registers. With W1 in blocks ([`HostWeights`]), 32 columns were faster than 16, 64 or 128
/// (docs/speed.md).
const BLOCK: usize = 32;

/// Outputs of the weight gradient accumulated at once: 64 floats, 4 AVX-512 registers.
const GRAD_BLOCK: usize = 64;
