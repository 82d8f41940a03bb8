//! A listener the configuration cannot have — a port this user may not take (`EACCES`), a Unix
//! socket path whose directory cannot be made or written — is refused input: the server exits 2
//! (`cli::EXIT_REFUSED`) and its unit does not restart it every two seconds until its start
//! limit, as starting again changes nothing. The error says what to fix.
//!
//! An address another server holds (`EADDRINUSE`, or a socket whose lock is taken) is not
//! refused: the holder may be a predecessor still stopping or a unit being switched over, and
//! is gone a restart later; it stays a failure worth a retry (exit 1), which the unit's start
//! limit bounds. So does an address no interface of this host holds (`EADDRNOTAVAIL`): at
//! boot it may come up after the server starts (a unit ordered only after `network.target`),
//! and the restart then takes it; the error still says what to check.

use std::io;
use std::net::SocketAddr;
use std::path::Path;

use crate::admin::InputError;

/// Lowest port an unprivileged process may listen on (Linux's default
/// `net.ipv4.ip_unprivileged_port_start`).
pub const FIRST_UNPRIVILEGED_PORT: u16 = 1024;

/// The error of a failed TCP listen on `addr`: refused input when the configuration is at fault
/// (see the module's documentation), else a failure that names the address.
pub fn tcp(err: io::Error, addr: SocketAddr) -> anyhow::Error {
    let hint = match err.kind() {
        // An error of ours already says what to do (a link-local address on no interface).
        io::ErrorKind::AddrNotAvailable if err.raw_os_error().is_none() => Some(String::new()),
        io::ErrorKind::AddrNotAvailable => {
            let hint = format!(
                ": no interface of this host holds {} (yet?); give an address it has (`ip \
                 -brief address`), or {} for every one",
                addr.ip(),
                if addr.is_ipv4() { "0.0.0.0" } else { "[::]" }
            );
            return anyhow::Error::new(err).context(format!("failed to listen on {addr}{hint}"));
        }
        io::ErrorKind::PermissionDenied if addr.port() < FIRST_UNPRIVILEGED_PORT => Some(format!(
            ": port {} is below {FIRST_UNPRIVILEGED_PORT}, which needs root or \
             CAP_NET_BIND_SERVICE (`AmbientCapabilities=CAP_NET_BIND_SERVICE` in the unit); or \
             give a port from {FIRST_UNPRIVILEGED_PORT} up",
            addr.port()
        )),
        io::ErrorKind::PermissionDenied => Some(format!(
            ": a security policy (SELinux, AppArmor) keeps this server off port {}; allow it \
             there or give another port",
            addr.port()
        )),
        _ => None,
    };
    classify(err, &addr.to_string(), hint)
}

/// The error of a failed Unix socket listen at `path`: refused input when the configuration is
/// at fault (see the module's documentation), else a failure that names the path.
pub fn unix(err: io::Error, path: &Path) -> anyhow::Error {
    let hint = match err.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => Some(
            ": this server's user cannot make the socket there; make its directory writable by \
             that user (`RuntimeDirectory=` in the unit) or give another path"
                .to_owned(),
        ),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => Some(
            ": its directory cannot be made (a part of the path is missing or not a \
             directory); give a path in a directory that exists"
                .to_owned(),
        ),
        // Already worded (`the path exists and is not a socket: remove it …`).
        io::ErrorKind::AlreadyExists => Some(String::new()),
        // A path longer than a socket address holds (108 bytes).
        io::ErrorKind::InvalidInput => Some(": give a shorter path".to_owned()),
        _ => None,
    };
    classify(err, &path.display().to_string(), hint)
}

fn classify(err: io::Error, place: &str, hint: Option<String>) -> anyhow::Error {
    match hint {
        Some(hint) => InputError(format!("failed to listen on {place}: {err}{hint}")).into(),
        None => anyhow::Error::new(err).context(format!("failed to listen on {place}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{EXIT_FAILED, EXIT_REFUSED, exit_code};

    fn os(errno: i32) -> io::Error {
        io::Error::from_raw_os_error(errno)
    }

    #[test]
    fn a_port_the_host_cannot_give_is_refused_and_an_address_not_held_or_in_use_is_not() {
        // An address may come up after the server at boot: a restart takes it, so it is a
        // failure (exit 1, restarted), though the error says what to check.
        let remote: SocketAddr = "192.0.2.1:8775".parse().unwrap();
        let err = tcp(os(libc::EADDRNOTAVAIL), remote);
        assert_eq!(exit_code(&err), EXIT_FAILED);
        assert!(
            format!("{err:#}").starts_with("failed to listen on 192.0.2.1:8775: "),
            "{err:#}"
        );
        assert!(
            format!("{err:#}").contains("no interface of this host holds 192.0.2.1"),
            "{err:#}"
        );

        let low: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let err = tcp(os(libc::EACCES), low);
        assert_eq!(exit_code(&err), EXIT_REFUSED);
        assert!(err.to_string().contains("CAP_NET_BIND_SERVICE"), "{err}");
        let high: SocketAddr = "127.0.0.1:8775".parse().unwrap();
        let err = tcp(os(libc::EACCES), high);
        assert_eq!(exit_code(&err), EXIT_REFUSED);
        assert!(err.to_string().contains("security policy"), "{err}");

        // Another server there may be gone a restart later: worth a retry.
        let err = tcp(os(libc::EADDRINUSE), high);
        assert_eq!(exit_code(&err), EXIT_FAILED);
        assert_eq!(err.to_string(), "failed to listen on 127.0.0.1:8775");
    }

    #[test]
    fn a_bind_on_an_address_no_interface_holds_exits_to_be_restarted() {
        // TEST-NET-1: no interface here holds it (unless the kernel is told to take any).
        let nonlocal = std::fs::read_to_string("/proc/sys/net/ipv4/ip_nonlocal_bind");
        if !nonlocal.is_ok_and(|value| value.trim() == "0") {
            return;
        }
        let addr: SocketAddr = "192.0.2.1:0".parse().unwrap();
        let err = crate::http::listen::tcp_listener(addr).unwrap_err();
        assert_eq!(exit_code(&tcp(err, addr)), EXIT_FAILED);
    }

    #[test]
    fn a_socket_path_that_cannot_be_made_is_refused_and_one_held_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let under_a_file = file.join("run").join("agent.sock");
        let err = crate::http::bind_unix(&under_a_file, 0o660).err().unwrap();
        let err = unix(err, &under_a_file);
        assert_eq!(exit_code(&err), EXIT_REFUSED, "{err}");
        assert!(err.to_string().contains("give a path"), "{err}");
        for errno in [libc::EACCES, libc::EROFS, libc::ENOENT] {
            assert_eq!(exit_code(&unix(os(errno), &file)), EXIT_REFUSED, "{errno}");
        }

        let path = dir.path().join("agent.sock");
        let _held = crate::http::bind_unix(&path, 0o660).unwrap();
        let err = crate::http::bind_unix(&path, 0o660).err().unwrap();
        assert_eq!(exit_code(&unix(err, &path)), EXIT_FAILED);
    }
}
