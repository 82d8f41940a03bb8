//! The HTTP client of the guest agent: plain HTTP to IP literals only (the binary is static, with
//! no name lookup and no TLS), no proxy from the environment, explicit timeouts, capped bodies,
//! every request through the retry driver. 404 is `Ok(None)`, not an error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use crate::log::chain;
use crate::retry::{Retry, RetryError, Transient};
use crate::userdata::include::Fetch;

/// Largest `meta_data.json`, `vendor_data*.json`, `network_data.json` or version list accepted.
pub const MAX_METADATA_BYTES: u64 = 1024 * 1024;
/// Largest raw (possibly gzip-compressed) user data accepted; nova stores at most 64 KiB of
/// base64 (~48 KiB), so this leaves ample room.
pub const MAX_USER_DATA_BYTES: u64 = 1024 * 1024;
/// Default bound of one request, connect to last body byte (cloud-init's `timeout: 10`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on establishing a TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest response header block.
pub const MAX_RESPONSE_HEADER_BYTES: usize = 16 * 1024;
/// Sent with every request.
pub const USER_AGENT: &str = concat!("metaboot/", env!("CARGO_PKG_VERSION"));

/// A URL the guest agent refuses before sending anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("{0:?}: TLS is not supported, use an http:// URL")]
    Https(String),
    #[error("{0:?}: only http:// URLs are supported")]
    Scheme(String),
    #[error(
        "{0:?}: the host must be an IP address (the static guest agent has no name lookup), e.g. http://169.254.169.254"
    )]
    NotIpLiteral(String),
    #[error("{0:?}: invalid port")]
    Port(String),
}

/// Checks that `url` is `http://<IPv4 or [IPv6]>[:port][/path]`.
pub fn check_url(url: &str) -> Result<(), UrlError> {
    let lower = url.to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &url[7..]
    } else if lower.starts_with("https://") {
        return Err(UrlError::Https(url.to_owned()));
    } else {
        return Err(UrlError::Scheme(url.to_owned()));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let port = if let Some(v6) = authority.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else {
            return Err(UrlError::NotIpLiteral(url.to_owned()));
        };
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(UrlError::NotIpLiteral(url.to_owned()));
        }
        after.strip_prefix(':')
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.parse::<Ipv4Addr>().is_err() {
            return Err(UrlError::NotIpLiteral(url.to_owned()));
        }
        port
    };
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Err(UrlError::Port(url.to_owned()));
    }
    Ok(())
}

/// The resolver of the guest agent: IP literals only, never getaddrinfo (a static glibc binary
/// cannot load the guest's NSS modules, and leaving name lookup out keeps NSS, dlopen and iconv
/// out of the binary).
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
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let ip: IpAddr = host.parse().map_err(|_| ureq::Error::HostNotFound)?;
        let mut addrs = self.empty();
        addrs.push(SocketAddr::new(ip, authority.port_u16().unwrap_or(80)));
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
}

impl Transient for FetchError {
    fn is_transient(&self) -> bool {
        match self {
            FetchError::Status { status, .. } | FetchError::PostStatus { status, .. } => {
                matches!(status, 408 | 429 | 500..=599)
            }
            FetchError::Transport { source, .. } | FetchError::PostTransport { source, .. } => {
                matches!(
                    source,
                    ureq::Error::Io(_)
                        | ureq::Error::Timeout(_)
                        | ureq::Error::ConnectionFailed
                        | ureq::Error::Protocol(_)
                )
            }
            FetchError::Url(_) | FetchError::TooLarge { .. } => false,
        }
    }
}

/// Gets URLs for the guest agent: `get` retries through the pass's [`Retry`].
#[derive(Debug, Clone)]
pub struct HttpClient {
    agent: ureq::Agent,
    request_timeout: Duration,
    retry: Retry,
}

impl HttpClient {
    /// A client whose requests each last at most `request_timeout` (and never past the retry
    /// deadline).
    pub fn new(request_timeout: Duration, retry: Retry) -> Self {
        let config = ureq::Agent::config_builder()
            .proxy(None)
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(USER_AGENT)
            .max_response_header_size(MAX_RESPONSE_HEADER_BYTES)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(request_timeout))
            .build();
        let agent = ureq::Agent::with_parts(config, DefaultConnector::new(), IpLiteralResolver);
        HttpClient {
            agent,
            request_timeout,
            retry,
        }
    }

    /// The retry bounds this client uses.
    pub fn retry(&self) -> &Retry {
        &self.retry
    }

    /// GET with retries: `Ok(Some(body))` on 200, `Ok(None)` on 404.
    pub fn get(&self, url: &str, limit: u64) -> Result<Option<Vec<u8>>, RetryError<FetchError>> {
        self.retry
            .run(url, |remaining| self.get_once(url, limit, remaining))
    }

    /// One GET, bounded by the request timeout and by `remaining`.
    pub fn get_once(
        &self,
        url: &str,
        limit: u64,
        remaining: Duration,
    ) -> Result<Option<Vec<u8>>, FetchError> {
        check_url(url)?;
        let transport = |source| FetchError::Transport {
            url: url.to_owned(),
            source,
        };
        tracing::debug!(url, "GET");
        let mut response = self
            .agent
            .get(url)
            .config()
            .timeout_global(Some(self.request_timeout.min(remaining)))
            .build()
            .call()
            .map_err(transport)?;
        let status = response.status().as_u16();
        match status {
            200 => {}
            404 => return Ok(None),
            _ => {
                return Err(FetchError::Status {
                    url: url.to_owned(),
                    status,
                });
            }
        }
        match response.body_mut().with_config().limit(limit).read_to_vec() {
            Ok(body) => Ok(Some(body)),
            Err(ureq::Error::BodyExceedsLimit(_)) => Err(FetchError::TooLarge {
                url: url.to_owned(),
                limit,
            }),
            Err(source) => Err(transport(source)),
        }
    }
}

/// Most bytes of a refusal's body kept for the error message.
pub const MAX_REASON_BYTES: u64 = 512;

impl HttpClient {
    /// POST `body` with retries (transient failures only): `Ok(())` on 200.
    pub fn post(&self, url: &str, body: &[u8]) -> Result<(), RetryError<FetchError>> {
        self.retry
            .run(url, |remaining| self.post_once(url, body, remaining))
    }

    /// One POST, bounded by the request timeout and by `remaining`.
    pub fn post_once(&self, url: &str, body: &[u8], remaining: Duration) -> Result<(), FetchError> {
        check_url(url)?;
        tracing::debug!(url, bytes = body.len(), "POST");
        let mut response = self
            .agent
            .post(url)
            .config()
            .timeout_global(Some(self.request_timeout.min(remaining)))
            .build()
            .content_type("text/plain")
            .send(body)
            .map_err(|source| FetchError::PostTransport {
                url: url.to_owned(),
                source,
            })?;
        let status = response.status().as_u16();
        if status == 200 {
            return Ok(());
        }
        let reason = response
            .body_mut()
            .with_config()
            .limit(MAX_REASON_BYTES)
            .read_to_string()
            .unwrap_or_default();
        Err(FetchError::PostStatus {
            url: url.to_owned(),
            status,
            reason: reason.lines().next().unwrap_or_default().to_owned(),
        })
    }
}

impl Fetch for HttpClient {
    fn fetch(&self, url: &str, limit: u64) -> Result<Option<Vec<u8>>, String> {
        self.get(url, limit).map_err(|err| chain(&err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literal_http_urls_only() {
        for ok in [
            "http://169.254.169.254",
            "http://169.254.169.254/",
            "HTTP://127.0.0.1:8080/openstack",
            "http://[::1]:80/x",
            "http://[fe80::a9fe:a9fe]",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        assert!(matches!(
            check_url("https://169.254.169.254"),
            Err(UrlError::Https(_))
        ));
        assert!(matches!(
            check_url("ftp://1.2.3.4"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            check_url("http://metadata.google.internal/x"),
            Err(UrlError::NotIpLiteral(_))
        ));
        assert!(matches!(
            check_url("http://localhost"),
            Err(UrlError::NotIpLiteral(_))
        ));
        assert!(matches!(
            check_url("http://[nothex]/"),
            Err(UrlError::NotIpLiteral(_))
        ));
        assert!(matches!(
            check_url("http://1.2.3.4:99999"),
            Err(UrlError::Port(_))
        ));
        assert!(check_url("http://user@1.2.3.4").is_err());
    }

    /// Serves one canned response per connection on `addr`, `count` times.
    fn serve(addr: &str, responses: Vec<Vec<u8>>) -> Option<std::net::SocketAddr> {
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

    fn client() -> HttpClient {
        let retry = Retry::until(std::time::Instant::now() + Duration::from_secs(5));
        HttpClient::new(Duration::from_secs(5), retry)
    }

    fn response(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
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
    }

    #[test]
    fn ipv6_literals_connect_without_name_lookup() {
        let Some(addr) = serve("[::1]:0", vec![response("200 OK", "", b"v6")]) else {
            eprintln!("skipping: no IPv6 loopback here");
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
