//! An answer before it becomes a response: status, content type, body, and for refusals the
//! [`Rejection`] counted in metrics and named in logs. Every role builds its refusals with it.

use bytes::Bytes;
use http::{Response, StatusCode};

use super::rejection::Rejection;
use super::response::{Body, Reply, TEXT_PLAIN};

/// An answer before it becomes a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    content_type: &'static str,
    body: Bytes,
    /// For refusals: why, for metrics and logs.
    rejection: Option<Rejection>,
}

impl Answer {
    pub fn ok(content_type: &'static str, body: Bytes) -> Self {
        Self {
            status: StatusCode::OK,
            content_type,
            body,
            rejection: None,
        }
    }

    pub fn text(body: Bytes) -> Self {
        Self::ok(TEXT_PLAIN, body)
    }

    /// A refusal with a fixed reason.
    pub fn refuse(status: StatusCode, reason: &'static str) -> Self {
        Self::refused(status, reason.to_owned(), Rejection::of_status(status))
    }

    /// A refusal with its reason and its [`Rejection`].
    pub fn refused(status: StatusCode, reason: String, rejection: Rejection) -> Self {
        let mut body = reason.into_bytes();
        body.push(b'\n');
        Self {
            status,
            content_type: TEXT_PLAIN,
            body: Bytes::from(body),
            rejection: Some(rejection),
        }
    }

    /// Why this was refused; `None` for a successful answer.
    pub fn rejection(&self) -> Option<Rejection> {
        self.rejection
    }

    /// The reason of a refusal (the body without its newline).
    pub fn reason(&self) -> &str {
        std::str::from_utf8(&self.body)
            .unwrap_or_default()
            .trim_end()
    }

    pub fn into_response(self) -> Response<Body> {
        Reply::with(self.status, self.content_type, self.body)
    }
}
