//! The request body as a handler gets it: read whole by the connection loop (bounded and
//! timed, see `h1/body.rs`), or why it could not be.

use bytes::Bytes;
use http::StatusCode;

/// A request's body, or why it could not be read. The handler answers a [`BodyError`] with
/// its own refusal; the connection closes after it.
pub type RequestBody = Result<Bytes, BodyError>;

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Longer than the limit (413).
    TooLarge,
    /// Not complete within the read timeout (408).
    Timeout,
    /// The client broke the framing or went away (400).
    Broken,
}

impl BodyError {
    pub fn status(self) -> StatusCode {
        match self {
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::Broken => StatusCode::BAD_REQUEST,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Self::TooLarge => "request body too large",
            Self::Timeout => "request body not received in time",
            Self::Broken => "request body could not be read",
        }
    }
}
