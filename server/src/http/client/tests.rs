//! The client against real sockets: upstreams that answer with canned bytes (every framing, the
//! broken ones, closing, hanging), and the roles' own HTTP/1.1 server for a restart.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::{Method, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener, UnixStream};

use super::*;
use crate::http::limits::{
    HEADER_READ_TIMEOUT, MAX_HEADER_BYTES, MAX_HEADERS, MAX_UPSTREAM_BODY_BYTES,
    MAX_UPSTREAM_INTERIM_ANSWERS, MAX_UPSTREAM_RESENDS, UPSTREAM_POOL_SWEEP,
};
use crate::http::{Body, Handler, Peer, Rejection, RequestBody, ServerLimits};

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok";
const TIMEOUT: Duration = Duration::from_secs(5);

/// What a canned upstream does with the n-th request it reads (the last entry repeats).
enum Then {
    Answer(Vec<u8>),
    /// Answers, then closes the connection without saying so first.
    AnswerAndClose(Vec<u8>),
    /// Answers after a while.
    AnswerAfter(Duration, Vec<u8>),
    /// Never answers, keeping the connection open.
    Hang,
}

fn answer(bytes: &[u8]) -> Then {
    Then::Answer(bytes.to_vec())
}

/// The requests an upstream read: head text, body.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An upstream answering from a script: counts its connections and keeps each request it read
/// (head text, body).
struct Canned {
    accepted: Arc<AtomicUsize>,
    seen: Seen,
}

impl Canned {
    fn unix(path: &Path, script: Vec<Then>) -> Self {
        let listener = Arc::new(UnixListener::bind(path).unwrap());
        Self::spawn(script, move || {
            let listener = listener.clone();
            async move { listener.accept().await.ok().map(|(stream, _)| stream) }
        })
    }

    async fn tcp(script: Vec<Then>) -> (Self, SocketAddr) {
        let listener = Arc::new(TcpListener::bind("127.0.0.1:0").await.unwrap());
        let address = listener.local_addr().unwrap();
        let canned = Self::spawn(script, move || {
            let listener = listener.clone();
            async move { listener.accept().await.ok().map(|(stream, _)| stream) }
        });
        (canned, address)
    }

    fn spawn<S, F, A>(script: Vec<Then>, accept: A) -> Self
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        F: Future<Output = Option<S>> + Send,
        A: Fn() -> F + Send + 'static,
    {
        let canned = Self {
            accepted: Arc::default(),
            seen: Arc::default(),
        };
        let (accepted, seen, script) = (
            canned.accepted.clone(),
            canned.seen.clone(),
            Arc::new(script),
        );
        let served = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Some(stream) = accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let (seen, script, served) = (seen.clone(), script.clone(), served.clone());
                tokio::spawn(answer_connection(stream, script, served, seen));
            }
        });
        canned
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<(String, Vec<u8>)> {
        self.seen.lock().unwrap().clone()
    }
}

async fn answer_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    script: Arc<Vec<Then>>,
    served: Arc<AtomicUsize>,
    seen: Seen,
) {
    let mut buf = Vec::new();
    while let Some(request) = read_request(&mut stream, &mut buf).await {
        seen.lock().unwrap().push(request);
        let n = served.fetch_add(1, Ordering::SeqCst);
        match &script[n.min(script.len() - 1)] {
            Then::Answer(bytes) => {
                if stream.write_all(bytes).await.is_err() {
                    return;
                }
            }
            Then::AnswerAndClose(bytes) => {
                let _ = stream.write_all(bytes).await;
                return;
            }
            Then::AnswerAfter(delay, bytes) => {
                tokio::time::sleep(*delay).await;
                if stream.write_all(bytes).await.is_err() {
                    return;
                }
            }
            Then::Hang => std::future::pending::<()>().await,
        }
    }
}

/// One request as the upstream reads it: the head up to its empty line, then `content-length`
/// bytes. `None` when the client closed.
async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Option<(String, Vec<u8>)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(buf[..end].to_vec()).unwrap();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length: "))
                .map_or(0, |value| value.parse().unwrap());
            let total = end + 4 + length;
            while buf.len() < total {
                read_more(stream, buf).await?;
            }
            let body = buf[end + 4..total].to_vec();
            buf.drain(..total);
            return Some((head, body));
        }
        read_more(stream, buf).await?;
    }
}

async fn read_more<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

fn request(upstream: &Upstream, method: Method, body: &'static [u8]) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(Bytes::from_static(body)));
    *request.method_mut() = method;
    *request.uri_mut() = upstream.uri("/openstack/latest/meta_data.json").unwrap();
    request
}

fn get(upstream: &Upstream) -> Request<Full<Bytes>> {
    request(upstream, Method::GET, b"")
}

#[test]
fn parses_http_and_unix_upstreams() {
    assert_eq!(
        Upstream::parse("http://127.0.0.1:8775").unwrap().describe(),
        "http://127.0.0.1:8775"
    );
    assert_eq!(
        Upstream::parse("unix:/run/metaboot/api.sock")
            .unwrap()
            .describe(),
        "unix:/run/metaboot/api.sock"
    );
    assert!(Upstream::parse("https://10.0.0.1").is_err());
    assert!(Upstream::parse("unix:").is_err());
    assert!(Upstream::parse("not a url").is_err());
}

#[tokio::test]
async fn keep_alive_answers_reuse_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let canned = Canned::unix(&path, vec![answer(OK)]);
    let upstream = Upstream::unix(path);
    for _ in 0..20 {
        let response = upstream.send(get(&upstream), TIMEOUT).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/plain");
        assert_eq!(response.body(), "ok");
    }
    let password = upstream
        .send(request(&upstream, Method::POST, b"secret"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(password.body(), "ok");
    // The reads share one pipelined connection; the POST goes out alone on another.
    assert_eq!(
        canned.accepted(),
        2,
        "one pipelined connection and one for the POST"
    );

    let seen = canned.seen();
    assert_eq!(seen.len(), 21);
    assert_eq!(
        seen[0].0,
        "GET /openstack/latest/meta_data.json HTTP/1.1\r\nhost: metadata.local"
    );
    assert_eq!(
        seen[20],
        (
            "POST /openstack/latest/meta_data.json HTTP/1.1\r\nhost: metadata.local\r\ncontent-length: 6"
                .to_owned(),
            b"secret".to_vec()
        )
    );
}

#[tokio::test]
async fn a_connection_idle_past_the_reuse_bound_is_replaced() {
    const REUSE: Duration = Duration::from_secs(1);
    // The idle time between two uses: most of a second left for a loaded machine's stall.
    const WITHIN: Duration = Duration::from_millis(50);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let canned = Canned::unix(&path, vec![answer(OK)]);
    let upstream = Upstream::unix(path).reusing_for(REUSE);
    let both = async || {
        let read = upstream.send(get(&upstream), TIMEOUT).await.unwrap();
        assert_eq!(read.body(), "ok");
        let password = upstream.send(request(&upstream, Method::POST, b"secret"), TIMEOUT);
        assert_eq!(password.await.unwrap().body(), "ok");
    };
    // Used again within the bound: the pipelined connection and the POST's are kept.
    for _ in 0..3 {
        both().await;
        tokio::time::sleep(WITHIN).await;
    }
    assert_eq!(canned.accepted(), 2);
    // Idle past it (a sleep lasts at least what it asks): both are given up, not written to
    // as the upstream may be closing them.
    tokio::time::sleep(REUSE + WITHIN).await;
    both().await;
    assert_eq!(canned.accepted(), 4);
    assert_eq!(canned.seen().len(), 8, "each request sent once");
}

#[test]
fn connections_are_given_up_before_the_roles_or_common_upstreams_close_them() {
    assert!(UPSTREAM_IDLE_REUSE * 2 <= HEADER_READ_TIMEOUT);
    // Their idle timeouts, by default: gunicorn, Apache (KeepAliveTimeout), Node, uvicorn,
    // nginx (keepalive_timeout), nova's eventlet server (client_socket_timeout).
    let upstreams = [2, 5, 5, 5, 75, 900].map(Duration::from_secs);
    let shortest = upstreams.into_iter().min().unwrap();
    // A quarter of it left for the answer's and the next request's way.
    assert!(UPSTREAM_IDLE_REUSE <= shortest * 3 / 4);
}

#[tokio::test]
async fn a_tcp_upstream_is_asked_by_its_authority() {
    let (canned, address) = Canned::tcp(vec![answer(OK)]).await;
    let upstream = Upstream::parse(&format!("http://{address}")).unwrap();
    for _ in 0..3 {
        let response = upstream.send(get(&upstream), TIMEOUT).await.unwrap();
        assert_eq!(response.body(), "ok");
    }
    assert_eq!(canned.accepted(), 1);
    assert!(
        canned.seen()[0]
            .0
            .ends_with(&format!("\r\nhost: {address}"))
    );
}

#[tokio::test]
async fn a_chunked_answer_is_read_whole_and_the_connection_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
        2\r\n{\"\r\n5;ext=1\r\nuuid\"\r\n1\r\n}\r\n0\r\nx-trailer: dropped\r\n\r\n";
    let canned = Canned::unix(&path, vec![answer(chunked)]);
    let upstream = Upstream::unix(path);
    for _ in 0..2 {
        let response = upstream.send(get(&upstream), TIMEOUT).await.unwrap();
        assert_eq!(response.body(), "{\"uuid\"}");
        assert_eq!(response.headers()["transfer-encoding"], "chunked");
    }
    assert_eq!(canned.accepted(), 1);
}

#[tokio::test]
async fn an_answer_without_length_ends_with_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    let canned = Canned::unix(
        &path,
        vec![Then::AnswerAndClose(
            b"HTTP/1.1 200 OK\r\n\r\nuntil the end".to_vec(),
        )],
    );
    let upstream = Upstream::unix(path);
    for _ in 0..2 {
        let response = upstream.send(get(&upstream), TIMEOUT).await.unwrap();
        assert_eq!(response.body(), "until the end");
    }
    assert_eq!(canned.accepted(), 2, "not pooled");
}

#[tokio::test]
async fn an_answer_too_large_is_502() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    let longer = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
        MAX_UPSTREAM_BODY_BYTES + 1
    );
    let chunk = format!(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n",
        MAX_UPSTREAM_BODY_BYTES + 1
    );
    let _canned = Canned::unix(
        &path,
        vec![answer(longer.as_bytes()), answer(chunk.as_bytes())],
    );
    let upstream = Upstream::unix(path);
    for framing in ["content-length", "chunked"] {
        let err = upstream.send(get(&upstream), TIMEOUT).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_GATEWAY, "{framing}: {err}");
        let expected = format!("larger than {MAX_UPSTREAM_BODY_BYTES} bytes");
        assert!(err.to_string().contains(&expected), "{framing}: {err}");
    }
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    // The upstream closes each connection after one answer, as after its idle timeout.
    let canned = Canned::unix(&path, vec![Then::AnswerAndClose(OK.to_vec())]);
    let upstream = Upstream::unix(path);
    for _ in 0..3 {
        let response = upstream.send(get(&upstream), TIMEOUT).await.unwrap();
        assert_eq!(response.body(), "ok");
    }
    assert_eq!(canned.accepted(), 3);
    assert_eq!(canned.seen().len(), 3, "each request sent once");

    // Over TCP, as the agent asks the API: the close comes while the connection idles.
    let (canned, address) = Canned::tcp(vec![Then::AnswerAndClose(OK.to_vec())]).await;
    let upstream = Upstream::parse(&format!("http://{address}")).unwrap();
    for _ in 0..3 {
        let response = upstream.send(get(&upstream), TIMEOUT).await.unwrap();
        assert_eq!(response.body(), "ok");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(canned.accepted(), 3);
    assert_eq!(canned.seen().len(), 3, "each request sent once");
}

/// An upstream that answers each request with `OK`, keeping the connection open, and closes
/// it (its writing side: it still reads) once it idled `idle` after an answer; for each
/// connection, it sends when it saw our side close it.
fn closing_upstream<S, F, A>(
    idle: Duration,
    accept: A,
) -> tokio::sync::mpsc::UnboundedReceiver<std::time::Instant>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Future<Output = Option<S>> + Send,
    A: Fn() -> F + Send + 'static,
{
    let (closed, seen_closed) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(mut stream) = accept().await {
            let closed = closed.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Ok(Some(_)) =
                    tokio::time::timeout(idle, read_request(&mut stream, &mut buf)).await
                {
                    stream.write_all(OK).await.unwrap();
                }
                // The idle timeout, or our side closed first.
                let _ = stream.shutdown().await;
                while read_more(&mut stream, &mut buf).await.is_some() {}
                let _ = closed.send(std::time::Instant::now());
            });
        }
    });
    seen_closed
}

/// A password POST's pooled connection, which the upstream closes while it idles, is closed on
/// our side within `UPSTREAM_POOL_SWEEP` though no request comes to find it closed: it does not
/// linger in CLOSE_WAIT.
#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_closed_without_another_request() {
    const IDLE: Duration = Duration::from_millis(100);
    // What a loaded machine may add to the sweep's period (a stalled thread); only a sweep
    // that is late waits it out.
    const MARGIN: Duration = Duration::from_secs(4);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let listener = Arc::new(UnixListener::bind(&path).unwrap());
    let unix = closing_upstream(IDLE, move || {
        let listener = listener.clone();
        async move { listener.accept().await.ok().map(|(stream, _)| stream) }
    });
    let listener = Arc::new(TcpListener::bind("127.0.0.1:0").await.unwrap());
    let address = listener.local_addr().unwrap();
    let tcp = closing_upstream(IDLE, move || {
        let listener = listener.clone();
        async move { listener.accept().await.ok().map(|(stream, _)| stream) }
    });
    let upstreams = [
        (Upstream::unix(path), unix),
        (Upstream::parse(&format!("http://{address}")).unwrap(), tcp),
    ];
    for (upstream, mut closed) in upstreams {
        let password = upstream.send(request(&upstream, Method::POST, b"secret"), TIMEOUT);
        assert_eq!(password.await.unwrap().body(), "ok");
        let answered = std::time::Instant::now();
        let at = tokio::time::timeout(IDLE + UPSTREAM_POOL_SWEEP + MARGIN, closed.recv())
            .await
            .unwrap_or_else(|_| panic!("{}: our side still open", upstream.describe()))
            .unwrap();
        assert!(at > answered + IDLE, "closed before the upstream closed it");
        // Kept until now: a pool dropped closes its connections anyway.
        drop(upstream);
    }
}

/// A pooled connection that idled past the reuse bound, which no request will use again, is
/// closed within `UPSTREAM_POOL_SWEEP` after, though the upstream keeps it open.
#[tokio::test]
async fn a_pooled_connection_idle_past_the_reuse_bound_is_closed_without_another_request() {
    const REUSE: Duration = Duration::from_millis(200);
    // What a loaded machine may add to the sweep's period (a stalled thread); only a sweep
    // that is late waits it out.
    const MARGIN: Duration = Duration::from_secs(4);
    let listener = Arc::new(TcpListener::bind("127.0.0.1:0").await.unwrap());
    let address = listener.local_addr().unwrap();
    // The upstream would keep it for a minute.
    let mut closed = closing_upstream(Duration::from_secs(60), move || {
        let listener = listener.clone();
        async move { listener.accept().await.ok().map(|(stream, _)| stream) }
    });
    let upstream = Upstream::parse(&format!("http://{address}"))
        .unwrap()
        .reusing_for(REUSE);
    let password = upstream.send(request(&upstream, Method::POST, b"secret"), TIMEOUT);
    assert_eq!(password.await.unwrap().body(), "ok");
    let answered = std::time::Instant::now();
    let at = tokio::time::timeout(REUSE + UPSTREAM_POOL_SWEEP + MARGIN, closed.recv())
        .await
        .expect("an idle connection past the reuse bound is closed")
        .unwrap();
    assert!(at > answered + REUSE, "closed while it could still be used");
    drop(upstream);
}

#[tokio::test]
async fn connections_the_answer_closes_are_not_pooled() {
    let closing: [&[u8]; 2] = [
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
    ];
    for (i, bytes) in closing.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let canned = Canned::unix(&path, vec![answer(bytes)]);
        let upstream = Upstream::unix(path);
        for _ in 0..2 {
            let response = upstream.send(get(&upstream), TIMEOUT).await.unwrap();
            assert_eq!(response.body(), "ok");
        }
        assert_eq!(canned.accepted(), 2, "answer {i}");
    }
}

#[tokio::test]
async fn head_answers_have_no_body_and_interim_answers_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    let head = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 42\r\n\r\n";
    let canned = Canned::unix(&path, vec![answer(head), answer(OK)]);
    let upstream = Upstream::unix(path);
    let response = upstream
        .send(request(&upstream, Method::HEAD, b""), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-length"],
        "42",
        "the GET's length"
    );
    assert!(response.body().is_empty());
    let response = upstream.send(get(&upstream), TIMEOUT).await.unwrap();
    assert_eq!(response.body(), "ok");
    assert_eq!(canned.accepted(), 1);
}

#[tokio::test]
async fn endless_interim_answers_are_502() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    let mut bytes = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_UPSTREAM_INTERIM_ANSWERS);
    bytes.extend_from_slice(OK);
    let mut more = b"HTTP/1.1 102 Processing\r\n\r\n".to_vec();
    more.extend_from_slice(&bytes);
    let _canned = Canned::unix(&path, vec![answer(&bytes), answer(&more)]);
    let upstream = Upstream::unix(path);
    let response = upstream.send(get(&upstream), TIMEOUT).await.unwrap();
    assert_eq!(
        response.body(),
        "ok",
        "{MAX_UPSTREAM_INTERIM_ANSWERS} are skipped"
    );
    let err = upstream.send(get(&upstream), TIMEOUT).await.unwrap_err();
    assert_eq!(err.status(), StatusCode::BAD_GATEWAY, "{err}");
    assert!(err.to_string().contains("interim answers"), "{err}");
}

#[tokio::test]
async fn malformed_answers_are_502_saying_what_is_wrong() {
    let cases: [(&[u8], &str); 4] = [
        (b"HTTP/1.1 2x0 OK\r\n\r\n", "malformed answer head"),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n",
            "both Content-Length and Transfer-Encoding",
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            "chunked framing is malformed",
        ),
        (
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            "switched protocols",
        ),
    ];
    for (bytes, reason) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let _canned = Canned::unix(&path, vec![answer(bytes)]);
        let upstream = Upstream::unix(path.clone());
        let err = upstream.send(get(&upstream), TIMEOUT).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_GATEWAY, "{err}");
        assert!(err.to_string().contains(reason), "{reason}: {err}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
}

/// How an echoing upstream ([`Echo`]) ends its connections.
#[derive(Clone, Copy)]
enum Closes {
    /// Each after `n` answers, the last saying `Connection: close` (Apache's
    /// `MaxKeepAliveRequests`).
    Announced(usize),
    /// The first once the client's requests stopped coming, after answering the first of them,
    /// without a word; the others never.
    FirstAfterOneAnswer,
    /// The first at once, before reading a byte; the others never.
    FirstAtOnce,
    /// Each once the client's requests stopped coming, answering none of them.
    Unanswered,
}

/// How long an upstream waits for more pipelined requests before it deems they stopped coming.
const QUIET: Duration = Duration::from_millis(50);

/// An upstream answering each request with its path, ending connections as `Closes` says;
/// counts its connections, the requests it read and the paths it answered.
#[derive(Clone)]
struct Echo {
    accepted: Arc<AtomicUsize>,
    read: Arc<AtomicUsize>,
    answered: Arc<Mutex<Vec<String>>>,
}

impl Echo {
    fn unix(path: &Path, closes: Closes) -> Self {
        let listener = UnixListener::bind(path).unwrap();
        let echo = Self {
            accepted: Arc::default(),
            read: Arc::default(),
            answered: Arc::default(),
        };
        let serving = echo.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let first = serving.accepted.fetch_add(1, Ordering::SeqCst) == 0;
                tokio::spawn(serving.clone().serve(stream, closes, first));
            }
        });
        echo
    }

    async fn serve(self, mut stream: UnixStream, closes: Closes, first: bool) {
        let mut buf = Vec::new();
        let (answers, close) = match (closes, first) {
            (Closes::Announced(n), _) => (n, true),
            (Closes::FirstAtOnce, true) => return,
            (Closes::FirstAfterOneAnswer, true) | (Closes::Unanswered, _) => {
                // Reads what comes until nothing more does, then answers at most one and closes.
                let mut paths = Vec::new();
                loop {
                    match tokio::time::timeout(QUIET, self.next(&mut stream, &mut buf)).await {
                        Ok(Some(path)) => paths.push(path),
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                if let (Closes::FirstAfterOneAnswer, Some(path)) = (closes, paths.first()) {
                    let _ = self.answer(&mut stream, path, false).await;
                }
                return;
            }
            (Closes::FirstAfterOneAnswer | Closes::FirstAtOnce, false) => (usize::MAX, false),
        };
        for n in 1..=answers {
            let Some(path) = self.next(&mut stream, &mut buf).await else {
                return;
            };
            let last = close && n == answers;
            if self.answer(&mut stream, &path, last).await.is_err() {
                return;
            }
        }
    }

    /// The path of the next request read, counted; `None` when the client closed.
    async fn next(&self, stream: &mut UnixStream, buf: &mut Vec<u8>) -> Option<String> {
        let (head, _) = read_request(stream, buf).await?;
        self.read.fetch_add(1, Ordering::SeqCst);
        Some(head.split(' ').nth(1).unwrap().to_owned())
    }

    async fn answer(&self, stream: &mut UnixStream, path: &str, close: bool) -> io::Result<()> {
        self.answered.lock().unwrap().push(path.to_owned());
        let connection = if close { "connection: close\r\n" } else { "" };
        let answer = format!(
            "HTTP/1.1 200 OK\r\n{connection}content-length: {}\r\n\r\n{path}",
            path.len()
        );
        stream.write_all(answer.as_bytes()).await
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn read(&self) -> usize {
        self.read.load(Ordering::SeqCst)
    }

    /// The paths answered, sorted.
    fn answered(&self) -> Vec<String> {
        let mut answered = self.answered.lock().unwrap().clone();
        answered.sort();
        answered
    }
}

/// `count` GETs for `/0`, `/1`… sent at once, so that they share the pipelined connection;
/// with the path each asked for.
async fn get_at_once(
    upstream: &Upstream,
    count: usize,
) -> Vec<(String, Result<Response<Bytes>, UpstreamError>)> {
    let asked = (0..count).map(|n| async move {
        let path = format!("/{n}");
        let mut request = get(upstream);
        *request.uri_mut() = upstream.uri(&path).unwrap();
        (path, upstream.send(request, TIMEOUT).await)
    });
    futures_util::future::join_all(asked).await
}

/// The paths `/0`, `/1`… up to `count`, sorted as `Echo::answered` sorts them.
fn paths(count: usize) -> Vec<String> {
    let mut paths: Vec<String> = (0..count).map(|n| format!("/{n}")).collect();
    paths.sort();
    paths
}

/// Apache closes a connection with its `MaxKeepAliveRequests`-th answer: the requests
/// pipelined behind it go out again on a new connection, as often as it takes, and each gets
/// its own answer, once.
#[tokio::test]
async fn requests_behind_an_answer_that_closes_the_connection_go_out_again() {
    const PER_CONNECTION: usize = 3;
    const ASKED: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    let echo = Echo::unix(&path, Closes::Announced(PER_CONNECTION));
    let upstream = Upstream::unix(path);
    for (path, answered) in get_at_once(&upstream, ASKED).await {
        let response = answered.unwrap_or_else(|err| panic!("{path}: {err}"));
        assert_eq!(response.into_body(), path.as_bytes());
    }
    assert_eq!(echo.answered(), paths(ASKED), "each answered once");
    // More connections than any request's resends: a close the upstream announced is not
    // counted against the requests behind it.
    assert_eq!(echo.accepted(), ASKED.div_ceil(PER_CONNECTION));
    assert!(echo.accepted() > 1 + MAX_UPSTREAM_RESENDS as usize);
}

/// An upstream that read the pipelined requests, answered the first and closed: the others go
/// out again on a new connection, the answered one does not.
#[tokio::test]
async fn requests_the_upstream_closed_on_unanswered_go_out_again() {
    const ASKED: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    let echo = Echo::unix(&path, Closes::FirstAfterOneAnswer);
    let upstream = Upstream::unix(path);
    for (path, answered) in get_at_once(&upstream, ASKED).await {
        let response = answered.unwrap_or_else(|err| panic!("{path}: {err}"));
        assert_eq!(response.into_body(), path.as_bytes());
    }
    assert_eq!(echo.answered(), paths(ASKED), "each answered once");
    assert_eq!(echo.accepted(), 2);
    assert_eq!(echo.read(), 2 * ASKED - 1, "the unanswered ones twice");
}

/// A connection the upstream drops before reading it: the request that opened it goes out on
/// a new one.
#[tokio::test]
async fn a_request_on_a_connection_dropped_at_once_goes_out_on_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    let echo = Echo::unix(&path, Closes::FirstAtOnce);
    let upstream = Upstream::unix(path);
    let response = upstream.send(get(&upstream), TIMEOUT).await.unwrap();
    assert_eq!(response.body(), "/openstack/latest/meta_data.json");
    assert_eq!(echo.accepted(), 2);
    assert_eq!(echo.read(), 1);
}

/// An upstream that closes every connection without answering: each request goes out
/// `MAX_UPSTREAM_RESENDS` more times, then its client gets 502 saying so.
#[tokio::test]
async fn an_upstream_closing_without_answering_is_502_after_the_resends() {
    const ASKED: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    let echo = Echo::unix(&path, Closes::Unanswered);
    let upstream = Upstream::unix(path);
    for (path, answered) in get_at_once(&upstream, ASKED).await {
        let err = answered.unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_GATEWAY, "{path}: {err}");
        assert!(err.to_string().contains("without answering"), "{err}");
    }
    let sends = 1 + MAX_UPSTREAM_RESENDS as usize;
    assert_eq!(echo.accepted(), sends);
    assert_eq!(echo.read(), ASKED * sends);
    assert!(echo.answered().is_empty());
}

#[tokio::test]
async fn no_answer_in_time_is_504() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    let _canned = Canned::unix(&path, vec![Then::Hang]);
    let upstream = Upstream::unix(path);
    let timeout = Duration::from_millis(200);
    let err = upstream.send(get(&upstream), timeout).await.unwrap_err();
    assert_eq!(err.status(), StatusCode::GATEWAY_TIMEOUT, "{err}");
}

#[tokio::test]
async fn a_timed_out_read_gives_its_connection_up_and_the_next_goes_out_on_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    // The first request hangs its connection; later ones are answered.
    let canned = Canned::unix(&path, vec![Then::Hang, answer(OK)]);
    let upstream = Upstream::unix(path);
    let err = upstream
        .send(get(&upstream), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(err.status(), StatusCode::GATEWAY_TIMEOUT, "{err}");
    let response = upstream.send(get(&upstream), TIMEOUT).await.unwrap();
    assert_eq!(response.body(), "ok");
    assert_eq!(canned.accepted(), 2);
    assert_eq!(canned.seen().len(), 2, "each request sent once");
}

#[tokio::test]
async fn a_request_due_before_the_ones_ahead_of_it_times_out_on_its_own_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    // The upstream is stuck on the first request; on a new connection it answers.
    let canned = Canned::unix(&path, vec![Then::Hang, answer(OK)]);
    let upstream = Upstream::unix(path);
    // The first request may wait long, the second, queued behind it, only briefly.
    let (first, second) = tokio::join!(
        upstream.send(get(&upstream), TIMEOUT),
        upstream.send(get(&upstream), Duration::from_millis(200)),
    );
    let second = second.unwrap_err();
    assert_eq!(second.status(), StatusCode::GATEWAY_TIMEOUT, "{second}");
    // The connection is given up with it: the first, written and not yet due, goes out again
    // on a new connection and gets its answer there.
    assert_eq!(first.unwrap().body(), "ok");
    assert_eq!(canned.accepted(), 2);
    // Read: the first on each connection (the upstream never read past it on the first).
    assert_eq!(canned.seen().len(), 2);
}

/// A guest asking something the upstream is slow on: its request times out, and the others'
/// pipelined behind it on the same connection go out again on a new one instead of failing.
#[tokio::test]
async fn requests_written_behind_one_that_times_out_go_out_again() {
    const BEHIND: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    // Slow on the first request it reads (the others wait behind it on that connection); on a
    // new connection it answers at once.
    let canned = Canned::unix(
        &path,
        vec![Then::AnswerAfter(4 * TIMEOUT, OK.to_vec()), answer(OK)],
    );
    let upstream = Upstream::unix(path);
    let slow = upstream.send(get(&upstream), Duration::from_millis(200));
    let behind = (0..BEHIND).map(|_| upstream.send(get(&upstream), TIMEOUT));
    let (slow, behind) = tokio::join!(slow, futures_util::future::join_all(behind));
    let slow = slow.unwrap_err();
    assert_eq!(slow.status(), StatusCode::GATEWAY_TIMEOUT, "{slow}");
    for answered in behind {
        let response = answered.unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(response.body(), "ok");
    }
    assert_eq!(canned.accepted(), 2);
    // Read: the slow one, then the others on the new connection (written on the first too,
    // where the upstream never read past the slow one).
    assert_eq!(canned.seen().len(), 1 + BEHIND);
}

/// An upstream slow on everything (it reads one request per connection and never answers):
/// each timeout sends the reads written behind it again, but a read goes out again at most
/// `MAX_UPSTREAM_RESENDS` times, then fails (502), instead of going to the upstream once more
/// at every timeout ahead of it until its own deadline.
#[tokio::test]
async fn reads_written_behind_timeouts_go_out_again_a_bounded_number_of_times() {
    const READS: u64 = 5;
    // Wide enough for each round of resends to connect and be written before the next
    // deadline on a loaded machine.
    const STEP: Duration = Duration::from_millis(1500);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    let canned = Canned::unix(&path, vec![Then::Hang]);
    let upstream = Upstream::unix(path);
    // Deadlines one step apart: the first times out, the ones behind it go out again on a new
    // connection, where the next one is read and times out, and so on.
    let sends = (1..=READS).map(|n| {
        let timeout = STEP * u32::try_from(n).unwrap();
        upstream.send(get(&upstream), timeout)
    });
    let statuses: Vec<StatusCode> = futures_util::future::join_all(sends)
        .await
        .into_iter()
        .map(|answer| answer.unwrap_err().status())
        .collect();
    let resends = MAX_UPSTREAM_RESENDS as usize;
    let timed_out = resends + 1;
    assert_eq!(
        statuses,
        [
            vec![StatusCode::GATEWAY_TIMEOUT; timed_out],
            vec![StatusCode::BAD_GATEWAY; READS as usize - timed_out]
        ]
        .concat()
    );
    assert_eq!(canned.accepted(), timed_out);
}

#[tokio::test]
async fn a_connection_given_up_in_the_middle_of_a_write_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    // An upstream that accepts and never reads: the requests fill the socket's buffers and
    // the pipeline's writer blocks in its write.
    let listener = UnixListener::bind(&path).unwrap();
    let upstream = Upstream::unix(path);
    let fill = "a".repeat(8 * 1024);
    let sends = (0..64).map(|_| {
        let mut request = get(&upstream);
        request
            .headers_mut()
            .insert("x-fill", http::HeaderValue::from_str(&fill).unwrap());
        upstream.send(request, Duration::from_millis(300))
    });
    let (answers, accepted) =
        tokio::join!(futures_util::future::join_all(sends), listener.accept());
    let (held, _) = accepted.unwrap();
    // Each request's deadline is taken when it is first polled: the first past its deadline
    // times out (504), and those written behind it whose deadlines were a moment later go out
    // again on new connections, never read either, and time out there.
    let statuses: Vec<StatusCode> = answers
        .into_iter()
        .map(|answer| answer.unwrap_err().status())
        .collect();
    assert_eq!(statuses[0], StatusCode::GATEWAY_TIMEOUT);
    assert!(
        statuses
            .iter()
            .all(|s| [StatusCode::GATEWAY_TIMEOUT, StatusCode::BAD_GATEWAY].contains(s)),
        "{statuses:?}"
    );
    // Given up: the client closes its end, though the upstream still has not read a byte.
    let closed = async {
        loop {
            let ready = held.ready(tokio::io::Interest::READABLE).await.unwrap();
            if ready.is_read_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(TIMEOUT, closed)
        .await
        .expect("the connection stayed open behind its blocked writer");
}

#[tokio::test]
async fn a_caller_that_stops_waiting_leaves_the_connection_to_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    let canned = Canned::unix(
        &path,
        vec![
            Then::AnswerAfter(Duration::from_millis(300), OK.to_vec()),
            answer(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecond"),
        ],
    );
    let upstream = Upstream::unix(path);
    // Its guest went away: the request's future is dropped before the answer came.
    let gone = tokio::time::timeout(
        Duration::from_millis(50),
        upstream.send(get(&upstream), TIMEOUT),
    )
    .await;
    assert!(gone.is_err(), "answered before the caller left");
    let response = upstream.send(get(&upstream), TIMEOUT).await.unwrap();
    assert_eq!(response.body(), "second");
    assert_eq!(canned.accepted(), 1, "the connection was kept");
}

#[tokio::test]
async fn a_timeout_too_long_for_the_clock_still_gets_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    let _canned = Canned::unix(&path, vec![answer(OK)]);
    let upstream = Upstream::unix(path);
    for upstream in [upstream.clone(), upstream.without_pipelining()] {
        let response = upstream.send(get(&upstream), Duration::MAX).await.unwrap();
        assert_eq!(response.body(), "ok");
    }
}

#[tokio::test]
async fn a_refused_connection_is_503() {
    // A port nothing listens on any more.
    let address = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let upstream = Upstream::parse(&format!("http://{address}")).unwrap();
    let err = upstream.send(get(&upstream), TIMEOUT).await.unwrap_err();
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE, "{err}");

    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::unix(dir.path().join("nothing.sock"));
    let err = upstream.send(get(&upstream), TIMEOUT).await.unwrap_err();
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE, "{err}");
}

/// Answers every request with 200 "ok".
#[derive(Clone)]
struct Ok200;

impl Handler for Ok200 {
    async fn handle(&self, _: Request<RequestBody>, _: Peer) -> Response<Body> {
        Response::new(Full::new(Bytes::from_static(b"ok")))
    }
}

/// The roles' own server on `path`, counting its connections; aborting the returned task
/// closes every connection, as a killed process would.
fn h1_server(path: &Path) -> (Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let accepted = Arc::new(AtomicUsize::new(0));
    let listener = UnixListener::bind(path).unwrap();
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            connections.spawn(crate::http::h1::serve_connection(
                stream,
                Peer::Unix,
                ServerLimits::default(),
                Ok200,
            ));
        }
    });
    (accepted, task)
}

/// Answers each request with its path, after every handler that started meanwhile had its turn.
#[derive(Clone)]
struct PathAnswer;

impl Handler for PathAnswer {
    async fn handle(&self, request: Request<RequestBody>, _: Peer) -> Response<Body> {
        tokio::task::yield_now().await;
        Response::new(Full::new(Bytes::from(request.uri().path().to_owned())))
    }
}

/// The roles' own server answering with each request's path on `path`, counting its
/// connections.
fn path_server(path: &Path) -> Arc<AtomicUsize> {
    let listener = UnixListener::bind(path).unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(crate::http::h1::serve_connection(
                stream,
                Peer::Unix,
                ServerLimits::default(),
                PathAnswer,
            ));
        }
    });
    accepted
}

#[tokio::test]
async fn concurrent_reads_share_one_pipelined_connection_and_each_gets_its_own_answer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    let accepted = path_server(&path);
    let upstream = Upstream::unix(path);
    for round in 0..3 {
        let asked = (0..200).map(|n| {
            let upstream = upstream.clone();
            async move {
                let mut request = get(&upstream);
                *request.uri_mut() = upstream.uri(&format!("/{round}/{n}")).unwrap();
                let response = upstream.send(request, TIMEOUT).await.unwrap();
                (format!("/{round}/{n}"), response.into_body())
            }
        });
        for (path, body) in futures_util::future::join_all(asked).await {
            assert_eq!(body, path.as_bytes());
        }
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one pipelined connection"
    );
}

/// A GET for `path` with `extra` more header lines, the last one padded so that the head as
/// sent (`Host` included) is `bytes` long.
fn get_with_head(
    upstream: &Upstream,
    path: &str,
    extra: usize,
    bytes: usize,
) -> Request<Full<Bytes>> {
    let mut request = get(upstream);
    *request.uri_mut() = upstream.uri(path).unwrap();
    let headers = request.headers_mut();
    headers.insert(header::HOST, upstream.host.clone());
    for n in 0..extra {
        headers.insert(
            http::HeaderName::try_from(format!("x-h{n}")).unwrap(),
            HeaderValue::from_static("v"),
        );
    }
    let size = |headers: &http::HeaderMap| {
        crate::http::h1::request_head_size(&Method::GET, path, headers, 0).bytes
    };
    let pad = bytes.checked_sub(size(headers)).expect("room to pad");
    let last = http::HeaderName::try_from(format!("x-h{}", extra - 1)).unwrap();
    headers.insert(last, HeaderValue::from_str(&"v".repeat(1 + pad)).unwrap());
    assert_eq!(size(headers), bytes);
    request
}

/// A head the roles' listeners would refuse never goes out: its caller gets 431 and the
/// pipelined connection, shared with the requests of other guests, stays up. A head exactly
/// at the limits goes out and is answered.
#[tokio::test]
async fn a_head_over_the_listeners_limits_is_431_and_never_sent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let accepted = path_server(&path);
    let upstream = Upstream::unix(path);
    let lines = MAX_HEADERS - 1; // and Host
    let asked = (0..300).map(|n| {
        let upstream = upstream.clone();
        async move {
            let path = format!("/{n}");
            let request = match n % 3 {
                0 => get_with_head(&upstream, &path, lines, MAX_HEADER_BYTES),
                1 if n % 2 == 0 => get_with_head(&upstream, &path, lines + 1, 2_000),
                1 => get_with_head(&upstream, &path, lines, MAX_HEADER_BYTES + 1),
                _ => get_with_head(&upstream, &path, 1, 200),
            };
            (n, path, upstream.send(request, TIMEOUT).await)
        }
    });
    for (n, path, answered) in futures_util::future::join_all(asked).await {
        match answered {
            Ok(response) => {
                assert_ne!(n % 3, 1, "{path} was sent");
                assert_eq!(response.into_body(), path.as_bytes());
            }
            Err(err) => {
                assert_eq!(n % 3, 1, "{path}: {err}");
                assert_eq!(err.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
                assert_eq!(err.rejection(), Rejection::HeadTooLarge);
                assert!(
                    err.to_string().contains("send fewer or shorter headers"),
                    "{err}"
                );
            }
        }
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one pipelined connection, never closed"
    );
}

#[tokio::test]
async fn without_pipelining_no_request_is_written_before_the_answer_to_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let (accepted, pipelined) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (count, seen) = (accepted.clone(), pipelined.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    // Anything past the first head, now or a moment later, is a pipelined
                    // request.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    if buffer.len() > end + 4 || stream.try_read(&mut chunk).is_ok_and(|n| n > 0) {
                        seen.fetch_add(1, Ordering::SeqCst);
                    }
                    buffer.clear();
                    if stream.write_all(OK).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let upstream = Upstream::unix(path).without_pipelining();
    let asked = (0..50).map(|_| {
        let upstream = upstream.clone();
        async move { upstream.send(get(&upstream), TIMEOUT).await.unwrap() }
    });
    for response in futures_util::future::join_all(asked).await {
        assert_eq!(response.body(), "ok");
    }
    assert_eq!(pipelined.load(Ordering::SeqCst), 0, "no pipelined request");
    assert!(
        accepted.load(Ordering::SeqCst) > 1,
        "concurrent reads on connections of their own"
    );
}

#[tokio::test]
async fn reuses_one_connection_and_survives_a_restart_of_the_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let upstream = Upstream::unix(path.clone());
    let (accepted, server) = h1_server(&path);
    for _ in 0..20 {
        let response = upstream.send(get(&upstream), TIMEOUT).await.unwrap();
        assert_eq!(response.body(), "ok");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one pooled connection");

    // The upstream goes away and comes back: the pooled connection is dead; the next
    // request goes out on a new one.
    server.abort();
    let _ = server.await;
    std::fs::remove_file(&path).unwrap();
    let err = {
        // Nothing listens now: a fresh connection is refused (503), not a hang.
        let lonely = Upstream::unix(path.clone());
        lonely.send(get(&lonely), TIMEOUT).await.unwrap_err()
    };
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE, "{err}");
    let (again, _server) = h1_server(&path);
    let response = upstream.send(get(&upstream), TIMEOUT).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(again.load(Ordering::SeqCst), 1);
}
