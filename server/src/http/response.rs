//! Response builders: every answer is a small buffered body with an exact content type.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

/// The body type every role answers with (bounded, buffered).
pub type Body = Full<Bytes>;

/// `text/plain` as webob sends it.
pub const TEXT_PLAIN: &str = "text/plain; charset=UTF-8";
/// `application/json`.
pub const APPLICATION_JSON: &str = "application/json";

/// A response under construction.
pub struct Reply;

impl Reply {
    /// A response with this status, content type and body.
    pub fn with(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    }

    /// A refusal: the status and a one-line reason, as `text/plain`.
    pub fn refuse(status: StatusCode, reason: &str) -> Response<Body> {
        let mut text = String::with_capacity(reason.len() + 1);
        text.push_str(reason);
        text.push('\n');
        Self::with(status, TEXT_PLAIN, Bytes::from(text))
    }
}

impl Reply {
    /// Passes an upstream's answer on: its status, content type and body, nothing else. The
    /// length is kept for bodiless answers, so a HEAD tells the guest the size of the GET.
    pub fn relay(upstream: Response<Bytes>) -> Response<Body> {
        let (parts, body) = upstream.into_parts();
        let bodiless = body.is_empty();
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = parts.status;
        let keep: &[header::HeaderName] = if bodiless {
            &[header::CONTENT_TYPE, header::CONTENT_LENGTH]
        } else {
            &[header::CONTENT_TYPE]
        };
        for name in keep {
            if let Some(value) = parts.headers.get(name) {
                response.headers_mut().insert(name, value.clone());
            }
        }
        response
    }
}
