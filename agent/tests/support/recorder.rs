//! A loopback HTTP server with one canned response per path (a `404` for any other), which
//! keeps the head of every request it gets: for tests of what the agent sends (its request
//! line, `Host`, `Authorization`).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

/// The running server (its thread ends with the test process).
pub struct Recorder {
    pub addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

/// A response with `status` (`302 Found`), extra header lines (each ending in `\r\n`) and
/// `body`, closing its connection.
pub fn response(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{headers}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

impl Recorder {
    /// Answers a request for each path of `routes` with its response, every time.
    pub fn start(routes: Vec<(String, Vec<u8>)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let kept = heads.clone();
        let routes: HashMap<String, Vec<u8>> = routes.into_iter().collect();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                kept.lock().unwrap().push(head);
                let not_found = response("404 Not Found", "", b"");
                let _ = stream.write_all(routes.get(&path).unwrap_or(&not_found));
            }
        });
        Recorder { addr, heads }
    }

    /// The heads of the requests received so far, in order.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// The value of header `name` in a request head, if it has one.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim())
}
