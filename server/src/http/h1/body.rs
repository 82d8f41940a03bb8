//! A message body, read whole: a request's before the handler runs, an upstream's answer
//! before it is relayed. `Content-Length`, chunked or (answers only) up to the end of the
//! stream, at most `max` bytes. What is already buffered after the head is used first; the
//! bytes of a `Content-Length` body are split off the read buffer without a copy.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::head::Framing;
use crate::http::BodyError;

/// Longest chunk-size or trailer line, in bytes (a size in hex with extensions).
pub const MAX_CHUNK_LINE: usize = 1024;
/// Most trailer lines after the last chunk.
pub const MAX_TRAILERS: usize = 64;
/// Most hex digits of a chunk size: 15 (60 bits) always fits a `usize`, so no size overflows
/// before it is compared with the body's limit.
pub const MAX_CHUNK_SIZE_DIGITS: usize = 15;
/// Bytes the read buffer grows by when a body needs more room.
const READ_CHUNK: usize = 8 * 1024;

/// Reads the body `framing` announces, at most `max` bytes. Does not time out: the caller
/// bounds it.
pub async fn read<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    framing: Framing,
    max: usize,
) -> Result<Bytes, BodyError> {
    match framing {
        Framing::Empty => Ok(Bytes::new()),
        Framing::Length(length) if length > max as u64 => Err(BodyError::TooLarge),
        Framing::Length(length) => {
            let length = length as usize;
            while buf.len() < length {
                fill(stream, buf, length - buf.len()).await?;
            }
            Ok(buf.split_to(length).freeze())
        }
        Framing::Chunked => chunked(stream, buf, max).await,
        Framing::UntilClose => until_close(stream, buf, max).await,
    }
}

/// Everything up to the end of the stream (an answer without a length), at most `max` bytes.
async fn until_close<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Bytes, BodyError> {
    loop {
        if buf.len() > max {
            return Err(BodyError::TooLarge);
        }
        buf.reserve(READ_CHUNK);
        match stream.read_buf(buf).await {
            Ok(0) => return Ok(buf.split().freeze()),
            Ok(_) => {}
            Err(_) => return Err(BodyError::Broken),
        }
    }
}

/// Reads more into `buf`, with room for at least `want` bytes (up to [`READ_CHUNK`] at a
/// time); the end of the stream is a broken body.
async fn fill<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    want: usize,
) -> Result<(), BodyError> {
    buf.reserve(want.clamp(1, READ_CHUNK));
    match stream.read_buf(buf).await {
        Ok(0) | Err(_) => Err(BodyError::Broken),
        Ok(_) => Ok(()),
    }
}

/// The length of the line at the start of `buf` (without its CRLF), reading until one is there.
async fn line<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<usize, BodyError> {
    let mut searched = 0;
    loop {
        if let Some(at) = buf[searched..].windows(2).position(|w| w == b"\r\n") {
            // However much one read brought, a line is at most the limit.
            let end = searched + at;
            return if end > MAX_CHUNK_LINE {
                Err(BodyError::Broken)
            } else {
                Ok(end)
            };
        }
        if buf.len() > MAX_CHUNK_LINE {
            return Err(BodyError::Broken);
        }
        searched = buf.len().saturating_sub(1);
        fill(stream, buf, MAX_CHUNK_LINE).await?;
    }
}

/// A chunk-size line: hex digits, then optional `;extensions`.
fn chunk_size(line: &[u8]) -> Option<usize> {
    let digits = line
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty()
        || digits.len() > MAX_CHUNK_SIZE_DIGITS
        || !digits.iter().all(u8::is_ascii_hexdigit)
    {
        return None;
    }
    usize::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

async fn chunked<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Bytes, BodyError> {
    let mut body = Vec::new();
    loop {
        let end = line(stream, buf).await?;
        let size = chunk_size(&buf[..end]).ok_or(BodyError::Broken)?;
        buf.advance(end + 2);
        if size == 0 {
            break;
        }
        if body.len() + size > max {
            return Err(BodyError::TooLarge);
        }
        while buf.len() < size + 2 {
            fill(stream, buf, size + 2 - buf.len()).await?;
        }
        if &buf[size..size + 2] != b"\r\n" {
            return Err(BodyError::Broken);
        }
        body.extend_from_slice(&buf[..size]);
        buf.advance(size + 2);
    }
    // Trailers, up to the empty line that ends the body; their fields are dropped.
    for _ in 0..=MAX_TRAILERS {
        let end = line(stream, buf).await?;
        buf.advance(end + 2);
        if end == 0 {
            return Ok(Bytes::from(body));
        }
    }
    Err(BodyError::Broken)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a chunked body from `wire`, at most `max` bytes.
    async fn chunked_body(wire: &[u8], max: usize) -> Result<Bytes, BodyError> {
        let mut stream = wire;
        read(&mut stream, &mut BytesMut::new(), Framing::Chunked, max).await
    }

    fn is_broken(got: &Result<Bytes, BodyError>) -> bool {
        matches!(got, Err(BodyError::Broken))
    }

    #[tokio::test]
    async fn a_chunk_line_past_its_limit_is_a_broken_body() {
        let extension = |len: usize| format!("4;{}\r\nabcd\r\n0\r\n\r\n", "x".repeat(len - 2));
        let fits = chunked_body(extension(MAX_CHUNK_LINE).as_bytes(), 1024).await;
        assert_eq!(fits.unwrap(), "abcd");
        let over = chunked_body(extension(MAX_CHUNK_LINE + 1).as_bytes(), 1024).await;
        assert!(is_broken(&over), "{over:?}");
    }

    #[tokio::test]
    async fn trailers_past_their_limit_are_a_broken_body() {
        let trailers = |count: usize| format!("4\r\nabcd\r\n0\r\n{}\r\n", "t: x\r\n".repeat(count));
        let fits = chunked_body(trailers(MAX_TRAILERS).as_bytes(), 1024).await;
        assert_eq!(fits.unwrap(), "abcd");
        let over = chunked_body(trailers(MAX_TRAILERS + 1).as_bytes(), 1024).await;
        assert!(is_broken(&over), "{over:?}");
    }

    #[tokio::test]
    async fn a_chunk_size_of_more_digits_than_fit_is_a_broken_body() {
        let size = |digits: usize| format!("{}\r\n", "f".repeat(digits));
        // The largest size there are digits for: read as a number, over the body's limit.
        let largest = chunked_body(size(MAX_CHUNK_SIZE_DIGITS).as_bytes(), 1024).await;
        assert!(matches!(largest, Err(BodyError::TooLarge)), "{largest:?}");
        let more = chunked_body(size(MAX_CHUNK_SIZE_DIGITS + 1).as_bytes(), 1024).await;
        assert!(is_broken(&more), "{more:?}");
    }
}
