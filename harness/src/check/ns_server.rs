//! A TCP server the lab runs on a guest network for its checks (the phone-home receiver, the
//! package repository): a thread that enters the network's namespace, listens, and hands each
//! connection to its handler, until the server is dropped; and the one request a handler reads
//! from a connection and the answer it writes (HTTP/1.1, one request per connection).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sched::{CloneFlags, setns};

use crate::lab::netns;

/// How long dropping the server waits for its accept loop to wake.
const WAKE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a guest connection may take for each read of its request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A request a lab server read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// The request target (`/./Packages`, `/<instance id>/`).
    pub target: String,
    /// The body (`Content-Length` bytes, at most the reader's bound).
    pub body: Vec<u8>,
}

/// Reads one request from `stream`: its request line, its headers and a `Content-Length`
/// body of at most `max_body` bytes; `None` when the connection ends or stalls first, or the
/// head is malformed.
pub fn read_request(stream: &TcpStream, max_body: usize) -> Option<Request> {
    stream.set_read_timeout(Some(READ_TIMEOUT)).ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut words = line.split_whitespace();
    let (method, target) = (words.next()?.to_owned(), words.next()?.to_owned());
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0u8; length.min(max_body)];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        target,
        body,
    })
}

/// Answers with `status` (`200 OK`) and `body` (only its length for a HEAD request), and says
/// the connection closes.
pub fn answer(mut stream: &TcpStream, status: &str, body: &[u8], head_only: bool) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    if !head_only {
        let _ = stream.write_all(body);
    }
}

/// A listening server in a namespace; stops when dropped.
pub struct NsServer {
    ns: String,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NsServer {
    /// Listens on `addr` inside namespace `ns` (port 0: a free one, see [`NsServer::addr`]);
    /// `serve` answers each connection, one after the other, on the server's thread. `what`
    /// names the server in errors.
    pub fn start(
        what: &str,
        ns: &str,
        addr: SocketAddr,
        mut serve: impl FnMut(TcpStream) + Send + 'static,
    ) -> anyhow::Result<Self> {
        let path = Path::new(netns::NETNS_DIR).join(ns);
        let file = std::fs::File::open(&path)
            .with_context(|| format!("failed to open {}", path.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (ready, bound) = std::sync::mpsc::channel();
        let (stopping, name) = (stop.clone(), ns.to_owned());
        let thread = std::thread::spawn(move || {
            let listener = setns(&file, CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("failed to enter network namespace {name}"))
                .and_then(|()| {
                    TcpListener::bind(addr)
                        .with_context(|| format!("failed to listen on {addr} in {name}"))
                })
                .and_then(|listener| {
                    let local = listener
                        .local_addr()
                        .context("the listener has no address")?;
                    Ok((listener, local))
                });
            let listener = match listener {
                Ok((listener, local)) => {
                    let _ = ready.send(Ok(local));
                    listener
                }
                Err(err) => {
                    let _ = ready.send(Err(err));
                    return;
                }
            };
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    serve(stream);
                }
            }
        });
        let addr = match bound.recv() {
            Ok(Ok(local)) => local,
            Ok(Err(err)) => return Err(err),
            Err(_) => bail!("the {what}'s thread ended before it listened"),
        };
        Ok(Self {
            ns: ns.to_owned(),
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for NsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag. When that fails (the namespace is gone),
        // the thread is left blocked in accept rather than waited for: it ends with the process.
        let woken = netns::tcp_probe(&self.ns, self.addr, WAKE_TIMEOUT).is_ok();
        if let Some(thread) = self.thread.take()
            && woken
        {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request sent by a client thread, read and answered by `serve` on this one; what the
    /// client got back.
    fn exchange(request: &'static [u8], serve: impl FnOnce(TcpStream)) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.write_all(request).unwrap();
            stream.shutdown(std::net::Shutdown::Write).unwrap();
            let mut got = String::new();
            stream.read_to_string(&mut got).unwrap();
            got
        });
        let (stream, _) = listener.accept().unwrap();
        serve(stream);
        client.join().unwrap()
    }

    #[test]
    fn a_request_with_its_body_is_read_and_answered() {
        let mut read = None;
        let got = exchange(
            b"POST /i-1/ HTTP/1.1\r\nHost: x\r\ncontent-LENGTH: 7\r\n\r\na=1&b=2",
            |stream| {
                read = read_request(&stream, 64);
                answer(&stream, "200 OK", b"done", false);
            },
        );
        assert_eq!(
            read,
            Some(Request {
                method: "POST".into(),
                target: "/i-1/".into(),
                body: b"a=1&b=2".to_vec(),
            })
        );
        assert_eq!(
            got,
            "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndone"
        );
    }

    #[test]
    fn a_body_past_the_bound_is_cut_and_a_head_answer_has_no_body() {
        let mut read = None;
        let got = exchange(
            b"HEAD /Packages HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde",
            |stream| {
                read = read_request(&stream, 2);
                answer(&stream, "200 OK", b"index", true);
            },
        );
        assert_eq!(read.unwrap().body, b"ab");
        assert_eq!(
            got,
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
        );
        // A connection that ends inside the head is no request.
        let got = exchange(b"GET / HTTP/1.1\r\nHost:", |stream| {
            assert_eq!(read_request(&stream, 0), None);
        });
        assert_eq!(got, "");
    }
}
