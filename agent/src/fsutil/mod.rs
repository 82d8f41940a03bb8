//! File-system access under the root: paths resolved from held directory descriptors without
//! following a symlink out of the root ([`resolve`]), directory handles whose operations never
//! follow a final symlink ([`Dir`]), atomic writes ([`atomic`]), and the one error every
//! failed operation on a path becomes ([`PathError`]).

pub mod atomic;
pub mod dir;
pub mod resolve;

use std::io;
use std::path::PathBuf;

use nix::sys::stat::{FileStat, SFlag};

pub use atomic::WriteOptions;
pub use dir::Dir;
pub use resolve::MAX_SYMLINKS;

/// An owner to give a file: numeric uid and gid, as found in the root's passwd and group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// A failed operation on one path: what was being done, to which file (as seen from the host),
/// and the system's reason. Every "failed to read/write/create …" of the agent is this error;
/// an atomic write that fails leaves the old file untouched.
#[derive(Debug, thiserror::Error)]
#[error("Failed to {op} {}", path.display())]
pub struct PathError {
    /// What was being done: "read", "write", "rename into place", "create directory", …
    pub op: &'static str,
    /// The file concerned.
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl PathError {
    /// The `map_err` adapter for an operation on `path`: `.map_err(PathError::fail("read", p))`.
    pub fn fail(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| PathError { op, path, source }
    }
}

/// True when the agent runs as root: only then does it change owners (a test run as a normal
/// user still writes the files, with the caller's owner).
pub fn can_chown() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A path the agent will not use, and why; carried as the source of an [`io::Error`] of kind
/// `PermissionDenied` (or `Other` for a loop).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{} is a symlink; not followed", .0.display())]
    Symlink(PathBuf),
    #[error("{} is a symlink owned by uid {uid}; only root's symlinks are followed", path.display())]
    ForeignSymlink { path: PathBuf, uid: u32 },
    #[error("{}: more than {MAX_SYMLINKS} symlinks to follow", .0.display())]
    TooManySymlinks(PathBuf),
    #[error("{} is owned by uid {uid}, neither by {user} nor by root", path.display())]
    Owner {
        path: PathBuf,
        uid: u32,
        user: String,
    },
    #[error("{} has {links} hard links; not used", path.display())]
    HardLinks { path: PathBuf, links: u64 },
    #[error("{} is not a regular file", .0.display())]
    NotAFile(PathBuf),
}

impl From<Refused> for io::Error {
    fn from(refused: Refused) -> io::Error {
        let kind = match refused {
            Refused::TooManySymlinks(_) => io::ErrorKind::Other,
            _ => io::ErrorKind::PermissionDenied,
        };
        io::Error::new(kind, refused)
    }
}

/// The file type bits of a stat.
pub fn kind(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits())
}

/// Refuses an entry of a user's area (home, `~/.ssh`, `authorized_keys`) owned by someone other
/// than `user` (uid `uid`) or root, as cloud-init and sshd's StrictModes do. (The agent's own
/// user counts as root when it does not run as root, as in tests.)
pub fn check_owner(stat: &FileStat, path: PathBuf, user: &str, uid: u32) -> Result<(), Refused> {
    let owner = stat.st_uid;
    if owner == uid || owner == 0 || owner == nix::unistd::geteuid().as_raw() {
        Ok(())
    } else {
        Err(Refused::Owner {
            path,
            uid: stat.st_uid,
            user: user.to_owned(),
        })
    }
}
