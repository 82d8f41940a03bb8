//! What an upstream call's failure tells the client: 503, 504 or 502.

use std::time::Duration;

use http::StatusCode;

use crate::http::rejection::Rejection;

/// Why an upstream call failed, and what the client is told.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Nothing listens (refused, no socket, connect timeout): 503 at once.
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    /// Connected, but no complete answer in time: 504.
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    /// The connection broke or the answer was malformed or too large: 502.
    #[error("upstream failed: {0}")]
    Failed(String),
}

impl UpstreamError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unreachable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Failed(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// Why the client is refused, for metrics and logs.
    pub fn rejection(&self) -> Rejection {
        match self {
            Self::Unreachable(_) => Rejection::UpstreamUnreachable,
            Self::Timeout(_) => Rejection::UpstreamTimeout,
            Self::Failed(_) => Rejection::UpstreamFailed,
        }
    }
}
