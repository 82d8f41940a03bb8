//! Malformed and abusive HTTP from a guest, against the namespace proxy (and the API's port):
//! bad request lines, huge heads and bodies, slowloris, pipelining, bytes that are not UTF-8,
//! `..` in every encoding. Each gets a 4xx (or the guest's own data), memory stays bounded, and
//! the chain keeps serving. Also: 50 concurrent password POSTs through the chain, one winner.

mod attack_support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use attack_support::{Instance, World, assert_no_leak, assert_own_or_refused, world};
use metaboot_server::http::limits::{MAX_BODY_BYTES, MAX_HEADER_BYTES, MAX_HEADERS};
use metaboot_tests::chain::Scope;
use metaboot_tests::guest::{self, Reply};

const META_DATA: &str = "/openstack/latest/meta_data.json";
/// The short client timeouts the slowloris proxy runs with (the defaults are 10 s).
const SHORT_TIMEOUT_SECS: &str = "1";
/// What a process may grow by under the whole barrage.
const MAX_RSS_GROWTH_KIB: u64 = 32 * 1024;

/// Sends raw bytes from `me` and reads until the server closes (or the read times out).
fn raw(me: &Instance, to: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = guest::connect(Some(me.ip()), to).unwrap();
    // The server may answer and close before it read everything we send.
    let _ = stream.write_all(bytes);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

/// The status of the first response in `bytes`.
fn status_of(bytes: &[u8]) -> u16 {
    guest::parse(bytes)
        .unwrap_or_else(|err| panic!("no HTTP response: {err}"))
        .status
}

/// Every response in a stream of keep-alive answers (Content-Length framed).
fn responses(mut bytes: &[u8]) -> Vec<Reply> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete head")
            + 4;
        let reply = guest::parse(bytes).unwrap();
        let length = reply
            .header("content-length")
            .map_or(0, |v| v.parse::<usize>().unwrap());
        bytes = &bytes[end + length..];
        out.push(reply);
    }
    out
}

/// Resident memory of a process in KiB (`VmRSS` of /proc/PID/status).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS for {pid}"))
}

fn assert_serving(w: &World) {
    let reply = guest::get(Some(w.alpha.ip()), w.router_a, META_DATA, &[]).unwrap();
    assert_eq!(
        reply.status,
        200,
        "the chain stopped serving: {}",
        reply.text()
    );
    assert_eq!(reply.json()["uuid"], w.alpha.uuid.as_str());
}

/// Requests that are not HTTP, or broken HTTP: each gets a 4xx and the connection closes.
fn malformed() -> Vec<(&'static str, Vec<u8>)> {
    let mut cases: Vec<(&'static str, Vec<u8>)> = vec![
        ("method only", b"GET\r\n\r\n".to_vec()),
        ("no version", b"GET /\r\n\r\n".to_vec()),
        ("unknown version", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n".to_vec()),
        ("spaces", b"GET  /  HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("NUL in method", b"G\0T / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        (
            "TLS hello",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
        ),
        ("binary", (0u8..=255).cycle().take(600).collect()),
        ("bare LF garbage", b"\n\n\n\n\n\n\nxx\n\n".to_vec()),
        (
            "header without colon",
            b"GET / HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n".to_vec(),
        ),
        (
            "negative length",
            b"POST /openstack/latest/password HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"
                .to_vec(),
        ),
        (
            "two lengths",
            b"POST /openstack/latest/password HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
                .to_vec(),
        ),
        (
            "both framings (request smuggling)",
            b"POST /openstack/latest/password HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                .to_vec(),
        ),
        (
            "bad chunk",
            b"POST /openstack/latest/password HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
                .to_vec(),
        ),
        (
            "path not UTF-8",
            b"GET /openstack/\xff\xfe/meta_data.json HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "control character in path",
            b"GET /open\x01stack HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
    ];
    let long_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(MAX_HEADER_BYTES + 1024)
    );
    cases.push(("one huge header", long_header.into_bytes()));
    let mut many = "GET / HTTP/1.1\r\nHost: x\r\n".to_owned();
    for i in 0..MAX_HEADERS + 10 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    cases.push(("too many headers", many.into_bytes()));
    let long_path = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    cases.push(("huge path", long_path.into_bytes()));
    cases
}

#[test]
fn malformed_requests_get_a_4xx_and_the_chain_keeps_serving() {
    let w = world();
    for target in [w.router_a, w.chain.api_addr] {
        for (what, bytes) in malformed() {
            let answer = raw(&w.alpha, target, &bytes);
            assert!(
                !answer.is_empty(),
                "{what} to {target}: closed without an answer"
            );
            let status = status_of(&answer);
            assert!(
                [400, 431].contains(&status),
                "{what} to {target}: {status}: {}",
                String::from_utf8_lossy(&answer)
            );
            assert_serving(&w);
        }
    }
}

/// A head within the limits the proxy takes grows on the way: the proxy adds `X-Forwarded-For`
/// and the router's header, the agent its signed headers and the guest's tokens. The hop that
/// would send it over the next hop's limits answers 431 itself and sends nothing; the
/// connections each hop shares with other guests' requests (the proxy's to the agent, the
/// agent's to the API, across tenants) stay up, and the others, reading all along, get every
/// answer.
#[test]
fn a_head_that_grows_past_the_limits_on_the_way_is_431_and_the_others_are_served() {
    let w = world();
    // Each with `Host` and `Connection: close` (get_raw's): at the proxy's limit of lines, and
    // one the proxy forwards that the agent's headers take past it.
    let at_the_proxy: Vec<String> = (0..MAX_HEADERS - 2).map(|i| format!("X-H{i}: v")).collect();
    let at_the_agent: Vec<String> = (0..MAX_HEADERS - 4)
        .map(|_| "X-Metadata-Token: t".to_owned())
        .collect();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = [
        (w.charlie.clone(), w.router_a),
        (w.bravo.clone(), w.router_b),
    ]
    .into_iter()
    .map(|(me, proxy)| {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut answers = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) || answers == 0 {
                let reply = guest::get(Some(me.ip()), proxy, META_DATA, &[]).unwrap();
                assert_eq!(reply.status, 200, "{}: {}", me.name, reply.text());
                assert_eq!(reply.json()["uuid"], me.uuid.as_str());
                answers += 1;
            }
            answers
        })
    })
    .collect();
    for _ in 0..20 {
        for lines in [&at_the_proxy, &at_the_agent] {
            let reply = attack_support::get_raw(&w.alpha, w.router_a, META_DATA, lines);
            assert_eq!(reply.status, 431, "{}", reply.text());
            assert!(
                reply.text().contains("send fewer or shorter headers"),
                "{}",
                reply.text()
            );
        }
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    for reader in readers {
        assert!(reader.join().expect("every other guest was served") > 0);
    }
}

#[test]
fn the_size_limits_answer_431_and_413() {
    let w = world();
    let me = &w.alpha;
    let huge = format!("X-Big: {}", "a".repeat(MAX_HEADER_BYTES + 1));
    let reply = attack_support::get_raw(me, w.router_a, META_DATA, &[huge]);
    assert_eq!(reply.status, 431);
    let many: Vec<String> = (0..=MAX_HEADERS).map(|i| format!("X-H{i}: v")).collect();
    assert_eq!(
        attack_support::get_raw(me, w.router_a, META_DATA, &many).status,
        431
    );
    // Just under both limits: served.
    let fits: Vec<String> = (0..MAX_HEADERS - 8)
        .map(|i| format!("X-H{i}: {}", "b".repeat(100)))
        .collect();
    assert_eq!(
        attack_support::get_raw(me, w.router_a, META_DATA, &fits).status,
        200
    );
    // A declared body over the limit is refused before it is read.
    let started = Instant::now();
    let answer = raw(
        me,
        w.router_a,
        b"POST /openstack/latest/password HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n",
    );
    assert_eq!(status_of(&answer), 413);
    assert!(started.elapsed() < Duration::from_secs(2));
    // A chunked body that never says its size is cut at the limit.
    let mut chunked = b"POST /openstack/latest/password HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..(MAX_BODY_BYTES / 4096 + 4) {
        chunked.extend_from_slice(b"1000\r\n");
        chunked.extend(std::iter::repeat_n(b'p', 4096));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(status_of(&raw(me, w.router_a, &chunked)), 413);
    // A password over 1020 bytes but under the body limit: the API's own 400.
    let reply = guest::send(
        Some(me.ip()),
        w.router_a,
        "POST",
        "/openstack/latest/password",
        &[],
        &[b'x'; 2000],
    )
    .unwrap();
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_serving(&w);
}

#[test]
fn traversal_and_encoded_paths_stay_inside_the_guests_own_tree() {
    let w = world();
    let me = &w.alpha;
    let others = w.others(me);
    let cases: &[(&str, &[u16])] = &[
        ("/openstack/latest/../../../../etc/passwd", &[404]),
        ("/../../../../etc/shadow", &[404]),
        ("/%2e%2e/%2e%2e/etc/passwd", &[404]),
        ("/%2E%2E%2f%2E%2E%2fetc%2fpasswd", &[404]),
        ("/..%2f..%2f..%2fetc/passwd", &[404]),
        ("/%2e%2e/%2e%2e/openstack/latest/meta_data.json", &[200]),
        ("/openstack/latest/x/%2e%2e/meta_data.json", &[200]),
        ("/openstack//latest///meta_data.json", &[200]),
        ("/openstack/latest/meta_data.json/..", &[200]),
        ("/openstack/latest/meta_data.json%00.txt", &[400]),
        ("/openstack/%ff%fe/meta_data.json", &[400]),
        ("/openstack/latest/%c0%ae%c0%ae/meta_data.json", &[400]),
        (
            "/openstack/latest/meta_data.json?x=../../etc/passwd",
            &[200],
        ),
        (
            "/latest/meta-data/hostname/..%2f..%2f..%2fuser-data",
            &[404],
        ),
        ("/latest/meta-data/hostname/../../../..", &[200]),
    ];
    for (path, allowed) in cases {
        let reply = guest::get(Some(me.ip()), w.router_a, path, &[]).unwrap();
        assert!(
            allowed.contains(&reply.status),
            "{path}: {} {}",
            reply.status,
            reply.text()
        );
        assert_no_leak(&reply, &others, path);
        let text = reply.text();
        assert!(
            !text.contains("root:") && !text.contains("/bin/"),
            "{path} served a host file: {text}"
        );
        if path.contains("meta_data.json") && reply.status == 200 && !path.ends_with("..") {
            assert_own_or_refused(&reply, me, &others, path);
        }
    }
    let long = format!("/{}", "a/".repeat(3000));
    let reply = guest::get(Some(me.ip()), w.router_a, &long, &[]).unwrap();
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_serving(&w);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let w = world();
    let me = &w.alpha;
    let mut batch = Vec::new();
    let paths = [
        META_DATA,
        "/latest/meta-data/hostname",
        "/openstack/latest/user_data",
        "/nothing/here",
        META_DATA,
    ];
    for (i, path) in paths.iter().enumerate() {
        let close = if i + 1 == paths.len() {
            "Connection: close\r\n"
        } else {
            ""
        };
        batch
            .extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{close}\r\n").as_bytes());
    }
    let answers = responses(&raw(me, w.router_a, &batch));
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 200, 404, 200]);
    assert_eq!(answers[1].text(), "alpha.novalocal");
    assert!(answers[2].text().contains(&me.marker));
    assert_eq!(answers[4].json()["uuid"], me.uuid.as_str());
    // A broken request in the middle ends the connection after the answers before it.
    let mut broken = format!("GET {META_DATA} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes();
    broken.extend_from_slice(b"GARBAGE\r\n\r\n");
    broken.extend_from_slice(format!("GET {META_DATA} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    let bytes = raw(me, w.router_a, &broken);
    let first = guest::parse(&bytes).unwrap();
    assert_eq!(first.status, 200);
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 1, "{text}");
    assert_serving(&w);
}

/// Connections one guest may hold on the proxies of the tests below, which play many
/// connections from one guest on purpose: past the default cap they would be closed at the
/// door (see attacks_connections.rs) before the limit under test is reached.
const MANY_PER_GUEST: &str = "1000";

/// A proxy of tenant A with 1 s client timeouts (head, body, taking an answer).
fn impatient_proxy(w: &mut World) -> SocketAddr {
    w.chain
        .start_proxy(
            &Scope::Router(w.router_a_id.clone()),
            &[
                "--header-timeout",
                SHORT_TIMEOUT_SECS,
                "--body-timeout",
                SHORT_TIMEOUT_SECS,
                "--write-timeout",
                SHORT_TIMEOUT_SECS,
                "--max-connections-per-guest",
                MANY_PER_GUEST,
            ],
        )
        .unwrap()
}

/// Reads until the server closes; the time that took.
fn time_to_close(stream: &mut TcpStream, limit: Duration) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    match stream.read_to_end(&mut out) {
        Ok(_) => {}
        Err(err) if err.kind() == ErrorKind::ConnectionReset => {}
        Err(err) => panic!("the server did not close within {limit:?}: {err}"),
    }
    (started.elapsed(), out)
}

#[test]
fn slowloris_heads_and_bodies_are_cut_off_while_others_are_served() {
    let mut w = world();
    let proxy = impatient_proxy(&mut w);
    let me = w.alpha.clone();
    // 200 connections that never finish their head.
    let mut idle: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = guest::connect(Some(me.ip()), proxy).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect();
    // A head dribbled one byte at a time, slower than the timeout allows in total.
    let mut dribble = guest::connect(Some(me.ip()), proxy).unwrap();
    let dribbled = std::thread::spawn(move || {
        let started = Instant::now();
        for byte in b"GET /openstack/latest/meta_data.json HTTP/1.1\r\nHost: x\r\n\r\n" {
            if dribble.write_all(&[*byte]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let (_, out) = time_to_close(&mut dribble, Duration::from_secs(5));
        (started.elapsed(), out)
    });
    // Meanwhile an honest guest is served at once.
    let started = Instant::now();
    let reply = guest::get(Some(me.ip()), proxy, META_DATA, &[]).unwrap();
    assert_eq!(reply.status, 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    for stream in &mut idle {
        let (took, out) = time_to_close(stream, Duration::from_secs(5));
        assert!(
            took < Duration::from_secs(4),
            "idle connection held {took:?}"
        );
        if !out.is_empty() {
            assert_eq!(status_of(&out), 408, "{}", String::from_utf8_lossy(&out));
        }
    }
    let (took, out) = dribbled.join().unwrap();
    assert!(took < Duration::from_secs(5), "dribbled head held {took:?}");
    if !out.is_empty() {
        assert_ne!(status_of(&out), 200, "a dribbled head was served");
    }
    // A body that stops coming: 408 after the body timeout.
    let mut slow = guest::connect(Some(me.ip()), proxy).unwrap();
    slow.write_all(
        b"POST /openstack/latest/password HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc",
    )
    .unwrap();
    let (took, out) = time_to_close(&mut slow, Duration::from_secs(5));
    assert_eq!(status_of(&out), 408, "{}", String::from_utf8_lossy(&out));
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(
        guest::get(Some(me.ip()), w.router_a, "/openstack/latest/password", &[])
            .unwrap()
            .text(),
        "",
        "no password was set from the partial body"
    );
    // A keep-alive connection left idle after its answer is closed too.
    let mut kept = guest::connect(Some(me.ip()), proxy).unwrap();
    kept.write_all(format!("GET {META_DATA} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let (took, out) = time_to_close(&mut kept, Duration::from_secs(5));
    assert_eq!(status_of(&out), 200);
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_serving(&w);
}

/// A guest that pipelines requests and never reads the answers holds its connection only
/// until an answer waits longer than the write timeout for it to make room; meanwhile the
/// others are served.
#[test]
fn a_guest_that_takes_no_answer_is_disconnected_while_others_are_served() {
    /// Far more answers than the sockets between guest and proxy hold: the guest's receive
    /// buffer is pinned small, and the proxy's send buffer grows to at most `tcp_wmem`'s
    /// 4 MiB, a few thousand answers.
    const ASKED: usize = 20_000;
    /// The guest's receive buffer (pinned: no autotuning to megabytes on a loaded machine).
    const GUEST_RECEIVE_BUFFER: usize = 16 * 1024;
    let mut w = world();
    let proxy = impatient_proxy(&mut w);
    let me = w.alpha.clone();
    let mut stream = guest::connect(Some(me.ip()), proxy).unwrap();
    nix::sys::socket::setsockopt(
        &stream,
        nix::sys::socket::sockopt::RcvBuf,
        &GUEST_RECEIVE_BUFFER,
    )
    .unwrap();
    let mut asking = stream.try_clone().unwrap();
    let request = format!("GET {META_DATA} HTTP/1.1\r\nHost: x\r\n\r\n");
    // Writes until the proxy stops reading, then until it closes the connection.
    let asked = std::thread::spawn(move || {
        (0..ASKED)
            .take_while(|_| asking.write_all(request.as_bytes()).is_ok())
            .count()
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_serving(&w);
    // What the proxy sent before it gave up: far fewer answers than were asked for.
    let (took, out) = time_to_close(&mut stream, Duration::from_secs(10));
    let answered = out.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count();
    assert!(answered < ASKED / 2, "{answered} answers");
    assert!(took < Duration::from_secs(10), "{took:?}");
    asked.join().unwrap();
    assert_serving(&w);
}

#[test]
fn memory_stays_bounded_under_the_barrage() {
    let w = world();
    let me = &w.alpha;
    for _ in 0..100 {
        assert_serving(&w);
    }
    let before: Vec<(String, u32, u64)> = w
        .chain
        .pids()
        .into_iter()
        .map(|(name, pid)| (name, pid, rss_kib(pid)))
        .collect();
    let big_head = format!("X-Big: {}", "a".repeat(MAX_HEADER_BYTES - 512));
    let body = vec![b'z'; MAX_BODY_BYTES];
    for round in 0..100 {
        for (_, bytes) in malformed() {
            raw(me, w.router_a, &bytes);
        }
        attack_support::get_raw(me, w.router_a, META_DATA, std::slice::from_ref(&big_head));
        guest::send(
            Some(me.ip()),
            w.router_a,
            "POST",
            "/openstack/latest/password",
            &[],
            &body,
        )
        .unwrap();
        if round % 10 == 0 {
            assert_serving(&w);
        }
    }
    for (name, pid, rss) in before {
        let after = rss_kib(pid);
        assert!(
            after < rss + MAX_RSS_GROWTH_KIB,
            "{name} grew from {rss} KiB to {after} KiB"
        );
    }
    assert_serving(&w);
}

#[test]
fn fifty_concurrent_password_posts_through_the_chain_have_one_winner() {
    let mut w = world();
    let barrier = Arc::new(Barrier::new(50));
    let proxy = w
        .chain
        .start_proxy(
            &Scope::Router(w.router_a_id.clone()),
            &["--max-connections-per-guest", MANY_PER_GUEST],
        )
        .unwrap();
    let ip = w.alpha.ip();
    let posts: Vec<_> = (0..50)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let body = format!("cGFzc3dvcmQ-{i}");
                barrier.wait();
                let reply = guest::send(
                    Some(ip),
                    proxy,
                    "POST",
                    "/openstack/latest/password",
                    &[],
                    body.as_bytes(),
                )
                .unwrap();
                (reply.status, body)
            })
        })
        .collect();
    let results: Vec<(u16, String)> = posts.into_iter().map(|t| t.join().unwrap()).collect();
    let winners: Vec<&String> = results
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body)
        .collect();
    let conflicts = results.iter().filter(|(status, _)| *status == 409).count();
    assert_eq!(
        (winners.len(), conflicts),
        (1, 49),
        "{:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    let stored = guest::get(Some(ip), proxy, "/openstack/latest/password", &[]).unwrap();
    assert_eq!(&stored.text(), winners[0]);
    // Another instance's password is untouched.
    let other = guest::get(
        Some(w.charlie.ip()),
        proxy,
        "/openstack/latest/password",
        &[],
    )
    .unwrap();
    assert_eq!((other.status, other.text().as_str()), (200, ""));
}
