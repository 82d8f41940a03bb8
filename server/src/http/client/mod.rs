//! The pooled upstream client: proxy → agent over a Unix socket, agent → API over TCP or a Unix
//! socket. GET and HEAD requests, all a guest's reads, share one pipelined connection per
//! worker thread (`pipeline.rs`); other requests (a password POST, a token PUT: not idempotent,
//! and a store write that must not hold up the reads queued behind it) go out alone on pooled
//! keep-alive connections (`h1/client.rs`). Every failure maps to the status the client gets
//! (`error.rs`).
//!
//! Each worker thread keeps its own connections (`pool.rs`). A connection the upstream closed
//! meanwhile (a restart, its idle timeout) is noticed before use, or when not a byte of the
//! request could be written to it, and the request goes out on a fresh connection instead. A
//! GET or HEAD the upstream ended its pipelined connection on before answering it (an answer
//! with `Connection: close` ahead of it, a close or reset) goes out again on a new one (RFC 9112
//! §9.3.2), at most `MAX_UPSTREAM_RESENDS` times where the upstream may have died on it
//! (`pipeline.rs`, `Ending`); any other request that was written is never sent twice. So that
//! this is rare, a connection that idled longer than `UPSTREAM_IDLE_REUSE` is not used again:
//! the upstream might close it just as a request is written to it. A request that times out
//! gives its pipelined connection up: the upstream may be stuck on it; the reads written behind
//! it go out again on a new one (`pipeline.rs`, `Ending::Overdue`). Idle pooled connections
//! the upstream closed, or that idled past that bound, are closed within
//! `UPSTREAM_POOL_SWEEP` even when no request comes (`pool.rs`); a pipelined connection is
//! always read, so it sees the upstream's close at once.
//!
//! A request whose head, with the headers this hop added (the proxy's `X-Forwarded-For` and
//! scope header, `Host`), is over what every role's listener takes (`MAX_HEADER_BYTES`,
//! `MAX_HEADERS`) is never sent: its client gets 431 here. Sent, the upstream would refuse it
//! and close the connection, and with it every request pipelined behind it, other guests'.

mod error;
mod pipeline;
mod pool;
mod stream;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, Uri, header, request};
use http_body_util::{BodyExt, Full};

pub use error::UpstreamError;
use pipeline::{NoAnswer, Pipeline};
use pool::{Pipelines, Pool};
use stream::Dialer;
use tokio::time::Instant;

use super::h1::{Answer, ClientConnection, ExchangeError, request_head_size};
use super::limits::{
    MAX_HEADER_BYTES, MAX_HEADERS, MAX_UPSTREAM_RESENDS, UPSTREAM_IDLE_REUSE, deadline_in,
};

/// The `Host` requests to a Unix-socket upstream carry.
const UNIX_AUTHORITY: &str = "metadata.local";

/// A pooled client for one upstream: `http://HOST:PORT` or `unix:/path/to.sock`.
#[derive(Clone)]
pub struct Upstream {
    dialer: Arc<Dialer>,
    pool: Arc<Pool>,
    pipelines: Arc<Pipelines>,
    /// Whether reads share the pipelined connection ([`Upstream::without_pipelining`]).
    pipelining: bool,
    host: HeaderValue,
    describe: Arc<str>,
}

impl Upstream {
    /// Parses `http://HOST:PORT[/]` or `unix:PATH`.
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(path) = url.strip_prefix("unix:") {
            let path = path.trim_start_matches("//");
            if path.is_empty() {
                return Err(format!("{url:?}: a unix: upstream needs a socket path"));
            }
            return Ok(Self::unix(PathBuf::from(path)));
        }
        let uri: Uri = url.parse().map_err(|err| {
            format!("{url:?} is not a URL ({err}): use http://HOST:PORT or unix:/PATH")
        })?;
        let authority = match (uri.scheme_str(), uri.authority()) {
            (Some("http"), Some(authority)) => authority.clone(),
            _ => {
                return Err(format!(
                    "{url:?}: only http://HOST:PORT (no TLS) or unix:/PATH upstreams are supported"
                ));
            }
        };
        let address = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        let host =
            HeaderValue::from_str(authority.as_str()).map_err(|err| format!("{url:?}: {err}"))?;
        Ok(Self {
            dialer: Arc::new(Dialer::Tcp(address)),
            pool: Arc::new(Pool::new(UPSTREAM_IDLE_REUSE)),
            pipelines: Arc::new(Pipelines::new(UPSTREAM_IDLE_REUSE)),
            pipelining: true,
            host,
            describe: format!("http://{authority}").into(),
        })
    }

    /// An upstream on a Unix socket.
    pub fn unix(path: PathBuf) -> Self {
        let describe = format!("unix:{}", path.display());
        Self {
            dialer: Arc::new(Dialer::Unix(path)),
            pool: Arc::new(Pool::new(UPSTREAM_IDLE_REUSE)),
            pipelines: Arc::new(Pipelines::new(UPSTREAM_IDLE_REUSE)),
            pipelining: true,
            host: HeaderValue::from_static(UNIX_AUTHORITY),
            describe: describe.into(),
        }
    }

    /// The same upstream with every request sent alone on a pooled keep-alive connection: for
    /// an upstream that mishandles pipelined requests (RFC 9112 §9.3.2 asks every server to
    /// take them; `--api-pipelining off`).
    pub fn without_pipelining(self) -> Self {
        Self {
            pipelining: false,
            ..self
        }
    }

    /// The same upstream reusing a connection that idled at most `reuse` (tests: shorter than
    /// `UPSTREAM_IDLE_REUSE`).
    #[cfg(test)]
    fn reusing_for(self, reuse: Duration) -> Self {
        Self {
            pool: Arc::new(Pool::new(reuse)),
            pipelines: Arc::new(Pipelines::new(reuse)),
            ..self
        }
    }

    /// What this upstream is, for logs.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// The request target for `path_and_query` on this upstream (origin form).
    pub fn uri(&self, path_and_query: &str) -> Result<Uri, UpstreamError> {
        path_and_query
            .parse()
            .map_err(|err| UpstreamError::Failed(format!("bad request path: {err}")))
    }

    /// Sends a request and reads the whole answer (bounded), within `timeout`.
    pub async fn send(
        &self,
        mut request: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Response<Bytes>, UpstreamError> {
        request
            .headers_mut()
            .insert(header::HOST, self.host.clone());
        // A timeout too large for a clock reading waits as long as tokio's own `timeout` does.
        let deadline = deadline_in(timeout);
        let (parts, mut body) = request.into_parts();
        // A `Full` body is one frame, already in memory.
        let body = match body.frame().await {
            Some(Ok(frame)) => frame.into_data().unwrap_or_default(),
            _ => Bytes::new(),
        };
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let size = request_head_size(&parts.method, target, &parts.headers, body.len());
        if size.bytes > MAX_HEADER_BYTES || size.lines > MAX_HEADERS {
            return Err(UpstreamError::HeadTooLarge {
                bytes: size.bytes,
                lines: size.lines,
            });
        }
        if self.pipelining && (parts.method == Method::GET || parts.method == Method::HEAD) {
            // The pipelined connection keeps the deadline (`pipeline.rs` says why).
            self.pipelined(&parts, &body, deadline, timeout).await
        } else {
            tokio::time::timeout_at(deadline, self.alone(&parts, &body))
                .await
                .map_err(|_| UpstreamError::Timeout(timeout))?
        }
    }

    /// Sends a request (a GET or a HEAD) on this thread's pipelined connection; it gets its
    /// answer by `deadline` or fails with `timeout`. Left unanswered when the connection ended,
    /// it goes out again on a new one, at most `MAX_UPSTREAM_RESENDS` times that count.
    async fn pipelined(
        &self,
        parts: &request::Parts,
        body: &[u8],
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Response<Bytes>, UpstreamError> {
        let mut resends = 0;
        loop {
            let pipeline = self.pipelines.take_or_start(|| {
                Pipeline::start(self.dialer.clone(), self.describe.clone(), deadline)
            });
            match pipeline.exchange(parts, body, deadline).await {
                Ok(response) => return Ok(response),
                // The connection ended first: try another, unless this one had its resends.
                Err(NoAnswer::Unsent { why, counts }) => {
                    resends += u32::from(counts);
                    if resends > MAX_UPSTREAM_RESENDS {
                        return Err(UpstreamError::Failed(format!(
                            "{}: request not sent: {why}",
                            self.describe
                        )));
                    }
                }
                Err(NoAnswer::Unanswered { why, counts }) => {
                    resends += u32::from(counts);
                    if resends > MAX_UPSTREAM_RESENDS {
                        return Err(UpstreamError::Failed(format!("{}: {why}", self.describe)));
                    }
                }
                Err(NoAnswer::Unreachable(why)) => return Err(UpstreamError::Unreachable(why)),
                Err(NoAnswer::Failed(why)) => {
                    return Err(UpstreamError::Failed(format!("{}: {why}", self.describe)));
                }
                Err(NoAnswer::TimedOut) => return Err(UpstreamError::Timeout(timeout)),
            }
        }
    }

    /// Sends a request alone on a pooled keep-alive connection.
    async fn alone(
        &self,
        parts: &request::Parts,
        body: &[u8],
    ) -> Result<Response<Bytes>, UpstreamError> {
        loop {
            let (mut connection, pooled) = match self.pool.take() {
                Some(connection) => (connection, true),
                None => (
                    ClientConnection::new(self.dialer.connect(&self.describe).await?),
                    false,
                ),
            };
            match connection.exchange(parts, body).await {
                Ok(Answer { response, reusable }) => {
                    if reusable {
                        self.pool.give_back(connection);
                    }
                    return Ok(response);
                }
                // Never written: the pooled connection had closed. Try another.
                Err(ExchangeError::Unsent(_)) if pooled => {}
                Err(ExchangeError::Unsent(err)) => {
                    return Err(UpstreamError::Failed(format!(
                        "{}: request not sent: {err}",
                        self.describe
                    )));
                }
                Err(ExchangeError::Failed(why)) => {
                    return Err(UpstreamError::Failed(format!("{}: {why}", self.describe)));
                }
            }
        }
    }
}
