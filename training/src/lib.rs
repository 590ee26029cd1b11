//! `edgewise-train` trains a classifier with burn on a CSV file, evaluates it on a
//! held-out split, fits the reference data profile, writes self-test vectors and
//! signs the result into a bundle.
//!
//! It runs on the CPU and never talks to the network: the control plane, when it
//! orchestrates training, runs this as a child process.

pub mod data;
pub mod evaluate;
pub mod metrics;
pub mod pipeline;
pub mod report;
pub mod split;
pub mod trainer;
