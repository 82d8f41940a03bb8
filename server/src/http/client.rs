//! The pooled upstream client: proxy → agent over a Unix socket, agent → API over TCP or a Unix
//! socket. Keep-alive connections are reused; every failure maps to the status the client gets.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::UnixStream;

use super::limits::{
    MAX_UPSTREAM_BODY_BYTES, UPSTREAM_CONNECT_TIMEOUT, UPSTREAM_POOL_IDLE_MAX,
    UPSTREAM_POOL_IDLE_TIMEOUT,
};

/// The authority requests to a Unix-socket upstream carry; the pool keys on it.
const UNIX_AUTHORITY: &str = "metadata.local";

/// Connects every request to one Unix socket, whatever its URI says.
#[derive(Clone)]
pub struct UnixConnector {
    path: Arc<Path>,
}

impl tower_service::Service<Uri> for UnixConnector {
    type Response = TokioIo<UnixStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let path = self.path.clone();
        Box::pin(async move {
            match tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, UnixStream::connect(&*path)).await
            {
                Ok(stream) => Ok(TokioIo::new(stream?)),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connect to the upstream socket timed out",
                )),
            }
        })
    }
}

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

    /// A short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "upstream_unreachable",
            Self::Timeout(_) => "upstream_timeout",
            Self::Failed(_) => "upstream_failed",
        }
    }
}

#[derive(Clone)]
enum Transport {
    Tcp(Client<HttpConnector, Full<Bytes>>),
    Unix(Client<UnixConnector, Full<Bytes>>),
}

/// A pooled client for one upstream: `http://HOST:PORT` or `unix:/path/to.sock`.
#[derive(Clone)]
pub struct Upstream {
    transport: Transport,
    /// `http://host:port` or `http://metadata.local`: prefixed to every path.
    base: Arc<str>,
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
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(format!(
                "{url:?}: only http://HOST:PORT (no TLS) or unix:/PATH upstreams are supported"
            ));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(UPSTREAM_CONNECT_TIMEOUT));
        let client = Self::builder().build(connector);
        let base = format!(
            "http://{}",
            uri.authority().map(|a| a.as_str()).unwrap_or_default()
        );
        Ok(Self {
            transport: Transport::Tcp(client),
            describe: base.clone().into(),
            base: base.into(),
        })
    }

    /// An upstream on a Unix socket.
    pub fn unix(path: PathBuf) -> Self {
        let describe = format!("unix:{}", path.display());
        let connector = UnixConnector { path: path.into() };
        Self {
            transport: Transport::Unix(Self::builder().build(connector)),
            base: format!("http://{UNIX_AUTHORITY}").into(),
            describe: describe.into(),
        }
    }

    fn builder() -> hyper_util::client::legacy::Builder {
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(UPSTREAM_POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(UPSTREAM_POOL_IDLE_MAX)
            .retry_canceled_requests(true);
        builder
    }

    /// What this upstream is, for logs.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// The absolute URI of `path_and_query` on this upstream.
    pub fn uri(&self, path_and_query: &str) -> Result<Uri, UpstreamError> {
        let mut uri = String::with_capacity(self.base.len() + path_and_query.len());
        uri.push_str(&self.base);
        uri.push_str(path_and_query);
        uri.parse()
            .map_err(|err| UpstreamError::Failed(format!("bad request path: {err}")))
    }

    /// Sends a request and reads the whole answer (bounded), within `timeout`.
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Response<Bytes>, UpstreamError> {
        let exchange = async {
            let response = match &self.transport {
                Transport::Tcp(client) => client.request(request).await,
                Transport::Unix(client) => client.request(request).await,
            }
            .map_err(|err| {
                if err.is_connect() {
                    UpstreamError::Unreachable(format!("{}: {}", self.describe, source_text(&err)))
                } else {
                    UpstreamError::Failed(format!("{}: {}", self.describe, source_text(&err)))
                }
            })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_UPSTREAM_BODY_BYTES)
                .collect()
                .await
                .map_err(|err| UpstreamError::Failed(format!("{}: {err}", self.describe)))?
                .to_bytes();
            Ok(Response::from_parts(parts, body))
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
