//! `edgewise-runtime` is the node agent: it verifies a signed model bundle, loads it
//! on the GPU or the CPU, and serves low-latency predictions over the Open Inference
//! Protocol (KServe V2) with dynamic batching and Prometheus metrics. In agent mode it
//! follows the control plane's signed assignments and swaps models with no failed request.
//!
//! It never trusts a bundle it cannot verify, never serves a model that failed its
//! self-test, and never panics on a request: bad input gets a 4xx JSON error.

pub mod agent;
pub mod batcher;
pub mod binary;
pub mod error;
pub mod feedback;
pub mod loader;
pub mod observe;
pub mod oip;
pub mod predict;
pub mod server;
pub mod simulate;
pub mod telemetry;
