//! The boot storm's load generator: many guests at once, each from its own 127.x.y.z source
//! address (so each is a different port in the registry), each making cloud-init's first-boot
//! requests in order, each request on a new connection.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use metaboot_proto::METADATA_IPV4;
use serde::Serialize;
use socket2::{Domain, Socket, Type};

use crate::measure::quantile;

/// The requests of one first boot (docs/protocol.md §4.3), in order: discovery and the version
/// list, the five OpenStack documents of the version cloud-init picks, then the EC2 listing and the
/// leaves of it cloud-init uses (instance id, host names, address, zone, key, block devices).
pub const FIRST_BOOT: [&str; 16] = [
    "/openstack",
    "/openstack",
    "/openstack/2018-08-27/meta_data.json",
    "/openstack/2018-08-27/user_data",
    "/openstack/2018-08-27/vendor_data.json",
    "/openstack/2018-08-27/vendor_data2.json",
    "/openstack/2018-08-27/network_data.json",
    "/latest/meta-data/",
    "/latest/meta-data/block-device-mapping/",
    "/latest/meta-data/block-device-mapping/root",
    "/latest/meta-data/hostname",
    "/latest/meta-data/instance-id",
    "/latest/meta-data/local-hostname",
    "/latest/meta-data/local-ipv4",
    "/latest/meta-data/placement/availability-zone",
    "/latest/meta-data/public-keys/0/openssh-key",
];

/// Guests booting at once.
pub const GUESTS: usize = 1_000;
/// cloud-init's per-request timeout (`timeout: 10`, docs/protocol.md §4.4).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read per request (the bench's documents are a few KiB).
pub const MAX_RESPONSE_BYTES: u64 = 1024 * 1024;
/// Stack of each guest thread: a guest only formats a request and reads an answer.
pub const GUEST_STACK_BYTES: usize = 128 * 1024;

/// What one storm measured.
#[derive(Debug, Clone, Serialize)]
pub struct StormResult {
    /// From the release of all guests to the last guest's last answer.
    pub total: Duration,
    /// Requests made.
    pub requests: usize,
    /// Requests that failed (I/O error, timeout, or a status other than 200).
    pub errors: usize,
    /// Median request latency (connect to last byte), µs. A failed request counts as
    /// [`REQUEST_TIMEOUT`] here and in every latency below but the connect part's: cloud-init
    /// waits that long before it tries again, and a storm whose slow requests fail must not
    /// look faster than one whose slow requests succeed.
    pub p50_us: f64,
    /// 90th percentile request latency, µs.
    pub p90_us: f64,
    /// 99th percentile request latency, µs.
    pub p99_us: f64,
    /// 99th percentile of the connect part alone, µs (a dropped SYN costs a 1 s retransmit);
    /// of the requests that succeeded.
    pub connect_p99_us: f64,
    /// Requests that took a second or more.
    pub over_one_second: usize,
    /// Of those, how many at each step of [`FIRST_BOOT`] (where the stragglers are).
    pub over_one_second_by_step: Vec<usize>,
    /// Median latency of each step of [`FIRST_BOOT`], µs.
    pub p50_us_by_step: Vec<f64>,
    /// 99th percentile latency of each step of [`FIRST_BOOT`], µs.
    pub p99_us_by_step: Vec<f64>,
    /// Slowest request, µs.
    pub max_us: f64,
    /// The first error, for the report.
    pub first_error: Option<String>,
}

impl StormResult {
    /// p50 of a guest's first request, µs.
    pub fn first_p50_us(&self) -> f64 {
        self.p50_us_by_step.first().copied().unwrap_or(f64::NAN)
    }

    /// Median of the p50s of a guest's later requests, µs.
    pub fn later_p50_us(&self) -> f64 {
        let later: Vec<f64> = self.p50_us_by_step.iter().skip(1).copied().collect();
        quantile(&later, 0.5).unwrap_or(f64::NAN)
    }

    /// "N ≥ 1 s", and when N > 0 at which steps of [`FIRST_BOOT`] (1-based), for people.
    pub fn stragglers(&self) -> String {
        let steps: Vec<String> = self
            .over_one_second_by_step
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(step, n)| format!("#{}:{n}", step + 1))
            .collect();
        if steps.is_empty() {
            format!("{} ≥ 1 s", self.over_one_second)
        } else {
            format!("{} ≥ 1 s at {}", self.over_one_second, steps.join(" "))
        }
    }
}

/// Why one request of a guest failed.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// Which request of [`FIRST_BOOT`] it was.
    step: usize,
    /// What went wrong.
    why: String,
}

/// What one request of a guest came to.
pub(crate) type Outcome = Result<Timing, Failure>;

/// How long one request took: to connected, and to the last byte.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    connect: Duration,
    total: Duration,
    /// Which request of [`FIRST_BOOT`] it was.
    step: usize,
}

/// One request from `source`: connect, send, read to the end; the time it took, or why it
/// failed.
fn fetch(source: Ipv4Addr, target: SocketAddr, path: &str) -> Result<(Timing, Vec<u8>), String> {
    let started = Instant::now();
    let socket =
        Socket::new(Domain::IPV4, Type::STREAM, None).map_err(|e| format!("socket: {e}"))?;
    socket
        .bind(&SocketAddr::from((source, 0)).into())
        .map_err(|e| format!("bind {source}: {e}"))?;
    socket
        .connect_timeout(&target.into(), REQUEST_TIMEOUT)
        .map_err(|e| format!("connect {target} from {source}: {e}"))?;
    let connect = started.elapsed();
    let mut stream: TcpStream = socket.into();
    let io = |e: std::io::Error| format!("{path} from {source}: {e}");
    stream.set_read_timeout(Some(REQUEST_TIMEOUT)).map_err(io)?;
    stream
        .set_write_timeout(Some(REQUEST_TIMEOUT))
        .map_err(io)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {METADATA_IPV4}\r\nUser-Agent: Cloud-Init/22.4.2\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut answer = Vec::new();
    stream
        .take(MAX_RESPONSE_BYTES)
        .read_to_end(&mut answer)
        .map_err(io)?;
    let elapsed = started.elapsed();
    let status_line = answer
        .split(|b| *b == b'\n')
        .next()
        .map(|line| String::from_utf8_lossy(line).trim().to_owned())
        .unwrap_or_default();
    if status_line.starts_with("HTTP/1.1 200 ") || status_line.starts_with("HTTP/1.0 200 ") {
        let body = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or_else(Vec::new, |end| answer[end + 4..].to_vec());
        Ok((
            Timing {
                connect,
                total: elapsed,
                step: 0,
            },
            body,
        ))
    } else if status_line.is_empty() {
        Err(format!(
            "{path} from {source}: connection closed without an answer"
        ))
    } else {
        Err(format!("{path} from {source}: {status_line}"))
    }
}

/// One GET of `path` from `source`: the body of a 200, or what went wrong (another status
/// included).
pub(crate) fn get(source: Ipv4Addr, target: SocketAddr, path: &str) -> Result<Vec<u8>, String> {
    fetch(source, target, path).map(|(_, body)| body)
}

/// One guest's first boot: every request of [`FIRST_BOOT`], in order.
fn boot(source: Ipv4Addr, target: SocketAddr) -> Vec<Outcome> {
    FIRST_BOOT
        .iter()
        .enumerate()
        .map(|(step, path)| match fetch(source, target, path) {
            Ok((timing, _)) => Ok(Timing { step, ..timing }),
            Err(why) => Err(Failure { step, why }),
        })
        .collect()
}

/// Runs `work` on a thread inside `netns` (when given); the caller's threads stay where they
/// are, and threads `work` starts inherit the namespace.
pub(crate) fn in_netns<T: Send + 'static>(
    netns: Option<&Path>,
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let file = netns
        .map(|path| {
            std::fs::File::open(path).with_context(|| format!("failed to open {}", path.display()))
        })
        .transpose()?;
    thread::spawn(move || {
        if let Some(file) = &file {
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
                .context("failed to enter the load's network namespace")?;
        }
        work()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("a load thread panicked"))?
}

/// The bodies of the first-boot documents as guest `source` gets them, one per distinct path
/// in [`FIRST_BOOT`] order (for a static baseline serving the same bytes).
pub fn documents(
    target: SocketAddr,
    netns: Option<&Path>,
    source: Ipv4Addr,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    in_netns(netns, move || {
        let mut docs: Vec<(String, Vec<u8>)> = Vec::new();
        for path in FIRST_BOOT {
            if docs.iter().any(|(seen, _)| seen == path) {
                continue;
            }
            let (_, body) = fetch(source, target, path).map_err(|e| anyhow::anyhow!(e))?;
            docs.push((path.to_owned(), body));
        }
        Ok(docs)
    })
}

/// Boots `guests` at once against `target` (from inside `netns` when given) and sums up.
pub fn run(
    target: SocketAddr,
    netns: Option<&Path>,
    guests: &[Ipv4Addr],
) -> anyhow::Result<StormResult> {
    let guests = guests.to_vec();
    // The guest threads the coordinator starts inherit its namespace.
    let (total, outcomes) = in_netns(
        netns,
        move || -> anyhow::Result<(Duration, Vec<Outcome>)> {
            // Guests wait on the gate until every one of them exists, then start together.
            let gate = Arc::new(RwLock::new(()));
            let closed = gate.write().unwrap_or_else(|p| p.into_inner());
            let mut handles = Vec::with_capacity(guests.len());
            let mut spawn_error = None;
            for source in guests {
                let gate = Arc::clone(&gate);
                let spawned = thread::Builder::new()
                    .name(format!("guest-{source}"))
                    .stack_size(GUEST_STACK_BYTES)
                    .spawn(move || {
                        drop(gate.read().unwrap_or_else(|p| p.into_inner()));
                        boot(source, target)
                    });
                match spawned {
                    Ok(handle) => handles.push(handle),
                    Err(err) => {
                        spawn_error = Some(err);
                        break;
                    }
                }
            }
            let started = Instant::now();
            drop(closed);
            let mut outcomes = Vec::with_capacity(handles.len() * FIRST_BOOT.len());
            for handle in handles {
                match handle.join() {
                    Ok(results) => outcomes.extend(results),
                    // Its whole first boot failed.
                    Err(_) => outcomes.extend((0..FIRST_BOOT.len()).map(|step| {
                        Err(Failure {
                            step,
                            why: "a guest thread panicked".to_owned(),
                        })
                    })),
                }
            }
            let total = started.elapsed();
            if let Some(err) = spawn_error {
                bail!("failed to start a guest thread: {err}");
            }
            Ok((total, outcomes))
        },
    )?;
    Ok(summarise(total, &outcomes))
}

/// The `q` quantile of each step's latencies, µs.
fn by_step(timings: &[Timing], q: f64) -> Vec<f64> {
    (0..FIRST_BOOT.len())
        .map(|step| {
            let values: Vec<f64> = timings
                .iter()
                .filter(|t| t.step == step)
                .map(|t| t.total.as_secs_f64() * 1e6)
                .collect();
            quantile(&values, q).unwrap_or(f64::NAN)
        })
        .collect()
}

/// One request's outcome at `step` of [`FIRST_BOOT`] that took `took`, or failed (for tests of
/// the sums elsewhere).
#[cfg(test)]
pub(crate) fn outcome(step: usize, took: Duration, failed: bool) -> Outcome {
    if failed {
        Err(Failure {
            step,
            why: format!("{} failed", FIRST_BOOT[step]),
        })
    } else {
        Ok(Timing {
            connect: took / 10,
            total: took,
            step,
        })
    }
}

/// Sums up a storm that took `total`; a failed request counts as [`REQUEST_TIMEOUT`] in the
/// latencies (see [`StormResult::p50_us`]).
pub(crate) fn summarise(total: Duration, outcomes: &[Outcome]) -> StormResult {
    let timings: Vec<Timing> = outcomes
        .iter()
        .map(|outcome| match outcome {
            Ok(timing) => *timing,
            Err(failure) => Timing {
                connect: REQUEST_TIMEOUT,
                total: REQUEST_TIMEOUT,
                step: failure.step,
            },
        })
        .collect();
    let latencies: Vec<f64> = timings
        .iter()
        .map(|t| t.total.as_secs_f64() * 1e6)
        .collect();
    let connects: Vec<f64> = outcomes
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|t| t.connect.as_secs_f64() * 1e6)
        .collect();
    let errors: Vec<&String> = outcomes
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|failure| &failure.why)
        .collect();
    StormResult {
        total,
        requests: outcomes.len(),
        errors: errors.len(),
        p50_us: quantile(&latencies, 0.5).unwrap_or(f64::NAN),
        p90_us: quantile(&latencies, 0.9).unwrap_or(f64::NAN),
        p99_us: quantile(&latencies, 0.99).unwrap_or(f64::NAN),
        connect_p99_us: quantile(&connects, 0.99).unwrap_or(f64::NAN),
        over_one_second: timings
            .iter()
            .filter(|t| t.total >= Duration::from_secs(1))
            .count(),
        p50_us_by_step: by_step(&timings, 0.5),
        p99_us_by_step: by_step(&timings, 0.99),
        over_one_second_by_step: (0..FIRST_BOOT.len())
            .map(|step| {
                timings
                    .iter()
                    .filter(|t| t.step == step && t.total >= Duration::from_secs(1))
                    .count()
            })
            .collect(),
        max_us: quantile(&latencies, 1.0).unwrap_or(f64::NAN),
        first_error: errors.first().map(|e| (*e).clone()),
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    /// A server that answers every request with `status` and records the peers it saw.
    fn serve(
        status: &'static str,
        requests: usize,
    ) -> (SocketAddr, thread::JoinHandle<Vec<Ipv4Addr>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = thread::spawn(move || {
            let mut peers = Vec::new();
            for _ in 0..requests {
                let (mut stream, peer) = listener.accept().unwrap();
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = stream.read(&mut buf).unwrap();
                    assert!(n > 0);
                    seen.extend_from_slice(&buf[..n]);
                }
                let text = String::from_utf8_lossy(&seen);
                assert!(text.contains("Connection: close"), "{text}");
                stream
                    .write_all(
                        format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\nok").as_bytes(),
                    )
                    .unwrap();
                if let std::net::IpAddr::V4(ip) = peer.ip() {
                    peers.push(ip);
                }
            }
            peers
        });
        (addr, handle)
    }

    #[test]
    fn every_guest_makes_the_whole_sequence_from_its_own_address() {
        let guests: Vec<Ipv4Addr> = (1..=3).map(|n| Ipv4Addr::new(127, 1, 0, n)).collect();
        let (addr, server) = serve("200 OK", guests.len() * FIRST_BOOT.len());
        let result = run(addr, None, &guests).unwrap();
        assert_eq!(result.requests, 48);
        assert_eq!(result.errors, 0, "{:?}", result.first_error);
        assert!(result.p50_us > 0.0 && result.p99_us >= result.p50_us);
        let peers = server.join().unwrap();
        for guest in &guests {
            assert_eq!(
                peers.iter().filter(|p| *p == guest).count(),
                FIRST_BOOT.len()
            );
        }
    }

    #[test]
    fn answers_other_than_200_are_errors() {
        let guests = [Ipv4Addr::new(127, 1, 0, 9)];
        let (addr, server) = serve("404 Not Found", FIRST_BOOT.len());
        let result = run(addr, None, &guests).unwrap();
        assert_eq!(result.errors, FIRST_BOOT.len());
        assert!(result.first_error.unwrap().contains("404"));
        server.join().unwrap();
    }

    #[test]
    fn a_refused_connection_is_an_error_not_a_hang() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let result = run(port, None, &[Ipv4Addr::new(127, 1, 0, 10)]).unwrap();
        assert_eq!(result.errors, FIRST_BOOT.len());
    }

    /// A storm in which 2 % of the requests fail: they count as the timeout in the latencies,
    /// where leaving them out would show only the fast ones.
    #[test]
    fn a_failed_request_counts_as_the_timeout() {
        let outcomes: Vec<Outcome> = (0..100)
            .map(|i| {
                let step = i % FIRST_BOOT.len();
                if i < 2 {
                    Err(Failure {
                        step,
                        why: "connection closed without an answer".to_owned(),
                    })
                } else {
                    Ok(Timing {
                        connect: Duration::from_micros(50),
                        total: Duration::from_millis(2),
                        step,
                    })
                }
            })
            .collect();
        let result = summarise(Duration::from_secs(1), &outcomes);
        assert_eq!((result.requests, result.errors), (100, 2));
        let timeout_us = REQUEST_TIMEOUT.as_secs_f64() * 1e6;
        assert_eq!(result.p50_us, 2_000.0);
        assert_eq!(result.p99_us, timeout_us);
        assert_eq!(result.max_us, timeout_us);
        assert_eq!(result.over_one_second, 2);
        assert_eq!(result.over_one_second_by_step[..2], [1, 1]);
        assert_eq!(result.p99_us_by_step[0], timeout_us);
        assert_eq!(
            result.connect_p99_us, 50.0,
            "of the requests that connected"
        );
        assert!(result.first_error.unwrap().contains("without an answer"));
    }

    #[test]
    fn an_answer_is_read_up_to_the_bound_only() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).unwrap();
            let body = vec![b'x'; 2 * MAX_RESPONSE_BYTES as usize];
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
            // The reader stops at the bound and hangs up: a failed write is expected.
            let _ = stream.write_all(&body);
        });
        let (_, body) = fetch(Ipv4Addr::new(127, 1, 0, 11), addr, "/big").unwrap();
        assert!(body.len() < MAX_RESPONSE_BYTES as usize, "{}", body.len());
        assert!(body.len() > MAX_RESPONSE_BYTES as usize / 2);
        server.join().unwrap();
    }
}
