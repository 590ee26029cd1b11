//! `edgewise-core` is the contract between every Edgewise part: the model bundle and
//! its manifest, ed25519 signing keys, the trust store and its key rotations, assignments, MQTT topics and
//! payloads, QUIC transfer framing, broker addresses and their TLS settings, the node config, the reference data profile and the
//! drift statistics computed against it.
//!
//! It must never link burn or do network IO: the runtime, the trainer and the control
//! plane meet here and nowhere else. File IO is limited to reading and writing keys
//! and bundles on request.

pub mod assignment;
pub mod broker;
pub mod bundle;
pub mod capture;
pub mod drift;
pub mod json;
pub mod keys;
pub mod manifest;
pub mod node_config;
pub mod profile;
pub mod reported;
pub mod rotation;
pub mod spec;
pub mod stats;
pub mod telemetry;
pub mod topics;
pub mod transfer;
pub mod udp;
