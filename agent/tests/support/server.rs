//! A test-only metadata server: serves a directory tree over HTTP on loopback (a directory
//! answers with its entry names, one per line, like `GET /openstack`), with faults injected per
//! path (an HTTP status, a hang, a dropped connection). The real API cannot be told to fail on
//! demand; this can.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Largest request head read.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// What a request to a faulty path gets instead of its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// This status with an empty body.
    Status(u16),
    /// No answer for this long (then the connection closes).
    Hang(Duration),
    /// The connection closes without an answer.
    Close,
    /// The file's answer, after this long.
    Delay(Duration),
}

#[derive(Default)]
struct Shared {
    faults: Mutex<HashMap<String, VecDeque<Fault>>>,
    hits: Mutex<Vec<String>>,
    /// What happened, in order: a request's path when it arrived (`false`) and when its
    /// answer was about to go out (`true`).
    events: Mutex<Vec<(String, bool)>>,
}

/// The running server; stops when dropped.
pub struct MetadataServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

impl MetadataServer {
    /// Serves `dir` on 127.0.0.1 (a free port).
    pub fn start(dir: &Path) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (dir, state, flag) = (dir.to_owned(), shared.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (dir, state) = (dir.clone(), state.clone());
                std::thread::spawn(move || serve(stream, &dir, &state));
            }
        });
        MetadataServer { addr, shared, stop }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next `times` requests for `path` get `fault`.
    pub fn fail(&self, path: &str, fault: Fault, times: usize) {
        let mut faults = self.shared.faults.lock().unwrap();
        faults
            .entry(path.to_owned())
            .or_default()
            .extend(std::iter::repeat_n(fault, times));
    }

    /// Where in the server's events the first request for `path` arrived, and where its
    /// answer was about to go out (`usize::MAX` for what did not happen).
    pub fn arrived_and_answered(&self, path: &str) -> (usize, usize) {
        let events = self.shared.events.lock().unwrap();
        let at = |answered: bool| {
            events
                .iter()
                .position(|(p, a)| p == path && *a == answered)
                .unwrap_or(usize::MAX)
        };
        (at(false), at(true))
    }

    /// Requests received for `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.shared
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == path)
            .count()
    }
}

impl Drop for MetadataServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

fn respond(stream: &mut TcpStream, status: u16, body: &[u8]) {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Status",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

fn serve(mut stream: TcpStream, dir: &Path, shared: &Shared) {
    let Some(head) = read_head(&mut stream) else {
        return;
    };
    let path = head
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .split('?')
        .next()
        .unwrap_or("/")
        .trim_end_matches('/')
        .to_owned();
    shared.hits.lock().unwrap().push(path.clone());
    shared.events.lock().unwrap().push((path.clone(), false));
    if let Some((status, body)) = answer(dir, shared, &path) {
        // Before the answer goes out: the client cannot have seen it, and so cannot have
        // asked for anything because of it, before this event.
        shared.events.lock().unwrap().push((path, true));
        respond(&mut stream, status, &body);
    }
}

/// The status and body for `path`; `None` for no answer at all.
fn answer(dir: &Path, shared: &Shared, path: &str) -> Option<(u16, Vec<u8>)> {
    let fault = shared
        .faults
        .lock()
        .unwrap()
        .get_mut(path)
        .and_then(VecDeque::pop_front);
    match fault {
        Some(Fault::Status(code)) => return Some((code, Vec::new())),
        Some(Fault::Hang(duration)) => {
            std::thread::sleep(duration);
            return None;
        }
        Some(Fault::Close) => return None,
        Some(Fault::Delay(duration)) => std::thread::sleep(duration),
        None => {}
    }
    let file: PathBuf = dir.join(path.trim_start_matches('/'));
    if path.split('/').any(|part| part == "..") {
        return Some((404, Vec::new()));
    }
    if file.is_dir() {
        let mut names: Vec<String> = std::fs::read_dir(&file)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        Some((200, names.join("\n").into_bytes()))
    } else if let Ok(body) = std::fs::read(&file) {
        Some((200, body))
    } else {
        Some((404, Vec::new()))
    }
}
