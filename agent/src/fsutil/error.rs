//! The errors of file-system access: a failed operation on a path ([`PathError`]), and a path
//! the agent refuses to use ([`Refused`]), carried inside an `io::Error`.

use std::io;
use std::path::PathBuf;

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

/// A path the agent will not use, and why; carried as the source of an [`io::Error`] of kind
/// `PermissionDenied` (or `Other` for a loop).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{} is a symlink; not followed", .0.display())]
    Symlink(PathBuf),
    #[error("{} is a symlink owned by uid {uid}; only root's symlinks are followed", path.display())]
    ForeignSymlink { path: PathBuf, uid: u32 },
    #[error(
        "{} is a symlink with {links} hard links; not followed (a hard link can put root's \
         symlink in a user's directory)",
        path.display()
    )]
    LinkedSymlink { path: PathBuf, links: u64 },
    #[error(
        "{} is root's symlink into {}, a directory users may add entries to: what is there \
         may be a user's file; not followed (point the link into a directory only root may \
         write, or name the file itself)",
        link.display(),
        dir.display()
    )]
    LinkIntoOpenDir { link: PathBuf, dir: PathBuf },
    #[error("{}: more than {limit} symlinks to follow", path.display())]
    TooManySymlinks { path: PathBuf, limit: usize },
    #[error("{} is owned by uid {uid}, neither by {user} nor by root", path.display())]
    Owner {
        path: PathBuf,
        uid: u32,
        user: String,
    },
    #[error(
        "{} belongs to uid {uid} and is in a directory anyone may write to (sticky, like \
         /tmp): that user could replace what is written below it; not used (write the file \
         elsewhere, or give it to that user with `owner`)",
        path.display()
    )]
    UserDirInSticky { path: PathBuf, uid: u32 },
    #[error(
        "{} is in a directory users may add entries to: what is there may be a user's file; \
         not used (make that directory root's, mode 0755)",
        .0.display()
    )]
    InOpenDir(PathBuf),
    #[error(
        "{} is owned by uid {uid}, not by root: sudo does not read it, and metaboot makes no \
         user's rules root's; not changed (check its rules, then chown it to root, or remove \
         it)",
        path.display()
    )]
    NotRoots { path: PathBuf, uid: u32 },
    #[error("{} has {links} hard links; not used", path.display())]
    HardLinks { path: PathBuf, links: u64 },
    #[error("{} is not a regular file", .0.display())]
    NotAFile(PathBuf),
    #[error(
        "{} is root's symlink to {}, a {what}: only a regular file is written or read through \
         a link (a link to /dev/null masks the file); not used (remove the link, or point it \
         at a regular file, to have the file written)",
        link.display(),
        target.display()
    )]
    LinkToNonFile {
        link: PathBuf,
        target: PathBuf,
        what: &'static str,
    },
    #[error(
        "{} is a {what}, not a regular file: not replaced (remove it, or name another path, to \
         have a file written there)",
        path.display()
    )]
    NotReplaced { path: PathBuf, what: &'static str },
    #[error(
        "{} may be written by group or others; sshd's StrictModes would not use it",
        .0.display()
    )]
    Writable(PathBuf),
    #[error(
        "{} is not UTF-8 text; metaboot edits only UTF-8 files, so it was left as it is \
         (convert it, e.g. with iconv, to have it edited)",
        .0.display()
    )]
    NotText(PathBuf),
}

impl From<Refused> for io::Error {
    fn from(refused: Refused) -> io::Error {
        let kind = match refused {
            Refused::TooManySymlinks { .. } => io::ErrorKind::Other,
            Refused::NotText(_) => io::ErrorKind::InvalidData,
            _ => io::ErrorKind::PermissionDenied,
        };
        io::Error::new(kind, refused)
    }
}
