//! The request head: parsed with httparse from the connection's read buffer into an
//! `http::Request`, with how its body is framed and whether the connection stays open. The
//! head's bytes are split off the buffer without a copy: the path and the header values are
//! slices of them.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, StatusCode, Uri, Version};

use super::fields::{self, BadHeader, Span, Untrusted, range, slice};

use crate::http::limits::{MAX_HEADERS, ServerLimits};
use crate::http::rejection::Rejection;

/// How a message's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Up to the end of the stream: an answer with neither length nor chunks (RFC 9112 §6.3);
    /// never a request's.
    UntilClose,
}

/// A parsed head.
#[derive(Debug)]
pub struct Head {
    pub request: Request<()>,
    pub framing: Framing,
    /// The client lets the connection stay open after this request.
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for a 100 before it sends the body.
    pub expect_continue: bool,
}

/// A head the connection cannot serve: answered with `status`, then the connection closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Longer than `max_header_bytes`, or more than `max_headers` headers (431).
    TooLarge,
    /// Not HTTP/1.x, or framing that cannot be trusted (400).
    Malformed(&'static str),
    /// Not complete within `header_read_timeout` (408).
    Timeout,
    /// Something this server does not do, such as a transfer coding other than chunked (501,
    /// RFC 9112 §6.1).
    NotImplemented(&'static str),
}

impl HeadError {
    pub fn status(self) -> StatusCode {
        match self {
            Self::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
        }
    }

    /// Why, in `/metrics` and in logs.
    pub fn rejection(self) -> Rejection {
        match self {
            Self::TooLarge => Rejection::RequestHeadTooLarge,
            Self::Malformed(_) => Rejection::RequestHeadMalformed,
            Self::Timeout => Rejection::RequestHeadTimeout,
            Self::NotImplemented(_) => Rejection::NotImplemented,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Self::TooLarge => "request head too large",
            Self::Malformed(reason) | Self::NotImplemented(reason) => reason,
            Self::Timeout => "request head not received in time",
        }
    }
}

/// Where a head coming in over several reads was looked through for its end, so that each
/// read looks only at its new bytes and the head is parsed (httparse, from its start) only
/// once it may be complete: a head sent a byte at a time would otherwise cost a parse of all
/// of it per byte.
///
/// httparse ends a head at its first empty line, after a request line: a line ending (`\n`,
/// or `\r\n`) followed by another, so its end holds `\n\n` or `\n\r\n` ([`END_MARKS`]). It
/// skips empty lines before the request line: the search starts at the first byte that is
/// neither `\r` nor `\n`. A head is also parsed at its first read and whenever it has grown
/// [`PARSE_GROWTH`] times since its last parse (a parse costs its length, so all of them
/// together cost a few times the head's): a head httparse refuses before its end (a
/// malformed byte, too many headers) is refused with the same status at once when it came
/// in one read, else once it has doubled, ended or reached [`ServerLimits::header_buffer`]
/// bytes.
#[derive(Debug, Default)]
pub struct EndSearch {
    /// Bytes before this were looked through: no end starts before it but one already found.
    searched: usize,
    /// The request line started (a byte other than `\r` and `\n` came).
    started: bool,
    /// The head's length from which it is parsed again whether or not its end came.
    parse_from: usize,
}

/// How many times a head grows between two parses made before its end came.
pub const PARSE_GROWTH: usize = 2;

/// The byte sequences that end a head (httparse takes a bare `\n` for `\r\n`).
pub const END_MARKS: [&[u8]; 2] = [b"\n\n", b"\n\r\n"];

impl EndSearch {
    /// Whether `buf`, the same head as at the last call with more bytes after it, is worth
    /// parsing: it may be complete (an end came), or it reached the head size limit.
    pub fn worth_parsing(&mut self, buf: &[u8], limits: &ServerLimits) -> bool {
        let worth = self.end_may_have_come(buf, limits) || buf.len() >= self.parse_from;
        if worth {
            self.parse_from = buf.len().saturating_mul(PARSE_GROWTH);
        }
        worth
    }

    /// Whether an end came in `buf`, or it reached the head size limit.
    fn end_may_have_come(&mut self, buf: &[u8], limits: &ServerLimits) -> bool {
        if buf.len() >= limits.header_buffer() {
            return true;
        }
        let mut from = self.searched;
        if !self.started {
            match buf[from..].iter().position(|&b| b != b'\r' && b != b'\n') {
                Some(start) => {
                    from += start;
                    self.started = true;
                }
                None => {
                    self.searched = buf.len();
                    return false;
                }
            }
        }
        let longest = END_MARKS.iter().map(|mark| mark.len()).max().unwrap_or(1);
        let found =
            (from..buf.len()).find(|&at| END_MARKS.iter().any(|mark| buf[at..].starts_with(mark)));
        // An end may start in the last bytes, its rest still to come; one already found is
        // not looked at again.
        self.searched = match found {
            Some(at) => at + 1,
            None => from.max(buf.len().saturating_sub(longest - 1)),
        };
        found.is_some()
    }
}

#[cfg(test)]
thread_local! {
    /// How often this thread parsed a head (tests count them).
    pub static PARSES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Parses the head at the start of `buf`. `Ok(None)`: not complete yet (read more). A
/// complete head is split off `buf`; whatever follows (its body, pipelined requests) stays.
/// The request's header map has room for `room` more headers (see `Handler::ADDED_HEADERS`).
pub fn parse(
    buf: &mut BytesMut,
    limits: &ServerLimits,
    room: usize,
) -> Result<Option<Head>, HeadError> {
    #[cfg(test)]
    PARSES.with(|parses| parses.set(parses.get() + 1));
    let max_bytes = limits.header_buffer();
    let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let slots = &mut slots[..limits.max_headers.min(MAX_HEADERS)];
    let mut parsed = httparse::Request::new(&mut []);
    let length = match parsed.parse_with_uninit_headers(&buf[..], slots) {
        Ok(httparse::Status::Complete(length)) if length <= max_bytes => length,
        Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) if buf.len() >= max_bytes => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(HeadError::Malformed("malformed request head")),
    };
    let http10 = parsed.version == Some(0);
    let method = Method::from_bytes(parsed.method.unwrap_or_default().as_bytes())
        .map_err(|_| HeadError::Malformed("malformed request method"))?;
    let path = range(buf, parsed.path.unwrap_or_default().as_bytes());
    let mut spans = [Span::default(); MAX_HEADERS];
    let said = fields::scan(buf, parsed.headers, &mut spans).map_err(|why| {
        HeadError::Malformed(match why {
            Untrusted::MalformedLength => "malformed Content-Length header",
            Untrusted::ConflictingLengths => "conflicting Content-Length headers",
        })
    })?;
    if http10 && said.chunked.is_some() {
        return Err(HeadError::Malformed(
            "HTTP/1.0 requests cannot carry Transfer-Encoding",
        ));
    }
    let framing = match (said.chunked, said.length) {
        (Some(false), _) => {
            return Err(HeadError::Malformed(
                "Transfer-Encoding must end with chunked",
            ));
        }
        // Both framings at once is how requests are smuggled past a proxy that reads the
        // other one (RFC 9112 §6.3 lets a server refuse it): refused, as haproxy does.
        (Some(true), Some(_)) => {
            return Err(HeadError::Malformed(
                "a request carries either Content-Length or Transfer-Encoding, not both",
            ));
        }
        // Decoded, the body would go on still coded (gzip), with the coding's name dropped
        // with the hop-by-hop Transfer-Encoding.
        (Some(true), None) if said.other_codings => {
            return Err(HeadError::NotImplemented(
                "no transfer coding but chunked is supported",
            ));
        }
        (Some(true), None) => Framing::Chunked,
        (None, Some(length)) if length > 0 => Framing::Length(length),
        (None, _) => Framing::Empty,
    };
    let count = parsed.headers.len();
    let head: Bytes = buf.split_to(length).freeze();
    let uri = Uri::from_maybe_shared(slice(&head, path))
        .map_err(|_| HeadError::Malformed("malformed request target"))?;
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = if http10 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let headers = request.headers_mut();
    headers.reserve(count + room);
    fields::append(headers, &head, &spans[..count]).map_err(|bad| {
        HeadError::Malformed(match bad {
            BadHeader::Name => "malformed header name",
            BadHeader::Value => "malformed header value",
        })
    })?;
    Ok(Some(Head {
        request,
        framing,
        keep_alive: !said.close && (said.keep || !http10),
        expect_continue: said.expect_continue && !http10,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `head` to a search in pieces of `step` bytes: the lengths it was worth parsing at.
    fn worth_parsing_at(head: &[u8], step: usize) -> Vec<usize> {
        let mut search = EndSearch::default();
        let limits = ServerLimits::default();
        (1..=head.len().div_ceil(step))
            .map(|n| (n * step).min(head.len()))
            .filter(|&len| search.worth_parsing(&head[..len], &limits))
            .collect()
    }

    /// The lengths at which a head growing from `first` bytes is parsed before its end: its
    /// first read, then each time it has grown `PARSE_GROWTH` times.
    fn early(first: usize, end: usize, step: usize) -> Vec<usize> {
        let mut at = Vec::new();
        let mut next = 0;
        let mut len = first;
        while len < end {
            if len >= next {
                at.push(len);
                next = len * PARSE_GROWTH;
            }
            len = (len + step).min(end);
        }
        at
    }

    #[test]
    fn a_head_is_worth_parsing_once_its_end_came_however_it_is_split() {
        for (head, end) in [
            (&b"GET / HTTP/1.1\r\nHost: x\r\n\r\nrest"[..], 27_usize),
            (b"GET / HTTP/1.1\nHost: x\n\nrest", 24),
            (b"GET / HTTP/1.1\r\nHost: x\n\r\nrest", 26),
            // Empty lines before the request line do not end it.
            (b"\r\n\n\r\nGET / HTTP/1.1\r\n\r\n", 23),
        ] {
            for step in 1..=4 {
                let ended = (step * end.div_ceil(step)).min(head.len());
                let mut want = early(step.min(head.len()), ended, step);
                want.push(ended);
                assert_eq!(worth_parsing_at(head, step), want, "{head:?} {step}");
            }
        }
        // Not ended, but at the size limit: worth parsing (it is refused).
        let limits = ServerLimits::default();
        let long = vec![b'a'; limits.header_buffer()];
        let mut search = EndSearch::default();
        assert!(search.worth_parsing(&long[..long.len() / 2], &limits));
        assert!(!search.worth_parsing(&long[..long.len() - 1], &limits));
        assert!(search.worth_parsing(&long, &limits));
    }

    /// A head that does not end is parsed at its first read and then only each time it has
    /// doubled: a few parses in all, however many reads it came in.
    #[test]
    fn a_head_without_its_end_is_parsed_a_logarithmic_number_of_times() {
        let limits = ServerLimits::default();
        let long = vec![b'a'; limits.header_buffer() - 1];
        let parsed = worth_parsing_at(&long, 1);
        assert_eq!(parsed, early(1, long.len() + 1, 1));
        assert!(parsed.len() <= 16, "{parsed:?}");
    }

    #[test]
    fn a_head_is_split_off_with_room_for_the_headers_a_role_adds() {
        let mut buf = BytesMut::from(
            &b"GET /openstack HTTP/1.1\r\nHost: x\r\nX-Other: y\r\n\r\nGET /next HTTP/1.1\r\n"[..],
        );
        let head = parse(&mut buf, &ServerLimits::default(), 3)
            .unwrap()
            .unwrap();
        assert_eq!(head.request.uri().path(), "/openstack");
        assert_eq!(head.request.headers()["x-other"], "y");
        assert!(head.request.headers().capacity() >= 2 + 3);
        assert_eq!((head.framing, head.keep_alive), (Framing::Empty, true));
        // The pipelined request after it stays in the buffer, not complete yet.
        assert_eq!(&buf[..], b"GET /next HTTP/1.1\r\n");
        assert!(
            parse(&mut buf, &ServerLimits::default(), 0)
                .unwrap()
                .is_none()
        );
    }
}
