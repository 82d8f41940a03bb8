//! Accepting TCP connections without the poller. A guest's connection usually asks one thing
//! and is closed: its request is already there when it is accepted (the listeners defer
//! accepting until the client has spoken, `listen.rs`), and its answer fits in the socket's
//! send buffer. So a connection is read and written directly, and joins the runtime's poller
//! (`epoll_ctl` to add it, and again to remove it when it closes) only when a read or a write
//! would block: a keep-alive client waiting between requests, a slow one, a large answer.
//! One request on a new connection then costs `accept4`, `recvfrom`, `writev` and `close`,
//! and is answered without waiting for the poller's next round. `TCP_NODELAY` comes from the
//! listener: Linux copies it to every connection it accepts. These direct reads and writes use
//! none of tokio's budget: the connection loop counts its rounds against it instead
//! (`h1/connection.rs`), so a client that never lets its connection wait cannot keep the
//! runtime from its other connections.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

use super::peer::Peer;
use super::serve::Acceptor;

/// A listening TCP socket whose connections are taken as [`Accepted`].
pub struct TcpAcceptor(AsyncFd<std::net::TcpListener>);

impl TcpAcceptor {
    /// Watches `listener` with the current runtime's poller, non-blocking (`listen.rs` makes
    /// its listeners so already; this holds for any other).
    pub fn new(listener: std::net::TcpListener) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        // SAFETY: a `std::net::TcpListener` owns its descriptor: it stays open, and is the one
        // `as_raw_fd` returns, until the listener is dropped, which only the `AsyncFd` does.
        let registered = unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE) };
        Ok(Self(registered?))
    }
}

impl Acceptor for TcpAcceptor {
    type Stream = Accepted;

    async fn accept_peer(&self) -> io::Result<(Accepted, Peer)> {
        loop {
            let mut ready = self.0.readable().await?;
            if let Ok(accepted) = ready.try_io(|listener| accept_now(listener.get_ref())) {
                let (stream, addr) = accepted?;
                // An accept counts against the task's budget, as tokio's own accept does (an
                // `AsyncFd`'s readiness does not), so a stream of new connections still lets
                // the worker's other connections run (every 128 accepts).
                tokio::task::consume_budget().await;
                return Ok((Accepted(State::Unpolled(stream)), Peer::Tcp(addr)));
            }
        }
    }
}

/// One `accept4`: the connection non-blocking and closed on exec from the start, and its peer.
fn accept_now(listener: &std::net::TcpListener) -> io::Result<(std::net::TcpStream, SocketAddr)> {
    let (socket, addr) =
        socket2::SockRef::from(listener).accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)?;
    let addr = addr
        .as_socket()
        .ok_or_else(|| io::Error::other("accepted a connection without an IP address"))?;
    Ok((socket.into(), addr))
}

/// An accepted connection: read and written directly until an operation would block, then
/// registered with the runtime's poller for the rest of its life.
pub struct Accepted(State);

enum State {
    /// Not known to the poller: every read and write so far found the socket ready.
    Unpolled(std::net::TcpStream),
    /// Registered, once a read or a write would have blocked.
    Polled(tokio::net::TcpStream),
    /// Registration failed: the connection is closed.
    Lost,
}

impl Accepted {
    /// Whether the connection has joined the poller.
    #[cfg(test)]
    pub fn is_polled(&self) -> bool {
        matches!(self.0, State::Polled(_))
    }

    /// The registered stream, registering it first when it is not yet.
    fn polled(&mut self) -> io::Result<Pin<&mut tokio::net::TcpStream>> {
        if let State::Unpolled(_) = self.0
            && let State::Unpolled(stream) = std::mem::replace(&mut self.0, State::Lost)
        {
            self.0 = State::Polled(tokio::net::TcpStream::from_std(stream)?);
        }
        match &mut self.0 {
            State::Polled(stream) => Ok(Pin::new(stream)),
            State::Unpolled(_) | State::Lost => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the connection could not join the runtime's poller",
            )),
        }
    }

    /// A write: `direct` on the socket while it is not polled and the write does not block,
    /// else `polled` on the registered stream.
    fn write_with(
        &mut self,
        cx: &mut Context<'_>,
        direct: impl FnOnce(&mut std::net::TcpStream) -> io::Result<usize>,
        polled: impl FnOnce(
            Pin<&mut tokio::net::TcpStream>,
            &mut Context<'_>,
        ) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if let State::Unpolled(stream) = &mut self.0
            && let Some(done) = unless_blocked(direct(stream))
        {
            return Poll::Ready(done);
        }
        polled(self.polled()?, cx)
    }
}

/// The result of a direct call, or `None` when it would block (the caller then registers).
fn unless_blocked<T>(result: io::Result<T>) -> Option<io::Result<T>> {
    match result {
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => None,
        done => Some(done),
    }
}

impl AsyncRead for Accepted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let State::Unpolled(stream) = &mut this.0 {
            let read = stream.read(buf.initialize_unfilled());
            if let Some(done) = unless_blocked(read) {
                return Poll::Ready(done.map(|n| buf.advance(n)));
            }
        }
        this.polled()?.poll_read(cx, buf)
    }
}

impl AsyncWrite for Accepted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().write_with(
            cx,
            |stream| stream.write(buf),
            |stream, cx| stream.poll_write(cx, buf),
        )
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().write_with(
            cx,
            |stream| stream.write_vectored(bufs),
            |stream, cx| stream.poll_write_vectored(cx, bufs),
        )
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            State::Polled(stream) => Pin::new(stream).poll_flush(cx),
            State::Unpolled(_) | State::Lost => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            State::Polled(stream) => Pin::new(stream).poll_shutdown(cx),
            State::Unpolled(stream) => Poll::Ready(stream.shutdown(Shutdown::Write)),
            State::Lost => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use crate::http::listen::tcp_listener;

    /// Runs `serve` on a one-thread runtime against a client thread that runs `client`
    /// against the listener's address; the client's result.
    fn exchange<T: Send + 'static>(
        client: impl FnOnce(SocketAddr) -> T + Send + 'static,
        serve: impl AsyncFnOnce(TcpAcceptor),
    ) -> T {
        let listener = tcp_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::thread::spawn(move || client(addr));
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move { serve(TcpAcceptor::new(listener).unwrap()).await });
        client.join().unwrap()
    }

    #[test]
    fn a_request_already_there_is_answered_without_the_poller() {
        let answer = exchange(
            |addr| {
                let mut client = std::net::TcpStream::connect(addr).unwrap();
                client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
                let mut answer = String::new();
                client.read_to_string(&mut answer).unwrap();
                (client.local_addr().unwrap(), answer)
            },
            async |acceptor| {
                let (mut stream, peer) = acceptor.accept_peer().await.unwrap();
                let mut head = [0u8; 64];
                let n = stream.read(&mut head).await.unwrap();
                assert_eq!(&head[..n], b"GET / HTTP/1.1\r\n\r\n");
                stream.write_all(b"answered").await.unwrap();
                assert!(!stream.is_polled(), "a ready connection joined the poller");
                let Peer::Tcp(addr) = peer else {
                    panic!("{peer:?}")
                };
                stream.write_all(addr.to_string().as_bytes()).await.unwrap();
            },
        );
        assert_eq!(answer.1, format!("answered{}", answer.0));
    }

    #[test]
    fn a_connection_that_must_wait_joins_the_poller_and_is_served() {
        let answer = exchange(
            |addr| {
                let mut client = std::net::TcpStream::connect(addr).unwrap();
                client.write_all(b"GET / HT").unwrap();
                std::thread::sleep(Duration::from_millis(200));
                client.write_all(b"TP/1.1\r\n\r\n").unwrap();
                let mut answer = String::new();
                client.read_to_string(&mut answer).unwrap();
                answer
            },
            async |acceptor| {
                let (mut stream, _) = acceptor.accept_peer().await.unwrap();
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut chunk = [0u8; 64];
                    let n = stream.read(&mut chunk).await.unwrap();
                    assert_ne!(n, 0, "closed early");
                    head.extend_from_slice(&chunk[..n]);
                }
                assert!(stream.is_polled(), "it waited without the poller");
                stream.write_all(b"answered").await.unwrap();
                stream.shutdown().await.unwrap();
            },
        );
        assert_eq!(answer, "answered");
    }

    #[test]
    fn an_answer_larger_than_the_send_buffer_joins_the_poller_and_arrives_whole() {
        const ANSWER_BYTES: usize = 8 * 1024 * 1024;
        // The server's word that its write waits for the client, which reads only then. A
        // client that slept a while instead may be reading already by the time a loaded
        // machine lets the server write, and an answer taken as fast as it is written need
        // never wait.
        let (waiting, told) = std::sync::mpsc::channel();
        let received = exchange(
            move |addr| {
                let mut client = std::net::TcpStream::connect(addr).unwrap();
                client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
                // Not reading yet: the receive window stays small (it grows only as the
                // reader takes data), so the answer fills the send buffer. Told, or the
                // server done without ever waiting (its assertion says so), it reads.
                let _ = told.recv();
                let mut answer = Vec::new();
                client.read_to_end(&mut answer).unwrap();
                answer
            },
            async move |acceptor| {
                let (mut stream, _) = acceptor.accept_peer().await.unwrap();
                let mut head = [0u8; 18];
                stream.read_exact(&mut head).await.unwrap();
                let answer: Vec<u8> = (0..ANSWER_BYTES).map(|i| (i % 251) as u8).collect();
                let writing = async {
                    let half = ANSWER_BYTES / 2;
                    stream.write_all(&answer[..half]).await?;
                    // The rest through the vectored write, as answers go out.
                    let mut written = half;
                    while written < ANSWER_BYTES {
                        let rest = [IoSlice::new(&answer[written..])];
                        written += stream.write_vectored(&rest).await?;
                    }
                    Ok::<_, io::Error>(())
                };
                let mut writing = std::pin::pin!(writing);
                std::future::poll_fn(|cx| {
                    let polled = writing.as_mut().poll(cx);
                    if polled.is_pending() {
                        let _ = waiting.send(());
                    }
                    polled
                })
                .await
                .unwrap();
                assert!(
                    stream.is_polled(),
                    "{ANSWER_BYTES} bytes went out without waiting"
                );
            },
        );
        assert_eq!(received.len(), ANSWER_BYTES);
        assert!(
            received
                .iter()
                .enumerate()
                .all(|(i, b)| *b == (i % 251) as u8)
        );
    }
}
