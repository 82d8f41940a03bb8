//! Who owns what: the owner a file is given, whether the agent may give it, and the check that
//! keeps a user's area (home, `~/.ssh`, `authorized_keys`) to that user or root.

use std::path::PathBuf;

use nix::sys::stat::{FileStat, SFlag};

use super::error::Refused;

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

/// True when the agent owns the file of status `stat`: a directory its `mkdirat` made, opened
/// afterwards, is that very directory only when it is the agent's (one a user put in its place
/// meanwhile is that user's).
pub fn is_agents(stat: &FileStat) -> bool {
    stat.st_uid == nix::unistd::geteuid().as_raw()
}

/// The first uid of a person's account (login.defs' `UID_MIN` on Debian, Ubuntu and Fedora):
/// below it, system accounts, which the image's packages make for their daemons.
pub const FIRST_USER_UID: u32 = 1000;

/// Whether only root or a system account (a daemon's, below [`FIRST_USER_UID`]) may add
/// entries to a directory of status `stat`, neither its group nor others writing it:
/// systemd-resolved's `/run/systemd/resolve`, where Ubuntu's `/etc/resolv.conf` points.
pub fn only_system_adds(stat: &FileStat) -> bool {
    let owner = stat.st_uid;
    (owner < FIRST_USER_UID || owner == nix::unistd::geteuid().as_raw())
        && stat.st_mode & 0o022 == 0
}

/// Whether only root may add entries to a directory of status `stat`: it is root's (or the
/// agent's own, in a test run as a user) and neither its group nor others may write it. An
/// entry of any other directory may be a user's choice: their own file or symlink, or a hard
/// link to someone else's file where `fs.protected_hardlinks` is 0.
pub fn only_root_adds(stat: &FileStat) -> bool {
    let owner = stat.st_uid;
    (owner == 0 || owner == nix::unistd::geteuid().as_raw()) && stat.st_mode & 0o022 == 0
}

/// The file type bits of a stat.
pub fn kind(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits())
}

/// What the file of status `stat` is, in words (for messages).
pub fn kind_name(stat: &FileStat) -> &'static str {
    match kind(stat) {
        SFlag::S_IFREG => "regular file",
        SFlag::S_IFDIR => "directory",
        SFlag::S_IFLNK => "symlink",
        SFlag::S_IFCHR => "character device",
        SFlag::S_IFBLK => "block device",
        SFlag::S_IFIFO => "named pipe (FIFO)",
        SFlag::S_IFSOCK => "socket",
        _ => "file of unknown type",
    }
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
