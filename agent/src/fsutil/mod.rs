//! File-system helpers: atomic writes and owned directories.

pub mod atomic;

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

pub use atomic::{AtomicWriteError, WriteOptions, write_atomic};

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

/// Reads a file, `Ok(None)` when it does not exist.
pub fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// Reads a text file, `Ok(None)` when it does not exist; invalid UTF-8 is replaced.
pub fn read_optional_string(path: &Path) -> io::Result<Option<String>> {
    Ok(read_optional(path)?.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

/// Creates `dir` (and missing parents, mode 0755) and gives `dir` itself `mode` and `owner`,
/// also when it already existed (as cloud-init does for `~/.ssh`).
pub fn ensure_dir(dir: &Path, mode: u32, owner: Option<Owner>) -> io::Result<()> {
    if !dir.is_dir() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)?;
    }
    if let Some(owner) = owner
        && can_chown()
    {
        std::os::unix::fs::chown(dir, Some(owner.uid), Some(owner.gid))?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
}
