//! Opening TCP listeners: exclusive (a second server on the same address fails to start
//! instead of taking a share of the connections), with a deep accept backlog (a boot storm
//! opens a thousand connections at once), optionally inside another network namespace. A
//! link-local IPv6 address (`fe80::a9fe:a9fe`) is bound on the interface that holds it, as
//! Neutron's haproxy binds it on the DHCP port's interface; `[::]` takes both families, or
//! IPv4 alone where the kernel has no IPv6.

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener};
use std::path::{Path, PathBuf};

use socket2::{Domain, Socket, Type};

/// Connections the kernel queues before `accept`: deep enough for a boot storm (the kernel
/// caps it at `net.core.somaxconn`).
pub const LISTEN_BACKLOG: i32 = 4096;
/// Seconds a new connection may stay silent before `accept` takes it anyway
/// (`TCP_DEFER_ACCEPT`, nginx's `deferred`): an HTTP client speaks first, so a connection is
/// accepted with its request head already there, and one that says nothing costs the server
/// nothing until the kernel hands it over (after one SYN-ACK retransmission, about a second),
/// when the head timeout starts.
pub const DEFER_ACCEPT_SECONDS: libc::c_int = 1;
/// Where `ip netns add` puts named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// A non-blocking TCP listener on `addr` in this process's namespace. Refused (`AddrInUse`)
/// while another socket listens there: no SO_REUSEPORT, so no other process can share it. A
/// link-local IPv6 address without a scope is bound on the interface holding it ([`scoped`]);
/// `[::]` falls back to `0.0.0.0` on a kernel without IPv6.
pub fn tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    tcp_listener_on(addr, None)
}

/// [`tcp_listener`], bound to one interface when `device` names it (`SO_BINDTODEVICE`): it
/// takes only connections that arrive there, so the same address can be served on several
/// bridges, each by its own listener, and nothing reaches it from another interface. Such a
/// listener may be bound before the interface holds the address (`IP_FREEBIND`): `all` takes
/// the port first and puts the address on a host bridge only once the port is its own.
pub fn tcp_listener_on(addr: SocketAddr, device: Option<&str>) -> io::Result<TcpListener> {
    let addr = scoped(addr)?;
    let socket = match Socket::new(Domain::for_address(addr), Type::STREAM, None) {
        Err(err)
            if err.raw_os_error() == Some(libc::EAFNOSUPPORT)
                && addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) =>
        {
            return tcp_listener_on(SocketAddr::from(([0, 0, 0, 0], addr.port())), device);
        }
        other => other?,
    };
    // Only lets a restarted server bind over connections of its predecessor in TIME_WAIT; on
    // Linux it never lets two sockets listen on one address.
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // `[::]:9697` also takes IPv4 guests (as IPv4-mapped addresses), like haproxy's `:::9697`.
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    // Metadata answers are tiny: each is sent at once, not held back for an earlier segment's
    // acknowledgement. Set here, on the listener: Linux copies it to every accepted connection,
    // one system call per listener instead of one per connection.
    socket.set_tcp_nodelay(true)?;
    defer_accept(&socket, DEFER_ACCEPT_SECONDS)?;
    if let Some(device) = device {
        socket.bind_device(Some(device.as_bytes())).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("cannot bind to interface {device}: {err}"),
            )
        })?;
        if addr.is_ipv4() {
            socket.set_freebind_v4(true)?;
        } else {
            socket.set_freebind_v6(true)?;
        }
    }
    socket.bind(&addr.into()).map_err(in_use_hint)?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Sets `TCP_DEFER_ACCEPT` on `socket` (see [`DEFER_ACCEPT_SECONDS`]).
fn defer_accept(socket: &Socket, seconds: libc::c_int) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let size =
        libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).map_err(io::Error::other)?;
    // SAFETY: the descriptor is `socket`'s, open for the whole call; the option value is a
    // `c_int` that lives across the call, and `size` is its size.
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&raw const seconds).cast(),
            size,
        )
    };
    if set == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One listening socket on `addr` (see [`tcp_listener`]) as `count` handles, one per worker:
/// each worker polls its own duplicate of the same socket and takes the connections it is
/// ready for, as nginx's workers share one socket without `reuseport`.
pub fn tcp_listeners(addr: SocketAddr, count: usize) -> io::Result<Vec<TcpListener>> {
    tcp_listeners_on(addr, None, count)
}

/// [`tcp_listeners`] bound to `device` (see [`tcp_listener_on`]).
pub fn tcp_listeners_on(
    addr: SocketAddr,
    device: Option<&str>,
    count: usize,
) -> io::Result<Vec<TcpListener>> {
    let first = tcp_listener_on(addr, device)?;
    let mut all = Vec::with_capacity(count.max(1));
    for _ in 1..count.max(1) {
        all.push(first.try_clone()?);
    }
    all.push(first);
    Ok(all)
}

/// `addr` as it is bound in the current namespace: a link-local IPv6 address without a scope
/// gets the index of the one interface that holds it (the guest-facing one: the address is
/// put there for guests, `nodad` as Neutron does once DAD is done); any other address is
/// bound as it is. No interface, or several, holding it is an error saying what to do.
pub fn scoped(addr: SocketAddr) -> io::Result<SocketAddr> {
    let SocketAddr::V6(v6) = addr else {
        return Ok(addr);
    };
    if !v6.ip().is_unicast_link_local() || v6.scope_id() != 0 {
        return Ok(addr);
    }
    let holders = interfaces_holding(*v6.ip())?;
    match holders.as_slice() {
        [(_, index)] => Ok(SocketAddr::V6(SocketAddrV6::new(
            *v6.ip(),
            v6.port(),
            0,
            *index,
        ))),
        [] => Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!(
                "no interface here holds {}: add it to the guest-facing interface \
                 (ip addr add {}/64 dev IFACE nodad)",
                v6.ip(),
                v6.ip()
            ),
        )),
        several => {
            let names: Vec<&str> = several.iter().map(|(name, _)| name.as_str()).collect();
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is on several interfaces here ({}): a link-local listener serves one; \
                     keep the address on the guest-facing interface only",
                    v6.ip(),
                    names.join(", ")
                ),
            ))
        }
    }
}

/// For each (namespace, link-local address): the index of the one interface holding the
/// address there now, `None` when none or several do or the namespace is gone. One
/// short-lived thread visits the namespaces in turn (setns affects only the calling thread),
/// so a listener bound on an interface that was since replaced (a DHCP port unplugged and
/// plugged again, which gets a new index) can be noticed and bound anew.
pub fn link_local_holders(wanted: &[(String, Ipv6Addr)]) -> Vec<Option<u32>> {
    // The interface the listener would be bound on now, by the same rule as at its bind.
    let holder = |name: &str, ip: Ipv6Addr| -> Option<u32> {
        enter_netns(name).ok()?;
        match scoped(SocketAddr::V6(SocketAddrV6::new(ip, 0, 0, 0))).ok()? {
            SocketAddr::V6(bound) => Some(bound.scope_id()),
            SocketAddr::V4(_) => None,
        }
    };
    std::thread::scope(|scope| {
        scope
            .spawn(|| wanted.iter().map(|(name, ip)| holder(name, *ip)).collect())
            .join()
            .unwrap_or_else(|_| vec![None; wanted.len()])
    })
}

/// The interfaces of the current namespace holding `ip`: (name, index).
fn interfaces_holding(ip: Ipv6Addr) -> io::Result<Vec<(String, u32)>> {
    let mut found: Vec<(String, u32)> = Vec::new();
    for entry in nix::ifaddrs::getifaddrs().map_err(io::Error::from)? {
        let holds = entry
            .address
            .as_ref()
            .and_then(|address| address.as_sockaddr_in6())
            .is_some_and(|address| address.ip() == ip);
        if holds && !found.iter().any(|(name, _)| *name == entry.interface_name) {
            let index = nix::net::if_::if_nametoindex(entry.interface_name.as_str())
                .map_err(io::Error::from)?;
            found.push((entry.interface_name, index));
        }
    }
    Ok(found)
}

/// Refuses a list of addresses to listen on (`what` names its flag or setting) that cannot all
/// be bound in one namespace: an address given twice (also once as IPv4 and once in its
/// IPv4-mapped IPv6 form, `::ffff:a.b.c.d`), or a wildcard beside an address of the
/// same port that it already takes ([`takes`]). Its second bind would fail as if another
/// server held the address.
pub fn check_distinct(what: &str, addresses: &[SocketAddr]) -> Result<(), String> {
    for (at, later) in addresses.iter().enumerate() {
        for earlier in &addresses[..at] {
            if earlier == later {
                return Err(format!(
                    "{what} {later} is given twice: give each address once"
                ));
            }
            if canonical(*earlier) == canonical(*later) && earlier.port() != 0 {
                return Err(format!(
                    "{what} {earlier} and {later} are one address (an IPv6 socket on \
                     ::ffff:a.b.c.d listens on the IPv4 address a.b.c.d): give it once"
                ));
            }
            for (wildcard, other) in [(earlier, later), (later, earlier)] {
                if takes(*wildcard, *other) {
                    let (name, reach) = match wildcard.ip() {
                        IpAddr::V6(_) => ("[::]", "every address of both families"),
                        IpAddr::V4(_) => ("0.0.0.0", "every IPv4 address"),
                    };
                    return Err(format!(
                        "{what} {wildcard} already takes {other} ({} listens on {reach} on \
                         port {}): give one of them",
                        name,
                        wildcard.port()
                    ));
                }
            }
        }
    }
    Ok(())
}

/// `addr` with an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it stands for.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Whether a listener on `wildcard` takes `other`'s connections too, so that both cannot
/// listen: the same port (not 0, which picks a free one), `wildcard` unspecified, and `[::]`
/// (both families, [`tcp_listener_on`]) takes every address, `0.0.0.0` every IPv4 one and
/// the IPv4 half of `[::]`.
fn takes(wildcard: SocketAddr, other: SocketAddr) -> bool {
    if wildcard == other
        || wildcard.port() == 0
        || wildcard.port() != other.port()
        || !wildcard.ip().is_unspecified()
    {
        return false;
    }
    match wildcard.ip() {
        IpAddr::V6(_) => true,
        IpAddr::V4(_) => other.ip().to_canonical().is_ipv4() || other.ip().is_unspecified(),
    }
}

/// Says what an address in use means and what to do, in the error a user reads.
fn in_use_hint(err: io::Error) -> io::Error {
    if err.kind() == io::ErrorKind::AddrInUse {
        return io::Error::new(
            io::ErrorKind::AddrInUse,
            "address already in use: another server listens there; stop it or pick another address",
        );
    }
    err
}

/// The path of a named network namespace; refuses names that would leave `/run/netns`.
pub fn netns_path(name: &str) -> io::Result<PathBuf> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a network namespace name"),
        ));
    }
    Ok(Path::new(NETNS_DIR).join(name))
}

/// A TCP listener bound inside the named network namespace. The bind happens on a short-lived
/// thread that enters the namespace (setns affects only the calling thread); the socket stays
/// in that namespace after the thread is gone, so one process serves many namespaces.
pub fn tcp_listener_in(netns: Option<&str>, addr: SocketAddr) -> io::Result<TcpListener> {
    let mut listeners = tcp_listeners_in(netns, addr, 1)?;
    listeners
        .pop()
        .ok_or_else(|| io::Error::other("no listener was bound"))
}

/// [`tcp_listeners`] inside the named network namespace (see [`tcp_listener_in`]).
pub fn tcp_listeners_in(
    netns: Option<&str>,
    addr: SocketAddr,
    count: usize,
) -> io::Result<Vec<TcpListener>> {
    let Some(name) = netns else {
        return tcp_listeners(addr, count);
    };
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter_netns(name)?;
                tcp_listeners(addr, count)
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("namespace bind thread panicked")))
    })
}

/// Moves the calling thread into the named network namespace (setns affects only that
/// thread: callers use a short-lived one).
fn enter_netns(name: &str) -> io::Result<()> {
    let path = netns_path(name)?;
    let namespace = std::fs::File::open(&path).map_err(|err| {
        io::Error::new(
            err.kind(),
            format!(
                "network namespace {name} not found at {}: {err}",
                path.display()
            ),
        )
    })?;
    nix::sched::setns(namespace, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|err| {
        io::Error::other(format!(
            "cannot enter network namespace {name}: {err} (needs root)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_namespace_names_with_paths() {
        for bad in ["", ".", "..", "../etc", "a/b"] {
            assert!(netns_path(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            netns_path("qrouter-1").unwrap(),
            Path::new("/run/netns/qrouter-1")
        );
    }

    #[test]
    fn a_link_local_address_no_interface_holds_is_a_clear_error() {
        // fe80::a9fe:a9fe is on no interface of the namespace the tests run in.
        let addr = metaboot_proto::METADATA_IPV6_LISTEN;
        let err = tcp_listener(addr).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable);
        assert!(
            err.to_string()
                .contains("ip addr add fe80::a9fe:a9fe/64 dev IFACE nodad"),
            "{err}"
        );
        // Other addresses, and a link-local address given with its scope, are left alone.
        let plain: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!(scoped(plain).unwrap(), plain);
        let with_scope = SocketAddr::V6(SocketAddrV6::new(metaboot_proto::METADATA_IPV6, 80, 0, 7));
        assert_eq!(scoped(with_scope).unwrap(), with_scope);
    }

    /// The pairs `check_distinct` refuses are those whose second bind fails, and only those.
    #[test]
    fn addresses_that_cannot_both_listen_are_refused_up_front() {
        let ipv6 = TcpListener::bind("[::1]:0").is_ok();
        let pairs = [
            ("::", "127.0.0.1", true),
            ("127.0.0.1", "::", true),
            ("::", "::1", true),
            ("::", "::ffff:127.0.0.1", true),
            ("0.0.0.0", "127.0.0.1", true),
            ("0.0.0.0", "::", true),
            ("0.0.0.0", "::ffff:127.0.0.1", true),
            ("0.0.0.0", "::1", false),
            ("127.0.0.1", "127.0.0.2", false),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "::ffff:127.0.0.1", true),
            ("::ffff:127.0.0.1", "127.0.0.1", true),
            ("::ffff:127.0.0.1", "::ffff:127.0.0.2", false),
        ];
        for (first, second, clash) in pairs {
            let (first, second): (IpAddr, IpAddr) =
                (first.parse().unwrap(), second.parse().unwrap());
            if !ipv6 && (first.is_ipv6() || second.is_ipv6()) {
                let (first, second) = (SocketAddr::new(first, 80), SocketAddr::new(second, 80));
                assert_eq!(check_distinct("--listen", &[first, second]).is_err(), clash);
                continue;
            }
            // The port the first one holds: no other test can take it meanwhile.
            let held = tcp_listener(SocketAddr::new(first, 0)).unwrap();
            let port = held.local_addr().unwrap().port();
            let (first, second) = (SocketAddr::new(first, port), SocketAddr::new(second, port));
            let refused = check_distinct("--listen", &[first, second]);
            assert_eq!(refused.is_err(), clash, "{first} {second}: {refused:?}");
            let bound = tcp_listener(second);
            assert_eq!(bound.is_err(), clash, "{first} {second}: {bound:?}");
        }
        let at = |ip: &str, port: u16| SocketAddr::new(ip.parse().unwrap(), port);
        // Another port, or port 0 (a free one): never a clash.
        assert!(check_distinct("--listen", &[at("::", 80), at("127.0.0.1", 81)]).is_ok());
        assert!(check_distinct("--listen", &[at("::", 0), at("127.0.0.1", 0)]).is_ok());
        let port = 80;
        let err =
            check_distinct("--listen", &[at("::", port), at("169.254.169.254", port)]).unwrap_err();
        assert_eq!(
            err,
            format!(
                "--listen [::]:{port} already takes 169.254.169.254:{port} ([::] listens on every \
                 address of both families on port {port}): give one of them"
            )
        );
        let twice = check_distinct("--listen", &[at("127.0.0.1", port), at("127.0.0.1", port)])
            .unwrap_err();
        assert!(twice.contains("given twice"), "{twice}");
        let mapped = check_distinct(
            "--listen",
            &[
                at("169.254.169.254", port),
                at("::ffff:169.254.169.254", port),
            ],
        )
        .unwrap_err();
        assert!(mapped.contains("are one address"), "{mapped}");
    }

    #[test]
    fn accepted_connections_send_at_once() {
        let listener = tcp_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        listener.set_nonblocking(false).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        std::io::Write::write_all(&mut client, b"G").unwrap();
        let (accepted, _) = listener.accept().unwrap();
        // Inherited from the listener: the accept loop sets nothing per connection.
        assert!(accepted.nodelay().unwrap());
    }

    /// The next connection `listener` (non-blocking) hands over within `within`, if any.
    fn accepted_within(
        listener: &std::net::TcpListener,
        within: std::time::Duration,
    ) -> Option<std::net::TcpStream> {
        let deadline = std::time::Instant::now() + within;
        loop {
            match listener.accept() {
                Ok((stream, _)) => return Some(stream),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    if std::time::Instant::now() >= deadline {
                        return None;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(err) => panic!("accept: {err}"),
            }
        }
    }

    #[test]
    fn a_connection_is_accepted_once_its_client_speaks() {
        let listener = tcp_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        // Connected on the client's side, but not handed to the server while it is silent
        // (well within the DEFER_ACCEPT_SECONDS after which the kernel hands it over anyway).
        assert!(
            accepted_within(&listener, std::time::Duration::from_millis(300)).is_none(),
            "a silent connection was handed over at once"
        );
        std::io::Write::write_all(&mut client, b"GET").unwrap();
        let mut accepted = accepted_within(&listener, std::time::Duration::from_millis(500))
            .expect("not accepted after the client spoke");
        let mut head = [0u8; 3];
        std::io::Read::read_exact(&mut accepted, &mut head).unwrap();
        assert_eq!(&head, b"GET");
    }

    #[test]
    fn a_silent_connection_is_handed_over_once_the_deferral_is_over() {
        let listener = tcp_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let started = std::time::Instant::now();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let deferral = std::time::Duration::from_secs(DEFER_ACCEPT_SECONDS.unsigned_abs().into());
        // The kernel's SYN-ACK timer starts at a second and may run late on a busy host.
        let bound = (5 * deferral).saturating_sub(started.elapsed());
        accepted_within(&listener, bound).expect("never handed over");
        let accepted = started.elapsed();
        // Handed over after the deferral, not at once: its head timeout starts then.
        assert!(accepted >= deferral / 2, "accepted after {accepted:?}");
    }

    /// `all` binds a host bridge's port before the bridge holds the metadata address.
    #[test]
    fn a_listener_on_an_interface_binds_before_the_interface_holds_the_address() {
        // TEST-NET-1: no interface here holds it.
        let absent: SocketAddr = "192.0.2.254:0".parse().unwrap();
        let bound = tcp_listener_on(absent, Some("lo")).unwrap();
        assert_eq!(bound.local_addr().unwrap().ip(), absent.ip());
        // Without IP_FREEBIND the kernel refuses such an address (unless told to take any).
        let nonlocal = std::fs::read_to_string("/proc/sys/net/ipv4/ip_nonlocal_bind");
        if nonlocal.is_ok_and(|value| value.trim() == "0") {
            let plain = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            let refused = plain.bind(&absent.into()).unwrap_err();
            assert_eq!(
                refused.raw_os_error(),
                Some(libc::EADDRNOTAVAIL),
                "{refused}"
            );
        }
    }

    #[test]
    fn a_missing_namespace_is_a_clear_error() {
        let err = tcp_listener_in(
            Some("metaboot-test-no-such-namespace"),
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("not found"), "{err}");
    }
}
