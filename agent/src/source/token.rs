//! The metadata service's session tokens (docs/protocol.md §9.1, EC2's IMDSv2): a service that
//! requires them answers a request without a valid `X-metadata-token` with 401. Only then does
//! the guest agent `PUT /latest/api/token` (a service without tokens, nova, never sees the PUT),
//! repeat the request with the token and send it with every later request of the run to the
//! same service: the clones of a run's HTTP client (`http.rs`, which sends the requests) share
//! one [`Session`]. A 401 to a request carrying a token just issued is an error, never a
//! second PUT.

use std::sync::{Arc, Mutex};

use metaboot_proto::headers::{METADATA_TOKEN, METADATA_TOKEN_TTL};
use ureq::http::{HeaderName, HeaderValue};

/// Where a token is asked for, under the service's origin (`http://169.254.169.254`).
pub const TOKEN_PATH: &str = "/latest/api/token";
/// The lifetime asked for a token, in seconds: the longest the service grants (EC2's and
/// metaboot-server's `MAX_TTL_SECS`, six hours), well past a run's longest deadline
/// (`deadline_secs` at most 3600, then the documents and the password post-back).
pub const TOKEN_TTL_SECS: u32 = 21_600;
/// The longest token accepted (metaboot-server's are 78 bytes and it refuses any over 100).
pub const MAX_TOKEN_BYTES: u64 = 100;

/// The token a run holds, and the service (its origin) it was issued by; shared by the clones
/// of a client, so the documents fetched ahead and the password post-back send it too.
#[derive(Debug, Clone, Default)]
pub struct Session(Arc<Mutex<Option<(String, HeaderValue)>>>);

impl Session {
    /// The token held for `url`'s service, if any.
    pub fn held(&self, url: &str) -> Option<HeaderValue> {
        let held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (origin, token) = held.as_ref()?;
        (origin == origin_of(url)).then(|| token.clone())
    }

    /// Keeps `token`, issued by `url`'s service, for the rest of the run.
    pub fn keep(&self, url: &str, token: HeaderValue) {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *held = Some((origin_of(url).to_owned(), token));
    }
}

/// `scheme://authority` of `url`: the service a token belongs to.
fn origin_of(url: &str) -> &str {
    let start = url.find("://").map_or(0, |at| at + 3);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |at| start + at);
    &url[..end]
}

/// Where to ask `url`'s service for a token.
pub fn token_url(url: &str) -> String {
    format!("{}{TOKEN_PATH}", origin_of(url))
}

/// The header the token is sent in.
pub fn token_header() -> HeaderName {
    HeaderName::from_static(METADATA_TOKEN)
}

/// The header asking for a token of [`TOKEN_TTL_SECS`].
pub fn ttl_header() -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(METADATA_TOKEN_TTL),
        HeaderValue::from(TOKEN_TTL_SECS),
    )
}

/// The token in the body of a PUT's 200 (read up to [`MAX_TOKEN_BYTES`]), as a header value
/// kept out of `Debug`; `None` when there is none (empty, or not a header's text).
pub fn issued(body: &str) -> Option<HeaderValue> {
    let mut token = HeaderValue::from_str(body.trim()).ok()?;
    token.set_sensitive(true);
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests;
