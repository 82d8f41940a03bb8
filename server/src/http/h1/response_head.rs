//! The head of an upstream's answer: parsed with httparse from the client connection's read
//! buffer into an `http::Response`, with how its body is framed (RFC 9112 §6.3) and whether
//! the connection may carry another request. As for a request head (`head.rs`), the head's
//! bytes are split off the buffer without a copy: the header values are slices of them.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::{Response, StatusCode, Version};

use super::fields::{self, BadHeader, Span, Untrusted};
use super::head::Framing;
use crate::http::limits::{MAX_UPSTREAM_HEAD_BYTES, MAX_UPSTREAM_HEADERS};

/// A parsed answer head.
#[derive(Debug)]
pub struct ResponseHead {
    /// Status, version and every header as the upstream sent them.
    pub response: Response<()>,
    pub framing: Framing,
    /// The upstream keeps the connection open after this answer.
    pub keep_alive: bool,
}

/// Parses the answer head at the start of `buf`; `to_head` says the request was HEAD, whose
/// answer has no body whatever its headers say. `Ok(None)`: not complete yet (read more). A
/// complete head is split off `buf`; its body stays. The error says what is wrong with it.
pub fn parse(buf: &mut BytesMut, to_head: bool) -> Result<Option<ResponseHead>, &'static str> {
    let mut slots = [const { MaybeUninit::uninit() }; MAX_UPSTREAM_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let length = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut parsed,
        &buf[..],
        &mut slots,
    ) {
        Ok(httparse::Status::Complete(length)) if length <= MAX_UPSTREAM_HEAD_BYTES => length,
        Ok(httparse::Status::Partial) if buf.len() < MAX_UPSTREAM_HEAD_BYTES => return Ok(None),
        Ok(_) => return Err("answer head too large"),
        Err(httparse::Error::TooManyHeaders) => return Err("too many headers in the answer"),
        Err(_) => return Err("malformed answer head"),
    };
    let http10 = parsed.version == Some(0);
    let status = StatusCode::from_u16(parsed.code.unwrap_or_default())
        .map_err(|_| "answer status out of range")?;
    let mut spans = [Span::default(); MAX_UPSTREAM_HEADERS];
    let said = fields::scan(buf, parsed.headers, &mut spans).map_err(|why| match why {
        Untrusted::MalformedLength => "malformed Content-Length header in the answer",
        Untrusted::ConflictingLengths => "conflicting Content-Length headers in the answer",
    })?;
    let framing = if to_head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        // A HEAD answer's Content-Length is the GET's: it stays in the headers, unread.
        Framing::Empty
    } else {
        match (said.chunked, said.length) {
            (Some(false), _) => {
                return Err("the answer's Transfer-Encoding does not end with chunked");
            }
            // Either framing could be the one a proxy in between read (RFC 9112 §6.3 calls
            // this an error to handle as such): the answer cannot be trusted.
            (Some(true), Some(_)) => {
                return Err("the answer carries both Content-Length and Transfer-Encoding");
            }
            (Some(true), None) => Framing::Chunked,
            (None, Some(0)) => Framing::Empty,
            (None, Some(length)) => Framing::Length(length),
            (None, None) => Framing::UntilClose,
        }
    };
    let count = parsed.headers.len();
    let head: Bytes = buf.split_to(length).freeze();
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = if http10 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let headers = response.headers_mut();
    headers.reserve(count);
    fields::append(headers, &head, &spans[..count]).map_err(|bad| match bad {
        BadHeader::Name => "malformed header name in the answer",
        BadHeader::Value => "malformed header value in the answer",
    })?;
    Ok(Some(ResponseHead {
        response,
        keep_alive: !said.close && (said.keep || !http10) && framing != Framing::UntilClose,
        framing,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(bytes: &[u8], to_head: bool) -> Result<Option<ResponseHead>, &'static str> {
        parse(&mut BytesMut::from(bytes), to_head)
    }

    #[test]
    fn an_answer_head_is_split_off_with_every_header_kept() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nX-Mark: 1\r\n\r\nok"[..],
        );
        let head = parse(&mut buf, false).unwrap().unwrap();
        assert_eq!(head.response.status(), StatusCode::OK);
        assert_eq!(head.response.headers()["content-type"], "text/plain");
        assert_eq!(head.response.headers()["x-mark"], "1");
        assert_eq!(head.response.headers()["content-length"], "2");
        assert_eq!((head.framing, head.keep_alive), (Framing::Length(2), true));
        assert_eq!(&buf[..], b"ok");
    }

    #[test]
    fn how_long_the_body_is_and_whether_the_connection_stays() {
        let cases: [(&[u8], bool, Framing, bool); 8] = [
            (
                b"HTTP/1.1 200 OK\r\n\r\n",
                false,
                Framing::UntilClose,
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                false,
                Framing::Empty,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
                true,
                Framing::Empty,
                true,
            ),
            (
                b"HTTP/1.1 204 No Content\r\n\r\n",
                false,
                Framing::Empty,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                false,
                Framing::Chunked,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
                false,
                Framing::Length(1),
                false,
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
                false,
                Framing::Length(1),
                false,
            ),
            (
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
                false,
                Framing::Length(1),
                true,
            ),
        ];
        for (bytes, to_head, framing, keep_alive) in cases {
            let head = parsed(bytes, to_head).unwrap().unwrap();
            let text = String::from_utf8_lossy(bytes);
            assert_eq!(
                (head.framing, head.keep_alive),
                (framing, keep_alive),
                "{text}"
            );
        }
    }

    #[test]
    fn a_partial_head_waits_for_more_and_a_broken_one_says_what_is_wrong() {
        assert!(
            parsed(b"HTTP/1.1 200 OK\r\nContent-Le", false)
                .unwrap()
                .is_none()
        );
        let broken: [(&[u8], &str); 6] = [
            (b"HTTP/1.1 abc OK\r\n\r\n", "malformed answer head"),
            (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "malformed answer head"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                "malformed Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                "conflicting",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
                "both",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                "does not end with chunked",
            ),
        ];
        for (bytes, reason) in broken {
            let err = parsed(bytes, false).unwrap_err();
            assert!(
                err.contains(reason),
                "{}: {err}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn the_head_limits_hold() {
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_UPSTREAM_HEADERS {
            many.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            parsed(&many, false).unwrap_err(),
            "too many headers in the answer"
        );

        let mut long = b"HTTP/1.1 200 OK\r\nx-long: ".to_vec();
        long.resize(MAX_UPSTREAM_HEAD_BYTES, b'a');
        assert_eq!(parsed(&long, false).unwrap_err(), "answer head too large");
        long.truncate(MAX_UPSTREAM_HEAD_BYTES - 8);
        assert!(
            parsed(&long, false).unwrap().is_none(),
            "still room: read more"
        );
    }
}
