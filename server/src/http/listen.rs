//! Opening TCP listeners: exclusive (a second server on the same address fails to start
//! instead of taking a share of the connections), with a deep accept backlog (a boot storm
//! opens a thousand connections at once), optionally inside another network namespace.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use socket2::{Domain, Socket, Type};

/// Connections the kernel queues before `accept`: deep enough for a boot storm (the kernel
/// caps it at `net.core.somaxconn`).
pub const LISTEN_BACKLOG: i32 = 4096;
/// Where `ip netns add` puts named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// A non-blocking TCP listener on `addr` in this process's namespace. Refused (`AddrInUse`)
/// while another socket listens there: no SO_REUSEPORT, so no other process can share it.
pub fn tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Only lets a restarted server bind over connections of its predecessor in TIME_WAIT; on
    // Linux it never lets two sockets listen on one address.
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // `[::]:9697` also takes IPv4 guests (as IPv4-mapped addresses), like haproxy's `:::9697`.
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into()).map_err(in_use_hint)?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// One listening socket on `addr` (see [`tcp_listener`]) as `count` handles, one per worker:
/// each worker polls its own duplicate of the same socket and takes the connections it is
/// ready for, as nginx's workers share one socket without `reuseport`.
pub fn tcp_listeners(addr: SocketAddr, count: usize) -> io::Result<Vec<TcpListener>> {
    let first = tcp_listener(addr)?;
    let mut all = Vec::with_capacity(count.max(1));
    for _ in 1..count.max(1) {
        all.push(first.try_clone()?);
    }
    all.push(first);
    Ok(all)
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
    let path = netns_path(name)?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let namespace = std::fs::File::open(&path).map_err(|err| {
                    io::Error::new(
                        err.kind(),
                        format!(
                            "network namespace {name} not found at {}: {err}",
                            path.display()
                        ),
                    )
                })?;
                nix::sched::setns(namespace, nix::sched::CloneFlags::CLONE_NEWNET).map_err(
                    |err| {
                        io::Error::other(format!(
                            "cannot enter network namespace {name}: {err} (needs root)"
                        ))
                    },
                )?;
                tcp_listeners(addr, count)
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("namespace bind thread panicked")))
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
    fn a_missing_namespace_is_a_clear_error() {
        let err = tcp_listener_in(
            Some("metaboot-test-no-such-namespace"),
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("not found"), "{err}");
    }
}
