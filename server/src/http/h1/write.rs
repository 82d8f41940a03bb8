//! Writing a response: the head encoded into the connection's reused buffer, then head and
//! body in one vectored write. Every response carries `Content-Length` and `Date`; a HEAD
//! answer keeps the length of the GET and sends no body.

use std::io::{self, IoSlice};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode, header};
use http_body_util::BodyExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::date;
use super::fields::has_token;
use crate::http::response::{Body, TEXT_PLAIN};

/// What the response is an answer to.
#[derive(Debug, Clone, Copy)]
pub struct Answering {
    /// The request was HEAD: no body, the length of the GET.
    pub head: bool,
    /// The request was HTTP/1.0: answer in HTTP/1.0.
    pub http10: bool,
    /// The connection stays open after this response.
    pub keep_alive: bool,
}

/// The interim answer to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Status codes whose responses never have a body nor a length (RFC 9110 §8.6).
fn bodiless(status: StatusCode) -> bool {
    status.is_informational() || status == StatusCode::NO_CONTENT
}

/// Encodes the head of `status` + `headers` with a body of `length` bytes at the end of `out`.
/// Returns whether the connection stays open after it: not when `answering` says so, nor when
/// the handler's headers say `Connection: close`.
fn encode_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    length: usize,
    answering: Answering,
) -> bool {
    out.extend_from_slice(if answering.http10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or_default().as_bytes());
    out.extend_from_slice(b"\r\n");
    // A HEAD answer relayed from an upstream carries the GET's length: keep it.
    let keep_length = answering.head && headers.contains_key(header::CONTENT_LENGTH);
    let (mut dated, mut connection, mut keep_alive) = (false, false, answering.keep_alive);
    for (name, value) in headers {
        if *name == header::CONTENT_LENGTH && !keep_length {
            continue;
        }
        dated |= *name == header::DATE;
        if *name == header::CONNECTION {
            connection = true;
            keep_alive &= !has_token(value.as_bytes(), b"close");
        }
        put_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if !keep_length && !bodiless(status) {
        put_content_length(out, length);
    }
    if !dated {
        out.extend_from_slice(b"date: ");
        date::append(out);
        out.extend_from_slice(b"\r\n");
    }
    if !connection {
        if !answering.keep_alive {
            out.extend_from_slice(b"connection: close\r\n");
        } else if answering.http10 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    keep_alive
}

/// One `name: value` line of a head.
pub(super) fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The `content-length` line of a head, for a body of `length` bytes.
pub(super) fn put_content_length(out: &mut Vec<u8>, length: usize) {
    let mut digits = [0; 20];
    put_header(out, b"content-length", format_usize(&mut digits, length));
}

/// `n` in decimal, written at the end of `digits`.
fn format_usize(digits: &mut [u8; 20], mut n: usize) -> &[u8] {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &digits[at..];
        }
    }
}

/// Writes `response`, head and body in one vectored write (more only if the stream takes
/// part of it), encoding the head into `out`. Returns whether the connection stays open.
pub async fn response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut Vec<u8>,
    response: Response<Body>,
    answering: Answering,
) -> io::Result<bool> {
    out.clear();
    let (body, keep_alive) = encode(out, response, answering).await;
    write_all(stream, out, &body).await?;
    Ok(keep_alive)
}

/// Encodes `response`'s head at the end of `out` and returns the body to send after it (empty
/// for a HEAD answer or a bodiless status) and whether the connection stays open.
async fn encode(
    out: &mut Vec<u8>,
    response: Response<Body>,
    answering: Answering,
) -> (Bytes, bool) {
    let (parts, mut body) = response.into_parts();
    // A `Full` body is one frame, already in memory.
    let body = match body.frame().await {
        Some(Ok(frame)) => frame.into_data().unwrap_or_default(),
        _ => Bytes::new(),
    };
    let keep_alive = encode_head(out, parts.status, &parts.headers, body.len(), answering);
    if answering.head || bodiless(parts.status) {
        (Bytes::new(), keep_alive)
    } else {
        (body, keep_alive)
    }
}

/// Writes the answers to pipelined requests, in order, in one vectored write (more only if the
/// stream takes part of it), their heads encoded one after the other into `out`. Stops after
/// an answer that closes the connection; returns whether it stays open.
pub async fn responses<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut Vec<u8>,
    responses: Vec<(Response<Body>, Answering)>,
) -> io::Result<bool> {
    out.clear();
    // Where each head ends in `out`, and the body after it.
    let mut parts = Vec::with_capacity(responses.len());
    let mut keep_alive = true;
    for (response, answering) in responses {
        let (body, open) = encode(out, response, answering).await;
        parts.push((out.len(), body));
        keep_alive = open;
        if !open {
            break;
        }
    }
    let mut slices = Vec::with_capacity(2 * parts.len());
    let mut start = 0;
    for (end, body) in &parts {
        slices.push(IoSlice::new(&out[start..*end]));
        slices.push(IoSlice::new(body));
        start = *end;
    }
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        let written = stream.write_vectored(slices).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, written);
    }
    stream.flush().await?;
    Ok(keep_alive)
}

/// Writes the loop's own refusal (`status`, a one-line reason) and says the connection closes.
pub async fn refusal<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut Vec<u8>,
    status: StatusCode,
    reason: &str,
) -> io::Result<()> {
    let mut headers = HeaderMap::with_capacity(1);
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(TEXT_PLAIN),
    );
    let answering = Answering {
        head: false,
        http10: false,
        keep_alive: false,
    };
    let mut text = Vec::with_capacity(reason.len() + 1);
    text.extend_from_slice(reason.as_bytes());
    text.push(b'\n');
    out.clear();
    encode_head(out, status, &headers, text.len(), answering);
    write_all(stream, out, &text).await
}

/// Writes `head` then `body`, vectored.
pub async fn write_all<S: AsyncWrite + Unpin>(
    stream: &mut S,
    mut head: &[u8],
    mut body: &[u8],
) -> io::Result<()> {
    while !head.is_empty() || !body.is_empty() {
        let written = if head.is_empty() {
            stream.write(body).await?
        } else {
            stream
                .write_vectored(&[IoSlice::new(head), IoSlice::new(body)])
                .await?
        };
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_head = written.min(head.len());
        head = &head[from_head..];
        body = &body[written - from_head..];
    }
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_written_in_decimal() {
        for n in [0, 7, 10, 1020, 65536, usize::MAX] {
            let mut digits = [0; 20];
            assert_eq!(format_usize(&mut digits, n), n.to_string().as_bytes());
        }
    }
}
