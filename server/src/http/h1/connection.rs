//! The connection loop: read a head (within the head timeout, also between keep-alive
//! requests), read its body (within the body timeout), let the handler answer, write the
//! answer (within the write timeout); again while both sides keep the connection open.
//! Pipelined requests that are already read (up to `ServerLimits::pipelined_at_once`) are
//! handled together and answered in order in one write: the chain's roles pipeline their
//! upstream requests (`http/client/pipeline.rs`), and one read and one write then carry many
//! answers.
//!
//! A connection closed while its client may still be sending (a body refused unread, a head
//! refused, requests read past the answer that closes it) is drained first, as nginx does
//! (`lingering_close`): closed with unread bytes, the kernel would send a reset, which can
//! reach a client that is still writing before it reads its answer ([`linger`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use bytes::BytesMut;
use http::Method;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, Sleep};

use super::body;
use super::head::{self, EndSearch, Framing, Head, HeadError};
use super::write::{self, Answering};
use crate::http::limits::{LINGER_BYTES, LINGER_TIME, deadline_in};
use crate::http::refusal_log;
use crate::http::{BodyError, Handler, Peer, RequestBody, ServerLimits};

/// Bytes the read buffer starts with, and grows by while a head comes in (a metadata request
/// head is a few hundred bytes).
const READ_CHUNK: usize = 4 * 1024;
/// Free room under which the read buffer is made room in before a read (by moving what is
/// left to its front once the earlier requests are dropped), so a head is not read in slivers.
const MIN_READ_ROOM: usize = 1024;
/// Bytes the response head buffer starts with.
const HEAD_BUFFER: usize = 512;

/// Serves one connection until either side closes it.
pub async fn serve_connection<S, H>(mut stream: S, peer: Peer, limits: ServerLimits, handler: H)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut out = Vec::with_capacity(HEAD_BUFFER);
    let timer = tokio::time::sleep(limits.header_read_timeout);
    tokio::pin!(timer);
    let room = H::ADDED_HEADERS;
    // A head parsed while gathering a batch whose request waits for the next round.
    let mut next: Option<Head> = None;
    loop {
        let read = match next.take() {
            Some(head) => Ok(Some(head)),
            None => read_head(&mut stream, &mut buf, &limits, room, timer.as_mut()).await,
        };
        let head = match read {
            Ok(Some(head)) => head,
            // Closed by the client, or idle past the timeout between requests.
            Ok(None) => return,
            Err(err) => {
                let refusing = refuse(
                    &mut stream,
                    &mut out,
                    err,
                    peer,
                    &handler,
                    &limits,
                    timer.as_mut(),
                );
                if refusing.await {
                    linger(&mut stream, &mut buf, timer.as_mut()).await;
                }
                return;
            }
        };
        let (request, answering) = read_request(&mut stream, &mut buf, head, &limits).await;
        // The client may still be sending the body of the last request read.
        let mut unread_body = body_left(&request);
        // More requests already read: a pipelining client. They are handled together.
        let mut more = Vec::new();
        let mut open = answering.keep_alive;
        // A head refused while gathering the batch: answered after the batch, in its place.
        let mut refused = None;
        while open && !buf.is_empty() && 1 + more.len() < limits.pipelined_at_once {
            let head = match head::parse(&mut buf, &limits, room) {
                Ok(Some(head)) => head,
                // An incomplete head waits for the next round.
                Ok(None) => break,
                // A refused one may already be off the buffer: it must still get its answer,
                // or every answer after it would go to the request behind the one it is for
                // (on the chain's own connections, another guest's).
                Err(err) => {
                    refused = Some(err);
                    break;
                }
            };
            // So does a request whose body is not all here (or that waits for a 100 Continue,
            // which must not go out before the answers in front of it): the batch is answered
            // first.
            if head.expect_continue || !body_read(head.framing, &buf) {
                next = Some(head);
                break;
            }
            let (request, answering) = read_request(&mut stream, &mut buf, head, &limits).await;
            open = answering.keep_alive;
            unread_body = body_left(&request);
            more.push((request, answering));
        }
        let written = if more.is_empty() {
            let response = handler.handle(request, peer).await;
            let writing = write::response(&mut stream, &mut out, response, answering);
            within(writing, limits.write_timeout, timer.as_mut()).await
        } else {
            more.insert(0, (request, answering));
            let handling = more.into_iter().map(|(request, answering)| {
                let handler = &handler;
                async move { (handler.handle(request, peer).await, answering) }
            });
            let responses = futures_util::future::join_all(handling).await;
            let writing = write::responses(&mut stream, &mut out, responses);
            within(writing, limits.write_timeout, timer.as_mut()).await
        };
        match written {
            Ok(true) => {}
            // Bytes of the client's are still to come or were read past the answer: drained
            // before the close. Else dropping the stream closes it: the FIN a shutdown would
            // send first, for one more system call per connection.
            Ok(false) => {
                if unread_body || next.is_some() || !buf.is_empty() {
                    linger(&mut stream, &mut buf, timer.as_mut()).await;
                }
                return;
            }
            Err(err) => {
                tracing::debug!(?peer, error = %err, "response not written");
                return;
            }
        }
        if let Some(err) = refused {
            let refusing = refuse(
                &mut stream,
                &mut out,
                err,
                peer,
                &handler,
                &limits,
                timer.as_mut(),
            );
            if refusing.await {
                linger(&mut stream, &mut buf, timer.as_mut()).await;
            }
            return;
        }
        // A round that never waited used none of the runtime's budget: a TCP connection is read
        // and written directly until an operation would block (`accept.rs`), out of tokio's
        // sight. A client that keeps its socket full (pipelined requests answered from memory or
        // refused, its answers taken at once) would keep this loop from ever returning, and
        // every other connection of the worker's runtime, its accept loop and its signals with
        // it. Each round counts against the budget: past it, a connection the accept loop polls
        // first becomes a task of its own (`serve.rs`), and a task yields to the others.
        tokio::task::consume_budget().await;
    }
}

/// Answers a refused head (its status and reason) before the connection closes: what follows
/// a head that could not be read cannot be told apart. The handler never sees the request: the
/// refusal is logged here (within a budget, `refusal_log.rs`) and the handler counts it
/// ([`Handler::refused_head`]). Says whether the rest of the request may still be coming, the
/// connection to be drained before it closes ([`linger`]): the rest of a head too large, the
/// body of a malformed one. Not when the head came too slowly (the client is slow or gone, and
/// nginx too closes at once): the stream is shut down here.
async fn refuse<S: AsyncWrite + Unpin, H: Handler>(
    stream: &mut S,
    out: &mut Vec<u8>,
    err: HeadError,
    peer: Peer,
    handler: &H,
    limits: &ServerLimits,
    timer: Pin<&mut Sleep>,
) -> bool {
    let (status, rejection) = (err.status(), err.rejection());
    handler.refused_head(peer, status, rejection);
    refusal_log::head_refused(peer, status, rejection, err.reason());
    let refusing = write::refusal(stream, out, status, err.reason());
    if within(refusing, limits.write_timeout, timer).await.is_err() {
        return false;
    }
    if err == HeadError::Timeout {
        let _ = stream.shutdown().await;
        return false;
    }
    true
}

/// Closes a connection whose client may still be sending, once its answer is written, as nginx
/// does (`lingering_close`): the writing side is shut down (the client reads its answer, then
/// the end), and what still comes is read into `buf` and dropped until the client closes, or
/// [`LINGER_BYTES`] were read, or [`LINGER_TIME`] passed; then the stream is dropped. Dropped
/// with unread bytes, the kernel would answer them with a reset, and a client that writes its
/// whole request before it reads (curl, Python's requests) would see "connection reset"
/// instead of the answer it was sent.
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    timer: Pin<&mut Sleep>,
) {
    let draining = async {
        stream.shutdown().await?;
        let mut left = LINGER_BYTES as u64;
        while left > 0 {
            // A client that keeps sending never has a read wait: each read counts against the
            // runtime's budget, as each round of `serve_connection` does.
            tokio::task::consume_budget().await;
            buf.clear();
            buf.reserve(READ_CHUNK);
            let read = (&mut *stream).take(left).read_buf(buf).await?;
            if read == 0 {
                break;
            }
            left -= read as u64;
        }
        Ok::<_, io::Error>(())
    };
    if let Some(Err(err)) = by_deadline(draining, LINGER_TIME, timer).await {
        tracing::debug!(error = %err, "connection not drained before it closed");
    }
}

/// Whether the client may still be sending the body of `request`: it was refused unread (too
/// large), or its framing broke off (400) before its end. Not after it stopped coming (408):
/// the client is slow or gone, and nginx too closes at once.
fn body_left(request: &http::Request<RequestBody>) -> bool {
    matches!(request.body(), Err(BodyError::TooLarge | BodyError::Broken))
}

/// `writing`, given up (an error, the connection to be closed) when the client has not taken
/// it whole within `timeout` ([`by_deadline`]).
async fn within<T>(
    writing: impl Future<Output = io::Result<T>>,
    timeout: Duration,
    timer: Pin<&mut Sleep>,
) -> io::Result<T> {
    by_deadline(writing, timeout, timer)
        .await
        .unwrap_or_else(|| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client took no answer within {timeout:?}"),
            ))
        })
}

/// `work`, or `None` once `timeout` has passed. The connection's one `timer` bounds every
/// wait: it stays armed at an earlier deadline and is moved on when it fires before this one
/// (re-arming it for every request would cost more than the rare move); only a later one (a
/// write that waited, with a longer write timeout) is moved back. Work done at once (a head
/// already read, an answer the socket takes whole) never polls it.
async fn by_deadline<T>(
    work: impl Future<Output = T>,
    timeout: Duration,
    mut timer: Pin<&mut Sleep>,
) -> Option<T> {
    // A timeout too large for a clock reading (a flag's) is as good as none.
    let deadline = deadline_in(timeout);
    if timer.deadline() > deadline {
        timer.as_mut().reset(deadline);
    }
    tokio::pin!(work);
    loop {
        tokio::select! {
            biased;
            done = &mut work => return Some(done),
            () = timer.as_mut() => {
                if Instant::now() < deadline {
                    timer.as_mut().reset(deadline);
                    continue;
                }
                return None;
            }
        }
    }
}

/// Whether a body framed by `framing` is already all in `buf` (a chunked one is not taken to
/// be).
fn body_read(framing: Framing, buf: &BytesMut) -> bool {
    match framing {
        Framing::Empty => true,
        Framing::Length(length) => buf.len() as u64 >= length,
        Framing::Chunked | Framing::UntilClose => false,
    }
}

/// The request `head` starts, its body read (or why not, for the handler to answer), and how
/// to answer it.
async fn read_request<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    head: Head,
    limits: &ServerLimits,
) -> (http::Request<RequestBody>, Answering) {
    let Head {
        request,
        framing,
        keep_alive,
        expect_continue,
    } = head;
    let body = read_body(stream, buf, framing, expect_continue, limits).await;
    let answering = Answering {
        head: request.method() == Method::HEAD,
        http10: request.version() == http::Version::HTTP_10,
        // After a body that was not read to its end, the next request cannot be found.
        keep_alive: keep_alive && body.is_ok(),
    };
    (request.map(|()| body), answering)
}

/// The next head: from what is buffered (a pipelined request) or read within the head timeout.
/// `Ok(None)`: the client closed, or sent nothing but empty lines before the timeout
/// ([`is_idle`]).
async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    limits: &ServerLimits,
    room: usize,
    timer: Pin<&mut Sleep>,
) -> Result<Option<Head>, HeadError> {
    if !buf.is_empty()
        && let Some(head) = head::parse(buf, limits, room)?
    {
        return Ok(Some(head));
    }
    let reading = async {
        // Parsed only once it may be complete, not after every read (`EndSearch`).
        let mut search = EndSearch::default();
        loop {
            if buf.capacity() - buf.len() < MIN_READ_ROOM {
                buf.reserve(READ_CHUNK);
            }
            match stream.read_buf(buf).await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            }
            if search.worth_parsing(buf, limits)
                && let Some(head) = head::parse(buf, limits, room).transpose()
            {
                return head.map(Some);
            }
        }
    };
    match by_deadline(reading, limits.header_read_timeout, timer).await {
        Some(read) => read,
        None if is_idle(buf) => Ok(None),
        None => Err(HeadError::Timeout),
    }
}

/// Whether what the client sent since its last request starts none: nothing, or only empty
/// lines, which a server ignores before a request line (RFC 9112 §2.2; older clients send a
/// line break after a POST's body). A connection idle at the head timeout is closed without a
/// word: a 408 would be read by a client reusing the connection as its next request's answer.
fn is_idle(buf: &[u8]) -> bool {
    buf.iter().all(|byte| matches!(byte, b'\r' | b'\n'))
}

/// The whole body, within the body timeout; a 100 Continue first when the client waits for
/// one and the body fits.
async fn read_body<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    framing: Framing,
    expect_continue: bool,
    limits: &ServerLimits,
) -> Result<bytes::Bytes, BodyError> {
    match framing {
        Framing::Empty => return Ok(bytes::Bytes::new()),
        Framing::Length(length) if length > limits.max_body_bytes as u64 => {
            return Err(BodyError::TooLarge);
        }
        _ => {}
    }
    let reading = async {
        if expect_continue && buf.is_empty() {
            write::write_all(stream, write::CONTINUE, &[])
                .await
                .map_err(|_| BodyError::Broken)?;
        }
        body::read(stream, buf, framing, limits.max_body_bytes).await
    };
    tokio::time::timeout(limits.body_read_timeout, reading)
        .await
        .unwrap_or(Err(BodyError::Timeout))
}
