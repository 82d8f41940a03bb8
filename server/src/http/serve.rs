//! The accept loop every listener runs: the connection caps of its gate, then each connection
//! served by the HTTP/1.1 loop of `h1/` (keep-alive, bounded heads and bodies, timeouts).

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixListener;

use super::body::RequestBody;
use super::gate::{ConnectionGate, Refusal};
use super::h1::serve_connection;
use super::limits::ServerLimits;
use super::peer::Peer;
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
        // connection that has to wait becomes a task (its next poll registers the runtime's
        // wakers in place of this poll's no-op one).
        if futures_util::FutureExt::now_or_never(&mut connection).is_none() {
            tokio::spawn(connection);
        }
    }
}
