//! Input the registry CLI refuses before it reaches the store.

use thiserror::Error;

/// Input the CLI refuses before it reaches the store (unreadable file, bad `K=V`, …): exit 2.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct InputError(pub String);
