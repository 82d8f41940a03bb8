//! The accept loop every listener runs: the connection caps of its gate, then each connection
//! served by the HTTP/1.1 loop of `h1/` (keep-alive, bounded heads and bodies, timeouts).

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixListener;

use super::body::RequestBody;
use super::gate::{ConnectionGate, Refusal};
use super::h1::serve_connection;
use super::limits::ServerLimits;
use super::peer::Peer;
use super::rejection::Rejection;
use super::response::Body;
use super::unix_connection::UnixConnection;

/// Pause after an accept error such as EMFILE, so a full file table does not spin the loop.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(20);

/// Answers one request, its body already read (or why it could not be). Implemented by each
/// role.
pub trait Handler: Clone + Send + Sync + 'static {
    /// Headers the handler adds to a request's map before passing it on: the map is made
    /// with room for them, since a map that must grow rehashes every entry (and room nobody
    /// uses makes a larger allocation for nothing).
    const ADDED_HEADERS: usize = 0;

    fn handle(
        &self,
        request: Request<RequestBody>,
        peer: Peer,
    ) -> impl Future<Output = Response<Body>> + Send;

    /// A connection from `peer` was closed at once, unserved, for `refusal`: count it.
    fn refused_connection(&self, _peer: Peer, _refusal: Refusal) {}

    /// A request head from `peer` was refused with `status` for `rejection` before this handler
    /// could see it (malformed, too slow, too large, or asking for what the server does not
    /// do): the connection loop answers and logs it (`refusal_log.rs`); count it, as a request
    /// and as a rejection.
    fn refused_head(&self, _peer: Peer, _status: StatusCode, _rejection: Rejection) {}
}

/// A listener: TCP (the proxy, the API; `accept.rs`) or a Unix socket (the agent, the API).
pub trait Acceptor: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept_peer(&self) -> impl Future<Output = io::Result<(Self::Stream, Peer)>> + Send;
}

impl Acceptor for UnixListener {
    type Stream = UnixConnection;

    async fn accept_peer(&self) -> io::Result<(Self::Stream, Peer)> {
        let (stream, _) = self.accept().await?;
        Ok((UnixConnection::from_tokio(stream)?, Peer::Unix))
    }
}

/// Serves a listener until the task is dropped, with a gate of its own.
pub async fn serve<A: Acceptor, H: Handler>(listener: A, limits: ServerLimits, handler: H) {
    serve_gated(listener, ConnectionGate::new(&limits), limits, handler).await;
}

/// Serves a listener until the task is dropped; `gate` may be shared with the other workers
/// that accept on the same socket.
pub async fn serve_gated<A: Acceptor, H: Handler>(
    listener: A,
    gate: Arc<ConnectionGate>,
    limits: ServerLimits,
    handler: H,
) {
    loop {
        let (stream, peer) = match listener.accept_peer().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        let admitted = match gate.admit(&peer) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                // Dropping the stream closes it at once: a refused peer costs nothing more.
                drop(stream);
                handler.refused_connection(peer, refusal);
                match refusal {
                    Refusal::ListenerFull => tracing::warn!(
                        ?peer,
                        limit = gate.max_connections(),
                        "connection refused: too many connections"
                    ),
                    Refusal::PeerFull => tracing::debug!(
                        ?peer,
                        limit = limits.max_connections_per_peer,
                        "connection refused: too many connections from this address"
                    ),
                }
                continue;
            }
        };
        let handler = handler.clone();
        // Boxed: the connection's future holds the handler's whole chain, kilobytes, and the
        // runtime moves a task's future several times as it starts and ends it; a box makes
        // those moves a pointer's.
        let mut connection = Box::pin(async move {
            serve_connection(stream, peer, limits, handler).await;
            drop(admitted);
        });
        // Served here first: a guest's request is usually already read and answered at once
        // (`accept.rs`), and then ends in this poll, before the next accept, with no task. A
        // connection that has to wait, or that spent this loop's budget (each of its rounds
        // counts, `h1/connection.rs`), becomes a task (its next poll registers the runtime's
        // wakers in place of this poll's no-op one).
        // A handler that panics ends its connection only, not this loop: a task's panic stays
        // in the task, and the first poll, made here, is kept to the connection the same way.
        let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            futures_util::FutureExt::now_or_never(&mut connection)
        }));
        match first {
            Ok(Some(())) => {}
            Ok(None) => {
                tokio::spawn(connection);
            }
            Err(_) => tracing::error!(?peer, "serving a connection panicked: it is closed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::StatusCode;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::http::response::{Reply, TEXT_PLAIN};

    /// Panics on `/panic`, answers 200 otherwise.
    #[derive(Clone)]
    struct PanicsOnce;

    impl Handler for PanicsOnce {
        async fn handle(&self, request: Request<RequestBody>, _: Peer) -> Response<Body> {
            assert!(request.uri().path() != "/panic", "a handler bug");
            Reply::with(StatusCode::OK, TEXT_PLAIN, Bytes::from_static(b"ok"))
        }
    }

    /// A connection with a request for `path` already sent.
    async fn send(to: std::net::SocketAddr, path: &str) -> tokio::net::TcpStream {
        let mut stream = tokio::net::TcpStream::connect(to).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        stream
    }

    async fn answer(mut stream: tokio::net::TcpStream) -> String {
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer).await;
        answer
    }

    /// A handler's panic closes its own connection; the listener goes on serving the next.
    #[tokio::test]
    async fn a_panicking_handler_ends_its_connection_not_the_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let to = listener.local_addr().unwrap();
        // Sent before the listener accepts: the request is read and answered in the accept
        // loop's own first poll of the connection (`accept.rs`).
        let panics = send(to, "/panic").await;
        let acceptor = crate::http::TcpAcceptor::new(listener).unwrap();
        let served = tokio::spawn(serve(acceptor, ServerLimits::default(), PanicsOnce));
        assert_eq!(
            answer(panics).await,
            "",
            "no answer to the request that panicked"
        );
        for _ in 0..3 {
            let ok = send(to, "/ok").await;
            assert!(answer(ok).await.starts_with("HTTP/1.1 200 OK"));
        }
        assert!(!served.is_finished());
        served.abort();
    }
}
