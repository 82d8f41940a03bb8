//! The HTTP client of the guest agent: plain HTTP to IP literals only (the binary is static, with
//! no name lookup and no TLS; a link-local IPv6 host names its interface, `url.rs`), no proxy
//! from the environment, explicit timeouts, capped bodies, every request through the retry
//! driver. 404 is `Ok(None)`, not an error. Requests to the metadata service carry its session
//! token when it requires one (`token.rs`).

use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::header::{AUTHORIZATION, LOCATION};
use ureq::http::{HeaderValue, Uri};
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use crate::log::chain;
use crate::retry::{Retry, RetryError, Transient};
use crate::source::token::{MAX_TOKEN_BYTES, Session, issued, token_header, token_url, ttl_header};
use crate::source::url::{Target, shown};
use crate::userdata::include::{Fetch, MAX_INCLUDE_FETCH_TIME, MAX_INCLUDE_REDIRECTS};

/// Largest `meta_data.json`, `vendor_data*.json`, `network_data.json` or version list accepted.
pub const MAX_METADATA_BYTES: u64 = 1024 * 1024;
/// Largest raw (possibly gzip-compressed) user data accepted; nova stores at most 64 KiB of
/// base64 (~48 KiB), so this leaves ample room.
pub const MAX_USER_DATA_BYTES: u64 = 1024 * 1024;
/// Default bound of one request, connect to last body byte (cloud-init's `timeout: 10`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts at each document once the service has answered (`user_data`, vendor and network
/// data, `meta_data.json` at a listed version), each with the full request timeout whatever
/// is left of the run's deadline, so that a service found late still has its documents read;
/// as many as cloud-init's OpenStack datasource makes (`url_retries: 5` after the first,
/// `MetadataReader._path_read`, which retries a 5xx too), [`DOCUMENT_RETRY_WAIT`] apart: a
/// document that fails makes the run's set incomplete (`run/fetch.rs`). With the defaults, a
/// document that never answers is given up after 6 × 10 s and 5 × 1 s, as in cloud-init.
pub const DOCUMENT_ATTEMPTS: u32 = 6;
/// The wait between two attempts at a document (cloud-init's `url_sec_between_retries`).
pub const DOCUMENT_RETRY_WAIT: Duration = Duration::from_secs(1);
/// Bound on establishing a TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest response header block.
pub const MAX_RESPONSE_HEADER_BYTES: usize = 16 * 1024;
/// ureq's buffer for what a server sends: a whole response head must fit (twice the head's
/// bound), bodies stream through it. ureq's default (128 KiB, and as much for requests) is
/// zero-filled at the first request: on an emulated guest that alone is tens of thousands
/// of instructions and dozens of page faults for documents of a few KiB.
pub const INPUT_BUFFER_BYTES: usize = 2 * MAX_RESPONSE_HEADER_BYTES;
/// ureq's buffer for what the agent sends: a request head (a URL of at most a few KiB) and
/// a POSTed body in chunks.
pub const OUTPUT_BUFFER_BYTES: usize = 16 * 1024;
/// Sent with every request.
pub const USER_AGENT: &str = concat!("metaboot/", env!("CARGO_PKG_VERSION"));

pub use super::url::{UrlError, check_url};

/// The resolver of the guest agent: IP literals only, never getaddrinfo (a static glibc binary
/// cannot load the guest's NSS modules, and leaving name lookup out keeps NSS, dlopen and iconv
/// out of the binary). A link-local IPv6 host's zone is the interface's index
/// (`if_nametoindex`, an ioctl, no lookup).
#[derive(Debug)]
struct IpLiteralResolver;

impl Resolver for IpLiteralResolver {
    fn resolve(
        &self,
        uri: &Uri,
        _config: &Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let authority = uri.authority().ok_or(ureq::Error::HostNotFound)?;
        let host =
            super::url::host_of_authority(authority.host()).ok_or(ureq::Error::HostNotFound)?;
        let port = authority.port_u16().unwrap_or(80);
        let addr = match (host.ip, &host.zone) {
            (IpAddr::V6(ip), Some(zone)) => {
                let index = nix::net::if_::if_nametoindex(zone.as_str()).map_err(|err| {
                    ureq::Error::BadUri(format!(
                        "no network interface {zone} for [{ip}%25{zone}]: {err}"
                    ))
                })?;
                SocketAddr::V6(SocketAddrV6::new(ip, port, 0, index))
            }
            (ip, _) => SocketAddr::new(ip, port),
        };
        let mut addrs = self.empty();
        addrs.push(addr);
        Ok(addrs)
    }
}

/// One failed request.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("GET {url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("GET {url}: body larger than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    /// A 200 with nothing in it, which cloud-init's `wait_for_url` does not take for an answer
    /// either: the service may be starting.
    #[error("GET {url}: an empty answer")]
    Empty { url: String },
    #[error(
        "{method} {url}: more than {limit} redirects; point the URL at {}",
        redirects_end(method)
    )]
    TooManyRedirects {
        /// The method the URL was asked with (`GET`, `POST`).
        method: &'static str,
        url: String,
        limit: u32,
    },
    /// A redirect to a URL the agent cannot fetch (the source says which, and why).
    #[error("{method} {url}: redirected to a URL the guest agent cannot fetch")]
    Redirected {
        method: &'static str,
        url: String,
        #[source]
        source: UrlError,
    },
    #[error("GET {url}")]
    Transport {
        url: String,
        #[source]
        source: ureq::Error,
    },
    #[error("POST {url}: HTTP {status}: {reason}")]
    PostStatus {
        url: String,
        status: u16,
        /// The first line of the answer's body (metaboot's refusals say what was wrong).
        reason: String,
    },
    #[error("POST {url}")]
    PostTransport {
        url: String,
        #[source]
        source: ureq::Error,
    },
    /// A service that answered 401 (it requires a session token) and did not give one.
    #[error(
        "{request}: HTTP 401, and the metadata service refused a session token (PUT \
         /latest/api/token): HTTP {status}: {reason}"
    )]
    TokenRefused {
        /// The request answered 401: `GET URL`.
        request: String,
        status: u16,
        reason: String,
    },
    #[error(
        "{request}: HTTP 401, and the metadata service did not answer for a session token (PUT \
         /latest/api/token)"
    )]
    TokenUnanswered {
        /// The request answered 401: `GET URL`.
        request: String,
        #[source]
        source: ureq::Error,
    },
    /// A 401 to a request carrying a token the service has just issued.
    #[error(
        "{method} {url}: HTTP 401 with a session token just issued ({reason}); check that no \
         proxy on the way drops the X-metadata-token header"
    )]
    TokenRejected {
        method: &'static str,
        url: String,
        reason: String,
    },
}

/// What the URL of a request redirected too often should name instead.
fn redirects_end(method: &str) -> &'static str {
    match method {
        "GET" => "the document itself",
        _ => "where the request is received",
    }
}

impl Transient for FetchError {
    fn is_transient(&self) -> bool {
        match self {
            FetchError::Status { status, .. }
            | FetchError::PostStatus { status, .. }
            | FetchError::TokenRefused { status, .. } => {
                matches!(status, 408 | 429 | 500..=599)
            }
            FetchError::Transport { source, .. }
            | FetchError::PostTransport { source, .. }
            | FetchError::TokenUnanswered { source, .. } => {
                matches!(
                    source,
                    ureq::Error::Io(_)
                        | ureq::Error::Timeout(_)
                        | ureq::Error::ConnectionFailed
                        | ureq::Error::Protocol(_)
                )
            }
            FetchError::Empty { .. } => true,
            FetchError::Url(_)
            | FetchError::TooLarge { .. }
            | FetchError::TooManyRedirects { .. }
            | FetchError::Redirected { .. }
            | FetchError::TokenRejected { .. } => false,
        }
    }
}

/// Gets URLs for the guest agent: `get` retries through the pass's [`Retry`].
#[derive(Debug, Clone)]
pub struct HttpClient {
    agent: ureq::Agent,
    request_timeout: Duration,
    retry: Retry,
    /// The metadata service's session token, shared by the client's clones.
    session: Session,
}

/// Where a request goes: to the metadata service (no redirect followed; its session token
/// sent, and a new one asked for on a 401: `token.rs`), or to a URL of the user's (an
/// `#include`, `phone_home`), whose redirects are followed and which never sees a token.
#[derive(Debug, Clone, Copy)]
enum Peer {
    Service,
    Elsewhere { redirects: u32 },
}

impl HttpClient {
    /// A client whose requests each last at most `request_timeout` (and, while the service is
    /// looked for, never past `retry`'s deadline).
    pub fn new(request_timeout: Duration, retry: Retry) -> Self {
        let config = ureq::Agent::config_builder()
            .proxy(None)
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(USER_AGENT)
            .max_response_header_size(MAX_RESPONSE_HEADER_BYTES)
            .input_buffer_size(INPUT_BUFFER_BYTES)
            .output_buffer_size(OUTPUT_BUFFER_BYTES)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(request_timeout))
            .build();
        let agent = ureq::Agent::with_parts(config, DefaultConnector::new(), IpLiteralResolver);
        HttpClient {
            agent,
            request_timeout,
            retry,
            session: Session::default(),
        }
    }

    /// This client sending the metadata service's session token `session` holds (a run's
    /// other client's), and keeping there the one it gets.
    pub fn in_session(mut self, session: &Session) -> Self {
        self.session = session.clone();
        self
    }

    /// The metadata service's session token this client sends and keeps.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The retry bounds this client uses.
    pub fn retry(&self) -> &Retry {
        &self.retry
    }

    /// A document's GET once the service has answered, with a budget of its own:
    /// [`DOCUMENT_ATTEMPTS`] attempts (transient failures only), [`DOCUMENT_RETRY_WAIT`] apart,
    /// each with the full request timeout, whatever is left of the run's deadline. `Ok(Some(body))` on 200, `Ok(None)` on
    /// 404.
    pub fn get(&self, url: &str, limit: u64) -> Result<Option<Vec<u8>>, RetryError<FetchError>> {
        let retry = (self.retry.attempts_only(DOCUMENT_ATTEMPTS))
            .with_backoff(DOCUMENT_RETRY_WAIT, DOCUMENT_RETRY_WAIT);
        self.get_retried(url, limit, retry, Peer::Service)
    }

    /// [`HttpClient::get`] within `retry`'s bounds, to `peer`.
    fn get_retried(
        &self,
        url: &str,
        limit: u64,
        retry: Retry,
        peer: Peer,
    ) -> Result<Option<Vec<u8>>, RetryError<FetchError>> {
        retry.run(&shown(url), |remaining| {
            self.get_following(url, limit, remaining, peer)
        })
    }

    /// One GET, bounded by the request timeout and by `remaining`. A redirect is not followed
    /// (the metadata service answers where it is asked): it is an HTTP error.
    pub fn get_once(
        &self,
        url: &str,
        limit: u64,
        remaining: Duration,
    ) -> Result<Option<Vec<u8>>, FetchError> {
        self.get_following(url, limit, remaining, Peer::Service)
    }

    /// [`HttpClient::get_once`] to `peer`.
    fn get_following(
        &self,
        url: &str,
        limit: u64,
        remaining: Duration,
        peer: Peer,
    ) -> Result<Option<Vec<u8>>, FetchError> {
        let mut response = self.send(url, Method::Get, remaining, peer)?;
        let status = response.status().as_u16();
        match status {
            200 => {}
            404 => return Ok(None),
            _ => {
                return Err(FetchError::Status {
                    url: shown(url),
                    status,
                });
            }
        }
        match response.body_mut().with_config().limit(limit).read_to_vec() {
            Ok(body) => Ok(Some(body)),
            Err(ureq::Error::BodyExceedsLimit(_)) => Err(FetchError::TooLarge {
                url: shown(url),
                limit,
            }),
            Err(source) => Err(FetchError::Transport {
                url: shown(url),
                source,
            }),
        }
    }

    /// One request of `method` to `url`, following up to `redirects` redirects, all within
    /// the one request's timeout; the last answer. Each redirect's target is checked as any
    /// URL is (an `https://` one, or one whose host is a name, is refused with the reason,
    /// naming it); the URL's user info is sent as basic authentication to its own host and
    /// port only (requests drops the `Authorization` header on a redirect elsewhere), and a
    /// target's own user info is not sent (nor is it by requests). A POST stays one, its body
    /// sent again, after a 307 or 308, and becomes a GET without a body after a 301, 302 or 303
    /// ([`Method::redirected`]). `token` is sent in `X-metadata-token`.
    fn follow(
        &self,
        url: &str,
        asked: Method<'_>,
        remaining: Duration,
        redirects: u32,
        token: Option<&HeaderValue>,
    ) -> Result<ureq::http::Response<ureq::Body>, FetchError> {
        let mut target = super::url::target(url)?;
        let mut authorization = authorization(&target)?;
        let failed = |source| match asked {
            Method::Get => FetchError::Transport {
                url: shown(url),
                source,
            },
            Method::Post { .. } => FetchError::PostTransport {
                url: shown(url),
                source,
            },
        };
        // One bound for the request and every redirect it follows.
        let budget = self.request_timeout.min(remaining);
        let started = Instant::now();
        let mut followed = 0;
        let mut method = asked;
        loop {
            let left = match followed {
                0 => budget,
                _ => budget
                    .saturating_sub(started.elapsed())
                    .max(Duration::from_millis(1)),
            };
            let response = match method {
                Method::Get => {
                    tracing::debug!(url = %target.shown, "GET");
                    let mut request = self
                        .agent
                        .get(&target.url)
                        .config()
                        .timeout_global(Some(left))
                        .build();
                    if let Some(value) = &authorization {
                        request = request.header(AUTHORIZATION, value.clone());
                    }
                    if let Some(token) = token {
                        request = request.header(token_header(), token.clone());
                    }
                    request.call()
                }
                Method::Post { content_type, body } => {
                    tracing::debug!(url = %target.shown, bytes = body.len(), "POST");
                    let mut request = self
                        .agent
                        .post(&target.url)
                        .config()
                        .timeout_global(Some(left))
                        .build()
                        .content_type(content_type);
                    if let Some(value) = &authorization {
                        request = request.header(AUTHORIZATION, value.clone());
                    }
                    if let Some(token) = token {
                        request = request.header(token_header(), token.clone());
                    }
                    request.send(body)
                }
            }
            .map_err(failed)?;
            let status = response.status().as_u16();
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|value| value.to_str().ok());
            let (true, Some(location)) = (redirects > 0 && is_redirect(status), location) else {
                return Ok(response);
            };
            if followed == redirects {
                return Err(FetchError::TooManyRedirects {
                    method: asked.name(),
                    url: shown(url),
                    limit: redirects,
                });
            }
            followed += 1;
            let next = super::url::join(&target.url, location);
            let next = super::url::target(&next).map_err(|source| FetchError::Redirected {
                method: asked.name(),
                url: shown(url),
                source,
            })?;
            if !target.same_origin(&next) {
                authorization = None;
            }
            target = next;
            method = method.redirected(status);
        }
    }
}

impl HttpClient {
    /// One request to `peer`: [`HttpClient::to_service`] or [`HttpClient::follow`].
    fn send(
        &self,
        url: &str,
        method: Method<'_>,
        remaining: Duration,
        peer: Peer,
    ) -> Result<ureq::http::Response<ureq::Body>, FetchError> {
        match peer {
            Peer::Service => self.to_service(url, method, remaining),
            Peer::Elsewhere { redirects } => self.follow(url, method, remaining, redirects, None),
        }
    }

    /// One request of `method` to the metadata service at `url` (no redirect followed), with
    /// the session token held for it; a 401 gets a new token and the request is sent once
    /// more with it, all within `remaining`.
    fn to_service(
        &self,
        url: &str,
        method: Method<'_>,
        remaining: Duration,
    ) -> Result<ureq::http::Response<ureq::Body>, FetchError> {
        let started = Instant::now();
        let left = || {
            remaining
                .saturating_sub(started.elapsed())
                .max(Duration::from_millis(1))
        };
        let held = self.session.held(url);
        let response = self.follow(url, method, remaining, 0, held.as_ref())?;
        if response.status().as_u16() != 401 {
            return Ok(response);
        }
        let token = self.issue_token(url, method, left())?;
        self.session.keep(url, token.clone());
        let mut response = self.follow(url, method, left(), 0, Some(&token))?;
        if response.status().as_u16() != 401 {
            return Ok(response);
        }
        Err(FetchError::TokenRejected {
            method: method.name(),
            url: shown(url),
            reason: first_line(&mut response),
        })
    }

    /// `PUT /latest/api/token` at `url`'s service, after `method` on `url` answered 401: the
    /// token it issues.
    fn issue_token(
        &self,
        url: &str,
        method: Method<'_>,
        remaining: Duration,
    ) -> Result<HeaderValue, FetchError> {
        let asked = token_url(url);
        tracing::debug!(url = %shown(&asked), "PUT");
        let (ttl, seconds) = ttl_header();
        let mut response = (self.agent.put(&asked).config())
            .timeout_global(Some(self.request_timeout.min(remaining)))
            .build()
            .header(ttl, seconds)
            .send(&[][..])
            .map_err(|source| FetchError::TokenUnanswered {
                request: format!("{} {}", method.name(), shown(url)),
                source,
            })?;
        let status = response.status().as_u16();
        let token = match status {
            200 => (response.body_mut().with_config().limit(MAX_TOKEN_BYTES))
                .read_to_string()
                .ok()
                .and_then(|body| issued(&body)),
            _ => None,
        };
        token.ok_or_else(|| FetchError::TokenRefused {
            request: format!("{} {}", method.name(), shown(url)),
            status,
            reason: match status {
                200 => format!(
                    "no token in the answer (empty, over {MAX_TOKEN_BYTES} bytes, or not one \
                     line of text)"
                ),
                _ => first_line(&mut response),
            },
        })
    }
}

/// The first line of an answer's body (metaboot's refusals say what was wrong and what to do).
fn first_line(response: &mut ureq::http::Response<ureq::Body>) -> String {
    let body = (response.body_mut().with_config().limit(MAX_REASON_BYTES)).read_to_string();
    let body = body.unwrap_or_default();
    body.lines().next().unwrap_or_default().to_owned()
}

/// A request's method, and a POST's body.
#[derive(Debug, Clone, Copy)]
enum Method<'a> {
    Get,
    Post {
        content_type: &'a str,
        body: &'a [u8],
    },
}

impl Method<'_> {
    /// The request a redirect of `status` makes of this one, as requests makes it
    /// (`rebuild_method`, and `resolve_redirects` dropping the body and its headers unless the
    /// status is 307 or 308): a 307 or 308 repeats it, body and all; a 301, 302 or 303 makes
    /// it a GET without a body.
    fn redirected(self, status: u16) -> Self {
        match status {
            307 | 308 => self,
            _ => Method::Get,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post { .. } => "POST",
        }
    }
}

/// The statuses requests follows (`REDIRECT_STATI`).
fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// The `Authorization` header of `target`'s user info (none without one), marked sensitive
/// (left out of the `http` crate's `Debug`).
fn authorization(target: &Target) -> Result<Option<HeaderValue>, FetchError> {
    let Some(value) = target.authorization()? else {
        return Ok(None);
    };
    // `Basic ` and base64: always a valid header value.
    let mut value = HeaderValue::from_str(&value).map_err(|err| FetchError::Transport {
        url: target.shown.clone(),
        source: ureq::Error::Http(err.into()),
    })?;
    value.set_sensitive(true);
    Ok(Some(value))
}

/// Most bytes of a refusal's body kept for the error message.
pub const MAX_REASON_BYTES: u64 = 512;

impl HttpClient {
    /// POST `body` (of `content_type`) to the metadata service with retries (transient
    /// failures only): `Ok(())` on any 2xx. A redirect is not followed: it is an HTTP error.
    pub fn post(
        &self,
        url: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<(), RetryError<FetchError>> {
        self.post_retried(url, content_type, body, Peer::Service)
    }

    /// POST `body` to a URL of the user's (`phone_home`), with retries, following up to
    /// `redirects` redirects in each attempt, as cloud-init's requests follows them
    /// ([`HttpClient::follow`]): after a 301, 302 or 303 the request goes on as a GET without
    /// the body; its answer is the POST's. No session token is sent.
    pub fn post_following(
        &self,
        url: &str,
        content_type: &str,
        body: &[u8],
        redirects: u32,
    ) -> Result<(), RetryError<FetchError>> {
        self.post_retried(url, content_type, body, Peer::Elsewhere { redirects })
    }

    /// [`HttpClient::post`] to `peer`.
    fn post_retried(
        &self,
        url: &str,
        content_type: &str,
        body: &[u8],
        peer: Peer,
    ) -> Result<(), RetryError<FetchError>> {
        self.retry.run(&shown(url), |remaining| {
            self.post_redirected(url, content_type, body, remaining, peer)
        })
    }

    /// One POST to the metadata service, bounded by the request timeout and by `remaining`. A
    /// redirect is not followed.
    pub fn post_once(
        &self,
        url: &str,
        content_type: &str,
        body: &[u8],
        remaining: Duration,
    ) -> Result<(), FetchError> {
        self.post_redirected(url, content_type, body, remaining, Peer::Service)
    }

    /// [`HttpClient::post_once`] to `peer`.
    fn post_redirected(
        &self,
        url: &str,
        content_type: &str,
        body: &[u8],
        remaining: Duration,
        peer: Peer,
    ) -> Result<(), FetchError> {
        let post = Method::Post { content_type, body };
        let mut response = self.send(url, post, remaining, peer)?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        Err(FetchError::PostStatus {
            url: shown(url),
            status,
            reason: first_line(&mut response),
        })
    }
}

impl Fetch for HttpClient {
    /// An include's GET, retried for [`MAX_INCLUDE_FETCH_TIME`] of its own, whatever is left
    /// of the run's deadline (user data read from a service found late still has its includes
    /// read): one URL that never answers leaves the others their time. Redirects are followed,
    /// up to [`MAX_INCLUDE_REDIRECTS`], as cloud-init follows them.
    fn fetch(&self, url: &str, limit: u64) -> Result<Option<Vec<u8>>, String> {
        let retry = self.retry.afresh(MAX_INCLUDE_FETCH_TIME);
        let peer = Peer::Elsewhere {
            redirects: MAX_INCLUDE_REDIRECTS,
        };
        self.get_retried(url, limit, retry, peer)
            .map_err(|err| chain(&err))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Serves one canned response per connection on `addr`, in order, one each.
    pub fn serve(addr: &str, responses: Vec<Vec<u8>>) -> Option<std::net::SocketAddr> {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind(addr).ok()?;
        let local = listener.local_addr().ok()?;
        std::thread::spawn(move || {
            for response in responses {
                let Ok((mut stream, _)) = listener.accept() else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(&response);
            }
        });
        Some(local)
    }

    /// Serves `responses` as [`serve`] does, and keeps each request's head (request line and
    /// headers) in order.
    pub fn serve_recording(
        responses: Vec<Vec<u8>>,
    ) -> (
        std::net::SocketAddr,
        std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    ) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = heads.clone();
        std::thread::spawn(move || {
            for response in responses {
                let Ok((mut stream, _)) = listener.accept() else {
                    return;
                };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                kept.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let _ = stream.write_all(&response);
            }
        });
        (local, heads)
    }

    /// The value of header `name` in a request head, if it has one.
    fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
        head.lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim())
    }

    fn client() -> HttpClient {
        let retry = Retry::until(std::time::Instant::now() + Duration::from_secs(5));
        HttpClient::new(Duration::from_secs(5), retry)
    }

    /// An HTTP/1.1 response that closes its connection.
    pub fn response(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{headers}Connection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn statuses_bodies_and_limits() {
        let limit = 1000;
        let addr = serve(
            "127.0.0.1:0",
            vec![
                response("200 OK", "", &[b'x'; 1000]),
                response("200 OK", "", &[b'x'; 1001]),
                response("404 Not Found", "", b""),
                response("500 Oops", "", b""),
                response(
                    "200 OK",
                    &format!("X-Big: {}\r\n", "a".repeat(MAX_RESPONSE_HEADER_BYTES)),
                    b"",
                ),
                // A head just under the bound, and a body many times the input buffer.
                response(
                    "200 OK",
                    &format!("X-Big: {}\r\n", "a".repeat(MAX_RESPONSE_HEADER_BYTES - 200)),
                    &vec![b'y'; 5 * INPUT_BUFFER_BYTES],
                ),
            ],
        )
        .unwrap();
        let url = format!("http://{addr}/x");
        let c = client();
        let left = Duration::from_secs(5);
        assert_eq!(c.get_once(&url, limit, left).unwrap().unwrap().len(), 1000);
        assert!(matches!(
            c.get_once(&url, limit, left),
            Err(FetchError::TooLarge { limit: 1000, .. })
        ));
        assert_eq!(c.get_once(&url, limit, left).unwrap(), None);
        assert!(matches!(
            c.get_once(&url, limit, left),
            Err(FetchError::Status { status: 500, .. })
        ));
        let err = c.get_once(&url, limit, left).unwrap_err();
        assert!(
            matches!(
                err,
                FetchError::Transport {
                    source: ureq::Error::LargeResponseHeader(_, MAX_RESPONSE_HEADER_BYTES),
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!err.is_transient(), "an oversized header is not retried");
        let big = 5 * INPUT_BUFFER_BYTES as u64;
        assert_eq!(
            c.get_once(&url, big, left).unwrap().unwrap().len() as u64,
            big
        );
    }

    /// An `#include` URL that redirects (a 302 to another server, a 301 to a path) is read
    /// where it leads, as cloud-init reads it; a metadata document's redirect is not followed.
    #[test]
    fn an_include_follows_redirects_and_a_document_does_not() {
        let body = b"#cloud-config\nhostname: included\n";
        let target = serve("127.0.0.1:0", vec![response("200 OK", "", body)]).unwrap();
        let first = serve(
            "127.0.0.1:0",
            vec![
                response(
                    "302 Found",
                    &format!("Location: http://{target}/doc\r\n"),
                    b"",
                ),
                response("301 Moved Permanently", "Location: /moved\r\n", b""),
                response("200 OK", "", body),
                response("301 Moved Permanently", "Location: /moved\r\n", b""),
            ],
        )
        .unwrap();
        let c = client();
        let include = |path: &str| Fetch::fetch(&c, &format!("http://{first}{path}"), 100);
        assert_eq!(include("/a").unwrap().as_deref(), Some(&body[..]));
        assert_eq!(include("/b").unwrap().as_deref(), Some(&body[..]));
        let err = c
            .get_once(&format!("http://{first}/x"), 100, Duration::from_secs(5))
            .unwrap_err();
        assert!(
            matches!(err, FetchError::Status { status: 301, .. }),
            "{err:?}"
        );
    }

    /// An include that redirects more than [`MAX_INCLUDE_REDIRECTS`] times (a loop) is an
    /// error that says so, at once (not retried).
    #[test]
    fn an_include_redirected_past_the_bound_is_refused() {
        let hops = MAX_INCLUDE_REDIRECTS as usize + 1;
        let looping = response("302 Found", "Location: /again\r\n", b"");
        let addr = serve("127.0.0.1:0", vec![looping; hops]).unwrap();
        let err = Fetch::fetch(&client(), &format!("http://{addr}/loop"), 100).unwrap_err();
        assert!(
            err.ends_with(&format!(
                "GET http://{addr}/loop: more than {MAX_INCLUDE_REDIRECTS} redirects; point the \
                 URL at the document itself"
            )),
            "{err}"
        );
    }

    /// A URL's user name and password (`user:p%40ss@`) are sent as basic authentication, as
    /// requests sends them (percent-decoded): never in the request line or `Host`. A redirect
    /// keeps them for the same host and port only; a redirect target's own user info is not
    /// sent (as requests does not); a POST sends them too.
    #[test]
    fn user_info_is_sent_as_basic_authentication_to_its_own_host_only() {
        let body = b"#cloud-config\n";
        let (other, other_heads) = serve_recording(vec![response("200 OK", "", body)]);
        let (addr, heads) = serve_recording(vec![
            response("200 OK", "", body),
            response("302 Found", "Location: ../moved\r\n", b""),
            response("200 OK", "", body),
            response(
                "307 Temporary Redirect",
                &format!("Location: http://them:Th3irs@{other}/doc\r\n"),
                b"",
            ),
            response("204 No Content", "", b""),
        ]);
        let c = client();
        let url = format!("http://user:p%40ss@{addr}/dir/doc");
        // base64("user:p@ss")
        let basic = Some("Basic dXNlcjpwQHNz");
        for _ in 0..3 {
            assert_eq!(
                Fetch::fetch(&c, &url, 100).unwrap().as_deref(),
                Some(&body[..])
            );
        }
        c.post_once(&url, "text/plain", b"up", Duration::from_secs(5))
            .unwrap();
        let heads = heads.lock().unwrap().clone();
        let lines: Vec<&str> = heads.iter().filter_map(|h| h.lines().next()).collect();
        assert_eq!(
            lines,
            [
                "GET /dir/doc HTTP/1.1",
                "GET /dir/doc HTTP/1.1",
                "GET /moved HTTP/1.1",
                "GET /dir/doc HTTP/1.1",
                "POST /dir/doc HTTP/1.1",
            ]
        );
        for head in &heads {
            assert_eq!(header(head, "authorization"), basic, "{head}");
            assert_eq!(header(head, "host"), Some(addr.to_string().as_str()));
            assert!(!head.contains("p%40ss") && !head.contains("p@ss"), "{head}");
        }
        let other_heads = other_heads.lock().unwrap().clone();
        assert_eq!(other_heads.len(), 1);
        assert_eq!(
            header(&other_heads[0], "authorization"),
            None,
            "{other_heads:?}"
        );
        assert!(!other_heads[0].contains("Th3irs"), "{other_heads:?}");
    }

    /// A redirect makes of a POST what requests makes of it (`rebuild_method`): a GET without
    /// the body after a 301, 302 or 303; the same POST, body and all, after a 307 or 308.
    #[test]
    fn a_redirect_changes_the_method_as_requests_changes_it() {
        let post = Method::Post {
            content_type: FORM_TYPE,
            body: b"up",
        };
        for status in [301, 302, 303] {
            assert!(matches!(post.redirected(status), Method::Get), "{status}");
        }
        for status in [307, 308] {
            assert!(
                matches!(
                    post.redirected(status),
                    Method::Post {
                        content_type: FORM_TYPE,
                        body: b"up"
                    }
                ),
                "{status}"
            );
        }
        assert!(matches!(Method::Get.redirected(307), Method::Get));
    }

    const FORM_TYPE: &str = "application/x-www-form-urlencoded";

    /// A redirect to a URL the agent cannot fetch (TLS, a host name) is refused with the
    /// reason, naming the target with its user info masked, and not retried.
    #[test]
    fn a_redirect_the_agent_cannot_follow_says_why() {
        let (addr, _) = serve_recording(vec![
            response(
                "302 Found",
                "Location: https://user:S3cret@127.0.0.1/doc\r\n",
                b"",
            ),
            response("301 Moved", "Location: http://example.invalid/\r\n", b""),
        ]);
        let c = client();
        let url = format!("http://user:S3cret@{addr}/start");
        let err = Fetch::fetch(&c, &url, 100).unwrap_err();
        assert_eq!(
            err,
            format!(
                "GET http://…@{addr}/start: redirected to a URL the guest agent cannot fetch: \
                 \"https://…@127.0.0.1/doc\": TLS is not supported, use an http:// URL"
            )
        );
        let err = Fetch::fetch(&c, &url, 100).unwrap_err();
        assert_eq!(
            err,
            format!(
                "GET http://…@{addr}/start: redirected to a URL the guest agent cannot fetch: \
                 \"http://example.invalid/\": the host must be an IP address (the static guest \
                 agent has no name lookup), e.g. http://169.254.169.254"
            )
        );
    }

    #[test]
    fn ipv6_literals_connect_without_name_lookup() {
        let Some(addr) = serve("[::1]:0", vec![response("200 OK", "", b"v6")]) else {
            crate::testutil::missing("an IPv6 loopback address (::1)", "is not configured here");
            return;
        };
        let url = format!("http://[::1]:{}/", addr.port());
        assert_eq!(
            client()
                .get_once(&url, 10, Duration::from_secs(5))
                .unwrap()
                .unwrap(),
            b"v6"
        );
    }

    #[test]
    fn a_zone_naming_no_interface_is_refused_at_once() {
        let url = "http://[fe80::a9fe:a9fe%25nosuchif0]/openstack";
        let err = client()
            .get_once(url, 10, Duration::from_secs(5))
            .unwrap_err();
        assert!(!err.is_transient(), "{err:?}");
        assert!(crate::log::chain(&err).contains("nosuchif0"), "{err:?}");
    }

    /// A document's own budget is cloud-init's (6 attempts of 10 s, 1 s apart), and does not
    /// depend on the run's deadline.
    #[test]
    fn a_document_has_a_bounded_budget_of_its_own() {
        let spent = Retry::until(std::time::Instant::now());
        let worst = DEFAULT_REQUEST_TIMEOUT * DOCUMENT_ATTEMPTS
            + DOCUMENT_RETRY_WAIT * (DOCUMENT_ATTEMPTS - 1);
        assert_eq!(
            DOCUMENT_ATTEMPTS,
            5 + 1,
            "cloud-init's url_retries, after the first"
        );
        assert_eq!(worst, Duration::from_secs(6 * 10 + 5));
        // A client whose run's deadline has passed still reads a document: a 503 to every
        // attempt but the last, each 1 s after the one before.
        let mut answers = vec![response("503 Busy", "", b""); DOCUMENT_ATTEMPTS as usize - 1];
        answers.push(response("200 OK", "", b"late"));
        let addr = serve("127.0.0.1:0", answers).unwrap();
        let client = HttpClient::new(Duration::from_secs(5), spent);
        let started = std::time::Instant::now();
        let got = client.get(&format!("http://{addr}/user_data"), 10).unwrap();
        assert_eq!(got.unwrap(), b"late");
        let waited = DOCUMENT_RETRY_WAIT * (DOCUMENT_ATTEMPTS - 1);
        let took = started.elapsed();
        assert!(took >= waited && took < waited * 2, "{took:?}");
    }

    #[test]
    fn only_transient_failures_are_retried() {
        let status = |status| FetchError::Status {
            url: "u".into(),
            status,
        };
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(status(code).is_transient(), "{code}");
        }
        for code in [400, 401, 403, 405, 410] {
            assert!(!status(code).is_transient(), "{code}");
        }
        let transport = |source| FetchError::Transport {
            url: "u".into(),
            source,
        };
        assert!(transport(ureq::Error::ConnectionFailed).is_transient());
        assert!(transport(ureq::Error::Timeout(ureq::Timeout::Global)).is_transient());
        assert!(!transport(ureq::Error::HostNotFound).is_transient());
        assert!(
            !FetchError::TooLarge {
                url: "u".into(),
                limit: 1
            }
            .is_transient()
        );
    }
}
