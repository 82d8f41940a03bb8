//! Opening TCP listeners: a deep accept backlog (a boot storm opens a thousand connections at
//! once), optionally inside another network namespace.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use socket2::{Domain, Socket, Type};

/// Connections the kernel queues before `accept`: deep enough for a boot storm (the kernel
/// caps it at `net.core.somaxconn`).
pub const LISTEN_BACKLOG: i32 = 4096;
/// Where `ip netns add` puts named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// A non-blocking TCP listener on `addr` in this process's namespace.
pub fn tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    bind_tcp(addr, false)
}

/// `count` non-blocking listeners on the same `addr`, one per worker: with more than one,
/// SO_REUSEPORT lets the kernel spread connections over them (as nginx's workers do).
pub fn tcp_listeners(addr: SocketAddr, count: usize) -> io::Result<Vec<TcpListener>> {
    let shared = count > 1;
    (0..count.max(1)).map(|_| bind_tcp(addr, shared)).collect()
}

fn bind_tcp(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        // `[::]:9697` also takes IPv4 guests (as IPv4-mapped addresses), like haproxy's `:::9697`.
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
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
