//! What an upstream call's failure tells the client: 503, 504, 502, or 431 for a request that
//! would be too large for the upstream.

use std::time::Duration;

use http::StatusCode;

use crate::http::limits::{MAX_HEADER_BYTES, MAX_HEADERS};
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
    /// The request's head, with this hop's headers, is over the limits the upstream applies
    /// (`MAX_HEADER_BYTES`, `MAX_HEADERS`): never sent, 431.
    #[error(
        "the request head is {bytes} bytes in {lines} header lines with the headers added on the way; the next hop takes at most {MAX_HEADER_BYTES} bytes and {MAX_HEADERS} lines: send fewer or shorter headers"
    )]
    HeadTooLarge { bytes: usize, lines: usize },
}

impl UpstreamError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unreachable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Failed(_) => StatusCode::BAD_GATEWAY,
            Self::HeadTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        }
    }

    /// The client's request is at fault, not the upstream: worth a line at info, not a warning.
    pub fn is_the_clients(&self) -> bool {
        matches!(self, Self::HeadTooLarge { .. })
    }

    /// What the client (a guest, at the end of the chain) is told: the client's own fault
    /// in full, an upstream's in general words. The details (a socket path, the API's
    /// address, an error of the operating system) are the operator's: they go to the log.
    pub fn client_text(&self) -> String {
        match self {
            Self::Unreachable(_) => "The metadata service is unavailable: try again later.".into(),
            Self::Timeout(_) => "The metadata service did not answer in time: try again.".into(),
            Self::Failed(_) => "The metadata service failed to answer: try again.".into(),
            Self::HeadTooLarge { .. } => self.to_string(),
        }
    }

    /// Why the client is refused, for metrics and logs.
    pub fn rejection(&self) -> Rejection {
        match self {
            Self::Unreachable(_) => Rejection::UpstreamUnreachable,
            Self::Timeout(_) => Rejection::UpstreamTimeout,
            Self::Failed(_) => Rejection::UpstreamFailed,
            Self::HeadTooLarge { .. } => Rejection::HeadTooLarge,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_told_what_failed_but_not_where() {
        let inside = "unix:/run/metaboot/agent.sock: Connection refused (os error 111)";
        for err in [
            UpstreamError::Unreachable(inside.into()),
            UpstreamError::Failed(inside.into()),
            UpstreamError::Timeout(Duration::from_secs(10)),
        ] {
            let text = err.client_text();
            assert!(text.starts_with("The metadata service"), "{text}");
            assert!(
                !text.contains("agent.sock") && !text.contains("os error"),
                "{text}"
            );
            assert!(
                err.to_string().contains("upstream"),
                "the log keeps the detail"
            );
        }
        let big = UpstreamError::HeadTooLarge {
            bytes: 20_000,
            lines: 3,
        };
        assert_eq!(big.client_text(), big.to_string());
    }
}
