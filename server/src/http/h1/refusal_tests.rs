//! Request heads the connection loop refuses before any handler sees them: each is answered,
//! logged with its reason and handed to [`Handler::refused_head`] to be counted.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};

use super::exchange::answer_until_closed;
use crate::http::limits::MAX_HEADER_BYTES;
use crate::http::response::TEXT_PLAIN;
use crate::http::{Body, Handler, Peer, Rejection, Reply, RequestBody, ServerLimits};

/// Timeouts short enough for a test, long enough for a loaded machine.
const SHORT: Duration = Duration::from_millis(300);

/// The guest every connection here comes from.
const GUEST: Peer = Peer::Tcp(std::net::SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(198, 18, 0, 10),
    40000,
)));

/// Answers 200, and keeps the refused heads it is told of.
#[derive(Clone, Default)]
struct Counting(Arc<Mutex<Vec<(Peer, StatusCode, Rejection)>>>);

impl Counting {
    fn refused(&self) -> Vec<(Peer, StatusCode, Rejection)> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Handler for Counting {
    async fn handle(&self, _: Request<RequestBody>, _: Peer) -> Response<Body> {
        Reply::with(StatusCode::OK, TEXT_PLAIN, Bytes::from_static(b"ok"))
    }

    fn refused_head(&self, peer: Peer, status: StatusCode, rejection: Rejection) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((peer, status, rejection));
    }
}

/// What a log writer was given.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

/// Sends `request` on a connection `handler` serves, reads until the server closes; the answer.
async fn exchange(handler: Counting, request: &[u8]) -> String {
    let limits = ServerLimits {
        header_read_timeout: SHORT,
        body_read_timeout: SHORT,
        write_timeout: SHORT,
        ..ServerLimits::guest_facing()
    };
    String::from_utf8_lossy(&answer_until_closed(handler, GUEST, limits, request).await)
        .into_owned()
}

#[tokio::test(flavor = "current_thread")]
async fn a_refused_head_is_counted_by_the_handler_and_logged_with_its_reason() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    // This test's thread only; its tasks run on it (one thread).
    let _logging = tracing::subscriber::set_default(subscriber);
    let too_large = format!(
        "GET / HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(MAX_HEADER_BYTES)
    );
    let cases: [(&[u8], StatusCode, Rejection); 4] = [
        (
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            StatusCode::BAD_REQUEST,
            Rejection::RequestHeadMalformed,
        ),
        (
            too_large.as_bytes(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Rejection::RequestHeadTooLarge,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            StatusCode::NOT_IMPLEMENTED,
            Rejection::NotImplemented,
        ),
        (
            b"GET / HTTP/1.1\r\nHost:",
            StatusCode::REQUEST_TIMEOUT,
            Rejection::RequestHeadTimeout,
        ),
    ];
    for (request, status, rejection) in cases {
        let handler = Counting::default();
        let answer = exchange(handler.clone(), request).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {}", status.as_u16())),
            "{rejection}: {answer:?}"
        );
        assert_eq!(handler.refused(), [(GUEST, status, rejection)]);
        let logged = logs.text();
        let line = logged
            .lines()
            .find(|line| line.contains(&format!("rejection={rejection}")))
            .unwrap_or_else(|| panic!("no line for {rejection}: {logged}"));
        assert!(line.contains(" INFO "), "{line}");
        assert!(line.contains("refused"), "{line}");
        assert!(
            line.contains(&format!("status={}", status.as_u16())),
            "{line}"
        );
        assert!(line.contains("198.18.0.10"), "{line}");
    }
}

/// A client that closes, or idles out with nothing or only empty lines sent, was refused
/// nothing.
#[tokio::test]
async fn an_idle_or_closed_connection_is_no_refusal() {
    for request in [&b""[..], b"\r\n", b"GET / HTTP/1.1\r\n\r\n"] {
        let handler = Counting::default();
        exchange(handler.clone(), request).await;
        assert_eq!(handler.refused(), [], "after {request:?}");
    }
}
