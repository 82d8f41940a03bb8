//! The header fields of a head, a request's (`head.rs`) or an answer's (`response_head.rs`):
//! where each one is in the head's bytes, what they say about the body's framing and the
//! connection (one reading of Content-Length, Transfer-Encoding and Connection for both sides,
//! so that the two never disagree on where a message ends), and the header map built from them
//! without copying the values.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

/// Where a header's name and value are in the head (offsets: a head is at most
/// `max_header_bytes`, an answer's `MAX_UPSTREAM_HEAD_BYTES`).
#[derive(Clone, Copy, Default)]
pub(super) struct Span {
    pub(super) name: (u32, u32),
    pub(super) value: (u32, u32),
}

/// What the framing and connection headers of a head say.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Said {
    /// `Connection: close`.
    pub(super) close: bool,
    /// `Connection: keep-alive`.
    pub(super) keep: bool,
    /// `Transfer-Encoding`, and whether its last coding is chunked.
    pub(super) chunked: Option<bool>,
    /// A `Transfer-Encoding` coding other than `chunked` (`gzip, chunked`), in any of its
    /// lines: a request's would reach the next hop still coded, its name gone.
    pub(super) other_codings: bool,
    /// `Content-Length` (every one of them the same).
    pub(super) length: Option<u64>,
    /// `Expect: 100-continue`.
    pub(super) expect_continue: bool,
}

/// Headers whose framing cannot be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Untrusted {
    /// A Content-Length that is not decimal digits.
    MalformedLength,
    /// Content-Length headers that disagree.
    ConflictingLengths,
}

/// Records where each of `headers` (httparse's slices of `buf`) is into `spans`, and reads the
/// framing and connection headers.
pub(super) fn scan(
    buf: &[u8],
    headers: &[httparse::Header<'_>],
    spans: &mut [Span],
) -> Result<Said, Untrusted> {
    let mut said = Said::default();
    for (span, header) in spans.iter_mut().zip(headers) {
        *span = Span {
            name: range(buf, header.name.as_bytes()),
            value: range(buf, header.value),
        };
        let (name, value) = (header.name.as_bytes(), header.value);
        if name.eq_ignore_ascii_case(b"content-length") {
            let declared = parse_length(value).ok_or(Untrusted::MalformedLength)?;
            if said.length.is_some_and(|seen| seen != declared) {
                return Err(Untrusted::ConflictingLengths);
            }
            said.length = Some(declared);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Only the last coding counts for the framing: it must be chunked.
            let last = value.rsplit(|b| *b == b',').next().unwrap_or_default();
            said.chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            said.other_codings |= value
                .split(|b| *b == b',')
                .any(|coding| !coding.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"connection") {
            said.close |= has_token(value, b"close");
            said.keep |= has_token(value, b"keep-alive");
        } else if name.eq_ignore_ascii_case(b"expect") {
            said.expect_continue = value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
    }
    Ok(said)
}

/// A header that `http` refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BadHeader {
    Name,
    Value,
}

/// Appends the headers at `spans` of `head` to `map`, the values sharing the head's memory.
pub(super) fn append(map: &mut HeaderMap, head: &Bytes, spans: &[Span]) -> Result<(), BadHeader> {
    for span in spans {
        let name = HeaderName::from_bytes(&head[span.name.0 as usize..span.name.1 as usize])
            .map_err(|_| BadHeader::Name)?;
        let value = HeaderValue::from_maybe_shared(slice(head, span.value))
            .map_err(|_| BadHeader::Value)?;
        map.append(name, value);
    }
    Ok(())
}

/// The offset range of `part` inside `base` (httparse hands out slices of the buffer).
pub(super) fn range(base: &[u8], part: &[u8]) -> (u32, u32) {
    let start = part.as_ptr() as usize - base.as_ptr() as usize;
    (start as u32, (start + part.len()) as u32)
}

/// `head[span]` as a `Bytes` sharing the head's memory.
pub(super) fn slice(head: &Bytes, (start, end): (u32, u32)) -> Bytes {
    head.slice(start as usize..end as usize)
}

/// `value`, a comma-separated header list (RFC 9110 §5.6.1), holds `token`, compared without
/// case (`Connection: keep-alive, close`): the one reading of such lists for the request and
/// answer heads, the response writer and the proxy's hop-by-hop names.
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token))
}

/// A Content-Length value: decimal digits only.
fn parse_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(head: &[u8]) -> Result<Said, Untrusted> {
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut request = httparse::Request::new(&mut headers);
        request.parse(head).unwrap();
        let mut spans = [Span::default(); 8];
        scan(head, request.headers, &mut spans)
    }

    #[test]
    fn framing_and_connection_headers_are_read_once_for_both_sides() {
        let got = said(
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length:  5 \r\n\
              Connection: Keep-Alive, x\r\nExpect: 100-continue\r\n\r\n",
        );
        let want = Said {
            keep: true,
            length: Some(5),
            expect_continue: true,
            ..Said::default()
        };
        assert_eq!(got, Ok(want));
        let got = said(
            b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(
            got.as_ref().map(|s| (s.chunked, s.close, s.other_codings)),
            Ok((Some(true), true, true))
        );
        let got = said(
            b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert_eq!(
            got.map(|s| (s.chunked, s.other_codings)),
            Ok((Some(true), true))
        );
        let got = said(b"GET / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(
            got.map(|s| (s.chunked, s.other_codings)),
            Ok((Some(true), false))
        );
        let got = said(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
        assert_eq!(got.map(|s| s.chunked), Ok(Some(false)));
    }

    #[test]
    fn lengths_that_are_not_digits_or_disagree_are_untrusted() {
        for (head, why) in [
            (
                &b"GET / HTTP/1.1\r\nContent-Length: +5\r\n\r\n"[..],
                Untrusted::MalformedLength,
            ),
            (
                b"GET / HTTP/1.1\r\nContent-Length: \r\n\r\n",
                Untrusted::MalformedLength,
            ),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                Untrusted::ConflictingLengths,
            ),
        ] {
            assert_eq!(said(head), Err(why), "{}", String::from_utf8_lossy(head));
        }
    }
}
