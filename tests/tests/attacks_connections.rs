//! One guest holding thousands of connections open (slowloris) against the namespace proxy,
//! reopening each as the proxy closes it: the proxy lets that guest hold only a few
//! (`--max-connections-per-guest`, default `MAX_CONNECTIONS_PER_GUEST`) and closes the rest at
//! once, so every other guest behind the same router is answered within a second throughout,
//! the refusals are counted in /metrics, and the proxy's memory comes back afterwards.

mod attack_support;

use std::io::{ErrorKind, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use attack_support::{guest_ip, world};
use metaboot_proto::METADATA_IPV4;
use metaboot_server::http::limits::MAX_CONNECTIONS_PER_GUEST;
use metaboot_tests::chain::Scope;
use metaboot_tests::guest;
use metaboot_tests::load::{self, Answer};

const META_DATA: &str = "/openstack/latest/meta_data.json";
/// Connections the attacking guest keeps open (the proxy's whole default `--max-connections`).
const ATTACK_CONNECTIONS: usize = 4096;
/// The proxy's head timeout here: the connections it let in time out and are reopened.
const HEADER_TIMEOUT_SECS: &str = "2";
/// How long the attack lasts (several head timeouts).
const ATTACK: Duration = Duration::from_secs(8);
/// Pause between two rounds of reopening closed connections.
const REOPEN_PAUSE: Duration = Duration::from_millis(50);
/// Every other guest is answered within this, throughout the attack.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);
/// Pause between two requests of a neighbour.
const PROBE_PAUSE: Duration = Duration::from_millis(100);
/// The client gives up after this (a hang shows as a slow answer, not a stuck test).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// After the attack, the proxy's resident memory is back within this factor of its idle figure.
const RSS_FACTOR: u64 = 2;
/// Time the proxy has to give its memory back once the attacker is gone.
const RSS_SETTLE: Duration = Duration::from_secs(20);
/// How long after hanging up the attacker waits for its connection slots to be free again.
const SLOTS_FREED_WITHIN: Duration = Duration::from_secs(10);
/// File descriptors the test needs: the attack plus the chain's and the probes'.
const FDS_NEEDED: u64 = ATTACK_CONNECTIONS as u64 + 1024;

/// Resident memory of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS for {pid}"))
}

/// Raises this process's open-file limit to what the attack needs (the proxy inherits it).
fn raise_open_files() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        hard >= FDS_NEEDED,
        "the test needs {FDS_NEEDED} open files; the hard limit is {hard} (raise it: ulimit -Hn)"
    );
    if soft < FDS_NEEDED {
        setrlimit(Resource::RLIMIT_NOFILE, FDS_NEEDED, hard).unwrap();
    }
}

/// A connection that sent half a request head and waits.
fn open_slow(from: IpAddr, to: SocketAddr) -> Option<TcpStream> {
    let mut stream = guest::connect(Some(from), to).ok()?;
    stream.set_nonblocking(true).ok()?;
    // The proxy may already have closed it: it is reopened next round.
    let _ = stream.write(format!("GET / HTTP/1.1\r\nHost: {METADATA_IPV4}\r\n").as_bytes());
    Some(stream)
}

/// Still open: nothing to read and no end of stream.
fn is_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.peek(&mut byte), Err(err) if err.kind() == ErrorKind::WouldBlock)
}

/// Keeps `ATTACK_CONNECTIONS` slowloris connections from `from` until `stop`, reopening every
/// one the proxy closed; returns how many it opened in all.
fn attack(from: IpAddr, to: SocketAddr, stop: &AtomicBool) -> usize {
    let mut held: Vec<Option<TcpStream>> = (0..ATTACK_CONNECTIONS).map(|_| None).collect();
    let mut opened = 0;
    while !stop.load(Ordering::Relaxed) {
        for slot in &mut held {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if slot.as_ref().is_some_and(is_open) {
                continue;
            }
            *slot = open_slow(from, to);
            opened += usize::from(slot.is_some());
        }
        std::thread::sleep(REOPEN_PAUSE);
    }
    opened
}

#[test]
fn one_guest_holding_4096_connections_starves_no_neighbour() {
    raise_open_files();
    let mut w = world();
    let metrics = SocketAddr::from(([127, 0, 0, 1], metaboot_tests::chain::free_port()));
    let proxy = w
        .chain
        .start_proxy(
            &Scope::Router(w.router_a_id.clone()),
            &[
                "--header-timeout",
                HEADER_TIMEOUT_SECS,
                "--body-timeout",
                HEADER_TIMEOUT_SECS,
                "--metrics-listen",
                &metrics.to_string(),
            ],
        )
        .unwrap();
    let (_, pid) = w.chain.pids().pop().unwrap();
    let neighbour = w.charlie.ip();
    // A guest address no instance has: its answer is a 404, as quickly.
    let stranger = guest_ip(99);
    for _ in 0..20 {
        assert_eq!(
            load::request(neighbour, proxy, META_DATA, CLIENT_TIMEOUT),
            Answer::Status(200)
        );
    }
    let idle = rss_kib(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let attacker = {
        let (stop, from) = (stop.clone(), w.alpha.ip());
        std::thread::spawn(move || attack(from, proxy, &stop))
    };
    let started = Instant::now();
    let (mut answered, mut slowest) = (0, Duration::ZERO);
    while started.elapsed() < ATTACK {
        for (from, want) in [(neighbour, 200), (stranger, 404)] {
            let (answer, took) =
                load::request_with_body(from, proxy, "GET", META_DATA, b"", CLIENT_TIMEOUT);
            assert_eq!(
                answer,
                Answer::Status(want),
                "{from} at {:?} into the attack",
                started.elapsed()
            );
            assert!(
                took < ANSWER_WITHIN,
                "{from} waited {took:?} at {:?} into the attack",
                started.elapsed()
            );
            answered += 1;
            slowest = slowest.max(took);
        }
        std::thread::sleep(PROBE_PAUSE);
    }
    stop.store(true, Ordering::Relaxed);
    let opened = attacker.join().unwrap();
    assert!(
        opened > 2 * ATTACK_CONNECTIONS,
        "the attack opened only {opened} connections"
    );
    assert!(answered > 20, "only {answered} neighbour requests");
    eprintln!(
        "attack: {opened} connections opened; neighbours: {answered} answers, slowest {slowest:?}; \
         proxy idle {idle} KiB, now {} KiB",
        rss_kib(pid)
    );

    // The refusals are counted, with their reason.
    let text = guest::get(None, metrics, "/metrics", &[]).unwrap().text();
    let refused: u64 = text
        .lines()
        .find_map(|line| {
            line.strip_prefix(
                "metaboot_rejections_total{role=\"proxy\",reason=\"guest_connection_cap\"} ",
            )
        })
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no guest_connection_cap count:\n{text}"));
    assert!(
        refused as usize >= opened - ATTACK_CONNECTIONS,
        "{refused} refused of {opened} opened (at most {MAX_CONNECTIONS_PER_GUEST} held)"
    );

    // The attacker's connections are gone: the memory comes back.
    let deadline = Instant::now() + RSS_SETTLE;
    loop {
        let now = rss_kib(pid);
        if now <= RSS_FACTOR * idle {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the proxy holds {now} KiB, idle it held {idle} KiB"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Its slots free up as the proxy sees each closed connection: on a loaded machine that
    // takes a moment after the attacker hung up, so a well-behaved request is retried until
    // then, as a guest's own retry would.
    let deadline = Instant::now() + SLOTS_FREED_WITHIN;
    loop {
        let answer = load::request(w.alpha.ip(), proxy, META_DATA, CLIENT_TIMEOUT);
        if answer == Answer::Status(200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the attacker, now well-behaved, is not served again: {answer:?}"
        );
        std::thread::sleep(PROBE_PAUSE);
    }
}
