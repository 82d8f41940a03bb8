//! A load on the chain: one thread per guest address, each sending GETs through a proxy back
//! to back, one connection per request (as cloud-init does), each bounded by a client
//! timeout. Fault tests keep every outcome with its timing; the soak only counts.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::guest;
use metaboot_proto::METADATA_IPV4;

/// Pause between two requests of one guest (keeps a few guests from saturating 2 cores).
pub const PAUSE: Duration = Duration::from_millis(5);

/// What one request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP status.
    Status(u16),
    /// No HTTP answer: refused, reset, timed out, unparseable.
    Failed(String),
}

/// One request of the load.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub guest: IpAddr,
    /// When it was sent, since the load started.
    pub sent: Duration,
    /// How long the answer took.
    pub took: Duration,
    pub answer: Answer,
}

/// Live totals, readable while the load runs.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    /// Requests that got anything but 200.
    pub errors: AtomicU64,
}

/// A running load.
pub struct Load {
    started: Instant,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    threads: Vec<JoinHandle<Vec<Outcome>>>,
}

/// One GET from `from` to `to`, bounded by `timeout` (connect, send and the whole answer).
pub fn request(from: IpAddr, to: SocketAddr, path: &str, timeout: Duration) -> Answer {
    request_with_body(from, to, "GET", path, b"", timeout).0
}

/// Any method with a body, bounded by `timeout`; the answer and how long it took.
pub fn request_with_body(
    from: IpAddr,
    to: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> (Answer, Duration) {
    let started = Instant::now();
    let attempt = || -> std::io::Result<u16> {
        let mut stream = guest::connect(Some(from), to)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut raw = format!(
            "{method} {path} HTTP/1.1\r\nHost: {METADATA_IPV4}\r\nConnection: close\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(body);
        stream.write_all(&raw)?;
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes)?;
        Ok(guest::parse(&bytes)?.status)
    };
    let answer = match attempt() {
        Ok(status) => Answer::Status(status),
        Err(err) => Answer::Failed(err.to_string()),
    };
    (answer, started.elapsed())
}

impl Load {
    /// Starts one thread per guest, each GETting `path` through `proxy` until stopped.
    /// `record` keeps every outcome (fault tests); without it only the counters move (soak).
    pub fn start(
        proxy: SocketAddr,
        guests: &[IpAddr],
        path: &str,
        timeout: Duration,
        record: bool,
    ) -> Self {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let threads = guests
            .iter()
            .map(|&guest| {
                let (stop, counters, path) = (stop.clone(), counters.clone(), path.to_owned());
                std::thread::spawn(move || {
                    let mut outcomes = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let sent = started.elapsed();
                        let answer = request(guest, proxy, &path, timeout);
                        let took = started.elapsed() - sent;
                        counters.requests.fetch_add(1, Ordering::Relaxed);
                        if answer != Answer::Status(200) {
                            counters.errors.fetch_add(1, Ordering::Relaxed);
                        }
                        if record {
                            outcomes.push(Outcome {
                                guest,
                                sent,
                                took,
                                answer,
                            });
                        }
                        std::thread::sleep(PAUSE);
                    }
                    outcomes
                })
            })
            .collect();
        Self {
            started,
            stop,
            counters,
            threads,
        }
    }

    /// Time since the load started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The live totals.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Stops every thread and returns the recorded outcomes, oldest first.
    pub fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all: Vec<Outcome> = self
            .threads
            .into_iter()
            .flat_map(|thread| thread.join().unwrap_or_default())
            .collect();
        all.sort_by_key(|outcome| outcome.sent);
        all
    }
}
