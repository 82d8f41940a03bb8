//! The connection loop over in-memory streams: what a client sees on the wire.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::exchange::answer_until_closed;
use super::{head, serve_connection};
use crate::http::limits::{
    LINGER_BYTES, LINGER_TIME, MAX_BODY_BYTES, MAX_HEADER_BYTES, MAX_HEADERS,
    MAX_PIPELINED_REQUESTS,
};
use crate::http::response::TEXT_PLAIN;
use crate::http::{Body, Handler, Peer, Reply, RequestBody, ServerLimits};

/// Timeouts short enough for a test, long enough for a loaded machine.
const SHORT: Duration = Duration::from_millis(300);

/// Answers `METHOD PATH BODY`, or refuses a body that could not be read; at `/bye` it says
/// `Connection: close`.
#[derive(Clone)]
struct Echo;

impl Handler for Echo {
    async fn handle(&self, request: Request<RequestBody>, _: Peer) -> Response<Body> {
        let (parts, body) = request.into_parts();
        match body {
            Err(err) => Reply::refuse(err.status(), err.reason()),
            Ok(body) => {
                let text = format!(
                    "{} {} {}",
                    parts.method,
                    parts.uri,
                    String::from_utf8_lossy(&body)
                );
                let mut response = Reply::with(StatusCode::OK, TEXT_PLAIN, Bytes::from(text));
                if parts.uri.path() == "/bye" {
                    response.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                response
            }
        }
    }
}

fn limits() -> ServerLimits {
    ServerLimits {
        header_read_timeout: SHORT,
        body_read_timeout: SHORT,
        write_timeout: SHORT,
        ..ServerLimits::default()
    }
}

/// A client stream to a served connection.
fn connect(limits: ServerLimits) -> (DuplexStream, tokio::task::JoinHandle<()>) {
    let (client, server) = tokio::io::duplex(256 * 1024);
    let served = tokio::spawn(serve_connection(server, Peer::Unix, limits, Echo));
    (client, served)
}

/// One parsed response.
#[derive(Debug)]
struct Answer {
    version: u8,
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Every response in `bytes`; `head_request[i]`: the i-th answers a HEAD (no body).
fn answers(mut bytes: &[u8], head_request: &[bool]) -> Vec<Answer> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let mut slots = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Response::new(&mut slots);
        let length = match parsed.parse(bytes).unwrap() {
            httparse::Status::Complete(length) => length,
            httparse::Status::Partial => panic!("a partial response: {bytes:?}"),
        };
        let headers: Vec<(String, String)> = parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let mut answer = Answer {
            version: parsed.version.unwrap(),
            status: parsed.code.unwrap(),
            headers,
            body: String::new(),
        };
        let declared: usize = answer
            .header("content-length")
            .map_or(0, |v| v.parse().unwrap());
        let body_length = if head_request.get(out.len()).copied().unwrap_or(false) {
            0
        } else {
            declared
        };
        answer.body = String::from_utf8_lossy(&bytes[length..length + body_length]).into_owned();
        bytes = &bytes[length + body_length..];
        out.push(answer);
    }
    out
}

/// Sends `request`, reads until the server closes.
async fn exchange(limits: ServerLimits, request: &[u8]) -> Vec<u8> {
    exchange_with(limits, Echo, request).await
}

/// Sends `request` to a connection `handler` serves, reads until the server closes.
async fn exchange_with<H: Handler>(limits: ServerLimits, handler: H, request: &[u8]) -> Vec<u8> {
    answer_until_closed(handler, Peer::Unix, limits, request).await
}

/// Reads one response, leaving the connection open.
async fn read_answer(client: &mut DuplexStream) -> Answer {
    let mut out = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut chunk))
            .await
            .expect("an answer in time")
            .unwrap();
        assert_ne!(read, 0, "closed before an answer: {out:?}");
        out.extend_from_slice(&chunk[..read]);
        if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..end]).to_lowercase();
            let declared: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            if out.len() >= end + 4 + declared {
                return answers(&out, &[]).remove(0);
            }
        }
    }
}

/// Timeouts as large as the flags take (`--header-timeout` etc., up to about 1.8e19 s): past
/// what the clock holds, they wait as good as for ever instead of panicking.
#[tokio::test]
async fn timeouts_too_large_for_the_clock_serve_requests() {
    let huge = Duration::from_secs_f64(1.8e19);
    let (mut client, served) = connect(ServerLimits {
        header_read_timeout: huge,
        body_read_timeout: huge,
        write_timeout: huge,
        ..ServerLimits::default()
    });
    for path in ["/a", "/b"] {
        let request = format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi");
        client.write_all(request.as_bytes()).await.unwrap();
        let answer = read_answer(&mut client).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, format!("POST {path} hi"));
    }
    drop(client);
    served.await.unwrap();
}

#[tokio::test]
async fn keep_alive_serves_one_request_after_another_on_one_connection() {
    let (mut client, served) = connect(limits());
    for path in ["/a", "/b", "/c"] {
        client
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let answer = read_answer(&mut client).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, format!("GET {path} "));
        assert_eq!(answer.header("connection"), None);
        assert!(answer.header("date").unwrap().ends_with(" GMT"));
    }
    drop(client);
    served.await.unwrap();
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let batch = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n\
        POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
        HEAD /3 HTTP/1.1\r\nHost: x\r\n\r\n\
        GET /4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n\
        GET /never HTTP/1.1\r\nHost: x\r\n\r\n";
    // Handled together (the chain's roles) or one after the other (a guest-facing proxy).
    for at_once in [MAX_PIPELINED_REQUESTS, 2, 1] {
        let limits = ServerLimits {
            pipelined_at_once: at_once,
            ..limits()
        };
        let out = exchange(limits, batch).await;
        let got = answers(&out, &[false, false, true, false]);
        let bodies: Vec<&str> = got.iter().map(|a| a.body.as_str()).collect();
        assert_eq!(
            bodies,
            ["GET /1 ", "POST /2 hello", "", "GET /4 "],
            "{at_once}"
        );
        assert_eq!(got[3].header("connection"), Some("close"));
    }
}

/// Answers each request with its path once every handler that started meanwhile had its turn,
/// and counts how many were handled at once at most.
#[derive(Clone, Default)]
struct Together {
    inside: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

impl Handler for Together {
    async fn handle(&self, request: Request<RequestBody>, _: Peer) -> Response<Body> {
        let inside = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(inside, Ordering::SeqCst);
        tokio::task::yield_now().await;
        self.inside.fetch_sub(1, Ordering::SeqCst);
        Reply::with(
            StatusCode::OK,
            TEXT_PLAIN,
            Bytes::from(request.uri().path().to_owned()),
        )
    }
}

/// Sends `count` pipelined GETs in one write, the last one closing; the answers' bodies and the
/// most requests handled at once.
async fn pipelined(limits: ServerLimits, count: usize) -> (Vec<String>, usize) {
    let handler = Together::default();
    let mut batch = String::new();
    for n in 0..count {
        let close = if n + 1 == count {
            "Connection: close\r\n"
        } else {
            ""
        };
        batch.push_str(&format!("GET /{n} HTTP/1.1\r\n{close}\r\n"));
    }
    let out = exchange_with(limits, handler.clone(), batch.as_bytes()).await;
    let bodies = answers(&out, &[]).into_iter().map(|a| a.body).collect();
    (bodies, handler.most.load(Ordering::SeqCst))
}

#[tokio::test]
async fn pipelined_requests_already_read_are_handled_together_up_to_the_limit() {
    let count = 2 * MAX_PIPELINED_REQUESTS + 3;
    let expected: Vec<String> = (0..count).map(|n| format!("/{n}")).collect();
    let (bodies, most) = pipelined(limits(), count).await;
    assert_eq!(bodies, expected);
    assert_eq!(most, MAX_PIPELINED_REQUESTS);

    // A guest-facing listener answers one request after the other.
    let one = ServerLimits {
        pipelined_at_once: 1,
        ..limits()
    };
    let (bodies, most) = pipelined(one, count).await;
    assert_eq!(bodies, expected);
    assert_eq!(most, 1);
}

#[tokio::test]
async fn a_pipelined_request_waiting_for_100_continue_gets_it_after_the_answers_before_it() {
    let (mut client, served) = connect(limits());
    client
        .write_all(
            b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n\
              POST /3 HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    // Both answers, then the interim answer: in order.
    let mut seen = Vec::new();
    let mut chunk = [0; 4096];
    while !String::from_utf8_lossy(&seen).contains("100 Continue") {
        let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut chunk))
            .await
            .expect("answers in time")
            .unwrap();
        assert_ne!(read, 0);
        seen.extend_from_slice(&chunk[..read]);
    }
    let text = String::from_utf8_lossy(&seen).into_owned();
    let (one, two, go_on) = (
        text.find("GET /1 ").unwrap(),
        text.find("GET /2 ").unwrap(),
        text.find("HTTP/1.1 100 Continue").unwrap(),
    );
    assert!(one < two && two < go_on, "{text}");
    client
        .write_all(b"helloGET /bye HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest))
        .await
        .expect("the server closes the connection")
        .unwrap();
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.contains("POST /3 hello") && rest.contains("GET /bye "),
        "{rest}"
    );
    served.await.unwrap();
}

#[tokio::test]
async fn a_malformed_request_behind_pipelined_ones_is_refused_after_their_answers() {
    let batch =
        b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\nBad Header\r\n\r\n";
    let out = exchange(limits(), batch).await;
    let got = answers(&out, &[]);
    let seen: Vec<(u16, &str)> = got.iter().map(|a| (a.status, a.body.as_str())).collect();
    assert_eq!(seen[..2], [(200, "GET /1 "), (200, "GET /2 ")]);
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].0, 400);
}

/// A head the parser takes off the buffer before refusing it (a request target `http::Uri`
/// cannot hold, though httparse read it): the requests before it are answered, it gets its 400 in its place,
/// and the connection closes, so no later answer can go to the request in front of its own.
#[tokio::test]
async fn a_request_refused_after_its_head_was_read_is_answered_in_its_place() {
    for bad in [
        &b"GET /a<b> HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &b"GET /a`b HTTP/1.1\r\nHost: x\r\n\r\n"[..],
    ] {
        let mut batch = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        batch.extend_from_slice(bad);
        batch.extend_from_slice(b"GET /3 HTTP/1.1\r\nHost: x\r\n\r\n");
        let out = exchange(limits(), &batch).await;
        let got = answers(&out, &[]);
        let seen: Vec<(u16, &str)> = got.iter().map(|a| (a.status, a.body.as_str())).collect();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0], (200, "GET /1 "));
        assert_eq!(seen[1].0, 400, "{seen:?}");
    }
}

#[tokio::test]
async fn http_1_0_closes_unless_asked_to_keep_alive() {
    let out = exchange(
        limits(),
        b"GET /old HTTP/1.0\r\n\r\nGET /ignored HTTP/1.0\r\n\r\n",
    )
    .await;
    let got = answers(&out, &[]);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].version, got[0].status), (0, 200));
    assert_eq!(got[0].header("connection"), Some("close"));

    let (mut client, served) = connect(limits());
    for _ in 0..2 {
        client
            .write_all(b"GET /kept HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .await
            .unwrap();
        let answer = read_answer(&mut client).await;
        assert_eq!((answer.version, answer.status), (0, 200));
        assert_eq!(answer.header("connection"), Some("keep-alive"));
    }
    drop(client);
    served.await.unwrap();
}

#[tokio::test]
async fn content_length_and_transfer_encoding_together_get_400_and_a_close() {
    let both = b"POST /x HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n\
                 0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n";
    let got = answers(&exchange(limits(), both).await, &[]);
    assert_eq!(got.len(), 1, "nothing after the refused head is served");
    assert_eq!(got[0].status, 400);
    assert_eq!(got[0].header("connection"), Some("close"));
}

#[tokio::test]
async fn a_head_over_the_size_limit_gets_431_and_a_close() {
    let huge = format!(
        "GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(MAX_HEADER_BYTES)
    );
    let got = answers(&exchange(limits(), huge.as_bytes()).await, &[]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].status, 431);
    assert_eq!(got[0].header("connection"), Some("close"));
    // A head that never ends is cut at the limit, not read on.
    let endless = format!("GET /{} HTTP/1.1\r\n", "a".repeat(4 * MAX_HEADER_BYTES));
    assert_eq!(
        answers(&exchange(limits(), endless.as_bytes()).await, &[])[0].status,
        431
    );
    // Just under the limit: served.
    let fits = format!(
        "GET /fits HTTP/1.1\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "a".repeat(MAX_HEADER_BYTES - 100)
    );
    assert_eq!(
        answers(&exchange(limits(), fits.as_bytes()).await, &[])[0].status,
        200
    );
}

#[tokio::test]
async fn more_headers_than_the_limit_get_431() {
    let request = |count: usize| {
        let mut head = "GET / HTTP/1.1\r\nConnection: close\r\n".to_owned();
        for i in 1..count {
            head.push_str(&format!("X-H{i}: v\r\n"));
        }
        head + "\r\n"
    };
    let over = exchange(limits(), request(MAX_HEADERS + 1).as_bytes()).await;
    assert_eq!(answers(&over, &[])[0].status, 431);
    let at = exchange(limits(), request(MAX_HEADERS).as_bytes()).await;
    assert_eq!(answers(&at, &[])[0].status, 200);
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_before_it_is_read() {
    let declared = format!(
        "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY_BYTES + 1
    );
    // Nothing of the body is sent: the answer comes anyway, and the connection closes.
    let got = answers(&exchange(limits(), declared.as_bytes()).await, &[]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].status, 413);
    assert_eq!(got[0].body, "request body too large\n");
    // A body at the limit is read whole.
    let mut fits =
        format!("POST / HTTP/1.1\r\nContent-Length: {MAX_BODY_BYTES}\r\nConnection: close\r\n\r\n")
            .into_bytes();
    fits.extend(std::iter::repeat_n(b'b', MAX_BODY_BYTES));
    let got = answers(&exchange(limits(), &fits).await, &[]);
    assert_eq!(got[0].status, 200);
    assert_eq!(got[0].body.len(), "POST / ".len() + MAX_BODY_BYTES);
}

/// A request larger than the socket buffers on both sides, several MB.
const LARGER_THAN_SOCKET_BUFFERS: usize = 4 * 1024 * 1024;

/// Socket buffers small enough that a client cannot write [`LARGER_THAN_SOCKET_BUFFERS`]
/// before the server reads (Linux doubles what is set).
const SOCKET_BUFFER: usize = 64 * 1024;

/// Sends `request` whole over TCP to a connection served with the default limits, then reads
/// until the server closes, as a client that writes before it reads (curl, Python's requests);
/// what the client sees: the answer, or the error it got writing or reading. The client is a
/// thread of its own, which a loaded machine may stall for seconds while the server's timers
/// run: stalled past [`LINGER_TIME`] in the middle of its request, the server would stop
/// draining and the kernel reset the connection (a broken pipe instead of the answer). The
/// caller's clock is paused (`start_paused`): tokio does not move it on while a blocking task
/// runs, so no timer of the server's fires however long the client takes; only what the
/// server reads and writes decides what the client sees.
async fn send_whole_then_read(request: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let limits = ServerLimits::default();
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    socket2::SockRef::from(&listener)
        .set_recv_buffer_size(SOCKET_BUFFER)
        .unwrap();
    let address = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let served = tokio::spawn(async move {
        let (stream, from) = listener.accept().await.unwrap();
        serve_connection(stream, Peer::Tcp(from), limits, Echo).await;
    });
    let client = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address)?;
        socket2::SockRef::from(&stream).set_send_buffer_size(SOCKET_BUFFER)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(&request)?;
        let mut out = Vec::new();
        stream.read_to_end(&mut out)?;
        Ok(out)
    });
    let seen = client.await.unwrap();
    tokio::time::timeout(LINGER_TIME * 2, served)
        .await
        .expect("the server closes the connection")
        .unwrap();
    seen
}

/// A client that writes a whole request before it reads its answer gets the refusal, not a
/// reset, when the server refuses it before reading it all: the server reads and drops what
/// still comes before it closes (nginx's lingering close, `LINGER_TIME`, `LINGER_BYTES`).
#[tokio::test(start_paused = true)]
async fn a_client_that_writes_its_whole_request_first_gets_its_refusal_not_a_reset() {
    let big = LARGER_THAN_SOCKET_BUFFERS;
    // A body over the limit, refused before a byte of it is read.
    let mut declared = format!("POST / HTTP/1.1\r\nContent-Length: {big}\r\n\r\n").into_bytes();
    declared.resize(declared.len() + big, b'b');
    // Chunks past the limit, refused once the limit is read.
    let mut chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    while chunked.len() < big {
        chunked.extend_from_slice(b"1000\r\n");
        chunked.extend(std::iter::repeat_n(b'c', 4096));
        chunked.extend_from_slice(b"\r\n");
    }
    // A head over the limit, refused at the limit.
    let mut head = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    head.resize(head.len() + big, b'h');
    // Bytes after a request that closes the connection.
    let mut after = b"GET /bye HTTP/1.1\r\n\r\n".to_vec();
    after.resize(after.len() + big, b'a');
    let cases = [
        (declared, 413, "request body too large\n"),
        (chunked, 413, "request body too large\n"),
        (head, 431, "request head too large\n"),
        (after, 200, "GET /bye "),
    ];
    for (request, status, body) in cases {
        let seen = send_whole_then_read(request)
            .await
            .unwrap_or_else(|err| panic!("a {status} was expected, the client got: {err}"));
        let got = answers(&seen, &[]);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].status, got[0].body.as_str()), (status, body));
        assert_eq!(got[0].header("connection"), Some("close"));
    }
}

/// A connection drained before it closes is cut off after `LINGER_BYTES`, however fast its
/// client goes on sending.
#[tokio::test]
async fn a_drained_connection_is_cut_off_at_its_byte_bound() {
    let over = format!(
        "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY_BYTES + 1
    );
    let (client, server) = tokio::io::duplex(64 * 1024);
    let served = tokio::spawn(serve_connection(server, Peer::Unix, limits(), Echo));
    let (mut reading, mut writing) = tokio::io::split(client);
    writing.write_all(over.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    // As fast as it can.
    let sending = tokio::spawn(async move {
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while let Ok(n) = writing.write(&chunk).await {
            if n == 0 {
                break;
            }
            sent += n;
        }
        sent
    });
    let mut out = Vec::new();
    reading.read_to_end(&mut out).await.unwrap();
    assert_eq!(answers(&out, &[])[0].status, 413);
    tokio::time::timeout(LINGER_TIME, served)
        .await
        .expect("cut off at the byte bound, before the time bound")
        .unwrap();
    let sent = sending.await.unwrap();
    assert!(started.elapsed() < LINGER_TIME);
    // What the server read and dropped, plus what the stream held when it closed.
    assert!(
        (LINGER_BYTES..=LINGER_BYTES + 64 * 1024).contains(&sent),
        "{sent} bytes sent"
    );
}

/// A connection drained before it closes is cut off after `LINGER_TIME`, however slowly its
/// client goes on sending.
#[tokio::test]
async fn a_drained_connection_is_cut_off_at_its_time_bound() {
    let over = format!(
        "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY_BYTES + 1
    );
    let (client, server) = tokio::io::duplex(64 * 1024);
    let served = tokio::spawn(serve_connection(server, Peer::Unix, limits(), Echo));
    let (mut reading, mut writing) = tokio::io::split(client);
    writing.write_all(over.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    // A byte at a time, each well within any other timeout.
    let sending = tokio::spawn(async move {
        while writing.write_all(b"x").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let mut out = Vec::new();
    reading.read_to_end(&mut out).await.unwrap();
    assert_eq!(answers(&out, &[])[0].status, 413);
    tokio::time::timeout(LINGER_TIME + Duration::from_secs(2), served)
        .await
        .expect("cut off at the time bound")
        .unwrap();
    // The drain starts once the answer is written, after the head was: a moment after `started`.
    assert!(
        started.elapsed() >= LINGER_TIME - Duration::from_millis(50),
        "closed after {:?}, before the time bound",
        started.elapsed()
    );
    sending.await.unwrap();
}

#[tokio::test]
async fn chunked_bodies_are_decoded_and_bounded() {
    let request = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
        5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n\
        GET /next HTTP/1.1\r\nConnection: close\r\n\r\n";
    let got = answers(&exchange(limits(), request).await, &[]);
    let bodies: Vec<&str> = got.iter().map(|a| a.body.as_str()).collect();
    assert_eq!(bodies, ["POST /c hello, world", "GET /next "]);
    // Chunks past the body limit: 413, and the connection closes.
    let mut big = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..(MAX_BODY_BYTES / 4096 + 1) {
        big.extend_from_slice(b"1000\r\n");
        big.extend(std::iter::repeat_n(b'p', 4096));
        big.extend_from_slice(b"\r\n");
    }
    big.extend_from_slice(b"0\r\n\r\n");
    let got = answers(&exchange(limits(), &big).await, &[]);
    assert_eq!((got.len(), got[0].status), (1, 413));
    // A chunk size that is not hex: the handler's 400.
    let broken = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n";
    let got = answers(&exchange(limits(), broken).await, &[]);
    assert_eq!(got[0].status, 400);
    assert_eq!(got[0].body, "request body could not be read\n");
}

#[tokio::test]
async fn broken_framing_gets_400_and_a_close() {
    let cases: [&[u8]; 6] = [
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nabcd",
        b"GET /\xff HTTP/1.1\r\n\r\n",
    ];
    for case in cases {
        let got = answers(&exchange(limits(), case).await, &[]);
        assert_eq!(got.len(), 1, "{case:?}");
        assert_eq!(got[0].status, 400, "{case:?}");
        assert_eq!(got[0].header("connection"), Some("close"), "{case:?}");
    }
}

#[tokio::test]
async fn a_transfer_coding_other_than_chunked_gets_501_and_a_close() {
    let cases: [&[u8]; 2] = [
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n\
          4\r\nabcd\r\n0\r\n\r\n",
    ];
    for case in cases {
        let got = answers(&exchange(limits(), case).await, &[]);
        assert_eq!(got.len(), 1, "{case:?}");
        assert_eq!(got[0].status, 501, "{case:?}");
        assert_eq!(got[0].header("connection"), Some("close"), "{case:?}");
    }
}

/// Sends `request` a byte at a time, letting the server read each before the next, then reads
/// until the server closes: the answers, and how often the server parsed a head meanwhile.
async fn dribbled(request: &[u8]) -> (Vec<Answer>, usize) {
    head::PARSES.with(|parses| parses.set(0));
    let (mut client, served) = connect(ServerLimits::default());
    for byte in request {
        if client.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut out))
        .await
        .expect("the server closes the connection")
        .unwrap();
    drop(client);
    served.await.unwrap();
    (answers(&out, &[]), head::PARSES.with(|parses| parses.get()))
}

/// A head that comes a byte at a time is parsed when its end came and each time it doubled
/// before, not once per read; it is read as when it comes whole, bare `\n` line endings and
/// empty lines before it too.
#[tokio::test]
async fn a_head_sent_a_byte_at_a_time_is_parsed_once_and_read_as_when_whole() {
    let filler: String = (0..40)
        .map(|i| format!("X-Filler-{i}: value\r\n"))
        .collect();
    let cases = [
        format!("GET /crlf HTTP/1.1\r\nConnection: close\r\n{filler}\r\n"),
        "GET /lf HTTP/1.1\nHost: x\nConnection: close\n\n".to_owned(),
        "GET /mixed HTTP/1.1\r\nConnection: close\n\r\n".to_owned(),
        "\r\n\nGET /after-empty-lines HTTP/1.1\r\nConnection: close\r\n\r\n".to_owned(),
        "GET /no-headers HTTP/1.0\n\n".to_owned(),
        "POST /body HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi".to_owned(),
    ];
    for case in &cases {
        let whole = answers(&exchange(limits(), case.as_bytes()).await, &[]);
        let (dribbled, parses) = dribbled(case.as_bytes()).await;
        assert_eq!(dribbled.len(), 1, "{case:?}");
        assert_eq!(dribbled[0].status, 200, "{case:?}");
        assert_eq!(
            (dribbled[0].status, &dribbled[0].body),
            (whole[0].status, &whole[0].body),
            "{case:?}"
        );
        // 1, 2, 4, … bytes, then its end.
        let most = case.len().ilog2() as usize + 2;
        assert!(parses <= most, "{case:?}: {parses} parses");
    }
}

/// Bytes no head can start with, come in one read without an end (a TLS hello, binary): 400
/// at once, not 408 at the head timeout.
#[tokio::test]
async fn a_malformed_head_without_its_end_is_refused_at_once() {
    let binary: Vec<u8> = (0u8..=255).cycle().take(600).collect();
    let (mut client, served) = connect(ServerLimits::default());
    client.write_all(&binary).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut out))
        .await
        .expect("refused before the head timeout")
        .unwrap();
    drop(client);
    served.await.unwrap();
    let got = answers(&out, &[]);
    assert_eq!(got[0].status, 400);
}

/// A head refused, coming a byte at a time, gets the status it gets when it comes whole.
#[tokio::test]
async fn a_head_refused_a_byte_at_a_time_gets_the_same_status() {
    let cases = [
        (
            "GET / HTTP/2.0\r\nConnection: close\r\n\r\n".to_owned(),
            400,
        ),
        ("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n".to_owned(), 400),
        ("\r\rGET / HTTP/1.1\r\n\r\n".to_owned(), 400),
        (
            format!(
                "GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n",
                "a".repeat(MAX_HEADER_BYTES)
            ),
            431,
        ),
        (
            format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEADER_BYTES)),
            431,
        ),
    ];
    for (case, status) in &cases {
        let whole = answers(&exchange(limits(), case.as_bytes()).await, &[]);
        assert_eq!(whole[0].status, *status, "{case:?}");
        let (dribbled, _) = dribbled(case.as_bytes()).await;
        assert_eq!(dribbled[0].status, *status, "{case:?}");
    }
}

#[tokio::test]
async fn a_slow_head_is_cut_off_and_an_idle_connection_closed() {
    // Half a head: 408 at the timeout.
    let started = std::time::Instant::now();
    let (mut client, served) = connect(limits());
    client.write_all(b"GET / HTTP/1.1\r\nHost:").await.unwrap();
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    assert_eq!(answers(&out, &[])[0].status, 408);
    assert!(started.elapsed() < SHORT * 4);
    served.await.unwrap();
    // A head dribbled byte by byte: the timeout counts for the whole head.
    let (mut client, served) = connect(limits());
    let dribble = tokio::spawn(async move {
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" {
            if client.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(SHORT / 8).await;
        }
        let mut out = Vec::new();
        let _ = client.read_to_end(&mut out).await;
        out
    });
    let out = dribble.await.unwrap();
    assert_eq!(answers(&out, &[])[0].status, 408);
    served.await.unwrap();
    // An idle keep-alive connection: closed silently after its answer.
    let (mut client, served) = connect(limits());
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(SHORT * 4, client.read_to_end(&mut out))
        .await
        .expect("an idle connection is closed")
        .unwrap();
    let got = answers(&out, &[]);
    assert_eq!((got.len(), got[0].status), (1, 200));
    served.await.unwrap();
}

/// A client that ends a request's body with an extra line break (older clients do, after a
/// POST's body) and then idles: an empty line before a request line is no request (RFC 9112
/// §2.2), so the connection is closed without a word at the head timeout, not answered 408,
/// which a client reusing it would read as the answer to its next request.
#[tokio::test]
async fn empty_lines_after_a_request_leave_the_connection_idle() {
    for extra in [&b"\r\n"[..], b"\n", b"\r\n\r\n"] {
        let (mut client, served) = connect(limits());
        let mut request = b"POST /openstack/latest/password HTTP/1.1\r\nHost: x\r\n\
            Content-Length: 2\r\n\r\nhi"
            .to_vec();
        request.extend_from_slice(extra);
        client.write_all(&request).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(SHORT * 4, client.read_to_end(&mut out))
            .await
            .expect("an idle connection is closed")
            .unwrap();
        let got = answers(&out, &[]);
        let statuses: Vec<u16> = got.iter().map(|a| a.status).collect();
        assert_eq!(statuses, [200], "after {extra:?}");
        served.await.unwrap();
    }
    // The request after such a line is still served.
    let (mut client, served) = connect(limits());
    client
        .write_all(b"POST /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi\r\n")
        .await
        .unwrap();
    assert_eq!(read_answer(&mut client).await.body, "POST /a hi");
    client
        .write_all(b"GET /b HTTP/1.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    let got = answers(&out, &[]);
    assert_eq!((got.len(), got[0].body.as_str()), (1, "GET /b "));
    served.await.unwrap();
}

/// How many times `needle` occurs in `bytes`.
fn occurrences(bytes: &[u8], needle: &[u8]) -> usize {
    bytes.windows(needle.len()).filter(|w| w == &needle).count()
}

/// A client that sends requests and never reads the answers: once the stream takes no more of
/// them, the connection is closed at the write timeout instead of being held for ever. One
/// that reads slowly but reads keeps it.
#[tokio::test]
async fn a_client_that_takes_no_answer_is_disconnected_at_the_write_timeout() {
    let (client, server) = tokio::io::duplex(1024);
    let served = tokio::spawn(serve_connection(server, Peer::Unix, limits(), Echo));
    let (mut reading, mut writing) = tokio::io::split(client);
    let asking = tokio::spawn(async move {
        for _ in 0..10_000 {
            if writing.write_all(b"GET /x HTTP/1.1\r\n\r\n").await.is_err() {
                break;
            }
        }
        writing
    });
    let started = std::time::Instant::now();
    tokio::time::timeout(SHORT * 8, served)
        .await
        .expect("the connection is closed at the write timeout")
        .unwrap();
    assert!(started.elapsed() >= SHORT, "closed before the timeout");
    // What was written before: answers (the last one maybe cut), then the end of the stream.
    let mut out = Vec::new();
    reading.read_to_end(&mut out).await.unwrap();
    assert!(occurrences(&out, b"HTTP/1.1 200 OK") < 10_000);
    drop(asking.await.unwrap());

    // A client that reads slowly, 64 bytes at a time, taking each answer within the timeout
    // and all of them in more than twice it: served to the end.
    let one_at_a_time = ServerLimits {
        pipelined_at_once: 1,
        ..limits()
    };
    let (client, server) = tokio::io::duplex(64);
    let served = tokio::spawn(serve_connection(server, Peer::Unix, one_at_a_time, Echo));
    let (mut reading, mut writing) = tokio::io::split(client);
    let asking = tokio::spawn(async move {
        writing
            .write_all(&b"GET /x HTTP/1.1\r\n\r\n".repeat(8))
            .await
            .unwrap();
        writing
    });
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    let mut chunk = [0; 64];
    // Each answer ends with its body, `GET /x `.
    while occurrences(&out, b"GET /x ") < 8 {
        tokio::time::sleep(SHORT / 8).await;
        let read = reading.read(&mut chunk).await.unwrap();
        assert_ne!(read, 0, "closed after {:?}", String::from_utf8_lossy(&out));
        out.extend_from_slice(&chunk[..read]);
    }
    assert!(started.elapsed() > SHORT * 2);
    assert!(answers(&out, &[]).iter().all(|answer| answer.status == 200));
    drop((reading, asking.await.unwrap()));
    served.await.unwrap();
}

#[tokio::test]
async fn a_body_that_stops_coming_gets_408() {
    let out = exchange(
        limits(),
        b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc",
    )
    .await;
    let got = answers(&out, &[]);
    assert_eq!((got.len(), got[0].status), (1, 408));
    assert_eq!(got[0].body, "request body not received in time\n");
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body() {
    let (mut client, served) = connect(limits());
    client
        .write_all(b"PUT /p HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        .await
        .unwrap();
    let mut interim = vec![0; super::write::CONTINUE.len()];
    client.read_exact(&mut interim).await.unwrap();
    assert_eq!(interim, super::write::CONTINUE);
    client.write_all(b"data").await.unwrap();
    let answer = read_answer(&mut client).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "PUT /p data"));
    drop(client);
    served.await.unwrap();
    // A body over the limit gets no 100, only the 413.
    let over = format!(
        "PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY_BYTES + 1
    );
    let out = exchange(limits(), over.as_bytes()).await;
    assert!(
        out.starts_with(b"HTTP/1.1 413 "),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

#[tokio::test]
async fn head_is_answered_with_the_length_of_get_and_no_body() {
    let out = exchange(
        limits(),
        b"HEAD /h HTTP/1.1\r\n\r\nGET /h HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    let got = answers(&out, &[true, false]);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].body, "");
    assert_eq!(got[0].header("content-length"), Some("8"));
    assert_eq!(got[1].body, "GET /h ");
    assert_eq!(got[1].header("content-length"), Some("7"));
}

#[tokio::test]
async fn each_keep_alive_request_gets_the_whole_head_timeout() {
    let (mut client, served) = connect(limits());
    // Each request comes after most of the timeout: the connection's age does not count.
    for path in ["/1", "/2", "/3", "/4"] {
        tokio::time::sleep(SHORT * 2 / 3).await;
        client
            .write_all(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes())
            .await
            .unwrap();
        assert_eq!(read_answer(&mut client).await.body, format!("GET {path} "));
    }
    drop(client);
    served.await.unwrap();
}

#[tokio::test]
async fn a_handler_saying_connection_close_ends_the_connection() {
    let out = exchange(
        limits(),
        b"GET /bye HTTP/1.1\r\n\r\nGET /never HTTP/1.1\r\n\r\n",
    )
    .await;
    let got = answers(&out, &[]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("connection"), Some("close"));
}

#[tokio::test]
async fn hundreds_of_requests_on_one_connection_are_all_answered_in_order() {
    // Heads of varying length fill the read buffer unevenly: some straddle its end.
    let mut batch = Vec::new();
    let paths: Vec<String> = (0..300)
        .map(|i| format!("/{}", "p".repeat(i % 97)))
        .collect();
    for (i, path) in paths.iter().enumerate() {
        let close = if i + 1 == paths.len() {
            "Connection: close\r\n"
        } else {
            ""
        };
        batch.extend_from_slice(format!("GET {path} HTTP/1.1\r\n{close}\r\n").as_bytes());
    }
    let got = answers(&exchange(limits(), &batch).await, &[]);
    let bodies: Vec<String> = got.into_iter().map(|a| a.body).collect();
    let expected: Vec<String> = paths.iter().map(|p| format!("GET {p} ")).collect();
    assert_eq!(bodies, expected);
}
