//! A connection whose client never lets it wait still lets its runtime's other work run: the
//! loop's rounds count against tokio's budget (`connection.rs`), which the direct reads and
//! writes of a TCP connection (`accept.rs`) never touch.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;

use super::serve_connection;
use crate::http::response::TEXT_PLAIN;
use crate::http::{Acceptor, Body, Handler, Peer, Reply, RequestBody, ServerLimits};

/// Requests the pipelining client sends: far more than a runtime's budget (128) of rounds, so
/// that a loop that never yields is seen to serve them all before anything else runs.
const PIPELINED: usize = 20_000;

/// What the pipelining client sends, again and again.
const REQUEST: &[u8] = b"GET /latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n";

/// Answers 200 from memory at once, as the API does, and counts what it answered.
#[derive(Clone)]
struct FromMemory(Arc<AtomicUsize>);

impl Handler for FromMemory {
    async fn handle(&self, _: Request<RequestBody>, _: Peer) -> Response<Body> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Reply::with(StatusCode::OK, TEXT_PLAIN, Bytes::from_static(b"hostname"))
    }
}

/// A guest that pipelines [`PIPELINED`] requests and takes every answer at once: each read finds
/// request bytes and each write goes through, never pending, as a TCP connection read and
/// written directly (`accept.rs`) behaves while its client keeps the socket full. Then it closes.
struct Pipelining {
    left: usize,
    /// How far into [`REQUEST`] the next read starts.
    at: usize,
}

impl Pipelining {
    fn new() -> Self {
        Self {
            left: PIPELINED,
            at: 0,
        }
    }
}

impl AsyncRead for Pipelining {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.left > 0 {
            let rest = &REQUEST[self.at..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            self.at += n;
            if self.at == REQUEST.len() {
                self.at = 0;
                self.left -= 1;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Pipelining {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What a connection's stream must be.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

/// A connection's stream: the pipelining guest, or an ordinary client's.
type Client = Box<dyn Stream>;

/// A listener whose connections come from a channel.
struct Connections(tokio::sync::Mutex<mpsc::UnboundedReceiver<Client>>);

impl Acceptor for Connections {
    type Stream = Client;

    async fn accept_peer(&self) -> io::Result<(Client, Peer)> {
        match self.0.lock().await.recv().await {
            Some(client) => Ok((client, Peer::Tcp(([198, 18, 0, 10], 40000).into()))),
            // No more: as a listener that never gets another connection.
            None => std::future::pending().await,
        }
    }
}

/// Inside its own task, the loop yields to the runtime's other tasks while the guest's requests
/// keep coming: the other task runs long before the guest's last request is answered.
#[tokio::test(flavor = "current_thread")]
async fn a_connection_that_never_waits_yields_to_the_other_tasks() {
    let answered = Arc::new(AtomicUsize::new(0));
    let handler = FromMemory(answered.clone());
    let served = tokio::spawn(serve_connection(
        Pipelining::new(),
        Peer::Tcp(([198, 18, 0, 10], 40000).into()),
        ServerLimits::guest_facing(),
        handler,
    ));
    // The guest's connection runs first; this task is back when it yields.
    tokio::task::yield_now().await;
    let meanwhile = answered.load(Ordering::Relaxed);
    assert!(
        meanwhile < PIPELINED / 2,
        "the other tasks waited until the guest's {meanwhile} requests of {PIPELINED} were answered"
    );
    served.await.unwrap();
    assert_eq!(answered.load(Ordering::Relaxed), PIPELINED);
}

/// The accept loop serves a connection in its own first poll (`serve.rs`): a connection that
/// never waits is handed to a task of its own once the loop's budget is spent, and the next
/// connection is accepted and answered while the guest's requests keep coming.
#[tokio::test(flavor = "current_thread")]
async fn a_connection_that_never_waits_leaves_the_accept_loop_to_the_others() {
    let answered = Arc::new(AtomicUsize::new(0));
    let (connect, incoming) = mpsc::unbounded_channel();
    let listener = Connections(tokio::sync::Mutex::new(incoming));
    let serving = tokio::spawn(crate::http::serve(
        listener,
        ServerLimits::guest_facing(),
        FromMemory(answered.clone()),
    ));
    let (mut neighbour, theirs) = tokio::io::duplex(64 * 1024);
    neighbour
        .write_all(b"GET /openstack HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    connect.send(Box::new(Pipelining::new())).unwrap();
    connect.send(Box::new(theirs)).unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), neighbour.read_to_end(&mut answer))
        .await
        .expect("the neighbour is answered")
        .unwrap();
    let meanwhile = answered.load(Ordering::Relaxed);
    assert!(answer.starts_with(b"HTTP/1.1 200 OK"), "{answer:?}");
    assert!(
        meanwhile < PIPELINED / 2,
        "the neighbour waited until the guest's {meanwhile} requests of {PIPELINED} were answered"
    );
    serving.abort();
}

/// How long the guest of the loopback test pipelines: far longer than its neighbour may wait.
const GUEST_PIPELINES_FOR: Duration = Duration::from_secs(5);
/// How long the neighbour of the loopback test may wait for its answer.
const NEIGHBOUR_WAITS_AT_MOST: Duration = Duration::from_secs(1);

/// The same over loopback TCP, through the connections the listeners accept (`accept.rs`): a
/// guest that pipelines requests as fast as it can write them, and reads its answers as fast as
/// they come, does not hold up its neighbour's answer on the same one-thread runtime.
#[test]
fn a_guest_pipelining_over_tcp_does_not_hold_up_its_neighbour() {
    use std::io::{Read as _, Write as _};
    use std::sync::atomic::AtomicBool;
    use std::time::Instant;

    let listener = crate::http::listen::tcp_listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let handler = FromMemory(answered.clone());
    let (stop_serving, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let acceptor = crate::http::TcpAcceptor::new(listener).unwrap();
                tokio::select! {
                    () = crate::http::serve(acceptor, ServerLimits::guest_facing(), handler) => {}
                    _ = stopped => {}
                }
            });
    });

    let guest = std::net::TcpStream::connect(addr).unwrap();
    let mut answers = guest.try_clone().unwrap();
    let neighbour_answered = Arc::new(AtomicBool::new(false));
    let writer = {
        let neighbour_answered = neighbour_answered.clone();
        let mut guest = guest;
        std::thread::spawn(move || {
            let batch = REQUEST.repeat(1024);
            let started = Instant::now();
            while started.elapsed() < GUEST_PIPELINES_FOR
                && !neighbour_answered.load(Ordering::Relaxed)
            {
                if guest.write_all(&batch).is_err() {
                    break;
                }
            }
            let _ = guest.shutdown(std::net::Shutdown::Write);
        })
    };
    let reader = std::thread::spawn(move || {
        let mut chunk = vec![0; 256 * 1024];
        while matches!(answers.read(&mut chunk), Ok(n) if n > 0) {}
    });
    // The guest's requests are being answered.
    let deadline = Instant::now() + GUEST_PIPELINES_FOR;
    while answered.load(Ordering::Relaxed) < 1024 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }

    let asked = Instant::now();
    let mut neighbour = std::net::TcpStream::connect(addr).unwrap();
    neighbour
        .write_all(b"GET /openstack HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    neighbour.read_to_string(&mut answer).unwrap();
    let waited = asked.elapsed();
    neighbour_answered.store(true, Ordering::Relaxed);

    // Stopped first: the requests the guest has sent but the server not read yet are dropped
    // with it, not answered.
    let _ = stop_serving.send(());
    server.join().unwrap();
    writer.join().unwrap();
    reader.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer:?}");
    assert!(
        waited < NEIGHBOUR_WAITS_AT_MOST,
        "the neighbour waited {waited:?} while the guest pipelined"
    );
}

/// A client that sends a malformed head, then bytes without end as fast as they are read,
/// counting them: the connection is drained before it closes (`linger`), never waiting.
struct Flooding {
    head_sent: bool,
    read: Arc<AtomicUsize>,
}

impl AsyncRead for Flooding {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.head_sent {
            self.head_sent = true;
            buf.put_slice(b"GET / HTTP/1.1\r\nno colon\r\n\r\n");
        } else {
            let n = buf.remaining();
            buf.put_slice(&vec![b'x'; n]);
            self.read.fetch_add(n, Ordering::Relaxed);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Flooding {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Draining a refused connection whose client never stops sending yields to the other tasks
/// too: the other task runs long before the drain reaches its bound.
#[tokio::test(flavor = "current_thread")]
async fn a_drain_that_never_waits_yields_to_the_other_tasks() {
    let read = Arc::new(AtomicUsize::new(0));
    let flooding = Flooding {
        head_sent: false,
        read: read.clone(),
    };
    let served = tokio::spawn(serve_connection(
        flooding,
        Peer::Tcp(([198, 18, 0, 10], 40000).into()),
        ServerLimits::guest_facing(),
        FromMemory(Arc::new(AtomicUsize::new(0))),
    ));
    tokio::task::yield_now().await;
    let meanwhile = read.load(Ordering::Relaxed);
    assert!(
        meanwhile < crate::http::limits::LINGER_BYTES / 2,
        "the other tasks waited until {meanwhile} bytes were drained"
    );
    served.await.unwrap();
    assert!(read.load(Ordering::Relaxed) >= crate::http::limits::LINGER_BYTES);
}
