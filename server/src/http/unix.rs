//! Binding a Unix socket that no other server holds: a lock file beside it, so two servers
//! starting at once cannot both replace it; a connect probe, so a socket someone listens on is
//! never unlinked (a stale one, nobody listening, is replaced); and the socket created with
//! exactly the mode asked — the umask is set before bind, so it never exists with a wider mode.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::stat::Mode;

/// Appended to the socket's path to name its lock file (`agent.sock` → `agent.sock.lock`).
pub const LOCK_SUFFIX: &str = ".lock";
/// Mode of the lock file: it holds nothing, only the owner needs to open it.
pub const LOCK_FILE_MODE: u32 = 0o600;

/// Parses an octal socket mode such as `660` or `0660`: permission bits only (a socket has no
/// use for setuid, setgid or sticky bits). For `--socket-mode`.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| format!("{text:?} is not an octal permission mode such as 660"))
}

/// A bound socket and the lock that keeps other servers off its path; keep it for as long as
/// the socket is served.
pub struct UnixSocket {
    pub listener: UnixListener,
    _lock: Flock<File>,
}

/// The lock file of the socket at `path`.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(LOCK_SUFFIX);
    PathBuf::from(name)
}

/// Binds a non-blocking Unix socket at `path` with permission bits `mode` (e.g. `0o660`).
/// Refused (`AddrInUse`) while another server holds the path or listens on it; a socket file
/// nobody listens on is replaced; any other file at `path` is refused (`AlreadyExists`).
pub fn bind_unix(path: &Path, mode: u32) -> io::Result<UnixSocket> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)?;
    }
    let lock = take_lock(path)?;
    remove_stale(path)?;
    let listener = bind_with_umask(path, mode)?;
    listener.set_nonblocking(true)?;
    Ok(UnixSocket {
        listener,
        _lock: lock,
    })
}

fn take_lock(path: &Path) -> io::Result<Flock<File>> {
    let lock_path = lock_path(path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(LOCK_FILE_MODE)
        .open(&lock_path)
        .map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("cannot open the lock file {}: {err}", lock_path.display()),
            )
        })?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == nix::errno::Errno::EWOULDBLOCK {
            io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "another server holds this socket (its lock {} is taken): stop it first \
                     or pick another path",
                    lock_path.display()
                ),
            )
        } else {
            io::Error::other(format!("cannot lock {}: {errno}", lock_path.display()))
        }
    })
}

/// Removes a socket file nobody listens on; refuses a live socket and anything not a socket.
fn remove_stale(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {}
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket: remove it or pick another path",
            ));
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "a server is already listening on it: stop it first or pick another path",
        )),
        // Nobody listens: a socket left behind by a server that stopped.
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
            match std::fs::remove_file(path) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
                _ => Ok(()),
            }
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(io::Error::new(
            err.kind(),
            format!("cannot tell whether a server listens on it ({err}): remove it if it is stale"),
        )),
    }
}

/// `bind` with the umask set to leave exactly `mode`: on a short-lived thread that first stops
/// sharing the process's umask (`unshare(CLONE_FS)`), so no other thread's files are affected.
fn bind_with_umask(path: &Path, mode: u32) -> io::Result<UnixListener> {
    let mask = Mode::from_bits_truncate(!mode & 0o777);
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).map_err(|errno| {
                    io::Error::other(format!("cannot set a umask for the socket: {errno}"))
                })?;
                nix::sys::stat::umask(mask);
                UnixListener::bind(path)
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the socket bind thread panicked")))
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn socket_modes_are_permission_bits() {
        assert_eq!(parse_mode("660"), Ok(0o660));
        assert_eq!(parse_mode("0600"), Ok(0o600));
        for bad in ["4660", "999", "rw", ""] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn the_socket_has_exactly_the_mode_asked_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        // A thread with its own umask of 0, the widest a caller could have.
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).unwrap();
                    nix::sys::stat::umask(Mode::empty());
                    for mode in [0o600, 0o660, 0o666] {
                        let path = dir.path().join(format!("s{mode:o}.sock"));
                        let socket = bind_unix(&path, mode).unwrap();
                        assert_eq!(mode_of(&path), mode, "{mode:o}");
                        drop(socket);
                    }
                    // The caller's umask is untouched.
                    assert_eq!(nix::sys::stat::umask(Mode::empty()), Mode::empty());
                })
                .join()
                .unwrap();
        });
    }

    #[test]
    fn a_live_socket_is_refused_and_a_stale_one_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let first = bind_unix(&path, 0o660).unwrap();
        // Held (lock taken): refused, and the live socket stays.
        let err = bind_unix(&path, 0o660).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert!(UnixStream::connect(&path).is_ok());
        // A listener that took no lock (another program, an older server) is found by probing.
        drop(first);
        let foreign = UnixListener::bind(dir.path().join("other.sock")).unwrap();
        let err = bind_unix(&dir.path().join("other.sock"), 0o660)
            .err()
            .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        drop(foreign);
        // Stale (nobody listens): replaced.
        let again = bind_unix(&path, 0o660).unwrap();
        assert!(UnixStream::connect(&path).is_ok());
        drop(again);
        // Not a socket: left alone.
        let file = dir.path().join("file");
        std::fs::write(&file, "keep").unwrap();
        let err = bind_unix(&file, 0o660).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
    }
}
