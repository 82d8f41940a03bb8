//! File-system access under the root: paths resolved from held directory descriptors without
//! following a symlink out of the root ([`resolve`]), directory handles whose operations never
//! follow a final symlink ([`Dir`]), and atomic writes ([`atomic`]).

pub mod atomic;
pub mod dir;
pub mod resolve;

use std::io;
use std::path::PathBuf;

use nix::sys::stat::{FileStat, SFlag};

pub use atomic::{AtomicWriteError, WriteOptions};
pub use dir::Dir;
pub use resolve::MAX_SYMLINKS;

/// An owner to give a file: numeric uid and gid, as found in the root's passwd and group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
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
