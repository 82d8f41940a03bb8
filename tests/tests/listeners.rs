//! Exclusive listeners (no root): a second `metaboot-server` on a TCP address or a Unix socket
//! that a live server holds fails to start, with one line naming the address, and the live
//! server keeps every connection (a second API with another secret would answer 403s, a second
//! agent would unlink the live socket). A socket nobody listens on is still replaced.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use socket2::{Domain, SockAddr, Socket, Type};

use metaboot_tests::chain::{Chain, Refused, Scope, run_to_exit, write_private};
use metaboot_tests::{guest, registry};

const META_DATA: &str = "/openstack/latest/meta_data.json";
/// Requests after the refused start that must all reach the live servers.
const CHECKS: usize = 50;

/// A registry with one guest behind a router, and the chain serving it.
struct World {
    chain: Chain,
    router: String,
    proxy: SocketAddr,
    uuid: String,
}

fn guest_ip() -> IpAddr {
    IpAddr::from([127, 40, 0, 10])
}

fn world() -> World {
    let mut chain = Chain::new().unwrap();
    let (net, router) = registry::routed_network(&chain, "127.40.0.0/24");
    let uuid = registry::instance(&chain, "vm", &net, "127.40.0.10");
    chain.start().unwrap();
    let proxy = chain
        .start_proxy(&Scope::Router(router.clone()), &[])
        .unwrap();
    World {
        chain,
        router,
        proxy,
        uuid,
    }
}

/// Another secret, private to its owner (so only the address can stop the second server).
fn other_secret(chain: &Chain) -> PathBuf {
    let path = chain.path().join("other-secret");
    if !path.exists() {
        write_private(&path, b"another-secret\n").unwrap();
    }
    path
}

/// The second server failed to start: non-zero exit, and its whole stderr is one `error:`
/// line naming `address`.
#[track_caller]
fn assert_refused(refused: &Refused, address: &str) {
    assert_ne!(refused.code, Some(0), "{refused:?}");
    assert!(refused.code.is_some(), "killed by a signal: {refused:?}");
    let lines: Vec<&str> = refused.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{refused:?}");
    assert!(lines[0].starts_with("error: "), "{refused:?}");
    assert!(
        lines[0].contains(address),
        "{address} not named: {refused:?}"
    );
}

/// The live chain still serves the guest, every time (no share of the connections went to
/// another process).
#[track_caller]
fn assert_still_served(w: &World) {
    for _ in 0..CHECKS {
        let reply = guest::get(Some(guest_ip()), w.proxy, META_DATA, &[]).unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()["uuid"], w.uuid.as_str());
    }
}

fn server(chain: &Chain, args: &[&str]) -> Command {
    let mut cmd = chain.cli();
    cmd.args(args);
    cmd
}

/// Starts a second server with `args`, which must stop by itself; how it stopped.
fn second(chain: &Chain, args: &[&str]) -> Refused {
    run_to_exit(&mut server(chain, args)).unwrap()
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// `args` and the shared-secret flag.
fn with_secret<'a>(args: &[&'a str], secret: &'a str) -> Vec<&'a str> {
    let mut all = args.to_vec();
    all.extend(["--shared-secret-file", secret]);
    all
}

#[test]
fn a_second_api_on_a_held_port_fails_to_start() {
    let w = world();
    let addr = w.chain.api_addr.to_string();
    let secret = shown(&other_secret(&w.chain));
    let refused = second(&w.chain, &with_secret(&["api", "--listen", &addr], &secret));
    assert_refused(&refused, &addr);
    assert_still_served(&w);
}

#[test]
fn a_second_api_on_a_held_unix_socket_fails_to_start() {
    let mut w = world();
    let path = w.chain.path().join("api.sock");
    let socket = shown(&path);
    let secret = shown(&w.chain.secret_file);
    let first = SocketAddr::from(([127, 0, 0, 1], metaboot_tests::chain::free_port())).to_string();
    let ready = path.clone();
    w.chain
        .start_role(
            "api-2",
            &with_secret(&["api", "--listen", &first, "--socket", &socket], &secret),
            move || UnixStream::connect(&ready).is_ok(),
        )
        .unwrap();
    let other = SocketAddr::from(([127, 0, 0, 1], metaboot_tests::chain::free_port())).to_string();
    let refused = second(
        &w.chain,
        &with_secret(&["api", "--listen", &other, "--socket", &socket], &secret),
    );
    assert_refused(&refused, &socket);
    assert!(UnixStream::connect(&path).is_ok());
    assert!(
        TcpStream::connect(other.as_str()).is_err(),
        "the refused server left a listener"
    );
}

#[test]
fn a_second_agent_on_a_live_socket_fails_and_leaves_it() {
    let w = world();
    let socket = shown(&w.chain.agent_socket);
    let secret = shown(&other_secret(&w.chain));
    let refused = second(
        &w.chain,
        &with_secret(&["agent", "--socket", &socket], &secret),
    );
    assert_refused(&refused, &socket);
    assert!(UnixStream::connect(&w.chain.agent_socket).is_ok());
    assert_still_served(&w);
}

#[test]
fn a_second_ns_proxy_on_a_held_port_fails_to_start() {
    let w = world();
    let addr = w.proxy.to_string();
    let socket = shown(&w.chain.agent_socket);
    let refused = second(
        &w.chain,
        &[
            "ns-proxy",
            "--socket",
            &socket,
            "--listen",
            &addr,
            "--router-id",
            &w.router,
        ],
    );
    assert_refused(&refused, &addr);
    assert_still_served(&w);
}

#[test]
fn a_second_all_on_a_held_api_address_or_agent_socket_fails_to_start() {
    let mut w = world();
    // `all` beside the chain: its own API address and agent socket (the registry's router has
    // no namespace here, so its proxy listener waits for one and holds nothing).
    let api = SocketAddr::from(([127, 0, 0, 1], metaboot_tests::chain::free_port()));
    let socket = w.chain.path().join("all-agent.sock");
    let secret = shown(&w.chain.secret_file);
    let (api_text, socket_text) = (api.to_string(), shown(&socket));
    let ready_socket = socket.clone();
    let first = [
        "all",
        "--api-listen",
        &api_text,
        "--agent-socket",
        &socket_text,
        "--threads",
        "2",
    ];
    let first = with_secret(&first, &secret);
    w.chain
        .start_role("all", &first, move || {
            TcpStream::connect(api).is_ok() && UnixStream::connect(&ready_socket).is_ok()
        })
        .unwrap();
    // The same API address.
    let refused = second(
        &w.chain,
        &with_secret(&["all", "--api-listen", &api_text], &secret),
    );
    assert_refused(&refused, &api_text);
    // The same agent socket, on a free API address.
    let free = SocketAddr::from(([127, 0, 0, 1], metaboot_tests::chain::free_port())).to_string();
    let refused = second(
        &w.chain,
        &with_secret(
            &["all", "--api-listen", &free, "--agent-socket", &socket_text],
            &secret,
        ),
    );
    assert_refused(&refused, &socket_text);
    assert!(
        TcpStream::connect(free.as_str()).is_err(),
        "the refused server left a listener"
    );
    // The API of the chain, held by `metaboot-server api`.
    let chain_api = w.chain.api_addr.to_string();
    let refused = second(
        &w.chain,
        &with_secret(&["all", "--api-listen", &chain_api], &secret),
    );
    assert_refused(&refused, &chain_api);
    // The first `all` still answers on both.
    assert!(UnixStream::connect(&socket).is_ok());
    assert!(TcpStream::connect(api).is_ok());
    assert_still_served(&w);
}

#[test]
fn a_stale_socket_is_replaced_and_two_agents_starting_at_once_leave_one() {
    let mut w = world();
    // A socket left behind by a server that died: nobody listens on it. Bound without
    // `listen`: a listener closed here could still be held for a moment by a child that
    // another test forks before its `exec` (close-on-exec), and would accept then.
    let path = w.chain.path().join("stale.sock");
    let stale = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
    stale.bind(&SockAddr::unix(&path).unwrap()).unwrap();
    drop(stale);
    assert!(path.exists() && UnixStream::connect(&path).is_err());
    let socket = shown(&path);
    let api = format!("http://{}", w.chain.api_addr);
    let secret = shown(&w.chain.secret_file);
    let ready = path.clone();
    w.chain
        .start_role(
            "agent-2",
            &with_secret(&["agent", "--socket", &socket, "--api", &api], &secret),
            move || UnixStream::connect(&ready).is_ok(),
        )
        .unwrap();

    // Two agents started together on one new path: exactly one serves it.
    let path = w.chain.path().join("race.sock");
    let socket = shown(&path);
    let args = with_secret(&["agent", "--socket", &socket, "--api", &api], &secret);
    let mut racers: Vec<metaboot_harness::process::ProcessGroup> = (0..2)
        .map(|i| {
            let mut cmd = server(&w.chain, &args);
            cmd.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            metaboot_harness::process::ProcessGroup::spawn(&format!("racer-{i}"), &mut cmd).unwrap()
        })
        .collect();
    let deadline = std::time::Instant::now() + metaboot_tests::chain::START_TIMEOUT;
    let exited = loop {
        let exited: Vec<bool> = racers
            .iter_mut()
            .map(|racer| racer.try_wait().unwrap().is_some())
            .collect();
        if exited.iter().any(|e| *e) && UnixStream::connect(&path).is_ok() {
            break exited;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "neither racer settled: {exited:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(
        exited.iter().filter(|e| **e).count(),
        1,
        "exactly one racer must give up: {exited:?}"
    );
    let winner = racers
        .iter_mut()
        .find_map(|racer| racer.try_wait().unwrap().is_none().then(|| racer.pid()));
    assert!(winner.is_some());
    assert!(UnixStream::connect(&path).is_ok());
    for mut racer in racers {
        racer.kill().unwrap();
    }
}

/// SIGHUP (the terminal a role runs in closing) stops a role cleanly, exit 0; a role started
/// ignoring it (`nohup`) keeps it ignored and goes on serving.
#[test]
fn sighup_stops_a_role_unless_it_was_started_ignoring_it() {
    use std::os::unix::process::CommandExt as _;
    use std::time::{Duration, Instant};
    let chain = Chain::new().unwrap();
    let secret = shown(&other_secret(&chain));
    for nohup in [false, true] {
        let listen = SocketAddr::from(([127, 0, 0, 1], metaboot_tests::chain::free_port()));
        let listen_text = listen.to_string();
        let mut cmd = server(
            &chain,
            &with_secret(&["api", "--listen", &listen_text], &secret),
        );
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if nohup {
            // SAFETY: runs in the forked child before exec; signal(2) is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    nix::sys::signal::signal(
                        nix::sys::signal::Signal::SIGHUP,
                        nix::sys::signal::SigHandler::SigIgn,
                    )
                    .map(|_| ())
                    .map_err(std::io::Error::from)
                });
            }
        }
        let mut child = cmd.spawn().unwrap();
        let answered = || guest::get(None, listen, "/", &[]).is_ok();
        // Answering: its runtime runs, its signal handlers are in place.
        let started = Instant::now();
        while !answered() {
            assert!(child.try_wait().unwrap().is_none(), "the API stopped");
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "never answered"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
        if nohup {
            std::thread::sleep(Duration::from_millis(300));
            assert!(
                child.try_wait().unwrap().is_none(),
                "nohup: stopped on SIGHUP"
            );
            assert!(answered(), "nohup: no longer serving");
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        }
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "nohup {nohup}: {status:?}");
    }
}
