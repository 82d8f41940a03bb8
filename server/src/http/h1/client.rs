//! One connection to an upstream, client side: one request at a time, its head and body
//! written with one vectored write, the answer read into a buffer the connection keeps across
//! requests (interim 1xx answers skipped, the body read whole by `body.rs`, at most
//! `MAX_UPSTREAM_BODY_BYTES`). Whether the connection may carry the next request is the
//! answer's to say, and is checked again before it does (`is_open`).

use std::io::{self, IoSlice};

use bytes::{Bytes, BytesMut};
use http::{Method, Response, StatusCode, request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::body;
use super::request::encode_head;
use super::response_head::{self, ResponseHead};
use super::write::write_all;
use crate::http::BodyError;
use crate::http::limits::{MAX_UPSTREAM_BODY_BYTES, MAX_UPSTREAM_INTERIM_ANSWERS};

/// Bytes the read buffer starts with, and grows by while a head comes in (an answer head from
/// a role is a few hundred bytes).
const READ_CHUNK: usize = 4 * 1024;
/// Free room under which the read buffer is made room in before a read (by moving what is
/// left to its front once the earlier answers are dropped), so a head is not read in slivers.
const MIN_READ_ROOM: usize = 1024;
/// Bytes the request head buffer starts with (a signed agent request is about 400).
const HEAD_BUFFER: usize = 512;

/// Why an exchange got no answer.
#[derive(Debug)]
pub enum ExchangeError {
    /// Not a byte of the request was written: the upstream had closed the connection. The
    /// request may go out on another one.
    Unsent(io::Error),
    /// Sent, but no usable answer came back: what was wrong.
    Failed(String),
}

/// An upstream's answer, its body read whole.
#[derive(Debug)]
pub struct Answer {
    pub response: Response<Bytes>,
    /// The connection may carry another request.
    pub reusable: bool,
}

/// A connection to an upstream and its buffers.
pub struct ClientConnection<S> {
    stream: S,
    /// What was read and not yet parsed; empty between exchanges.
    buf: BytesMut,
    /// The request head being written.
    out: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ClientConnection<S> {
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            out: Vec::with_capacity(HEAD_BUFFER),
        }
    }

    /// Sends `request` (its head; the body is `body`) and reads the whole answer. Does not time
    /// out: the caller bounds it (and drops the connection when it gives up).
    pub async fn exchange(
        &mut self,
        request: &request::Parts,
        body: &[u8],
    ) -> Result<Answer, ExchangeError> {
        let target = request.uri.path_and_query().map_or("/", |p| p.as_str());
        self.out.clear();
        encode_head(
            &mut self.out,
            &request.method,
            target,
            &request.headers,
            body.len(),
        );
        self.write(body).await?;
        let to_head = request.method == Method::HEAD;
        let (
            ResponseHead {
                response,
                keep_alive,
                ..
            },
            body,
        ) = read_answer(&mut self.stream, &mut self.buf, to_head)
            .await
            .map_err(ExchangeError::Failed)?;
        Ok(Answer {
            response: response.map(|()| body),
            // Bytes after the answer were never asked for: nothing more on this connection
            // can be trusted.
            reusable: keep_alive && self.buf.is_empty(),
        })
    }

    /// Writes the head in `out` and `body`. The first write decides whether anything left.
    async fn write(&mut self, body: &[u8]) -> Result<(), ExchangeError> {
        let head = &self.out[..];
        let written = match self
            .stream
            .write_vectored(&[IoSlice::new(head), IoSlice::new(body)])
            .await
        {
            Ok(0) => return Err(ExchangeError::Unsent(io::ErrorKind::WriteZero.into())),
            Ok(written) => written,
            Err(err) => return Err(ExchangeError::Unsent(err)),
        };
        let from_head = written.min(head.len());
        write_all(
            &mut self.stream,
            &head[from_head..],
            &body[written - from_head..],
        )
        .await
        .map_err(|err| ExchangeError::Failed(format!("request not sent whole: {err}")))
    }
}

/// Reads an upstream's answer to a request (HEAD when `to_head`) from `stream` into `buf`: the
/// final head, interim (1xx) answers skipped (at most `MAX_UPSTREAM_INTERIM_ANSWERS`), and its
/// body read whole (at most `MAX_UPSTREAM_BODY_BYTES`); what was wrong otherwise. Bytes after
/// it stay in `buf` (the next pipelined answer's).
pub async fn read_answer<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    to_head: bool,
) -> Result<(ResponseHead, Bytes), String> {
    let mut interim = 0;
    let head = loop {
        let head = read_head(stream, buf, to_head).await?;
        let status = head.response.status();
        if !status.is_informational() {
            break head;
        }
        // Nothing here asks to switch protocols: the upstream is not speaking HTTP to us.
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err("the upstream switched protocols unasked".to_owned());
        }
        interim += 1;
        if interim > MAX_UPSTREAM_INTERIM_ANSWERS {
            return Err(format!(
                "more than {MAX_UPSTREAM_INTERIM_ANSWERS} interim answers"
            ));
        }
    };
    let body = body::read(stream, buf, head.framing, MAX_UPSTREAM_BODY_BYTES)
        .await
        .map_err(|err| match err {
            BodyError::TooLarge => {
                format!("answer body larger than {MAX_UPSTREAM_BODY_BYTES} bytes")
            }
            BodyError::Broken | BodyError::Timeout => {
                "the answer body ended early or its chunked framing is malformed".to_owned()
            }
        })?;
    Ok((head, body))
}

/// The next answer head, read until complete.
async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    to_head: bool,
) -> Result<ResponseHead, String> {
    loop {
        if !buf.is_empty()
            && let Some(head) = response_head::parse(buf, to_head).map_err(str::to_owned)?
        {
            return Ok(head);
        }
        if buf.capacity() - buf.len() < MIN_READ_ROOM {
            buf.reserve(READ_CHUNK);
        }
        match stream.read_buf(buf).await {
            Ok(0) if buf.is_empty() => {
                return Err("the upstream closed the connection without answering".to_owned());
            }
            Ok(0) => {
                return Err(
                    "the upstream closed the connection in the middle of the answer head"
                        .to_owned(),
                );
            }
            Ok(_) => {}
            Err(err) => return Err(format!("reading the answer: {err}")),
        }
    }
}

/// A stream that tells, without waiting, whether bytes or its end arrived.
pub trait TryRead {
    /// Reads what is there; `WouldBlock` when nothing is. From what the runtime already knows
    /// of the socket: a system call only when it saw the socket become readable.
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize>;
}

impl TryRead for tokio::net::TcpStream {
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        Self::try_read(self, buf)
    }
}

impl TryRead for tokio::net::UnixStream {
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        Self::try_read(self, buf)
    }
}

impl<S: TryRead> ClientConnection<S> {
    /// An idle connection can carry a request: the upstream has not closed it (after its idle
    /// timeout, or a restart) and sent nothing unasked. Asked of the runtime, which has seen
    /// the upstream's close unless it came in the last instant; then the request finds out
    /// (on a Unix socket its write fails, unsent; over TCP the answer never comes: 502). A
    /// peek at the socket would close that gap at a system call per request.
    pub fn is_open(&self) -> bool {
        let mut byte = [0];
        match self.stream.try_read(&mut byte) {
            Err(err) => err.kind() == io::ErrorKind::WouldBlock,
            // 0: the upstream closed it; more: bytes it was never asked for.
            Ok(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::net::UnixStream;

    fn get() -> request::Parts {
        http::Request::get("/openstack")
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[tokio::test]
    async fn an_idle_connection_is_open_until_the_upstream_closes_it_or_speaks_unasked() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let connection = ClientConnection::new(ours);
        assert!(connection.is_open());
        theirs
            .write_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
            .await
            .unwrap();
        assert!(closes_soon(&connection).await, "bytes nobody asked for");

        let (ours, theirs) = UnixStream::pair().unwrap();
        let connection = ClientConnection::new(ours);
        drop(theirs);
        assert!(closes_soon(&connection).await, "closed by the upstream");
    }

    /// The connection is seen closed once the runtime has looked at its socket.
    async fn closes_soon(connection: &ClientConnection<UnixStream>) -> bool {
        for _ in 0..100 {
            if !connection.is_open() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_request_to_a_closed_connection_comes_back_unsent() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let mut connection = ClientConnection::new(ours);
        drop(theirs);
        let err = connection.exchange(&get(), b"").await.unwrap_err();
        assert!(matches!(err, ExchangeError::Unsent(_)), "{err:?}");
    }
}
