//! The control plane's error type; the API turns each kind into its HTTP status.

use thiserror::Error;

use crate::store::StoreError;

/// What went wrong, worded for the caller.
#[derive(Debug, Error)]
pub enum Error {
    /// The named thing does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what exists (409).
    #[error("{0}")]
    Conflict(String),
    /// The request is malformed (400).
    #[error("{0}")]
    Invalid(String),
    /// The request is well formed but refused, e.g. an untrusted signature (422).
    #[error("{0}")]
    Rejected(String),
    /// A service the control plane depends on (the S3 artifact store) cannot be reached (503).
    #[error("{0}")]
    Unavailable(String),
    /// The store failed (500).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something else on the server failed (500).
    #[error("{0}")]
    Internal(String),
}

/// Shorthand for results of the control plane's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
