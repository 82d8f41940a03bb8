//! The pooled upstream client: proxy → agent over a Unix socket, agent → API over TCP or a Unix
//! socket. Keep-alive connections are reused; every failure maps to the status the client gets.
//!
//! A connection's task runs on the worker thread that opened it, so each worker keeps its own
//! idle connections and never sends through another worker's (no cross-thread wakeups on the
//! hot path). A pooled connection the upstream closed meanwhile (a restart, its idle timeout) is
//! noticed before use, or when the request comes back unsent, and the request goes out on a
//! fresh connection instead.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::ThreadId;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use super::limits::{MAX_UPSTREAM_BODY_BYTES, UPSTREAM_CONNECT_TIMEOUT, UPSTREAM_POOL_IDLE_MAX};
use super::rejection::Rejection;

/// The `Host` requests to a Unix-socket upstream carry.
const UNIX_AUTHORITY: &str = "metadata.local";

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

/// Where connections go.
enum Dialer {
    /// `host:port`.
    Tcp(String),
    Unix(PathBuf),
}

type Sender = SendRequest<Full<Bytes>>;

/// Idle connections, by the worker thread that opened them.
#[derive(Default)]
struct Pool {
    idle: Mutex<HashMap<ThreadId, Vec<Sender>>>,
}

impl Pool {
    /// An idle connection of this thread that is still open.
    fn take(&self) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = idle.get_mut(&std::thread::current().id())?;
        while let Some(sender) = mine.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn give_back(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = idle.entry(std::thread::current().id()).or_default();
        if mine.len() < UPSTREAM_POOL_IDLE_MAX {
            mine.push(sender);
        }
    }
}

/// A pooled client for one upstream: `http://HOST:PORT` or `unix:/path/to.sock`.
#[derive(Clone)]
pub struct Upstream {
    dialer: Arc<Dialer>,
    pool: Arc<Pool>,
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
            pool: Arc::default(),
            host,
            describe: format!("http://{authority}").into(),
        })
    }

    /// An upstream on a Unix socket.
    pub fn unix(path: PathBuf) -> Self {
        let describe = format!("unix:{}", path.display());
        Self {
            dialer: Arc::new(Dialer::Unix(path)),
            pool: Arc::default(),
            host: HeaderValue::from_static(UNIX_AUTHORITY),
            describe: describe.into(),
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

    async fn connect(&self) -> Result<Sender, UpstreamError> {
        let unreachable =
            |err: std::io::Error| UpstreamError::Unreachable(format!("{}: {err}", self.describe));
        let timed_out = |_| {
            UpstreamError::Unreachable(format!(
                "{}: no connection within {UPSTREAM_CONNECT_TIMEOUT:?}",
                self.describe
            ))
        };
        match &*self.dialer {
            Dialer::Tcp(address) => {
                let stream =
                    tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(address))
                        .await
                        .map_err(timed_out)?
                        .map_err(unreachable)?;
                // Metadata requests are tiny: send each at once.
                let _ = stream.set_nodelay(true);
                self.handshake(stream).await
            }
            Dialer::Unix(path) => {
                let stream =
                    tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, UnixStream::connect(path))
                        .await
                        .map_err(timed_out)?
                        .map_err(unreachable)?;
                self.handshake(stream).await
            }
        }
    }

    async fn handshake<S>(&self, stream: S) -> Result<Sender, UpstreamError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|err| {
                UpstreamError::Failed(format!("{}: {}", self.describe, source_text(&err)))
            })?;
        let describe = self.describe.clone();
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(upstream = %describe, error = %err, "upstream connection ended");
            }
        });
        Ok(sender)
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
        let exchange = async move {
            let mut request = request;
            loop {
                let (mut sender, pooled) = match self.pool.take() {
                    Some(sender) => (sender, true),
                    None => (self.connect().await?, false),
                };
                if let Err(err) = sender.ready().await {
                    if pooled {
                        continue;
                    }
                    return Err(UpstreamError::Failed(format!(
                        "{}: {}",
                        self.describe,
                        source_text(&err)
                    )));
                }
                match sender.try_send_request(request).await {
                    Ok(response) => {
                        let (parts, body) = response.into_parts();
                        let body = Limited::new(body, MAX_UPSTREAM_BODY_BYTES)
                            .collect()
                            .await
                            .map_err(|err| {
                                UpstreamError::Failed(format!("{}: {err}", self.describe))
                            })?
                            .to_bytes();
                        self.pool.give_back(sender);
                        return Ok(Response::from_parts(parts, body));
                    }
                    Err(mut err) => match err.take_message() {
                        // Never written: the pooled connection had closed. Try a fresh one.
                        Some(unsent) if pooled => request = unsent,
                        _ => {
                            return Err(UpstreamError::Failed(format!(
                                "{}: {}",
                                self.describe,
                                source_text(err.error())
                            )));
                        }
                    },
                }
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| UpstreamError::Timeout(timeout))?
    }
}

/// The innermost cause of an error, which says what really happened (e.g. "Connection refused").
fn source_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        text = inner.to_string();
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_and_unix_upstreams() {
        assert_eq!(
            Upstream::parse("http://127.0.0.1:8775").unwrap().describe(),
            "http://127.0.0.1:8775"
        );
        assert_eq!(
            Upstream::parse("unix:/run/metaboot/api.sock")
                .unwrap()
                .describe(),
            "unix:/run/metaboot/api.sock"
        );
        assert!(Upstream::parse("https://10.0.0.1").is_err());
        assert!(Upstream::parse("unix:").is_err());
        assert!(Upstream::parse("not a url").is_err());
    }

    /// A Unix-socket server answering 200, counting the connections it accepted; aborting the
    /// returned task closes every connection, as a killed process would.
    fn counting_server(
        path: &std::path::Path,
    ) -> (
        Arc<std::sync::atomic::AtomicUsize>,
        tokio::task::JoinHandle<()>,
    ) {
        use hyper::server::conn::http1 as server;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let accepted = Arc::new(AtomicUsize::new(0));
        let listener = tokio::net::UnixListener::bind(path).unwrap();
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("ok"))))
                });
                connections
                    .spawn(server::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        (accepted, task)
    }

    fn get(upstream: &Upstream) -> Request<Full<Bytes>> {
        Request::get(upstream.uri("/openstack").unwrap())
            .body(Full::new(Bytes::new()))
            .unwrap()
    }

    #[tokio::test]
    async fn reuses_one_connection_and_survives_a_restart_of_the_upstream() {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let upstream = Upstream::unix(path.clone());
        let (accepted, server) = counting_server(&path);
        for _ in 0..20 {
            let response = upstream
                .send(get(&upstream), Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(response.body(), "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one pooled connection");

        // The upstream goes away and comes back: the pooled connection is dead; the next
        // request goes out on a new one.
        server.abort();
        let _ = server.await;
        std::fs::remove_file(&path).unwrap();
        let err = {
            // Nothing listens now: a fresh connection is refused (503), not a hang.
            let lonely = Upstream::unix(path.clone());
            lonely
                .send(get(&lonely), Duration::from_secs(5))
                .await
                .unwrap_err()
        };
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE, "{err}");
        let (again, _server) = counting_server(&path);
        let response = upstream
            .send(get(&upstream), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(again.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn missing_socket_is_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let upstream = Upstream::unix(dir.path().join("nothing.sock"));
        let request = Request::get(upstream.uri("/").unwrap())
            .body(Full::new(Bytes::new()))
            .unwrap();
        let err = upstream
            .send(request, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE, "{err}");
    }
}
